import { useEffect, useState } from "react";
import { api, type StatusInfo } from "../api.js";
import { subsystemName } from "../app.js";
import { Card, ErrorMessage, formatTime } from "../ui.js";

const statusNames: Record<string, string> = {
  operational: "Operational",
  degraded: "Degraded",
  maintenance: "Maintenance",
  outage: "Outage",
  cancel_only: "Cancel only",
  post_only: "Post only",
};

/** The public status page (behaviour §10): every subsystem, and maintenance windows open or to come. */
export function StatusPage() {
  const [status, setStatus] = useState<StatusInfo | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    api<StatusInfo>("GET", "/v1/status").then(setStatus).catch(setError);
  }, []);
  return (
    <div className="page">
      <h1>Service status</h1>
      <ErrorMessage error={error} />
      {status ? (
        <>
          <Card title="Subsystems">
            <ul className="rows" aria-label="Subsystems">
              {status.subsystems.map((subsystem) => (
                <li key={subsystem.id}>
                  <span>{subsystemName(subsystem.id)}</span>
                  <span className={`badge ${subsystem.status === "operational" ? "ok" : "warn"}`}>
                    {statusNames[subsystem.status] ?? subsystem.status}
                  </span>
                </li>
              ))}
            </ul>
          </Card>
          <Card title="Maintenance">
            {status.maintenance.length === 0 ? (
              <p>No maintenance is scheduled.</p>
            ) : (
              <ul className="rows" aria-label="Maintenance windows">
                {status.maintenance.map((window) => (
                  <li key={window.id}>
                    <div>
                      <strong>{subsystemName(window.subsystem)}</strong>: {window.message}
                      <br />
                      <small className="muted">
                        {formatTime(window.startsAt)} to {formatTime(window.endsAt)} ·{" "}
                        {statusNames[window.state] ?? window.state}
                      </small>
                    </div>
                  </li>
                ))}
              </ul>
            )}
          </Card>
        </>
      ) : (
        <p aria-busy="true">Loading…</p>
      )}
    </div>
  );
}
