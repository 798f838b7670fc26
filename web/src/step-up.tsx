import { startAuthentication } from "@simplewebauthn/browser";
import {
  createContext,
  type FormEvent,
  type ReactNode,
  useCallback,
  useContext,
  useEffect,
  useRef,
  useState,
} from "react";
import { summarise } from "./action-summary.js";
import { type Action, ApiError, api } from "./api.js";
import { ErrorMessage, Field, formatTime, useTask } from "./ui.js";

/** Thrown when the owner closes a confirmation instead of confirming; forms show nothing for it. */
export class StepUpCancelled extends Error {
  constructor() {
    super("Cancelled");
    this.name = "StepUpCancelled";
  }
}

export interface ConfirmedAction {
  state: string;
  action: Action;
  grant?: string;
}

/** `basePath` is where the action is confirmed: /v1/actions/{id} unless another resource confirms the same way. */
type Confirm = (action: Action, basePath?: string) => Promise<ConfirmedAction>;
const StepUpContext = createContext<Confirm | null>(null);

/**
 * The one step-up mechanism (docs/http-api.md "Step-up: confirming a change"): a setting change answered with 403 step_up_required
 * carries an action; the owner sees exactly what it is, proves it with a factor, and the request is sent
 * again with X-Action-Id. Every page wraps its changes in `useStepUp()` instead of handling this itself.
 */
export function StepUpProvider({ children }: { children: ReactNode }) {
  const [pending, setPending] = useState<{
    action: Action;
    basePath: string;
    resolve: (confirmed: ConfirmedAction) => void;
    reject: (error: Error) => void;
  } | null>(null);
  const confirm = useCallback<Confirm>(
    (action, basePath = `/v1/actions/${action.id}`) =>
      new Promise((resolve, reject) => setPending({ action, basePath, resolve, reject })),
    [],
  );
  return (
    <StepUpContext.Provider value={confirm}>
      {children}
      {pending ? (
        <ConfirmActionDialog
          action={pending.action}
          basePath={pending.basePath}
          onConfirmed={(confirmed) => {
            setPending(null);
            pending.resolve(confirmed);
          }}
          onCancel={() => {
            setPending(null);
            pending.reject(new StepUpCancelled());
          }}
        />
      ) : null}
    </StepUpContext.Provider>
  );
}

/** Ask the owner to confirm an action (a withdrawal, an order) in the shared dialog. */
export function useConfirmAction(): Confirm {
  const confirm = useContext(StepUpContext);
  if (!confirm) throw new Error("useConfirmAction needs a StepUpProvider");
  return confirm;
}

/** `send(actionId?)` is the request; it is sent again, with the confirmed action, when step-up is asked for. */
export function useStepUp() {
  const confirm = useConfirmAction();
  return useCallback(
    async <T,>(send: (actionId?: string) => Promise<T>): Promise<T> => {
      try {
        return await send();
      } catch (error) {
        if (!(error instanceof ApiError) || error.code !== "step_up_required") throw error;
        const action = error.body.action as Action;
        await confirm(action);
        return send(action.id);
      }
    },
    [confirm],
  );
}

const proofNames: Record<string, string> = {
  totp: "authenticator app",
  webauthn: "security key or passkey",
  recovery_code: "recovery code",
};

/**
 * The sentence for a refused proof, in the words of the proof that was asked for: a wrong password here
 * is not a failed sign-in, so it must not say "Invalid username or password".
 */
function proofError(error: unknown): unknown {
  if (error instanceof ApiError && error.code === "invalid_credentials")
    return new Error("That password is not right. Check it and try again.");
  return error;
}

const technicalValue = (value: unknown) =>
  value === null || value === undefined ? "none" : typeof value === "string" ? value : JSON.stringify(value);

/**
 * Shows what is being confirmed in words (the amount, the whole destination address, the key's
 * permissions by name), keeps the type, ids and the digest the confirmation covers (docs/behaviour.md §8 dynamic
 * linking) under "Technical details", and takes the proofs the action requires. The buttons stay in view
 * on a small screen while the summary scrolls; the first proof field has the focus, and closing returns
 * the focus to where it was.
 */
