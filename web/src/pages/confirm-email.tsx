import { useState } from "react";
import { api } from "../api.js";
import { Link } from "../router.js";
import { ErrorMessage, formatTime, Notice, useTask } from "../ui.js";

/** The link sent to a new email address: the owner confirms with a button, never on opening the page. */
export function ConfirmEmailPage() {
  const token = new URLSearchParams(location.search).get("token") ?? "";
  const [changed, setChanged] = useState<{ email: string; holdUntil: string } | null>(null);
  const task = useTask();
  const confirm = () =>
    task
      .run(() =>
        api<{ status: "changed"; email: string; holdUntil: string }>("POST", "/v1/security/email/confirm", {
          body: { token },
        }),
      )
      .then((result) => setChanged(result ?? null));
  return (
    <div className="narrow">
      <h1>{changed ? "Your email address is changed" : "Confirm your new email address"}</h1>
      {changed ? (
        <Notice tone="success">
          <p>Your account's email address is now {changed.email}.</p>
          <p>
            Withdrawals are on hold until {formatTime(changed.holdUntil)} (72 hours), as after every change of
            address. We have told your previous address too.
          </p>
          <p>
            <Link href="/security">Go to Security</Link>
          </p>
        </Notice>
      ) : (
        <>
          <p>
            Make this address your account's email address. Withdrawals then wait 72 hours, and your previous
            address is told of the change.
          </p>
          <button
            type="button"
            className="primary"
            disabled={task.busy || !token}
            onClick={() => void confirm()}
          >
            Use this address
          </button>
        </>
      )}
      <ErrorMessage error={task.error} />
    </div>
  );
}
