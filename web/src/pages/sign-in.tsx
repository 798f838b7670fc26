import {
  browserSupportsWebAuthn,
  browserSupportsWebAuthnAutofill,
  startAuthentication,
  WebAuthnAbortService,
} from "@simplewebauthn/browser";
import { type FormEvent, useEffect, useRef, useState } from "react";
import { ApiError, api, type SignInState } from "../api.js";
import { BotCheck, type BotCheckHandle } from "../bot-check.js";
import { portalOnlyMessages } from "../errors.js";
import { Link, navigate } from "../router.js";
import { useSession } from "../session.js";
import { ErrorMessage, Field, Notice, useTask } from "../ui.js";

const factorLabels: Record<string, string> = {
  totp: "Authenticator app",
  webauthn: "Security key or passkey",
  recovery_code: "Recovery code",
  master_key: "Master Key",
};

/** Notices the sign-in answered with ("turn on two-factor authentication"), shown once on the dashboard. */
export const signInNoticesKey = "portcullis.sign-in-notices";

/**
 * Sign-in as the server's state machine has it (behaviour §2): password, then a second factor when the account
 * has one, then device approval for a new device; the page shows whichever step the server says is next.
 */
export function SignInPage() {
  const { refresh, ended } = useSession();
  const [flow, setFlow] = useState<SignInState | null>(null);
  const [expired, setExpired] = useState(false);

  async function advance(next: SignInState) {
    if (next.state === "authenticated") {
      if (next.notices?.length) sessionStorage.setItem(signInNoticesKey, JSON.stringify(next.notices));
      await refresh();
      const target = new URLSearchParams(location.search).get("next");
      navigate(target?.startsWith("/") && !target.startsWith("//") ? target : "/", { replace: true });
      return;
    }
    setFlow(next);
  }

  function restart(error: unknown) {
    if (error instanceof ApiError && error.code === "expired") {
      setFlow(null);
      setExpired(true);
    }
  }

  return (
    <div className="narrow">
      <h1>Sign in</h1>
      {expired && !flow ? <Notice tone="warning">That sign-in took too long. Start again.</Notice> : null}
      {ended && !flow ? (
        <Notice tone="info">
          Your session has ended: it was signed out from another device, or every session ended after a
          security change. Sign in again to continue.
        </Notice>
      ) : null}
      {!flow ? <PasswordStep onNext={advance} /> : null}
      {flow?.state === "second_factor" ? (
        <SecondFactorStep flow={flow} onNext={advance} onError={restart} />
      ) : null}
      {flow?.state === "device_approval" ? <DeviceApprovalStep flow={flow} onNext={advance} /> : null}
      {flow?.state === "device_refused" ? (
        <Notice tone="warning">
          This sign-in was refused from the approval email ("This wasn't me"). If that was you by mistake,
          sign in again.
        </Notice>
      ) : null}
    </div>
  );
}

/**
 * Failed attempts in this page after which it says that sign-in may be paused. The server restricts an
 * account after a few more failures than this (five by default) and emails its owner; the page cannot
 * know which, and says "may".
 */
const pausedAfterFailures = 3;

type RequestOptionsJSON = Parameters<typeof startAuthentication>[0]["optionsJSON"];

/** A passkey prompt that was closed, timed out or replaced by another: nothing to report for an abort. */
function isAbort(error: unknown): boolean {
  return (
    error instanceof Error &&
    (error.name === "AbortError" || (error as { code?: string }).code === "ERROR_CEREMONY_ABORTED")
  );
}

/** What the browser's own refusals mean, in a sentence; the server's refusals speak for themselves. */
function passkeyProblem(error: unknown): unknown {
  if (error instanceof ApiError || !(error instanceof Error)) return error;
  if (error.name === "NotAllowedError") return new Error(portalOnlyMessages.passkey_cancelled);
  return new Error(portalOnlyMessages.passkey_unavailable);
}

/**
 * "Sign in with a passkey" (docs/behaviour.md §2): no username, the passkey finds the account. Where the
 * browser offers passkeys in the username field's autofill (conditional mediation), a request waits there
 * from the moment the page opens; the button starts the browser's own prompt instead (which ends the
 * waiting request), and the waiting one starts again after a prompt that did not sign in.
 */
