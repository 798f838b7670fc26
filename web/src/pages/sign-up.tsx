import { type FormEvent, useEffect, useRef, useState } from "react";
import { api } from "../api.js";
import { BotCheck, type BotCheckHandle } from "../bot-check.js";
import { Link } from "../router.js";
import { ErrorMessage, Field, Notice, useTask } from "../ui.js";

const countryNames = new Intl.DisplayNames(["en"], { type: "region" });

function countryName(code: string): string | null {
  if (!/^[A-Za-z]{2}$/.test(code)) return null;
  try {
    const name = countryNames.of(code.toUpperCase());
    return name && name !== code.toUpperCase() ? name : null;
  } catch {
    return null;
  }
}

export function SignUpPage() {
  const [email, setEmail] = useState("");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [country, setCountry] = useState("");
  const [region, setRegion] = useState("");
  const [sent, setSent] = useState(false);
  const botCheck = useRef<BotCheckHandle>(null);
  const task = useTask();
  const upper = country.toUpperCase();
  const needsRegion = upper === "US" || upper === "CA";

  async function submit(event: FormEvent) {
    event.preventDefault();
    const done = await task.run(async () =>
      api("POST", "/v1/accounts", {
        body: {
          email: email.trim(),
          username: username.trim(),
          password,
          country: upper,
          ...(needsRegion ? { region: `${upper}-${region.toUpperCase().replace(/^[A-Z]{2}-/, "")}` } : {}),
          botCheck: await botCheck.current!.solve(),
        },
      }),
    );
    if (done !== undefined) setSent(true);
    else botCheck.current?.renew();
  }

  if (sent) {
    return (
      <div className="narrow">
        <h1>Check your email</h1>
        <Notice tone="success">
          We sent a message to <strong>{email}</strong>. Open the link in it within 24 hours to verify your
          address, then sign in.
        </Notice>
        <p>
          Running Portcullis on your own machine? Emails are kept in the{" "}
          <a href="/dev/mailbox">development mailbox</a>.
        </p>
      </div>
    );
  }

  return (
    <div className="narrow">
      <h1>Create your account</h1>
      {/* noValidate: the bot-check widget marks its checkbox required while it solves, which would
          silently block the submit; solve() waits for it instead, and the server checks every field. */}
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
          hint="3 to 32 characters: letters, digits, dot, dash and underscore. You sign in with it."
          minLength={3}
          maxLength={32}
        />
        <Field
          label="Password"
          name="password"
          type="password"
          autoComplete="new-password"
          value={password}
          onChange={setPassword}
          hint="At least 12 characters. A few unrelated words make a strong one."
          minLength={12}
        />
        <Field
          label="Country of residence"
          name="country"
          autoComplete="country"
          value={country}
          onChange={setCountry}
          hint={countryName(country) ?? "Two-letter code, for example DE, GB or US."}
          maxLength={2}
        />
        {needsRegion ? (
          <Field
            label={upper === "US" ? "State" : "Province"}
            name="region"
            value={region}
            onChange={setRegion}
            hint="Two-letter code, for example NY or ON."
            maxLength={6}
          />
        ) : null}
        <BotCheck handle={botCheck} />
        <ErrorMessage error={task.error} />
        <button type="submit" className="primary" disabled={task.busy}>
          Create account
        </button>
      </form>
      <p>
        Already have an account? <Link href="/sign-in">Sign in</Link>
      </p>
    </div>
  );
}

export function VerifyEmailPage() {
  const token = new URLSearchParams(location.search).get("token") ?? "";
  const [state, setState] = useState<"working" | "verified" | "failed">("working");
  const task = useTask();
  const started = useRef(false);
  useEffect(() => {
    // Once: the token is single-use, and development mode renders effects twice.
    if (started.current) return;
    started.current = true;
    void task
      .run(() => api("POST", "/v1/accounts/verify-email", { body: { token } }))
      .then((result) => setState(result === undefined ? "failed" : "verified"));
  }, [task, token]);
  return (
    <div className="narrow">
      <h1>Verify your email</h1>
      {state === "working" ? <p aria-busy="true">Verifying…</p> : null}
      {state === "verified" ? (
        <>
          <Notice tone="success">Your email address is verified.</Notice>
          <p>
            <Link href="/sign-in" className="button primary">
              Sign in
            </Link>
          </p>
        </>
      ) : null}
      {state === "failed" ? <ErrorMessage error={task.error} /> : null}
    </div>
  );
}
