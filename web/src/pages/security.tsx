import { startRegistration } from "@simplewebauthn/browser";
import { type FormEvent, type ReactNode, useCallback, useEffect, useState } from "react";
import { ApiError, api, type LockState, type SecondFactor, type SecurityOverview } from "../api.js";
import { useSession } from "../session.js";
import { useStepUp } from "../step-up.js";
import {
  Checkbox,
  CopyButton,
  DownloadButton,
  ErrorMessage,
  Field,
  FieldErrors,
  formatTime,
  Notice,
  useTask,
} from "../ui.js";
import { ActivityCard, DevicesCard, SessionsCard } from "./sessions.js";

type PanelId =
  | "factors"
  | "requirements"
  | "passcode"
  | "masterKey"
  | "antiPhishing"
  | "email"
  | "password"
  | "lock";

interface StatusItem {
  id: PanelId;
  title: string;
  status: string;
  done: boolean;
  action: string;
  panel: ReactNode;
}

const onOff = (on: boolean | undefined) => (on ? "on" : "off");

/**
 * The security centre (docs/behaviour.md §5–§8) as a status list, as exchanges show it: each item says where it
 * stands and has one action, which opens its form in place (one at a time; the address's #fragment
 * names it, so a link can open it). Every change goes through the shared step-up mechanism; the page
 * reloads the overview after each so what it shows is what the server has.
 */