function usePasskeySignIn(onNext: (state: SignInState) => Promise<void>) {
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const mounted = useRef(true);
  const next = useRef(onNext);
  next.current = onNext;

  async function finish(response: unknown) {
    setBusy(true);
    try {
      await next.current(await api<SignInState>("POST", "/v1/sign-in/passkey", { body: { response } }));
    } finally {
      if (mounted.current) setBusy(false);
    }
  }

  async function waitInAutofill(): Promise<void> {
    if (!mounted.current || !(await browserSupportsWebAuthnAutofill())) return;
    let response: unknown;
    try {
      const optionsJSON = await api<RequestOptionsJSON>("POST", "/v1/sign-in/passkey/options");
      if (!mounted.current) return;
      response = await startAuthentication({ optionsJSON, useBrowserAutofill: true });
    } catch (caught) {
      // The autofill is the browser's offer, not something the person asked for: when the browser
      // cannot make it (no passkey here, no support), the page says nothing and the button remains.
      if (!isAbort(caught) && caught instanceof ApiError && mounted.current) setError(caught);
      return;
    }
    try {
      setError(null);
      await finish(response);
    } catch (caught) {
      // A passkey the server refused: said plainly; the button tries again with a fresh challenge.
      if (mounted.current) setError(caught);
    }
  }

  // biome-ignore lint/correctness/useExhaustiveDependencies: one waiting request per visit to the page
  useEffect(() => {
    mounted.current = true;
    void waitInAutofill();
    return () => {
      mounted.current = false;
      WebAuthnAbortService.cancelCeremony();
    };
  }, []);

  async function withPrompt() {
    setError(null);
    try {
      const optionsJSON = await api<RequestOptionsJSON>("POST", "/v1/sign-in/passkey/options");
      await finish(await startAuthentication({ optionsJSON }));
    } catch (caught) {
      if (!mounted.current) return;
      if (!isAbort(caught)) setError(passkeyProblem(caught));
      void waitInAutofill();
    }
  }

  return { error, busy, withPrompt, supported: browserSupportsWebAuthn() };
}

function PasswordStep({ onNext }: { onNext: (state: SignInState) => Promise<void> }) {
  const passkey = usePasskeySignIn(onNext);
  const [identifier, setIdentifier] = useState("");
  const [password, setPassword] = useState("");
  const botCheck = useRef<BotCheckHandle>(null);
  const task = useTask();
  const [failures, setFailures] = useState(0);

  async function submit(event: FormEvent) {
    event.preventDefault();
    await task.run(async () => {
      try {
        const state = await api<SignInState>("POST", "/v1/sign-in", {
          body: { identifier: identifier.trim(), password, botCheck: await botCheck.current!.solve() },
        });
        await onNext(state);
      } catch (error) {
        if (error instanceof ApiError && error.code === "invalid_credentials") setFailures((n) => n + 1);
        throw error;
      } finally {
        // Each bot-check answer is single-use.
        botCheck.current?.renew();
      }
    });
  }

  return (
    <>
      {/* noValidate: the bot-check widget marks its checkbox required while it solves, which would
          silently block the submit; solve() waits for it instead, and the server checks every field. */}
      <form onSubmit={submit} aria-label="Sign in" noValidate>
        <Field
          label="Username"
          name="identifier"
          // "webauthn": the browser may offer this site's passkeys in the field's autofill.
          autoComplete="username webauthn"
          value={identifier}
          onChange={setIdentifier}
          autoFocus
        />
        <Field
          label="Password"
          name="password"
          type="password"
          autoComplete="current-password"
          value={password}
          onChange={setPassword}
        />
        <BotCheck handle={botCheck} />
        <ErrorMessage error={task.error} />
        {failures >= pausedAfterFailures ? (
          // The same words whether or not the account exists: the server answers alike for both.
          <Notice tone="warning">
            After several failed attempts, signing in to an account is paused for a while to protect it, and
            then even the right password is refused. If this is your account, check your email: we write to
            you when that happens and say what you can do. You can also{" "}
            <Link href="/forgot-password">reset your password</Link>.
          </Notice>
        ) : null}
        <button type="submit" className="primary" disabled={task.busy || passkey.busy}>
          Sign in
        </button>
      </form>
      {passkey.supported ? (
        <section className="passkey-sign-in" aria-label="Sign in with a passkey">
          <p className="or" aria-hidden="true">
            <span>or</span>
          </p>
          <button
            type="button"
            className="wide"
            onClick={() => void passkey.withPrompt()}
            disabled={task.busy || passkey.busy}
          >
            Sign in with a passkey
          </button>
          <p className="muted hint">
            No username or password: your device unlocks its passkey with your fingerprint, face or PIN.
          </p>
          <ErrorMessage error={passkey.error} />
        </section>
      ) : null}
      <ul className="links">
        <li>
          <Link href="/forgot-password">Forgot your password?</Link>
        </li>
        <li>
          <Link href="/forgot-username">Forgot your username?</Link>
        </li>
        <li>
          New here? <Link href="/sign-up">Create an account</Link>
        </li>
      </ul>
    </>
  );
}

