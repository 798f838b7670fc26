import { useState } from "react";
import { api } from "../api.js";
import { useSession } from "../session.js";
import { useStepUp } from "../step-up.js";
import { ErrorMessage, Field, formatTime, Notice, useTask } from "../ui.js";

/**
 * Shown on every page while the account is frozen by "lock my account": nothing else works, so the page
 * says why, and from when the owner may lift it with the Master Key and a second factor.
 */
export function FrozenNotice() {
  const { session, refresh } = useSession();
  const [masterKey, setMasterKey] = useState("");
  const task = useTask();
  const withStepUp = useStepUp();
  const frozen = session?.account.frozen;
  if (!frozen) return null;
  const liftable = Date.parse(frozen.liftableAt) <= Date.now();
  async function lift(event: React.FormEvent) {
    event.preventDefault();
    const lifted = await task.run(() =>
      withStepUp((actionId) =>
        api("POST", "/v1/security/account-lock/lift", { body: { masterKey }, actionId }),
      ),
    );
    if (lifted !== undefined) await refresh();
  }
  return (
    <Notice tone="warning">
      <p>
        Your account is frozen since {formatTime(frozen.since)}, from the lock link in a security email.
        Sessions and API keys do not work, and nothing can be withdrawn or changed.
      </p>
      {liftable ? (
        <form onSubmit={(event) => void lift(event)}>
          <Field
            label="Master Key"
            name="masterKey"
            type="password"
            autoComplete="off"
            value={masterKey}
            onChange={setMasterKey}
            required
          />
          <ErrorMessage error={task.error} />
          <button type="submit" className="primary" disabled={task.busy}>
            Lift the freeze
          </button>
        </form>
      ) : (
        <p>
          From {formatTime(frozen.liftableAt)} you can lift it here with your Master Key and your second
          factor, or contact support.
        </p>
      )}
    </Notice>
  );
}