export function ConfirmActionDialog(props: {
  action: Action;
  basePath: string;
  onConfirmed: (confirmed: ConfirmedAction) => void;
  onCancel: () => void;
}) {
  const { action } = props;
  const dialog = useRef<HTMLDialogElement>(null);
  const [totp, setTotp] = useState("");
  const [recoveryCode, setRecoveryCode] = useState("");
  const [password, setPassword] = useState("");
  const [tradingPasscode, setTradingPasscode] = useState("");
  const [method, setMethod] = useState<"totp" | "recovery_code">(
    action.factors.includes("totp") ? "totp" : "recovery_code",
  );
  const task = useTask();
  const needsSecondFactor = action.required.includes("second_factor");
  const needsPassword = action.required.includes("password");
  const needsPasscode = action.required.includes("trading_passcode");
  const hasKey = action.factors.includes("webauthn");
  const hasCodeFactor = action.factors.includes("totp") || action.factors.includes("recovery_code");
  const summary = summarise(action);

  useEffect(() => {
    const element = dialog.current;
    const previous = document.activeElement;
    if (element && !element.open) element.showModal();
    // showModal focuses the first focusable element, which is the "Technical details" toggle; the
    // person is here to enter a proof, so its first field gets the focus.
    element?.querySelector<HTMLInputElement>("form input:not([type=radio])")?.focus();
    return () => {
      if (previous instanceof HTMLElement && previous.isConnected) previous.focus();
    };
  }, []);

  async function confirm(body: Record<string, unknown>) {
    const extra = {
      ...(needsPassword ? { password } : {}),
      ...(needsPasscode ? { tradingPasscode } : {}),
    };
    const confirmed = await task.run(() =>
      api<ConfirmedAction>("POST", `${props.basePath}/confirm`, { body: { ...body, ...extra } }),
    );
    if (confirmed) props.onConfirmed(confirmed);
  }

  async function withKey() {
    await task.run(async () => {
      const optionsJSON = await api<Parameters<typeof startAuthentication>[0]["optionsJSON"]>(
        "POST",
        // Approvals are actions too: their assertion options come from the action itself.
        `/v1/actions/${action.id}/webauthn/options`,
      );
      const response = await startAuthentication({ optionsJSON });
      const confirmed = await api<ConfirmedAction>("POST", `${props.basePath}/confirm`, {
        body: {
          webauthn: response,
          ...(needsPasscode ? { tradingPasscode } : {}),
        },
      });
      props.onConfirmed(confirmed);
    });
  }

  function submit(event: FormEvent) {
    event.preventDefault();
    if (!needsSecondFactor) return void confirm({});
    return void confirm(method === "totp" ? { totp: totp.trim() } : { recoveryCode: recoveryCode.trim() });
  }

  const technical: [string, string][] = [
    ["Action", action.type],
    ["Action id", action.id],
    ...Object.entries(action.params).map(([name, value]): [string, string] => [name, technicalValue(value)]),
    ["Digest (SHA-256)", action.digest],
  ];
  const firstField = needsPassword ? "password" : needsPasscode ? "passcode" : hasKey ? "none" : "code";
  return (
    <dialog
      ref={dialog}
      className="dialog confirm"
      aria-labelledby="confirm-title"
      onCancel={(event) => {
        event.preventDefault();
        props.onCancel();
      }}
    >
      <form onSubmit={submit}>
        <div className="dialog-body">
          <h2 id="confirm-title">{action.summary}</h2>
          <p className="hint">
            You are confirming exactly this; any change needs a new confirmation. It can be confirmed until{" "}
            {formatTime(action.expiresAt)}.
          </p>
          {summary.rows.length ? (
            <dl className="signed" aria-label="What you are confirming">
              {summary.rows.map((row) => (
                <div key={row.label} className={row.long ? "row long" : "row"}>
                  <dt>{row.label}</dt>
                  <dd className={row.long ? "mono" : undefined}>{row.value}</dd>
                </div>
              ))}
            </dl>
          ) : null}
          {summary.warning ? <p className="notice notice-warning">{summary.warning}</p> : null}
          <details className="technical">
            <summary>Technical details</summary>
            <dl className="signed">
              {technical.map(([name, value]) => (
                <div key={name} className="row long">
                  <dt>{name}</dt>
                  <dd className="mono">{value}</dd>
                </div>
              ))}
            </dl>
          </details>
          {needsPassword ? (
            <Field
              label="Your password"
              name="password"
              type="password"
              autoComplete="current-password"
              value={password}
              onChange={setPassword}
              autoFocus={firstField === "password"}
            />
          ) : null}
          {needsPasscode ? (
            <Field
              label="Trading passcode"
              name="tradingPasscode"
              type="password"
              inputMode="numeric"
              autoComplete="off"
              value={tradingPasscode}
              onChange={setTradingPasscode}
              autoFocus={firstField === "passcode"}
            />
          ) : null}
          {needsSecondFactor && hasKey ? (
            <div className="field">
              <button type="button" className="primary" onClick={() => void withKey()} disabled={task.busy}>
                Confirm with security key or passkey
              </button>
            </div>
          ) : null}
          {needsSecondFactor && hasCodeFactor ? (
            <>
              {action.factors.includes("totp") && action.factors.includes("recovery_code") ? (
                <fieldset className="choice">
                  <legend>{hasKey ? "Or confirm with" : "Confirm with"}</legend>
                  {(["totp", "recovery_code"] as const).map((kind) => (
                    <label key={kind}>
                      <input
                        type="radio"
                        name="method"
                        value={kind}
                        checked={method === kind}
                        onChange={() => setMethod(kind)}
                      />{" "}
                      {proofNames[kind]}
                    </label>
                  ))}
                </fieldset>
              ) : null}
              {method === "totp" ? (
                <Field
                  label="Code from your authenticator app"
                  name="totp"
                  inputMode="numeric"
                  autoComplete="one-time-code"
                  value={totp}
                  onChange={setTotp}
                  autoFocus={firstField === "code"}
                />
              ) : (
                <Field
                  label="Recovery code"
                  name="recoveryCode"
                  autoComplete="off"
                  value={recoveryCode}
                  onChange={setRecoveryCode}
                  autoFocus={firstField === "code"}
                />
              )}
            </>
          ) : null}
          <ErrorMessage error={proofError(task.error)} />
        </div>
        <div className="actions dialog-actions">
          {!needsSecondFactor || hasCodeFactor ? (
            <button type="submit" className={hasKey ? "" : "primary"} disabled={task.busy}>
              Confirm
            </button>
          ) : null}
          <button type="button" className="quiet" onClick={props.onCancel}>
            Cancel
          </button>
        </div>
      </form>
    </dialog>
  );
}
