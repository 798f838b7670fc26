import { createContext, type ReactNode, useContext, useId, useMemo, useState } from "react";
import { fieldProblems, humanMessage } from "./errors.js";

/**
 * The field problems of a form's last error. Fields inside show their own problem beside the input and
 * note that they did; the form's ErrorMessage (rendered after the fields) lists only the others.
 */
const FieldErrorsContext = createContext<{ problems: Map<string, string>; shown: Set<string> } | null>(null);

export function FieldErrors({ error, children }: { error: unknown; children: ReactNode }) {
  const value = useMemo(() => ({ problems: fieldProblems(error), shown: new Set<string>() }), [error]);
  return <FieldErrorsContext.Provider value={value}>{children}</FieldErrorsContext.Provider>;
}

/** This field's problem from the enclosing form's last error, if any. */
export function useFieldProblem(field: string): string | undefined {
  const context = useContext(FieldErrorsContext);
  if (!context) return undefined;
  context.shown.add(field);
  return context.problems.get(field);
}

/** The problem beside an input: read with the input (aria-describedby), marked for the eye. */
export function FieldProblem({ id, problem }: { id: string; problem: string | undefined }) {
  return problem ? (
    <p className="field-error" id={id}>
      {problem}
    </p>
  ) : null;
}

const describedBy = (...ids: (string | false | undefined)[]) => ids.filter(Boolean).join(" ") || undefined;

/** A labelled input: every field has a visible label tied to it, and hints are read out with it. */
export function Field(props: {
  label: string;
  name: string;
  value: string;
  onChange: (value: string) => void;
  type?: string;
  autoComplete?: string;
  hint?: string;
  required?: boolean;
  inputMode?: "numeric" | "decimal" | "text" | "email";
  autoFocus?: boolean;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  /** The field's name in the API's `details`, when it differs from `name`. */
  field?: string;
}) {
  const id = useId();
  const hintId = `${id}-hint`;
  const problemId = `${id}-problem`;
  const problem = useFieldProblem(props.field ?? props.name);
  return (
    <div className={problem ? "field invalid" : "field"}>
      <label htmlFor={id}>{props.label}</label>
      <input
        id={id}
        name={props.name}
        type={props.type ?? "text"}
        value={props.value}
        onChange={(event) => props.onChange(event.target.value)}
        autoComplete={props.autoComplete}
        required={props.required ?? true}
        inputMode={props.inputMode}
        // biome-ignore lint/a11y/noAutofocus: the one field of a focused step (a code prompt) starts focused
        autoFocus={props.autoFocus}
        minLength={props.minLength}
        maxLength={props.maxLength}
        pattern={props.pattern}
        aria-invalid={problem ? true : undefined}
        aria-describedby={describedBy(problem && problemId, props.hint && hintId)}
      />
      <FieldProblem id={problemId} problem={problem} />
      {props.hint ? (
        <p className="hint" id={hintId}>
          {props.hint}
        </p>
      ) : null}
    </div>
  );
}

export function Select(props: {
  label: string;
  name: string;
  value: string;
  onChange: (value: string) => void;
  options: { value: string; label: string }[];
  field?: string;
}) {
  const id = useId();
  const problem = useFieldProblem(props.field ?? props.name);
  return (
    <div className={problem ? "field invalid" : "field"}>
      <label htmlFor={id}>{props.label}</label>
      <select
        id={id}
        name={props.name}
        value={props.value}
        onChange={(event) => props.onChange(event.target.value)}
        aria-invalid={problem ? true : undefined}
        aria-describedby={problem ? `${id}-problem` : undefined}
      >
        {props.options.map((option) => (
          <option key={option.value} value={option.value}>
            {option.label}
          </option>
        ))}
      </select>
      <FieldProblem id={`${id}-problem`} problem={problem} />
    </div>
  );
}

export function Checkbox(props: {
  label: string;
  name: string;
  checked: boolean;
  onChange: (value: boolean) => void;
}) {
  const id = useId();
  return (
    <div className="checkbox">
      <input
        id={id}
        name={props.name}
        type="checkbox"
        checked={props.checked}
        onChange={(event) => props.onChange(event.target.checked)}
      />
      <label htmlFor={id}>{props.label}</label>
    </div>
  );
}

export function ErrorMessage({ error }: { error: unknown }) {
  const context = useContext(FieldErrorsContext);
  if (!error) return null;
  return (
    <p className="error" role="alert">
      {humanMessage(error, context?.shown)}
    </p>
  );
}

export function Notice({
  tone = "info",
  children,
}: {
  tone?: "info" | "warning" | "success";
  children: ReactNode;
}) {
  return (
    <div className={`notice notice-${tone}`} role={tone === "warning" ? "alert" : "status"}>
      {children}
    </div>
  );
}

export function Card({ title, children, id }: { title: string; children: ReactNode; id?: string }) {
  const headingId = useId();
  return (
    <section className="card" aria-labelledby={headingId} id={id}>
      <h2 id={headingId}>{title}</h2>
      {children}
    </section>
  );
}

/**
 * Runs an async operation for a button or form, keeping its error and busy state: the one pattern every
 * form uses, so none forgets to show an error or to stop a double submit.
 */
export function useTask() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  async function run<T>(task: () => Promise<T>): Promise<T | undefined> {
    setBusy(true);
    setError(null);
    try {
      return await task();
    } catch (caught) {
      // Closing a confirmation is a choice, not a failure: nothing to report.
      setError(caught instanceof Error && caught.name === "StepUpCancelled" ? null : caught);
      return undefined;
    } finally {
      setBusy(false);
    }
  }
  return { busy, error, setError, run };
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** Copies a secret to the clipboard and says so; the text stays on the page to copy by hand as well. */
export function CopyButton({ text, label = "Copy" }: { text: string; label?: string }) {
  const [copied, setCopied] = useState<"yes" | "no" | null>(null);
  async function copy() {
    try {
      await navigator.clipboard.writeText(text);
      setCopied("yes");
    } catch {
      setCopied("no");
    }
  }
  return (
    <>
      <button type="button" onClick={() => void copy()}>
        {label}
      </button>
      <span role="status" className="hint">
        {copied === "yes"
          ? " Copied."
          : copied === "no"
            ? " Copying is not allowed here: select the text instead."
            : ""}
      </span>
    </>
  );
}

/** Saves a secret as a text file (recovery codes, an API secret), made in the browser. */
export function DownloadButton({
  text,
  fileName,
  label = "Download",
}: {
  text: string;
  fileName: string;
  label?: string;
}) {
  function download() {
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = fileName;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  return (
    <button type="button" onClick={download}>
      {label}
    </button>
  );
}