function SecondFactorStep(props: {
  flow: SignInState;
  onNext: (state: SignInState) => Promise<void>;
  onError: (error: unknown) => void;
}) {
  const factors = props.flow.factors ?? [];
  const [factor, setFactor] = useState(factors.includes("totp") ? "totp" : (factors[0] ?? "totp"));
  const [code, setCode] = useState("");
  const [masterKey, setMasterKey] = useState("");
  const [bypassSent, setBypassSent] = useState(false);
  const task = useTask();
  const base = `/v1/sign-in/${props.flow.flowId}`;

  async function run(request: () => Promise<SignInState>) {
    await task.run(async () => {
      try {
        await props.onNext(await request());
      } catch (error) {
        props.onError(error);
        throw error;
      }
    });
  }

  function submit(event: FormEvent) {
    event.preventDefault();
    if (factor === "totp") void run(() => api("POST", `${base}/totp`, { body: { code: code.trim() } }));
    if (factor === "recovery_code")
      void run(() => api("POST", `${base}/recovery-code`, { body: { code: code.trim() } }));
    if (factor === "master_key" && !bypassSent) {
      void task
        .run(() => api("POST", `${base}/master-key`, { body: { masterKey } }))
        .then((sent) => {
          if (sent !== undefined) setBypassSent(true);
        });
    }
    if (factor === "master_key" && bypassSent)
      void run(() => api("POST", `${base}/bypass-code`, { body: { code: code.trim() } }));
  }

  async function signWithKey() {
    await run(async () => {
      const optionsJSON = await api<Parameters<typeof startAuthentication>[0]["optionsJSON"]>(
        "POST",
        `${base}/webauthn/options`,
      );
      const response = await startAuthentication({ optionsJSON });
      return api<SignInState>("POST", `${base}/webauthn`, { body: { response } });
    });
  }

  return (
    <form onSubmit={submit} aria-label="Second factor">
      <p>Your account is protected by a second factor.</p>
      {factors.length > 1 ? (
        <fieldset className="choice">
          <legend>Confirm with</legend>
          {factors.map((kind) => (
            <label key={kind}>
              <input
                type="radio"
                name="factor"
                value={kind}
                checked={factor === kind}
                onChange={() => {
                  setFactor(kind);
                  setCode("");
                  task.setError(null);
                }}
              />{" "}
              {factorLabels[kind] ?? kind}
            </label>
          ))}
        </fieldset>
      ) : null}
      {factor === "totp" ? (
        <Field
          key="totp"
          label="Code from your authenticator app"
          name="code"
          inputMode="numeric"
          autoComplete="one-time-code"
          value={code}
          onChange={setCode}
          autoFocus
        />
      ) : null}
      {factor === "recovery_code" ? (
        <Field
          key="recovery"
          label="Recovery code"
          name="code"
          autoComplete="off"
          value={code}
          onChange={setCode}
          hint="Each recovery code works once. Using one emails you a notice."
          autoFocus
        />
      ) : null}
      {factor === "webauthn" ? (
        <p>
          <button type="button" className="primary" onClick={() => void signWithKey()} disabled={task.busy}>
            Use security key or passkey
          </button>
        </p>
      ) : null}
      {factor === "master_key" && !bypassSent ? (
        <Field
          label="Master Key"
          name="masterKey"
          type="password"
          autoComplete="off"
          value={masterKey}
          onChange={setMasterKey}
          hint="Lost your second factor? Your Master Key sends a one-time code to your email. You will then set up a new factor."
        />
      ) : null}
      {factor === "master_key" && bypassSent ? (
        <>
          <Notice tone="success">We emailed you a one-time code.</Notice>
          <Field
            label="Code from the email"
            name="code"
            autoComplete="one-time-code"
            value={code}
            onChange={setCode}
            autoFocus
          />
        </>
      ) : null}
      <ErrorMessage error={task.error} />
      {factor !== "webauthn" ? (
        <button type="submit" className="primary" disabled={task.busy}>
          {factor === "master_key" && !bypassSent ? "Email me a code" : "Continue"}
        </button>
      ) : null}
    </form>
  );
}

/** The device-approval wait (docs/behaviour.md §2 step 3): the emailed link approves; this page polls and continues. */
function DeviceApprovalStep(props: { flow: SignInState; onNext: (state: SignInState) => Promise<void> }) {
  const [error, setError] = useState<unknown>(null);
  const { flow } = props;
  // The latest callback, without restarting the polling loop when the parent renders.
  const onNext = useRef(props.onNext);
  onNext.current = props.onNext;
  useEffect(() => {
    let stopped = false;
    const poll = async () => {
      while (!stopped) {
        await new Promise((resolve) => setTimeout(resolve, 2000));
        if (stopped) return;
        try {
          const state = await api<SignInState>("GET", `/v1/sign-in/${flow.flowId}`);
          if (state.state !== "device_approval") {
            stopped = true;
            await onNext.current(state);
          }
        } catch (caught) {
          setError(caught);
          if (caught instanceof ApiError && caught.status !== 503 && caught.status !== 0) return;
        }
      }
    };
    void poll();
    return () => {
      stopped = true;
    };
  }, [flow.flowId]);
  return (
    <section aria-live="polite">
      <h2>Approve this device</h2>
      <p>
        This browser has not signed in to your account before. We emailed you an{" "}
        <strong>Approve device</strong> link, valid for 20 minutes. Open it on a device on this same network
        (the same Wi-Fi or connection): an approval from elsewhere does not count. This page continues by
        itself.
      </p>
      <p className="waiting" aria-busy="true">
        Waiting for approval…
      </p>
      <ErrorMessage error={error} />
    </section>
  );
}