export function SecurityPage() {
  const { session } = useSession();
  const [overview, setOverview] = useState<SecurityOverview | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [open, setOpen] = useState<PanelId | null>(() => (location.hash.slice(1) as PanelId) || null);
  const reload = useCallback(async () => {
    setError(null);
    try {
      setOverview(await api<SecurityOverview>("GET", "/v1/security"));
    } catch (caught) {
      setError(caught);
    }
  }, []);
  useEffect(() => {
    void reload();
  }, [reload]);

  function toggle(id: PanelId) {
    const next = open === id ? null : id;
    setOpen(next);
    history.replaceState(history.state, "", next ? `#${next}` : location.pathname);
  }

  const items: StatusItem[] = [];
  if (overview) {
    const factors = overview.secondFactors ?? [];
    const hidden = overview.hidden === true;
    const lock = overview.globalLock;
    const passwordItem = overview.checklist.find((item) => item.id === "password");
    if (!hidden) {
      items.push(
        {
          id: "factors",
          title: "Two-factor authentication",
          status: factors.length
            ? `On: ${factors.map((f) => f.name).join(", ")}`
            : "Off. Add an authenticator app to protect sign-in and withdrawals.",
          done: factors.length > 0,
          action: factors.length ? "Manage" : "Set up",
          panel: <FactorsCard overview={overview} onChange={reload} />,
        },
        {
          id: "requirements",
          title: "When to ask for two-factor authentication",
          status: `Funding ${onOff(overview.requirements?.funding)}, trading ${onOff(overview.requirements?.trading)}`,
          done: Boolean(overview.requirements?.funding),
          action: "Change",
          panel: <RequirementsCard overview={overview} onChange={reload} />,
        },
        {
          id: "passcode",
          title: "Trading passcode",
          status: overview.tradingPasscode?.set ? "Set" : "Not set",
          done: Boolean(overview.tradingPasscode?.set),
          action: overview.tradingPasscode?.set ? "Change" : "Set",
          panel: (
            <SecretForm
              label="Trading passcode"
              name="passcode"
              path="/v1/security/trading-passcode"
              isSet={overview.tradingPasscode?.set}
              hint="6 digits, asked for trades, withdrawals and new API keys. Changing it holds withdrawals for 24 hours."
              inputMode="numeric"
              enterAgain
              onChange={reload}
            />
          ),
        },
        {
          id: "masterKey",
          title: "Master Key",
          status: overview.masterKey?.set ? "Set" : "Not set",
          done: Boolean(overview.masterKey?.set),
          action: overview.masterKey?.set ? "Change" : "Set",
          panel: (
            <SecretForm
              label="Master Key"
              name="masterKey"
              path="/v1/security/master-key"
              isSet={overview.masterKey?.set}
              hint="At least 16 characters. Keep it offline: it resets your password, replaces a lost second factor and lifts the Global Settings Lock."
              enterAgain
              onChange={reload}
            />
          ),
        },
        {
          id: "antiPhishing",
          title: "Anti-phishing code",
          status: overview.antiPhishingCode?.set ? "Set: shown in every email we send you" : "Not set",
          done: Boolean(overview.antiPhishingCode?.set),
          action: overview.antiPhishingCode?.set ? "Change" : "Set",
          panel: (
            <SecretForm
              label="Anti-phishing code"
              name="code"
              path="/v1/security/anti-phishing-code"
              isSet={overview.antiPhishingCode?.set}
              hint="Shown in every email we send you, so you can tell our emails from fakes."
              onChange={reload}
              visible
            />
          ),
        },
        {
          id: "email",
          title: "Email address",
          status: session?.account.email ?? "Set",
          done: true,
          action: "Change",
          panel: <EmailCard hasSecondFactor={factors.length > 0} />,
        },
        {
          id: "password",
          title: "Password",
          status: passwordItem?.message ?? "Set",
          done: passwordItem?.done ?? true,
          action: "Change",
          panel: <PasswordCard onChange={reload} />,
        },
      );
    }
    items.push({
      id: "lock",
      title: "Global Settings Lock",
      status: lock.enabled
        ? lock.unlockPending && lock.unlocksAt
          ? `On, unlocking at ${formatTime(lock.unlocksAt)}`
          : `On (${lock.unlockDelayDays ?? 0}-day unlock wait)`
        : "Off",
      done: lock.enabled,
      action: lock.enabled ? "Unlock" : "Turn on",
      panel: <LockCard lock={lock} masterKeySet={overview.masterKey?.set} onChange={reload} />,
    });
  }

  return (
    <div className="page">
      <h1>Security</h1>
      <ErrorMessage error={error} />
      {error && !overview ? (
        <button type="button" onClick={() => void reload()}>
          Try again
        </button>
      ) : null}
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
          <ul className="status-list" aria-label="Security settings">
            {items.map((item) => (
              <li key={item.id} id={item.id} className={open === item.id ? "open" : undefined}>
                <div className="status-row">
                  <span className={item.done ? "status-mark ok" : "status-mark todo"} aria-hidden="true">
                    {item.done ? "✓" : "!"}
                  </span>
                  <div className="status-text">
                    <h2>{item.title}</h2>
                    <p>{item.status}</p>
                  </div>
                  <button
                    type="button"
                    aria-expanded={open === item.id}
                    aria-controls={`${item.id}-panel`}
                    onClick={() => toggle(item.id)}
                  >
                    {open === item.id ? "Close" : item.action}
                    <span className="visually-hidden"> {item.title}</span>
                  </button>
                </div>
                {open === item.id ? (
                  <div className="status-panel" id={`${item.id}-panel`}>
                    {item.panel}
                  </div>
                ) : null}
              </li>
            ))}
          </ul>
        </>
      ) : error ? null : (
        <p aria-busy="true">Loading…</p>
      )}
      <SessionsCard />
      <DevicesCard />
      <ActivityCard />
    </div>
  );
}

