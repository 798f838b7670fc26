import { type FormEvent, useEffect, useRef, useState } from "react";
import { api } from "../api.js";
import { BotCheck, type BotCheckHandle } from "../bot-check.js";
import { type CodeOption, CodePicker } from "../code-picker.js";
import { countriesWithRegions, countryOptions, regionOptions } from "../jurisdictions.js";
import { Link } from "../router.js";
import { ErrorMessage, Field, FieldErrors, Notice, useTask } from "../ui.js";

export function SignUpPage() {
  const [email, setEmail] = useState("");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [country, setCountry] = useState("");
  const [region, setRegion] = useState("");
  const [regions, setRegions] = useState<CodeOption[]>([]);
  const [sent, setSent] = useState(false);
  const botCheck = useRef<BotCheckHandle>(null);
  const task = useTask();
  const needsRegion = countriesWithRegions.includes(country);

  useEffect(() => {
    if (!needsRegion) return setRegions([]);
    let current = true;
    void regionOptions(country).then((options) => current && setRegions(options));
    return () => {
      current = false;
    };
  }, [country, needsRegion]);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const done = await task.run(async () =>
      api("POST", "/v1/accounts", {
        body: {
          email: email.trim(),
          username: username.trim(),
          password,
          country,
          ...(needsRegion ? { region } : {}),
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
        {import.meta.env.DEV ? (
          <p>
            This is a development build: emails are kept in the <a href="/dev/mailbox">development mailbox</a>
            .
          </p>
        ) : null}
      </div>
    );
  }

  return (
    <div className="narrow">
      <h1>Create your account</h1>
      {/* noValidate: the bot-check widget marks its checkbox required while it solves, which would
          silently block the submit; solve() waits for it instead, and the server checks every field and
          answers with every problem at once, shown beside each field. */}
      <form onSubmit={submit} noValidate>
        <FieldErrors error={task.error}>
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
          <CodePicker
            label="Country of residence"
            name="country"
            options={countryOptions}
            value={country}
            onChange={setCountry}
            hint="Start typing its name, for example Germany, and pick it from the list."
          />
          {needsRegion ? (
            <CodePicker
              key={country}
              label={country === "US" ? "State" : "Province or territory"}
              name="region"
              options={regions}
              value={region}
              onChange={setRegion}
              hint={country === "US" ? "For example New York." : "For example Ontario."}
            />
          ) : null}
          <BotCheck handle={botCheck} />
          <ErrorMessage error={task.error} />
        </FieldErrors>
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
      {state === "failed" ? (
        <>
          <ErrorMessage error={task.error} />
          <p>
            If you have verified your address already, <Link href="/sign-in">sign in</Link>. If not, signing
            in sends you a new link.
          </p>
        </>
      ) : null}
    </div>
  );
}
