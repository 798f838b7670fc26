import { useCallback, useEffect, useState } from "react";
import { describeUserAgent } from "../../../src/support/user-agent.js";
import { api } from "../api.js";
import { navigate } from "../router.js";
import { useSession } from "../session.js";
import { useStepUp } from "../step-up.js";
import { Card, ErrorMessage, formatTime, useTask } from "../ui.js";

interface SessionRow {
  id: string;
  client: string;
  aal: number;
  methods: string[];
  ip: string;
  location: string | null;
  userAgent: string | null;
  lastSeenAt: string;
  createdAt: string;
  current: boolean;
}

interface DeviceRow {
  id: string;
  label: string | null;
  ip: string | null;
  location: string | null;
  createdAt: string;
  lastSeenAt: string;
  current: boolean;
}

interface ActivityRow {
  id: number;
  at: string;
  event: string;
  outcome: string;
  what: string;
  result: string;
  ip: string | null;
  location: string | null;
  userAgent: string | null;
}

/**
 * "Chrome on Linux" from a user agent, in the words the server's emails and device list use (one label
 * maker for both, built from fixed words only).
 */
export function describeAgent(agent: string | null): string {
  const label = describeUserAgent(agent);
  return label.charAt(0).toUpperCase() + label.slice(1);
}

function useList<T>(path: string, key: string) {
  const [items, setItems] = useState<T[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const reload = useCallback(async () => {
    try {
      const body = await api<Record<string, T[]>>("GET", path);
      setItems(body[key] ?? []);
    } catch (caught) {
      setError(caught);
    }
  }, [path, key]);
  useEffect(() => {
    void reload();
  }, [reload]);
  return { items, error, reload };
}

export function SessionsCard() {
  const { items, error, reload } = useList<SessionRow>("/v1/sessions", "sessions");
  const task = useTask();
  async function end(id: string) {
    if ((await task.run(() => api("DELETE", `/v1/sessions/${id}`))) !== undefined) await reload();
  }
  async function endOthers() {
    if ((await task.run(() => api("DELETE", "/v1/sessions"))) !== undefined) await reload();
  }
  return (
    <Card title="Sessions" id="sessions">
      <ErrorMessage error={error ?? task.error} />
      {items ? (
        <ul className="rows" aria-label="Active sessions">
          {items.map((session) => (
            <li key={session.id}>
              <div>
                <strong>{describeAgent(session.userAgent)}</strong>{" "}
                {session.current ? <span className="badge ok">This session</span> : null}
                <br />
                <small className="muted">
                  {session.location ?? "Unknown place"} · {session.ip} · last seen{" "}
                  {formatTime(session.lastSeenAt)}
                </small>
              </div>
              {session.current ? null : (
                <button
                  type="button"
                  className="quiet"
                  onClick={() => void end(session.id)}
                  disabled={task.busy}
                >
                  End session <span className="visually-hidden">{describeAgent(session.userAgent)}</span>
                </button>
              )}
            </li>
          ))}
        </ul>
      ) : (
        <p aria-busy="true">Loading…</p>
      )}
      {items && items.length > 1 ? (
        <button type="button" onClick={() => void endOthers()} disabled={task.busy}>
          End all other sessions
        </button>
      ) : null}
    </Card>
  );
}

export function DevicesCard() {
  const { items, error, reload } = useList<DeviceRow>("/v1/devices", "devices");
  const { refresh } = useSession();
  const withStepUp = useStepUp();
  const task = useTask();
  async function remove(id: string) {
    if ((await task.run(() => api("DELETE", `/v1/devices/${id}`))) !== undefined) await reload();
  }
  async function disconnectAll() {
    const done = await task.run(() => withStepUp((actionId) => api("DELETE", "/v1/devices", { actionId })));
    if (done === undefined) return;
    await refresh();
    navigate("/sign-in");
  }
  return (
    <Card title="Devices" id="devices">
      <p>Devices that have signed in to your account. A removed device needs approval by email next time.</p>
      <ErrorMessage error={error ?? task.error} />
      {items ? (
        <ul className="rows" aria-label="Known devices">
          {items.map((device) => (
            <li key={device.id}>
              <div>
                <strong>{device.label ?? "Device"}</strong>{" "}
                {device.current ? <span className="badge ok">This device</span> : null}
                <br />
                <small className="muted">
                  {device.location ?? "Unknown place"} · first seen {formatTime(device.createdAt)} · last seen{" "}
                  {formatTime(device.lastSeenAt)}
                </small>
              </div>
              <button
                type="button"
                className="quiet"
                onClick={() => void remove(device.id)}
                disabled={task.busy}
              >
                Remove <span className="visually-hidden">{device.label ?? "device"}</span>
              </button>
            </li>
          ))}
        </ul>
      ) : (
        <p aria-busy="true">Loading…</p>
      )}
      <button type="button" className="danger" onClick={() => void disconnectAll()} disabled={task.busy}>
        Disconnect all devices
      </button>
    </Card>
  );
}

/** A time inside a sentence ("asked to unlock … on 2026-12-01T06:50:20.024Z"), shown in the reader's zone. */
const isoTime = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z/g;

/**
 * The account's activity, newest first, as the server words it (what happened and its result), twenty
 * at a time with older entries on request. On a phone each entry is a small block instead of a row.
 */
export function ActivityCard() {
  const [items, setItems] = useState<ActivityRow[] | null>(null);
  const [nextBefore, setNextBefore] = useState<number | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(async (before?: number) => {
    setBusy(true);
    setError(null);
    try {
      const query = before === undefined ? "" : `&before=${before}`;
      const page = await api<{ items: ActivityRow[]; nextBefore?: number }>(
        "GET",
        `/v1/activity?limit=20${query}`,
      );
      setItems((current) => (before === undefined ? page.items : [...(current ?? []), ...page.items]));
      setNextBefore(page.nextBefore);
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);
  return (
    <Card title="Activity" id="activity">
      <ErrorMessage error={error} />
      {error && !items ? (
        <button type="button" onClick={() => void load()}>
          Try again
        </button>
      ) : null}
      {items ? (
        <div className="table-wrap">
          <table className="activity">
            <caption className="visually-hidden">Your sign-ins and security changes, newest first</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">What</th>
                <th scope="col">Result</th>
                <th scope="col">Where</th>
              </tr>
            </thead>
            <tbody>
              {items.map((entry) => (
                <tr key={entry.id}>
                  <td>{formatTime(entry.at)}</td>
                  <td>{entry.what.replace(isoTime, (iso) => formatTime(iso))}</td>
                  <td className={entry.outcome === "success" ? "" : "refused"}>{entry.result}</td>
                  <td>
                    {entry.location ?? "Unknown place"} · {describeAgent(entry.userAgent)}
                    {entry.ip ? <span className="muted"> · {entry.ip}</span> : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : error ? null : (
        <p aria-busy="true">Loading…</p>
      )}
      {nextBefore !== undefined ? (
        <button type="button" onClick={() => void load(nextBefore)} disabled={busy}>
          Show older activity
        </button>
      ) : null}
    </Card>
  );
}
