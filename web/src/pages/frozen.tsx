import { type FormEvent, useState } from "react";
import { api } from "../api.js";
import { navigate } from "../router.js";
import { useSession } from "../session.js";
import { useStepUp } from "../step-up.js";
import { ErrorMessage, Field, FieldErrors, formatTime, Notice, useTask } from "../ui.js";

/**
 * What a frozen account's session sees on every account page (the server answers anything else with 423
 * account_frozen): why nothing works, and, once 24 hours have passed by the server's clock, lifting the
 * freeze with the Master Key and a step-up with a second factor.
 */
export function FrozenPage() {
  const { session, refresh } = useSession();
  const [masterKey, setMasterKey] = useState("");
  const [lifted, setLifted] = useState(false);
  const task = useTask();
  const withStepUp = useStepUp();
  const frozen = session?.account.frozen;
  if (!frozen) return null;

  async function lift(event: FormEvent) {
    event.preventDefault();
    const done = await task.run(() =>
      withStepUp((actionId) =>
        api("POST", "/v1/security/account-lock/lift", { body: { masterKey }, actionId }),
      ),
    );
    if (done === undefined) return;
    setMasterKey("");
    setLifted(true);
  }

  if (lifted) {
    return (
      <div className="narrow">
        <h1>The freeze is lifted</h1>
        <Notice tone="success">
          Your account works again. Your API keys work from their next request, and we have emailed you about
          the change.
        </Notice>
        <p>
          If you did not lock the account yourself, or someone else may know your password, change your
          password and review your sessions and devices in Security now.
        </p>
        <button
          type="button"
          className="primary"
          onClick={() => void refresh().then(() => navigate("/security"))}
        >
          Go to Security
        </button>
      </div>
    );
  }

  return (
    <div className="narrow">
      <h1>Your account is frozen</h1>
      <p>
        It was frozen on {formatTime(frozen.since)} with the "Lock my account" link from one of our security
        emails. Every session that was open then has ended, your API keys do not work, and nothing can be
        withdrawn or changed until the freeze is lifted.
      </p>
      {frozen.liftable ? (
        <section aria-labelledby="lift-heading">
          <h2 id="lift-heading">Lift the freeze</h2>
          <p>Confirm with your Master Key here, and with your second factor in the next step.</p>
          <form onSubmit={(event) => void lift(event)} noValidate>
            <FieldErrors error={task.error}>
              <Field
                label="Master Key"
                name="masterKey"
                type="password"
                autoComplete="off"
                value={masterKey}
                onChange={setMasterKey}
              />
              <ErrorMessage error={task.error} />
            </FieldErrors>
            <button type="submit" className="primary" disabled={task.busy}>
              Lift the freeze
            </button>
          </form>
        </section>
      ) : (
        <Notice tone="info">
          You can lift the freeze yourself from {formatTime(frozen.liftableAt)}, 24 hours after it began, with
          your Master Key and your second factor. Support can lift it sooner once they have confirmed it is
          you.
        </Notice>
      )}
      <p>
        Without a Master Key or a second factor on the account, only support can lift it. Signing out is the
        only other thing this session can do.
      </p>
    </div>
  );
}
