import { useState } from "react";
import { api } from "../api.js";
import { ErrorMessage, Notice, useTask } from "../ui.js";

/** The link sent to a new email address: the owner confirms with a button, never on opening the page. */
export function ConfirmEmailPage() {
  const token = new URLSearchParams(location.search).get("token") ?? "";
  const [email, setEmail] = useState<string | null>(null);
  const task = useTask();
  const confirm = () =>
    task
      .run(() =>
        api<{ status: "changed"; email: string }>("POST", "/v1/security/email/confirm", { body: { token } }),
      )
      .then((result) => setEmail(result?.email ?? null));
  return (
    <div className="narrow">
      <h1>Confirm your new email address</h1>
      {email ? (
        <Notice tone="success">
          Your account's email address is now {email}. Withdrawals are on hold for 72 hours, as after every
          change of address.
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
