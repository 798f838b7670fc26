import { type FormEvent, useRef, useState } from "react";
import { api } from "../api.js";
import { BotCheck, type BotCheckHandle } from "../bot-check.js";
import { Link } from "../router.js";
import { ErrorMessage, Field, FieldErrors, Notice, useTask } from "../ui.js";

/** docs/behaviour.md §13: the answer is the same whether or not the account exists, so the page says so too. */
export function ForgotPasswordPage() {
  const [email, setEmail] = useState("");
  const [username, setUsername] = useState("");
  const [sent, setSent] = useState(false);
  const botCheck = useRef<BotCheckHandle>(null);
  const task = useTask();
  async function submit(event: FormEvent) {
    event.preventDefault();
    const done = await task.run(async () =>
      api("POST", "/v1/recovery/password", {
        body: { email: email.trim(), username: username.trim(), botCheck: await botCheck.current!.solve() },
      }),
    );
    if (done !== undefined) setSent(true);
    else botCheck.current?.renew();
  }
  return (
    <div className="narrow">
      <h1>Forgot your password</h1>
      {sent ? (
        <Notice tone="success">
          If that email and username belong to one account, we sent it a link to choose a new password. The
          link works for 2 hours.
        </Notice>
      ) : (
        // noValidate: see the sign-up form; the bot-check widget would block a submit while it solves.
        <form onSubmit={submit} noValidate>
          <Field
            label="Email"
            name="email"
            type="email"
            autoComplete="email"
            value={email}
            onChange={setEmail}
          />
          <Field
            label="Username"
            name="username"
            autoComplete="username"
            value={username}
            onChange={setUsername}
          />
          <BotCheck handle={botCheck} />
          <ErrorMessage error={task.error} />
          <button type="submit" className="primary" disabled={task.busy}>
            Email me a link
          </button>
        </form>
      )}
      <p>
        <Link href="/sign-in">Back to sign-in</Link>
      </p>
    </div>
  );
}

export function ForgotUsernamePage() {
  const [email, setEmail] = useState("");
  const [sent, setSent] = useState(false);
  const botCheck = useRef<BotCheckHandle>(null);
  const task = useTask();
  async function submit(event: FormEvent) {
    event.preventDefault();
    const done = await task.run(async () =>
      api("POST", "/v1/recovery/username", {
        body: { email: email.trim(), botCheck: await botCheck.current!.solve() },
      }),
    );
    if (done !== undefined) setSent(true);
    else botCheck.current?.renew();
  }
  return (
    <div className="narrow">
      <h1>Forgot your username</h1>
      {sent ? (
        <Notice tone="success">If an account uses that email address, we sent its username there.</Notice>
      ) : (
        // noValidate: see the sign-up form; the bot-check widget would block a submit while it solves.
        <form onSubmit={submit} noValidate>
          <Field
            label="Email"
            name="email"
            type="email"
            autoComplete="email"
            value={email}
            onChange={setEmail}
          />
          <BotCheck handle={botCheck} />
          <ErrorMessage error={task.error} />
          <button type="submit" className="primary" disabled={task.busy}>
            Email me my username
          </button>
        </form>
      )}
      <p>
        <Link href="/sign-in">Back to sign-in</Link>
      </p>
    </div>
  );
}

export function ResetPasswordPage() {
  const token = new URLSearchParams(location.search).get("token") ?? "";
  const [password, setPassword] = useState("");
  const [masterKey, setMasterKey] = useState("");
  const [done, setDone] = useState(false);
  const task = useTask();
  async function submit(event: FormEvent) {
    event.preventDefault();
    const result = await task.run(() =>
      api("POST", "/v1/recovery/password/complete", {
        body: { token, newPassword: password, ...(masterKey ? { masterKey } : {}) },
      }),
    );
    if (result !== undefined) setDone(true);
  }
  return (
    <div className="narrow">
      <h1>Choose a new password</h1>
      {done ? (
        <>
          <Notice tone="success">
            Your password is changed and every session has ended. Withdrawals are held for 24 hours as a
            precaution.
          </Notice>
          <p>
            <Link href="/sign-in" className="button primary">
              Sign in
            </Link>
          </p>
        </>
      ) : (
        <form onSubmit={submit}>
          <FieldErrors error={task.error}>
            <Field
              label="New password"
              name="newPassword"
              type="password"
              autoComplete="new-password"
              value={password}
              onChange={setPassword}
              hint="At least 12 characters."
            />
            <Field
              label="Master Key (if you set one)"
              name="masterKey"
              type="password"
              autoComplete="off"
              required={false}
              value={masterKey}
              onChange={setMasterKey}
              hint="Accounts with a Master Key need it to reset the password."
            />
            <ErrorMessage error={task.error} />
          </FieldErrors>
          <button type="submit" className="primary" disabled={task.busy}>
            Set new password
          </button>
        </form>
      )}
    </div>
  );
}
