import { startRegistration } from "@simplewebauthn/browser";
import { type FormEvent, useCallback, useEffect, useState } from "react";
import { api, type LockState, type SecurityOverview } from "../api.js";
import { useStepUp } from "../step-up.js";
import { Card, Checkbox, ErrorMessage, Field, formatTime, Notice, useTask } from "../ui.js";
import { ActivityCard, DevicesCard, SessionsCard } from "./sessions.js";

/**
 * The security centre (SPEC §5–§8): every change goes through the shared step-up mechanism; the page
 * reloads the overview after each so what it shows is what the server has.
 */
export function SecurityPage() {
  const [overview, setOverview] = useState<SecurityOverview | null>(null);
  const [error, setError] = useState<unknown>(null);
  const reload = useCallback(async () => {
    try {
      setOverview(await api<SecurityOverview>("GET", "/v1/security"));
    } catch (caught) {
      setError(caught);
    }
  }, []);
  useEffect(() => {
    void reload();
  }, [reload]);

  return (
    <div className="page">
      <h1>Security</h1>
      <ErrorMessage error={error} />
      {overview ? (
        <>
          <p>
            Security level <strong>{overview.level} of 5</strong>.
          </p>
          {overview.hidden ? (
            <Notice tone="info">
              Your Global Settings Lock is on: security settings are hidden and cannot be changed until you
              unlock it.
            </Notice>
          ) : null}
          {overview.holds?.length ? (
            <Notice tone="warning">
              Withdrawals are on hold after a recent security change until{" "}
              {formatTime(
                overview.holds
                  .map((h) => h.until)
                  .sort()
                  .at(-1),
              )}
              .
            </Notice>
          ) : null}
          {!overview.hidden ? <FactorsCard overview={overview} onChange={reload} /> : null}
          {!overview.hidden ? <RequirementsCard overview={overview} onChange={reload} /> : null}
          <LockCard lock={overview.globalLock} masterKeySet={overview.masterKey?.set} onChange={reload} />
          {!overview.hidden ? <SecretsCard overview={overview} onChange={reload} /> : null}
          {!overview.hidden ? <PasswordCard /> : null}
        </>
      ) : (
        <p aria-busy="true">Loading…</p>
      )}
      <SessionsCard />
      <DevicesCard />
      <ActivityCard />
    </div>
  );
}

const factorTypes: Record<string, string> = {
  totp: "Authenticator app",
  webauthn: "Security key or passkey",
};

interface TotpEnrollment {
  enrollmentId: string;
  secret: string;
  otpauthUri: string;
  qrSvg: string;
}

