import { useEffect, useId, useState } from "react";
import { FieldProblem, useFieldProblem } from "./ui.js";

export interface CodeOption {
  code: string;
  name: string;
  /** Other names a person may type (the ISO name when the display name differs). */
  aliases?: string[];
}

const fold = (text: string) => text.normalize("NFD").replace(/\p{M}/gu, "").trim().toLowerCase();

/** The option a typed text names: its name, an alias or its code, ignoring case and accents. */
export function optionFor(options: readonly CodeOption[], text: string): CodeOption | undefined {
  const typed = fold(text);
  if (!typed) return undefined;
  return (
    options.find((option) => fold(option.name) === typed) ??
    options.find((option) => option.aliases?.some((alias) => fold(alias) === typed)) ??
    // A code counts only as typed in capitals ("DE", "NY"): "Ge" on its way to "Germany" is not Georgia.
    options.find((option) => [option.code, option.code.replace(/^\w\w-/, "")].includes(text.trim()))
  );
}

/**
 * A searchable list of names that stores a code: typing "Germany" (or picking it from the suggestions)
 * chooses DE, "New York" chooses US-NY. The suggestions are the browser's own (a datalist), so they work
 * with the keyboard and screen readers without a custom widget.
 */
export function CodePicker(props: {
  label: string;
  name: string;
  options: readonly CodeOption[];
  value: string;
  onChange: (code: string) => void;
  hint: string;
  autoComplete?: string;
}) {
  const id = useId();
  const [text, setText] = useState(() => props.options.find((o) => o.code === props.value)?.name ?? "");
  const chosen = props.options.find((option) => option.code === props.value);
  const problem = useFieldProblem(props.name);
  const { options, value, onChange } = props;

  // The options can arrive after the text was typed (regions load on demand): match again then.
  useEffect(() => {
    const match = optionFor(options, text);
    if ((match?.code ?? "") !== value) onChange(match?.code ?? "");
  }, [options, text, value, onChange]);

  const status = chosen
    ? `${chosen.name} (${chosen.code})`
    : text.trim()
      ? `No match for "${text.trim()}" yet: pick a name from the list.`
      : props.hint;
  return (
    <div className={problem ? "field invalid" : "field"}>
      <label htmlFor={id}>{props.label}</label>
      <input
        id={id}
        name={props.name}
        list={`${id}-list`}
        value={text}
        onChange={(event) => setText(event.target.value)}
        autoComplete={props.autoComplete ?? "off"}
        aria-invalid={problem ? true : undefined}
        aria-describedby={[problem ? `${id}-problem` : "", `${id}-hint`].filter(Boolean).join(" ")}
      />
      <datalist id={`${id}-list`}>
        {props.options.map((option) => (
          <option key={option.code} value={option.name}>
            {option.code}
          </option>
        ))}
      </datalist>
      <FieldProblem id={`${id}-problem`} problem={problem} />
      <p className="hint" id={`${id}-hint`} aria-live="polite">
        {status}
      </p>
    </div>
  );
}
