import { useState } from "react";
import { ApiError, api } from "../api.js";
import { ErrorMessage, formatTime, Notice, useTask } from "../ui.js";

/** A spent or expired lock link, said for what it is: other emails carry lock links of their own. */
function lockLinkError(error: unknown): never {
  if (error instanceof ApiError && (error.code === "invalid_token" || error.code === "expired")) {
    throw new Error(
      "This lock link has been used already or has expired (they work for 7 days). Every security email has a lock link of its own: use the one in a newer email, or contact support.",
    );
  }
  throw error;
}

/**
 * The "lock my account" link of every security email. Nothing happens on opening the page (mail scanners
 * open links): the owner reads what a freeze does and confirms with the button.
 */
export function LockAccountPage() {
  const token = new URLSearchParams(location.search).get("token") ?? "";
  const [liftableAt, setLiftableAt] = useState<string | null>(null);
  const task = useTask();
  const lock = () =>
    task
      .run(() =>
        api<{ status: "frozen"; since: string; liftableAt: string }>("POST", "/v1/account-lock", {
          body: { token },
        }).catch(lockLinkError),
      )
      .then((result) => setLiftableAt(result?.liftableAt ?? null));
  return (
    <div className="narrow">
      <h1>{liftableAt ? "Your account is frozen" : "Lock your account"}</h1>
      {liftableAt ? (
        <Notice tone="success">
          <p>
            Every session has ended and your API keys have stopped working. Nothing can be withdrawn or
            changed.
          </p>
          <p>
            From {formatTime(liftableAt)} you can lift the freeze by signing in and confirming with your
            Master Key and your second factor, or support can lift it for you.
          </p>
        </Notice>
      ) : (
        <>
          <p>
            Lock your account if someone else may be signed in to it. Every session ends at once, your API
            keys stop working, and no withdrawal, new address, new API key or setting change is allowed until
            the freeze is lifted.
          </p>
          <p>
            You can lift the freeze yourself after 24 hours with your Master Key and your second factor, or
            ask support to lift it.
          </p>
          <button
            type="button"
            className="primary"
            disabled={task.busy || !token}
            onClick={() => void lock()}
          >
            Lock my account now
          </button>
        </>
      )}
      <ErrorMessage error={task.error} />
    </div>
  );
}