function FactorsCard({ overview, onChange }: { overview: SecurityOverview; onChange: () => Promise<void> }) {
  const withStepUp = useStepUp();
  const task = useTask();
  const [enrollment, setEnrollment] = useState<TotpEnrollment | null>(null);
  const [code, setCode] = useState("");
  const [appName, setAppName] = useState("Authenticator app");
  const [keyName, setKeyName] = useState("Security key");
  const [recoveryCodes, setRecoveryCodes] = useState<string[] | null>(null);
  const factors = overview.secondFactors ?? [];

  async function startTotp() {
    const started = await task.run(() =>
      withStepUp((actionId) => api<TotpEnrollment>("POST", "/v1/security/totp", { actionId })),
    );
    if (started) setEnrollment(started);
  }

  async function confirmTotp(event: FormEvent) {
    event.preventDefault();
    if (!enrollment) return;
    const result = await task.run(() =>
      api<{ recoveryCodes?: string[] }>("POST", `/v1/security/totp/${enrollment.enrollmentId}/confirm`, {
        body: { code: code.trim(), name: appName.trim() || undefined },
      }),
    );
    if (!result) return;
    setEnrollment(null);
    setCode("");
    if (result.recoveryCodes) setRecoveryCodes(result.recoveryCodes);
    await onChange();
  }

  async function addKey(event: FormEvent) {
    event.preventDefault();
    const result = await task.run(async () => {
      const optionsJSON = await withStepUp((actionId) =>
        api<Parameters<typeof startRegistration>[0]["optionsJSON"]>("POST", "/v1/security/webauthn/options", {
          actionId,
        }),
      );
      const response = await startRegistration({ optionsJSON });
      return api<{ recoveryCodes?: string[] }>("POST", "/v1/security/webauthn", {
        body: { response, name: keyName.trim() || "Security key" },
      });
    });
    if (!result) return;
    if (result.recoveryCodes) setRecoveryCodes(result.recoveryCodes);
    await onChange();
  }

  async function remove(id: string) {
    const done = await task.run(() =>
      withStepUp((actionId) => api("DELETE", `/v1/security/factors/${id}`, { actionId })),
    );
    if (done !== undefined) await onChange();
  }

  async function regenerate() {
    const result = await task.run(() =>
      withStepUp((actionId) => api<{ codes: string[] }>("POST", "/v1/security/recovery-codes", { actionId })),
    );
    if (result) setRecoveryCodes(result.codes);
  }

  return (
    <Card title="Two-factor authentication" id="factors">
      {factors.length === 0 ? (
        <Notice tone="warning">
          Your account has no second factor. Add an authenticator app first: your first factor must be one you
          carry with you.
        </Notice>
      ) : (
        <ul className="rows" aria-label="Your second factors">
          {factors.map((factor) => (
            <li key={factor.id}>
              <div>
                <strong>{factor.name}</strong>{" "}
                <span className="muted">{factorTypes[factor.type] ?? factor.type}</span>
                <br />
                <small className="muted">
                  Added {formatTime(factor.createdAt)} · last used {formatTime(factor.lastUsedAt)}
                </small>
              </div>
              <button
                type="button"
                className="quiet"
                onClick={() => void remove(factor.id)}
                disabled={task.busy}
              >
                Remove <span className="visually-hidden">{factor.name}</span>
              </button>
            </li>
          ))}
        </ul>
      )}
      {recoveryCodes ? (
        <section className="recovery" aria-label="Recovery codes">
          <Notice tone="success">
            Your recovery codes. Each works once, instead of your second factor. Store them offline now: they
            are not shown again.
          </Notice>
          <ol className="codes mono">
            {recoveryCodes.map((recoveryCode) => (
              <li key={recoveryCode}>{recoveryCode}</li>
            ))}
          </ol>
          <button type="button" onClick={() => setRecoveryCodes(null)}>
            I have stored them
          </button>
        </section>
      ) : null}
      {enrollment ? (
        <form onSubmit={confirmTotp} className="enroll" aria-label="Add an authenticator app">
          <p>Scan this code with your authenticator app, then enter the 6-digit code it shows.</p>
          <img
            className="qr"
            src={`data:image/svg+xml;charset=utf-8,${encodeURIComponent(enrollment.qrSvg)}`}
            alt="QR code for your authenticator app"
            width={180}
            height={180}
          />
          <p>
            Cannot scan? Enter this key:{" "}
            <code className="mono" data-testid="totp-secret">
              {enrollment.secret}
            </code>
          </p>
          <Field label="Name" name="name" value={appName} onChange={setAppName} hint="For example: phone" />
          <Field
            label="Code from the app"
            name="code"
            inputMode="numeric"
            autoComplete="one-time-code"
            value={code}
            onChange={setCode}
            autoFocus
          />
          <div className="actions">
            <button type="submit" className="primary" disabled={task.busy}>
              Turn on
            </button>
            <button type="button" className="quiet" onClick={() => setEnrollment(null)}>
              Cancel
            </button>
          </div>
        </form>
      ) : (
        <div className="actions">
          <button type="button" className="primary" onClick={() => void startTotp()} disabled={task.busy}>
            Add authenticator app
          </button>
        </div>
      )}
      <form onSubmit={addKey} className="inline" aria-label="Add a security key or passkey">
        <Field label="Security key name" name="keyName" value={keyName} onChange={setKeyName} />
        <button type="submit" disabled={task.busy}>
          Add security key or passkey
        </button>
      </form>
      {factors.length > 0 ? (
        <p>
          <button type="button" onClick={() => void regenerate()} disabled={task.busy}>
            Create new recovery codes
          </button>
        </p>
      ) : null}
      <ErrorMessage error={task.error} />
    </Card>
  );
}

