import { useEffect, useState } from "react";
import {
  api,
  type CapabilityVector,
  type Reason,
  type SecurityOverview,
  type Notice as SignInNotice,
} from "../api.js";
import { Link } from "../router.js";
import { useAccount } from "../session.js";
import { Card, ErrorMessage, Notice } from "../ui.js";
import { signInNoticesKey } from "./sign-in.js";

export const productNames: Record<string, string> = {
  spot: "Spot trading",
  margin: "Margin",
  futures: "Futures",
  staking: "Staking",
  stocks: "Stocks",
  "deposit.crypto": "Crypto deposits",
  "withdraw.crypto": "Crypto withdrawals",
  "funding.ach": "ACH transfers",
  "funding.wire": "Wire transfers",
  "funding.card": "Card payments",
  api: "API trading",
};

/** One reason as an eligibility notice after the product's name: "Margin: needs Intermediate verification". */
export function reasonText(reason: Reason): string {
  const when = (iso: string | null | undefined) =>
    iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "";
  switch (reason.code) {
    case "tier_too_low":
      return `needs ${capitalize(reason.requiredTier ?? "higher")} verification`;
    case "jurisdiction":
      return "not available where you live";
    case "client_app":
      return "not offered in this app";
    case "subsystem_maintenance":
      return reason.until ? `in maintenance until ${when(reason.until)}` : "unavailable right now";
    case "security_hold":
      return `on hold after a security change until ${when(reason.until)}`;
    case "account_restricted":
      return "your account is restricted; contact support";
    case "second_factor_required":
      return "turn on two-factor authentication first";
    default:
      return reason.message;
  }
}

const capitalize = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);

/** Where each unfinished checklist item is done. */
const nextStepLinks: Record<string, string> = {
  password: "/security#password",
  sign_in_2fa: "/security#factors",
  funding_2fa: "/security#requirements",
  trading_2fa: "/security#requirements",
  global_settings_lock: "/security#lock",
};

export function DashboardPage() {
  const { account } = useAccount();
  const [products, setProducts] = useState<CapabilityVector | null>(null);
  const [security, setSecurity] = useState<SecurityOverview | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notices] = useState<SignInNotice[]>(() => {
    const stored = sessionStorage.getItem(signInNoticesKey);
    sessionStorage.removeItem(signInNoticesKey);
    // A breached password has its own notice on every page (BreachedPasswordNotice) until it is changed.
    return stored
      ? (JSON.parse(stored) as SignInNotice[]).filter((notice) => notice.code !== "password_breached")
      : [];
  });

  useEffect(() => {
    Promise.all([
      api<{ products: CapabilityVector }>("GET", "/v1/capabilities"),
      api<SecurityOverview>("GET", "/v1/security"),
    ])
      .then(([capabilities, overview]) => {
        setProducts(capabilities.products);
        setSecurity(overview);
      })
      .catch(setError);
  }, []);

  const next = security?.checklist.find((item) => !item.done);
  return (
    <div className="page">
      <h1>Welcome, {account.username}</h1>
      {notices.map((notice) => (
        <Notice key={notice.code} tone="warning">
          {notice.message}
        </Notice>
      ))}
      <ErrorMessage error={error} />
      <div className="grid">
        <Card title="Security level">
          {security ? (
            <>
              <p className="level">
                <meter min={0} max={5} value={security.level} aria-label="Security level" /> {security.level}{" "}
                of 5
              </p>
              <ul className="checklist">
                {security.checklist.map((item) => (
                  <li key={item.id} className={item.done ? "done" : "todo"}>
                    <span aria-hidden="true">{item.done ? "✓" : "○"}</span> {item.title}
                    <span className="visually-hidden">{item.done ? " (done)" : " (not yet)"}</span>
                  </li>
                ))}
              </ul>
              {next ? (
                <p>
                  <strong>Next:</strong>{" "}
                  <Link href={nextStepLinks[next.id] ?? "/security"}>{next.title}</Link>
                </p>
              ) : (
                <p>Your account has every protection Portcullis offers.</p>
              )}
            </>
          ) : (
            <p aria-busy="true">Loading…</p>
          )}
        </Card>
        <Card title="Your account">
          <dl className="facts">
            <div>
              <dt>Username</dt>
              <dd>{account.username}</dd>
            </div>
            <div>
              <dt>Email</dt>
              <dd>{account.email ?? "Hidden while the Global Settings Lock is on"}</dd>
            </div>
            <div>
              <dt>Verification</dt>
              <dd className="capitalize">{account.tier}</dd>
            </div>
            <div>
              <dt>Residence</dt>
              <dd>
                {countryName(account.country)}
                {account.region ? ` (${account.region})` : ""}
              </dd>
            </div>
          </dl>
        </Card>
      </div>
      <Card title="What you can use">
        {products ? (
          <ul className="eligibility">
            {Object.entries(products).map(([id, capability]) => (
              <li key={id} className={capability.allowed ? "allowed" : "refused"}>
                <strong>{productNames[id] ?? id}</strong>
                {capability.allowed ? (
                  <span className="badge ok">Available</span>
                ) : (
                  <span>: {(capability.reasons ?? []).map(reasonText).join("; ")}</span>
                )}
              </li>
            ))}
          </ul>
        ) : (
          <p aria-busy="true">Loading…</p>
        )}
      </Card>
    </div>
  );
}

const regionNames = new Intl.DisplayNames(["en"], { type: "region" });

/** "Germany" for DE: the code is what is stored, the name is what a person reads. */
function countryName(code: string | null | undefined): string {
  if (!code) return "—";
  try {
    return regionNames.of(code) ?? code;
  } catch {
    return code;
  }
}
