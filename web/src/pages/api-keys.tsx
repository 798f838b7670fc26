import { type FormEvent, useCallback, useEffect, useState } from "react";
import { type Action, ApiError, api } from "../api.js";
import { LockedNotice, useSettingsLocked } from "../lock-state.js";
import {
  type Dialect,
  dialectPermissionGroups,
  dialectPermissionNames,
  dialects,
  parseThresholds,
} from "../permissions.js";
import { useConfirmAction, useStepUp } from "../step-up.js";
import {
  Card,
  Checkbox,
  CopyButton,
  DownloadButton,
  ErrorMessage,
  Field,
  FieldErrors,
  formatTime,
  Notice,
  Select,
  useTask,
} from "../ui.js";

interface ApiKey {
  id: string;
  name: string;
  key: string;
  dialect: string;
  permissions: string[];
  ipAllowlist: string[];
  validUntil: string | null;
  nonceWindow: number;
  approvalThreshold: Record<string, string> | null;
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
  const locked = useSettingsLocked();
  async function remove(id: string) {
    if ((await task.run(() => api("DELETE", `/v1/api-keys/${id}`))) !== undefined) await reload();
  }
  // Revoking takes access away: it needs no step-up, so a key in the wrong hands can be stopped at once.
  async function removeAll() {
    if ((await task.run(() => api("DELETE", "/v1/api-keys"))) !== undefined) await reload();
  }

  return (
    <div className="page">
      <h1>API keys</h1>
      <p>Keys let trading bots use your account with Kraken-compatible signed requests.</p>
      <ErrorMessage error={error ?? task.error} />
      {locked ? <LockedNotice what="API keys" /> : null}
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
                    {dialects.find((d) => d.value === key.dialect)?.label ?? key.dialect} ·{" "}
                    {key.permissions.map((p) => dialectPermissionNames(key.dialect)[p] ?? p).join(", ") ||
                      "No permissions"}
                    {key.approvalThreshold
                      ? ` · approval above ${Object.entries(key.approvalThreshold)
                          .map(([asset, amount]) => `${amount} ${asset}`)
                          .join(", ")}`
                      : ""}
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
        {keys?.length ? (
          <button type="button" className="danger" onClick={() => void removeAll()} disabled={task.busy}>
            Delete all keys
          </button>
        ) : null}
      </Card>
      <CreateKeyCard onCreated={reload} locked={locked === true} />
      <ApprovalsCard />
    </div>
  );
}

const toIso = (local: string) => (local ? new Date(local).toISOString() : undefined);

interface CreatedKey {
  key: string;
  secret: string;
  otp?: { type: "static" } | { type: "totp"; secret: string; otpauthUri: string };
}

/**
 * Every setting a key has, as Kraken's key form has them: permissions in its groups, the IP allowlist,
 * an expiry, the window of history it may query, the nonce window, the key's own second factor, and the
 * notional above which a request waits for approval here.
 */
