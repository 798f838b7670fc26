import { useEffect, useRef, useState } from "react";
import { api } from "../api.js";
import { Link, navigate } from "../router.js";
import { ErrorMessage, formatTime, Notice, useTask } from "../ui.js";

interface ApprovalDetails {
  device: string;
  location: string | null;
  ip: string;
  requestedAt: string;
  sameNetwork: boolean;
}

/**
 * The link of the "Approve sign-in" email: what is asking (device, place, time), the approval (which counts
 * only from the network of the device that asked), and "This wasn't me", which refuses the sign-in and
 * offers to lock the account.
 */
export function ApproveDevicePage() {
  const token = new URLSearchParams(location.search).get("token") ?? "";
  const [details, setDetails] = useState<ApprovalDetails | null>(null);
  const [outcome, setOutcome] = useState<"approved" | "refused" | null>(null);
  const [lockToken, setLockToken] = useState<string | null>(null);
  const load = useTask();
  const task = useTask();
  const started = useRef(false);
  useEffect(() => {
    if (started.current) return;
    started.current = true;
    void load
      .run(() => api<ApprovalDetails>("POST", "/v1/devices/approve/details", { body: { token } }))
      .then((result) => setDetails(result ?? null));
  }, [load, token]);
  async function approve() {
    if ((await task.run(() => api("POST", "/v1/devices/approve", { body: { token } }))) !== undefined)
      setOutcome("approved");
  }
  async function refuse() {
    const result = await task.run(() =>
      api<{ lockToken: string }>("POST", "/v1/devices/refuse", { body: { token } }),
    );
    if (result) {
      setLockToken(result.lockToken);
      setOutcome("refused");
    }
  }
  return (
    <div className="narrow">
      <h1>
        {outcome === "approved"
          ? "Device approved"
          : outcome === "refused"
            ? "Sign-in refused"
            : "Approve a new device"}
      </h1>
      <ErrorMessage error={load.error} />
      {outcome === "approved" ? (
        <Notice tone="success">Approved. The browser that is waiting signs in now.</Notice>
      ) : null}
      {outcome === "refused" ? (
        <>
          <Notice tone="warning">
            <p>Nobody can finish that sign-in now.</p>
            <p>
              Whoever started it knows your password. If they may already be signed in, lock your account:
              every session ends and your API keys stop. Then choose a new password.
            </p>
          </Notice>
          <div className="actions">
            <button
              type="button"
              className="primary"
              onClick={() => navigate(`/lock-account?token=${encodeURIComponent(lockToken ?? "")}`)}
            >
              Lock my account
            </button>
            <Link href="/forgot-password">Choose a new password</Link>
          </div>
        </>
      ) : null}
      {details && outcome === null ? (
        <>
          <p>Someone who knows your password is signing in from a device this account has not used:</p>
          <dl className="facts">
            <div>
              <dt>Device</dt>
              <dd>{details.device}</dd>
            </div>
            <div>
              <dt>Place</dt>
              <dd>{details.location ?? "Not known"}</dd>
            </div>
            <div>
              <dt>IP address</dt>
              <dd>{details.ip}</dd>
            </div>
            <div>
              <dt>Time</dt>
              <dd>{formatTime(details.requestedAt)}</dd>
            </div>
          </dl>
          {details.sameNetwork ? null : (
            <Notice tone="warning">
              You opened this link on a different network from the device that is signing in, so approving
              from here does not count. Open the link on the same network (the same Wi-Fi or connection) as
              that device. If you are not signing in at all, choose "This wasn't me".
            </Notice>
          )}
          <ErrorMessage error={task.error} />
          <button
            type="button"
            className="primary"
            onClick={() => void approve()}
            disabled={task.busy || !details.sameNetwork}
          >
            Approve this device
          </button>{" "}
          <button type="button" onClick={() => void refuse()} disabled={task.busy}>
            This wasn't me
          </button>
        </>
      ) : null}
    </div>
  );
}
