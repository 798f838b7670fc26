import { type FormEvent, useCallback, useEffect, useState } from "react";
import { type Action, ApiError, api } from "../api.js";
import { permissionNames } from "../permissions.js";
import { useConfirmAction, useStepUp } from "../step-up.js";
import { Card, Checkbox, ErrorMessage, Field, formatTime, Notice, useTask } from "../ui.js";

interface ApiKey {
  id: string;
  name: string;
  key: string;
  permissions: string[];
  ipAllowlist: string[];
  validUntil: string | null;
  nonceWindow: number;
  approvalThreshold: string | null;
  createdAt: string;
  lastUsedAt: string | null;
}

export function ApiKeysPage() {
  const [keys, setKeys] = useState<ApiKey[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const reload = useCallback(async () => {
    try {
      setKeys((await api<{ apiKeys: ApiKey[] }>("GET", "/v1/api-keys")).apiKeys);
    } catch (caught) {
      setError(caught);
    }
  }, []);
  useEffect(() => {
    void reload();
  }, [reload]);
  const task = useTask();
  async function remove(id: string) {
    if ((await task.run(() => api("DELETE", `/v1/api-keys/${id}`))) !== undefined) await reload();
  }

  return (
    <div className="page">
      <h1>API keys</h1>
      <p>Keys let trading bots use your account with Kraken-compatible signed requests.</p>
      <ErrorMessage error={error ?? task.error} />
      <Card title="Your keys">
        {keys === null ? (
          <p aria-busy="true">Loading…</p>
        ) : keys.length === 0 ? (
          <p>No API keys yet.</p>
        ) : (
          <ul className="rows" aria-label="API keys">
            {keys.map((key) => (
              <li key={key.id}>
                <div>
                  <strong>{key.name}</strong> <code className="mono">{key.key.slice(0, 12)}…</code>
                  <br />
                  <small className="muted">
                    {key.permissions.map((p) => permissionNames[p] ?? p).join(", ") || "No permissions"}
                    {key.ipAllowlist.length ? ` · IPs ${key.ipAllowlist.join(", ")}` : ""}
                    {key.validUntil ? ` · valid until ${formatTime(key.validUntil)}` : ""} · last used{" "}
                    {formatTime(key.lastUsedAt)}
                  </small>
                </div>
                <button
                  type="button"
                  className="quiet"
                  onClick={() => void remove(key.id)}
                  disabled={task.busy}
                >
                  Delete <span className="visually-hidden">{key.name}</span>
                </button>
              </li>
            ))}
          </ul>
        )}
      </Card>
      <CreateKeyCard onCreated={reload} />
      <ApprovalsCard />
    </div>
  );
}

function CreateKeyCard({ onCreated }: { onCreated: () => Promise<void> }) {
  const withStepUp = useStepUp();
  const task = useTask();
  const [name, setName] = useState("");
  const [permissions, setPermissions] = useState<string[]>([]);
  const [ipAllowlist, setIpAllowlist] = useState("");
  const [validUntil, setValidUntil] = useState("");
  const [threshold, setThreshold] = useState("");
  const [created, setCreated] = useState<{ key: string; secret: string } | null>(null);

  async function create(event: FormEvent) {
    event.preventDefault();
    const ips = ipAllowlist
      .split(/[\s,]+/)
      .map((ip) => ip.trim())
      .filter(Boolean);
    const body = {
      name: name.trim(),
      permissions,
      ...(ips.length ? { ipAllowlist: ips } : {}),
      ...(validUntil ? { validUntil: new Date(validUntil).toISOString() } : {}),
      ...(threshold ? { approvalThreshold: threshold.trim() } : {}),
    };
    const result = await task.run(() =>
      withStepUp((actionId) =>
        api<{ key: string; secret: string }>("POST", "/v1/api-keys", { body, actionId }),
      ),
    );
    if (!result) return;
    setCreated({ key: result.key, secret: result.secret });
    setName("");
    setPermissions([]);
    await onCreated();
  }

  return (
    <Card title="Create a key">
      {created ? (
        <section aria-label="New API key">
          <Notice tone="success">
            Copy the secret now: it is shown only this once. Anyone with both values can act as this key.
          </Notice>
          <dl className="facts">
            <div>
              <dt>API key</dt>
              <dd className="mono wrap">{created.key}</dd>
            </div>
            <div>
              <dt>Private key (secret)</dt>
              <dd className="mono wrap" data-testid="api-secret">
                {created.secret}
              </dd>
            </div>
          </dl>
          <button type="button" onClick={() => setCreated(null)}>
            I have copied it
          </button>
        </section>
      ) : (
        <form onSubmit={create}>
          <Field
            label="Name"
            name="name"
            value={name}
            onChange={setName}
            maxLength={32}
            hint="1 to 32 characters."
          />
          <fieldset className="permissions">
            <legend>Permissions</legend>
            {Object.entries(permissionNames).map(([id, label]) => (
              <Checkbox
                key={id}
                label={label}
                name={id}
                checked={permissions.includes(id)}
                onChange={(checked) =>
                  setPermissions((current) => (checked ? [...current, id] : current.filter((p) => p !== id)))
                }
              />
            ))}
          </fieldset>
          <Field
            label="IP allowlist"
            name="ipAllowlist"
            required={false}
            value={ipAllowlist}
            onChange={setIpAllowlist}
            hint="Addresses or CIDR ranges, separated by commas. Empty: any address."
          />
          <Field
            label="Valid until"
            name="validUntil"
            type="datetime-local"
            required={false}
            value={validUntil}
            onChange={setValidUntil}
          />
          <Field
            label="Approval threshold"
            name="approvalThreshold"
            inputMode="numeric"
            required={false}
            value={threshold}
            onChange={setThreshold}
            hint="Orders and withdrawals above this notional wait for your approval here."
          />
          <ErrorMessage error={task.error} />
          <button type="submit" className="primary" disabled={task.busy}>
            Create key
          </button>
        </form>
      )}
    </Card>
  );
}

/** Requests above a key's threshold, held until the owner approves them with a second factor. */
function ApprovalsCard() {
  const confirm = useConfirmAction();
  const [approvals, setApprovals] = useState<Action[] | null>(null);
  const [unsupported, setUnsupported] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const reload = useCallback(async () => {
    try {
      setApprovals((await api<{ approvals: Action[] }>("GET", "/v1/approvals")).approvals);
    } catch (caught) {
      // A server without approvals answers 404: there is simply nothing to approve.
      if (caught instanceof ApiError && caught.status === 404) setUnsupported(true);
      else setError(caught);
    }
  }, []);
  useEffect(() => {
    void reload();
  }, [reload]);
  const task = useTask();
  async function approve(approval: Action) {
    if ((await task.run(() => confirm(approval, `/v1/approvals/${approval.id}`))) !== undefined)
      await reload();
  }
  return (
    <Card title="Requests waiting for approval">
      <ErrorMessage error={error ?? task.error} />
      {unsupported || approvals?.length === 0 ? <p>Nothing is waiting for approval.</p> : null}
      {approvals?.length ? (
        <ul className="rows" aria-label="Waiting for approval">
          {approvals.map((approval) => (
            <li key={approval.id}>
              <div>
                {approval.summary}
                <br />
                <small className="muted">Expires {formatTime(approval.expiresAt)}</small>
              </div>
              <button
                type="button"
                className="primary"
                onClick={() => void approve(approval)}
                disabled={task.busy}
              >
                Approve
              </button>
            </li>
          ))}
        </ul>
      ) : null}
    </Card>
  );
}