function RequirementsCard({
  overview,
  onChange,
}: {
  overview: SecurityOverview;
  onChange: () => Promise<void>;
}) {
  const withStepUp = useStepUp();
  const task = useTask();
  const [funding, setFunding] = useState(overview.requirements?.funding ?? false);
  const [trading, setTrading] = useState(overview.requirements?.trading ?? false);
  async function save(event: FormEvent) {
    event.preventDefault();
    const done = await task.run(() =>
      withStepUp((actionId) =>
        api("PUT", "/v1/security/requirements", { body: { funding, trading }, actionId }),
      ),
    );
    if (done !== undefined) await onChange();
  }
  return (
    <Card title="When to ask for two-factor authentication" id="requirements">
      <form onSubmit={save}>
        <Checkbox
          label="Funding: withdrawals, futures transfers and new deposit addresses"
          name="funding"
          checked={funding}
          onChange={setFunding}
        />
        <Checkbox
          label="Trading: placing and cancelling orders"
          name="trading"
          checked={trading}
          onChange={setTrading}
        />
        <ErrorMessage error={task.error} />
        <button type="submit" disabled={task.busy}>
          Save
        </button>
      </form>
    </Card>
  );
}

/** The Global Settings Lock (SPEC §7): lock with a waiting period; unlock with the Master Key or after it. */
function LockCard(props: { lock: LockState; masterKeySet?: boolean; onChange: () => Promise<void> }) {
  const { lock } = props;
  const withStepUp = useStepUp();
  const task = useTask();
  const [days, setDays] = useState("3");
  const [masterKey, setMasterKey] = useState("");
  const [result, setResult] = useState<string | null>(null);

  async function turnOn(event: FormEvent) {
    event.preventDefault();
    const done = await task.run(() =>
      withStepUp((actionId) =>
        api("POST", "/v1/security/global-lock", { body: { unlockDelayDays: Number(days) }, actionId }),
      ),
    );
    if (done !== undefined) {
      setResult(null);
      await props.onChange();
    }
  }

  async function unlock(event: FormEvent) {
    event.preventDefault();
    const answer = await task.run(() =>
      api<{ state: string; unlocksAt?: string }>("POST", "/v1/security/global-lock/unlock", {
        body: masterKey ? { masterKey } : {},
      }),
    );
    if (!answer) return;
    setMasterKey("");
    setResult(
      answer.state === "unlocked"
        ? "The lock is off."
        : `The lock comes off at ${formatTime(answer.unlocksAt)}.`,
    );
    await props.onChange();
  }

  async function cancel() {
    const done = await task.run(() => api("DELETE", "/v1/security/global-lock/unlock"));
    if (done !== undefined) await props.onChange();
  }

  return (
    <Card title="Global Settings Lock" id="lock">
      <p>
        While the lock is on, nobody — not even someone with your password and second factor — can change your
        password, email, second factors, Master Key, API keys or withdrawal addresses. Sign-in, trading and
        balances are not affected.
      </p>
      {result ? <Notice tone="success">{result}</Notice> : null}
      {lock.enabled ? (
        <>
          <p>
            <span className="badge ok">On</span> Unlock waiting period: {lock.unlockDelayDays ?? 0} days.
          </p>
          {lock.unlockPending && lock.unlocksAt ? (
            <div className="pending">
              <p>
                Unlock requested: the lock comes off in <Countdown until={lock.unlocksAt} /> (at{" "}
                {formatTime(lock.unlocksAt)}).
              </p>
              <button type="button" onClick={() => void cancel()} disabled={task.busy}>
                Cancel the unlock
              </button>
            </div>
          ) : null}
          <form onSubmit={unlock}>
            <Field
              label="Master Key"
              name="masterKey"
              type="password"
              autoComplete="off"
              required={false}
              value={masterKey}
              onChange={setMasterKey}
              hint="With your Master Key the lock comes off at once; without it, after the waiting period."
            />
            <button type="submit" disabled={task.busy}>
              {masterKey ? "Unlock now" : "Request unlock"}
            </button>
          </form>
        </>
      ) : (
        <form onSubmit={turnOn}>
          {!props.masterKeySet ? (
            <Notice tone="info">
              Set a Master Key first to be able to unlock at once. Without one, unlocking waits for the
              period.
            </Notice>
          ) : null}
          <Field
            label="Unlock waiting period (days)"
            name="unlockDelayDays"
            type="number"
            inputMode="numeric"
            value={days}
            onChange={setDays}
            hint="0 to 30 days. With 0 days and no Master Key, only support can remove the lock."
          />
          <button type="submit" className="primary" disabled={task.busy}>
            Turn on the lock
          </button>
        </form>
      )}
      <ErrorMessage error={task.error} />
    </Card>
  );
}

