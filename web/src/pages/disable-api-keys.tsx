import { useEffect, useRef, useState } from "react";
import { api } from "../api.js";
import { ErrorMessage, Notice, useTask } from "../ui.js";

/** The link from a password-reset or "disconnect all" email: every API key of the account stops working. */
export function DisableApiKeysPage() {
  const token = new URLSearchParams(location.search).get("token") ?? "";
  const [disabled, setDisabled] = useState<number | null>(null);
  const task = useTask();
  const started = useRef(false);
  useEffect(() => {
    if (started.current) return;
    started.current = true;
    void task
      .run(() => api<{ disabled: number }>("POST", "/v1/api-keys/disable", { body: { token } }))
      .then((result) => setDisabled(result?.disabled ?? null));
  }, [task, token]);
  return (
    <div className="narrow">
      <h1>Disable your API keys</h1>
      {disabled !== null ? (
        <Notice tone="success">
          {disabled === 1 ? "1 API key was disabled." : `${disabled} API keys were disabled.`} None of your
          keys works any more.
        </Notice>
      ) : null}
      {disabled === null && !task.error ? <p aria-busy="true">Disabling…</p> : null}
      <ErrorMessage error={task.error} />
    </div>
  );
}