/** What a factor is, in the words of the list: a passkey says whether it stays on one device. */
function factorDescription(factor: SecondFactor): string {
  if (factor.kind === "authenticator_app") return "Authenticator app";
  if (factor.kind === "security_key") return "Security key";
  return factor.synced ? "Passkey, synced between your devices" : "Passkey on one device";
}

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
  const [keyName, setKeyName] = useState("");
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

  /** A security key the owner carries, or a passkey this device keeps (only beside a roaming factor). */
  async function addKey(kind: "security_key" | "passkey") {
    const result = await task.run(async () => {
      const optionsJSON = await withStepUp((actionId) =>
        api<Parameters<typeof startRegistration>[0]["optionsJSON"]>(
          "POST",
          `/v1/security/webauthn/options?kind=${kind}`,
          { actionId },
        ),
      );
      const response = await startRegistration({ optionsJSON });
      const fallback = kind === "passkey" ? "Passkey on this device" : "Security key";
      return api<{ recoveryCodes?: string[] }>("POST", "/v1/security/webauthn", {
        body: { response, name: keyName.trim() || fallback },
      });
    });
    if (!result) return;
    setKeyName("");
    if (result.recoveryCodes) setRecoveryCodes(result.recoveryCodes);
    await onChange();
  }
  const hasRoaming = factors.some((factor) => factor.roaming);

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
    <div>
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
                {factorDescription(factor) === factor.name ? null : (
                  <span className="muted">{factorDescription(factor)}</span>
                )}
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
          <div className="actions">
            <CopyButton text={recoveryCodes.join("\n")} label="Copy codes" />
            <DownloadButton
              text={`Portcullis recovery codes (each works once)\n\n${recoveryCodes.join("\n")}\n`}
              fileName="portcullis-recovery-codes.txt"
              label="Download codes"
            />
            <button type="button" className="primary" onClick={() => setRecoveryCodes(null)}>
              I have stored them
            </button>
          </div>
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
            </code>{" "}
            <CopyButton text={enrollment.secret} label="Copy key" />
          </p>
          <FieldErrors error={task.error}>
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
          </FieldErrors>
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
      {factors.length > 0 ? (
        // Not before a first factor: the first must be one you carry (an app or a roaming key), and the
        // browser cannot tell a roaming key from a passkey bound to this device before it is made.
        <form
          onSubmit={(event) => {
            event.preventDefault();
            void addKey("security_key");
          }}
          className="add-key"
          aria-label="Add a security key or passkey"
        >
          <Field
            label="Name for the key or passkey"
            name="keyName"
            value={keyName}
            onChange={setKeyName}
            required={false}
            hint="For example: YubiKey, or Work laptop."
          />
          <div className="actions">
            <button type="submit" disabled={task.busy}>
              Add security key
            </button>
            <button type="button" onClick={() => void addKey("passkey")} disabled={task.busy || !hasRoaming}>
              Add passkey on this device
            </button>
          </div>
          <p className="hint">
            {hasRoaming
              ? "A passkey on this device signs you in without a username or password, unlocked by your fingerprint, face or PIN. Your authenticator app or security key stays your way in from anywhere else."
              : "A passkey on this device can be added once you have an authenticator app or a security key: a passkey kept on one device cannot be your only way in."}
          </p>
        </form>
      ) : null}
      {factors.length > 0 ? (
        <p>
          <button type="button" onClick={() => void regenerate()} disabled={task.busy}>
            Create new recovery codes
          </button>
        </p>
      ) : null}
      <ErrorMessage error={task.error} />
    </div>
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
  const [saved, setSaved] = useState(false);
  async function save(event: FormEvent) {
    event.preventDefault();
    setSaved(false);
    // Nothing changed: nothing to confirm, and nothing to send.
    if (
      funding === (overview.requirements?.funding ?? false) &&
      trading === (overview.requirements?.trading ?? false)
    )
      return setSaved(true);
    const done = await task.run(() =>
      withStepUp((actionId) =>
        api("PUT", "/v1/security/requirements", { body: { funding, trading }, actionId }),
      ),
    );
    if (done === undefined) return;
    setSaved(true);
    await onChange();
  }
  return (
    <div>
      <form onSubmit={save} onChange={() => setSaved(false)}>
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
        {saved ? <Notice tone="success">Saved.</Notice> : null}
        <ErrorMessage error={task.error} />
        <button type="submit" disabled={task.busy}>
          Save
        </button>
      </form>
    </div>
  );
}