function Countdown({ until }: { until: string }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  const seconds = Math.max(0, Math.floor((Date.parse(until) - now) / 1000));
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  return (
    <strong>
      {days} d {hours} h {minutes} min
    </strong>
  );
}

/** Trading passcode, Master Key and anti-phishing code: each a value the owner sets, never shown back. */
function SecretsCard({ overview, onChange }: { overview: SecurityOverview; onChange: () => Promise<void> }) {
  return (
    <Card title="Passcode, Master Key and anti-phishing code">
      <SecretForm
        label="Trading passcode"
        name="passcode"
        path="/v1/security/trading-passcode"
        isSet={overview.tradingPasscode?.set}
        hint="6 digits, asked for trades, withdrawals and new API keys. Changing it holds withdrawals for 24 hours."
        onChange={onChange}
      />
      <SecretForm
        label="Master Key"
        name="masterKey"
        path="/v1/security/master-key"
        isSet={overview.masterKey?.set}
        hint="At least 16 characters. Keep it offline: it resets your password, replaces a lost second factor and lifts the Global Settings Lock."
        onChange={onChange}
      />
      <SecretForm
        label="Anti-phishing code"
        name="code"
        path="/v1/security/anti-phishing-code"
        isSet={overview.antiPhishingCode?.set}
        hint="Shown in every email we send you, so you can tell our emails from fakes."
        onChange={onChange}
        visible
      />
    </Card>
  );
}

function SecretForm(props: {
  label: string;
  name: string;
  path: string;
  isSet?: boolean;
  hint: string;
  visible?: boolean;
  onChange: () => Promise<void>;
}) {
  const withStepUp = useStepUp();
  const task = useTask();
  const [value, setValue] = useState("");
  const [saved, setSaved] = useState(false);
  async function save(event: FormEvent) {
    event.preventDefault();
    const done = await task.run(() =>
      withStepUp((actionId) => api("PUT", props.path, { body: { [props.name]: value }, actionId })),
    );
    if (done === undefined) return;
    setValue("");
    setSaved(true);
    await props.onChange();
  }
  return (
    <form onSubmit={save} className="secret">
      <Field
        label={`${props.label} ${props.isSet ? "(set)" : "(not set)"}`}
        name={props.name}
        type={props.visible ? "text" : "password"}
        autoComplete="off"
        value={value}
        onChange={setValue}
        hint={props.hint}
      />
      {saved ? <Notice tone="success">{props.label} saved.</Notice> : null}
      <ErrorMessage error={task.error} />
      <button type="submit" disabled={task.busy}>
        {props.isSet ? "Change" : "Set"} {props.label.toLowerCase()}
      </button>
    </form>
  );
}

function PasswordCard() {
  const withStepUp = useStepUp();
  const task = useTask();
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [saved, setSaved] = useState(false);
  async function save(event: FormEvent) {
    event.preventDefault();
    const done = await task.run(() =>
      withStepUp((actionId) =>
        api("POST", "/v1/security/password", {
          body: { currentPassword: current, newPassword: next },
          actionId,
        }),
      ),
    );
    if (done === undefined) return;
    setCurrent("");
    setNext("");
    setSaved(true);
  }
  return (
    <Card title="Password">
      <form onSubmit={save}>
        <Field
          label="Current password"
          name="currentPassword"
          type="password"
          autoComplete="current-password"
          value={current}
          onChange={setCurrent}
        />
        <Field
          label="New password"
          name="newPassword"
          type="password"
          autoComplete="new-password"
          value={next}
          onChange={setNext}
          hint="At least 12 characters. Every other session ends when you change it."
        />
        {saved ? <Notice tone="success">Password changed. Your other sessions have ended.</Notice> : null}
        <ErrorMessage error={task.error} />
        <button type="submit" disabled={task.busy}>
          Change password
        </button>
      </form>
    </Card>
  );
}
