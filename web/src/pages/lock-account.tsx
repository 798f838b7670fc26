import { useState } from "react";
import { api } from "../api.js";
import { ErrorMessage, formatTime, Notice, useTask } from "../ui.js";

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
        }),
      )
      .then((result) => setLiftableAt(result?.liftableAt ?? null));
  return (
    <div className="narrow">
      <h1>Lock your account</h1>
      {liftableAt ? (
        <Notice tone="success">
          Your account is frozen. Every session has ended and your API keys have stopped working. Nothing can
          be withdrawn or changed. From {formatTime(liftableAt)} you can lift the freeze by signing in and
          confirming with your Master Key and your second factor, or support can lift it for you.
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