function CreateKeyCard({ onCreated, locked }: { onCreated: () => Promise<void>; locked: boolean }) {
  const withStepUp = useStepUp();
  const task = useTask();
  const [name, setName] = useState("");
  const [dialect, setDialect] = useState<Dialect>("kraken");
  const [passphrase, setPassphrase] = useState("");
  const [permissions, setPermissions] = useState<string[]>([]);
  const [ipAllowlist, setIpAllowlist] = useState("");
  const [validUntil, setValidUntil] = useState("");
  const [queryFrom, setQueryFrom] = useState("");
  const [queryTo, setQueryTo] = useState("");
  const [nonceWindow, setNonceWindow] = useState("");
  const [otp, setOtp] = useState<"none" | "static" | "totp">("none");
  const [otpPassword, setOtpPassword] = useState("");
  const [threshold, setThreshold] = useState("");
  const [created, setCreated] = useState<CreatedKey | null>(null);

  async function create(event: FormEvent) {
    event.preventDefault();
    const ips = ipAllowlist
      .split(/[\s,]+/)
      .map((ip) => ip.trim())
      .filter(Boolean);
    const body = {
      name: name.trim(),
      dialect,
      ...(dialect === "kucoin" ? { passphrase } : {}),
      permissions,
      ...(ips.length ? { ipAllowlist: ips } : {}),
      ...(validUntil ? { validUntil: toIso(validUntil) } : {}),
      ...(queryFrom ? { queryFrom: toIso(queryFrom) } : {}),
      ...(queryTo ? { queryTo: toIso(queryTo) } : {}),
      ...(nonceWindow.trim() ? { nonceWindow: Number(nonceWindow) } : {}),
      ...(otp === "static" ? { otp: { type: "static", password: otpPassword } } : {}),
      ...(otp === "totp" ? { otp: { type: "totp" } } : {}),
      ...(threshold.trim() ? { approvalThreshold: parseThresholds(threshold) ?? { "": threshold } } : {}),
    };
    const result = await task.run(() =>
      withStepUp((actionId) => api<CreatedKey>("POST", "/v1/api-keys", { body, actionId })),
    );
    if (!result) return;
    setCreated(result);
    setName("");
    setPermissions([]);
    setOtpPassword("");
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
            {created.otp?.type === "totp" ? (
              <div>
                <dt>Key's authenticator secret</dt>
                <dd className="mono wrap">{created.otp.secret}</dd>
              </div>
            ) : null}
          </dl>
          <div className="actions">
            <CopyButton text={created.secret} label="Copy secret" />
            <DownloadButton
              text={`API key: ${created.key}\nPrivate key: ${created.secret}\n${
                created.otp?.type === "totp" ? `Authenticator secret: ${created.otp.secret}\n` : ""
              }`}
              fileName="portcullis-api-key.txt"
              label="Download key and secret"
            />
            <button type="button" className="primary" onClick={() => setCreated(null)}>
              I have copied it
            </button>
          </div>
        </section>
      ) : (
        <form onSubmit={create} noValidate>
          <FieldErrors error={task.error}>
            <Field
              label="Name"
              name="name"
              value={name}
              onChange={setName}
              maxLength={32}
              hint="1 to 32 characters."
            />
            <Select
              label="Signs as"
              name="dialect"
              field="dialect"
              value={dialect}
              onChange={(value) => {
                // Permissions are named per exchange: a change of dialect starts them afresh.
                setDialect(value as Dialect);
                setPermissions([]);
              }}
              options={dialects}
            />
            {dialect === "kucoin" ? (
              <Field
                label="Passphrase"
                name="passphrase"
                type="password"
                autoComplete="new-password"
                value={passphrase}
                onChange={setPassphrase}
                maxLength={32}
                hint="KuCoin bots send this with every request; it is kept sealed and never shown again."
              />
            ) : null}
            <fieldset className="permissions">
              <legend>Permissions</legend>
              {dialectPermissionGroups[dialect].map((group) => (
                <fieldset key={group.title} className="permission-group">
                  <legend>{group.title}</legend>
                  {Object.entries(group.permissions).map(([id, label]) => (
                    <Checkbox
                      key={id}
                      label={label}
                      name={id}
                      checked={permissions.includes(id)}
                      onChange={(checked) =>
                        setPermissions((current) =>
                          checked ? [...current, id] : current.filter((p) => p !== id),
                        )
                      }
                    />
                  ))}
                </fieldset>
              ))}
            </fieldset>
            <Field
              label="IP allowlist"
              name="ipAllowlist"
              required={false}
              value={ipAllowlist}
              onChange={setIpAllowlist}
              hint="Addresses or CIDR ranges, separated by commas. Empty: any address. Needed to withdraw."
            />
            <Field
              label="Valid until"
              name="validUntil"
              type="datetime-local"
              required={false}
              value={validUntil}
              onChange={setValidUntil}
              hint="Empty: no end date."
            />
            <fieldset>
              <legend>History the key may query</legend>
              <Field
                label="From"
                name="queryFrom"
                type="datetime-local"
                required={false}
                value={queryFrom}
                onChange={setQueryFrom}
              />
              <Field
                label="To"
                name="queryTo"
                type="datetime-local"
                required={false}
                value={queryTo}
                onChange={setQueryTo}
                hint="Empty: all of it."
              />
            </fieldset>
            <Field
              label="Nonce window"
              name="nonceWindow"
              inputMode="numeric"
              required={false}
              value={nonceWindow}
              onChange={setNonceWindow}
              hint="How far out of order a nonce may arrive, in nonce units. 0 or empty: each nonce must be larger than the last."
            />
            <Select
              label="The key's own second factor"
              name="otp"
              field="otp"
              value={otp}
              onChange={(value) => setOtp(value as typeof otp)}
              options={[
                { value: "none", label: "None" },
                { value: "static", label: "A password sent with every request" },
                { value: "totp", label: "An authenticator code sent with every request" },
              ]}
            />
            {otp === "static" ? (
              <Field
                label="Key password"
                name="otpPassword"
                field="otp.password"
                type="password"
                autoComplete="off"
                value={otpPassword}
                onChange={setOtpPassword}
                hint="8 to 128 characters without spaces."
              />
            ) : null}
            <Field
              label="Approval thresholds"
              name="approvalThreshold"
              required={false}
              value={threshold}
              onChange={setThreshold}
              hint="Per asset, such as BTC 0.5, USD 10000. An order or withdrawal moving more of an asset than its amount waits for your approval here. Empty: none wait."
            />
            <ErrorMessage error={task.error} />
          </FieldErrors>
          <button type="submit" className="primary" disabled={task.busy || locked}>
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