/** The Global Settings Lock (behaviour §7): lock with a waiting period; unlock with the Master Key or after it. */
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
    // Asking for an unlock is confirmed with a second factor; the Master Key is its own proof.
    const answer = await task.run(() =>
      withStepUp((actionId) =>
        api<{ state: string; unlocksAt?: string }>("POST", "/v1/security/global-lock/unlock", {
          body: masterKey ? { masterKey } : {},
          actionId,
        }),
      ),
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
    const done = await task.run(() =>
      withStepUp((actionId) => api("DELETE", "/v1/security/global-lock/unlock", { actionId })),
    );
    if (done !== undefined) await props.onChange();
  }

  return (
    <FieldErrors error={task.error}>
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
    </FieldErrors>
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
function SecretForm(props: {
  label: string;
  name: string;
  path: string;
  isSet?: boolean;
  hint: string;
  visible?: boolean;
  /** A second field to type it again: a mistyped passcode or Master Key would lock its owner out. */
  enterAgain?: boolean;
  inputMode?: "numeric";
  onChange: () => Promise<void>;
}) {
  const withStepUp = useStepUp();
  const task = useTask();
  const [value, setValue] = useState("");
  const [again, setAgain] = useState("");
  const [saved, setSaved] = useState(false);
  const againField = `${props.name}Again`;
  async function save(event: FormEvent) {
    event.preventDefault();
    setSaved(false);
    if (props.enterAgain && value !== again) {
      task.setError(
        new ApiError(
          400,
          {
            code: "invalid_request",
            message: "The two entries differ.",
            details: [{ field: againField, message: `This does not match the ${props.label} above.` }],
          },
          null,
        ),
      );
      return;
    }
    const done = await task.run(() =>
      withStepUp((actionId) => api("PUT", props.path, { body: { [props.name]: value }, actionId })),
    );
    if (done === undefined) return;
    setValue("");
    setAgain("");
    setSaved(true);
    await props.onChange();
  }
  return (
    <form onSubmit={save} className="secret" noValidate>
      <FieldErrors error={task.error}>
        <Field
          label={props.isSet ? `New ${props.label.toLowerCase()}` : props.label}
          name={props.name}
          type={props.visible ? "text" : "password"}
          inputMode={props.inputMode}
          autoComplete="off"
          value={value}
          onChange={setValue}
          hint={props.hint}
        />
        {props.enterAgain ? (
          <Field
            label={`${props.label}, again`}
            name={againField}
            type="password"
            inputMode={props.inputMode}
            autoComplete="off"
            value={again}
            onChange={setAgain}
          />
        ) : null}
        {saved ? <Notice tone="success">{props.label} saved.</Notice> : null}
        <ErrorMessage error={task.error} />
      </FieldErrors>
      <button type="submit" disabled={task.busy}>
        {props.isSet ? "Change" : "Set"}{" "}
        {props.label === "Master Key" ? "Master Key" : props.label.toLowerCase()}
      </button>
    </form>
  );
}

/**
 * Changing the email address (behaviour §7): confirmed with a second factor, it takes effect when the new
 * address opens the link sent to it; the current address hears of it at once, with a lock link.
 */
function EmailCard({ hasSecondFactor }: { hasSecondFactor: boolean }) {
  const withStepUp = useStepUp();
  const task = useTask();
  const [address, setAddress] = useState("");
  const [sentTo, setSentTo] = useState<string | null>(null);
  async function save(event: FormEvent) {
    event.preventDefault();
    setSentTo(null);
    const done = await task.run(() =>
      withStepUp((actionId) =>
        api("POST", "/v1/security/email", { body: { newEmail: address.trim() }, actionId }),
      ),
    );
    if (done === undefined) return;
    setSentTo(address.trim());
    setAddress("");
  }
  if (!hasSecondFactor) {
    return (
      <p>
        Changing the email address is confirmed with a second factor: set up two-factor authentication first.
      </p>
    );
  }
  return (
    <form onSubmit={save} noValidate>
      <FieldErrors error={task.error}>
        <Field
          label="New email address"
          name="newEmail"
          type="email"
          inputMode="email"
          autoComplete="email"
          value={address}
          onChange={setAddress}
          hint="We send a link to the new address, and the change takes effect when you open it. Your current address is told at once. Withdrawals wait 72 hours after the change."
        />
        {sentTo ? (
          <Notice tone="success">
            We sent a link to {sentTo}. Open it within 24 hours to make the change; until then nothing
            changes.
          </Notice>
        ) : null}
        <ErrorMessage error={task.error} />
      </FieldErrors>
      <button type="submit" disabled={task.busy}>
        Change email address
      </button>
    </form>
  );
}

function PasswordCard({ onChange }: { onChange: () => Promise<void> }) {
  const { refresh } = useSession();
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
    // A breached password's notice and checklist item go with it.
    await Promise.all([onChange(), refresh()]);
  }
  return (
    <div>
      <form onSubmit={save} noValidate>
        <FieldErrors error={task.error}>
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
        </FieldErrors>
        <button type="submit" disabled={task.busy}>
          Change password
        </button>
      </form>
    </div>
  );
}
