import { type FormEvent, useCallback, useEffect, useState } from "react";
import { api } from "../api.js";
import { LockedNotice, useSettingsLocked } from "../lock-state.js";
import { Link } from "../router.js";
import { useStepUp } from "../step-up.js";
import { Card, ErrorMessage, Field, FieldErrors, formatTime, Notice, useTask } from "../ui.js";

export interface Address {
  id: string;
  asset: string;
  address: string;
  label: string;
  state: "pending_confirmation" | "on_hold" | "active" | string;
  createdAt: string;
  usableFrom: string | null;
}

const stateNames: Record<string, string> = {
  pending_confirmation: "Waiting for email confirmation",
  on_hold: "New: usable from",
  active: "Ready",
};

export function useAddresses() {
  const [addresses, setAddresses] = useState<Address[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const reload = useCallback(async () => {
    try {
      setAddresses((await api<{ addresses: Address[] }>("GET", "/v1/withdrawal-addresses")).addresses);
    } catch (caught) {
      setError(caught);
    }
  }, []);
  useEffect(() => {
    void reload();
  }, [reload]);
  return { addresses, error, reload };
}

/** The withdrawal address book (docs/behaviour.md §7–§8): additions are confirmed by email and then wait 48 hours. */
export function AddressesPage() {
  const { addresses, error, reload } = useAddresses();
  const withStepUp = useStepUp();
  const task = useTask();
  const [asset, setAsset] = useState("BTC");
  const [address, setAddress] = useState("");
  const [label, setLabel] = useState("");
  const [added, setAdded] = useState(false);
  const locked = useSettingsLocked();

  async function add(event: FormEvent) {
    event.preventDefault();
    const done = await task.run(() =>
      withStepUp((actionId) =>
        api("POST", "/v1/withdrawal-addresses", {
          body: { asset: asset.trim().toUpperCase(), address: address.trim(), label: label.trim() },
          actionId,
        }),
      ),
    );
    if (done === undefined) return;
    setAddress("");
    setLabel("");
    setAdded(true);
    await reload();
  }

  async function remove(id: string) {
    const done = await task.run(() =>
      withStepUp((actionId) => api("DELETE", `/v1/withdrawal-addresses/${id}`, { actionId })),
    );
    if (done !== undefined) await reload();
  }

  return (
    <div className="page">
      <h1>Withdrawal addresses</h1>
      <p>
        Withdrawals go only to addresses in this book. A new address must be confirmed from the email we send,
        and can be used 48 hours later.
      </p>
      <ErrorMessage error={error} />
      {locked ? <LockedNotice what="withdrawal addresses" /> : null}
      <Card title="Your addresses">
        {addresses === null ? (
          <p aria-busy="true">Loading…</p>
        ) : addresses.length === 0 ? (
          <p>No addresses yet.</p>
        ) : (
          <ul className="rows" aria-label="Withdrawal addresses">
            {addresses.map((entry) => (
              <li key={entry.id}>
                <div>
                  <strong>{entry.label}</strong> <span className="muted">{entry.asset}</span>
                  <br />
                  <code className="mono wrap">{entry.address}</code>
                  <br />
                  <small className="muted">
                    {stateNames[entry.state] ?? entry.state}
                    {entry.state === "on_hold" ? ` ${formatTime(entry.usableFrom)}` : ""}
                  </small>
                </div>
                <button
                  type="button"
                  className="quiet"
                  onClick={() => void remove(entry.id)}
                  disabled={task.busy || locked === true}
                >
                  Remove <span className="visually-hidden">{entry.label}</span>
                </button>
              </li>
            ))}
          </ul>
        )}
      </Card>
      <Card title="Add an address">
        <form onSubmit={add} noValidate>
          <FieldErrors error={task.error}>
            <Field
              label="Asset"
              name="asset"
              value={asset}
              onChange={setAsset}
              hint="For example BTC or ETH."
            />
            <Field label="Address" name="address" autoComplete="off" value={address} onChange={setAddress} />
            <Field
              label="Label"
              name="label"
              value={label}
              onChange={setLabel}
              hint="For example: Cold wallet"
            />
            {added ? <Notice tone="success">Added. Confirm it from the email we sent you.</Notice> : null}
            <ErrorMessage error={task.error} />
          </FieldErrors>
          <button type="submit" className="primary" disabled={task.busy || locked === true}>
            Add address
          </button>
        </form>
      </Card>
      {import.meta.env.DEV || location.hostname === "localhost" ? (
        <p>
          <Link href="/demo/withdraw">Try the withdrawal confirmation dialog</Link>
        </p>
      ) : null}
    </div>
  );
}

/**
 * Opened from the emailed link. Nothing happens until the owner presses the button: a mail scanner that
 * follows the link must not confirm an address on the owner's behalf.
 */
export function ConfirmAddressPage() {
  const token = new URLSearchParams(location.search).get("token") ?? "";
  const [confirmed, setConfirmed] = useState<Address | null>(null);
  const task = useTask();
  async function confirm() {
    const address = await task.run(() =>
      api<Address>("POST", "/v1/withdrawal-addresses/confirm", { body: { token } }),
    );
    if (address) setConfirmed(address);
  }
  return (
    <div className="narrow">
      <h1>Confirm a withdrawal address</h1>
      {confirmed ? (
        <Notice tone="success">
          {confirmed.label} ({confirmed.asset}) is confirmed. It can be used from{" "}
          {formatTime(confirmed.usableFrom)}.
        </Notice>
      ) : (
        <>
          <p>
            You asked to add a withdrawal address. Confirm it only if that was you; if it was not, ignore the
            email and change your password.
          </p>
          <button type="button" className="primary" onClick={() => void confirm()} disabled={task.busy}>
            Confirm this address
          </button>
        </>
      )}
      <ErrorMessage error={task.error} />
    </div>
  );
}
