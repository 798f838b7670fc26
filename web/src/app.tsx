import { useEffect, useState } from "react";
import { api, type StatusInfo } from "./api.js";
import { AddressesPage, ConfirmAddressPage } from "./pages/addresses.js";
import { ApiKeysPage } from "./pages/api-keys.js";
import { ApproveDevicePage } from "./pages/approve-device.js";
import { BreachedPasswordNotice } from "./pages/breached-password.js";
import { ConfirmEmailPage } from "./pages/confirm-email.js";
import { DashboardPage } from "./pages/dashboard.js";
import { DisableApiKeysPage } from "./pages/disable-api-keys.js";
import { FrozenPage } from "./pages/frozen.js";
import { LockAccountPage } from "./pages/lock-account.js";
import { ForgotPasswordPage, ForgotUsernamePage, ResetPasswordPage } from "./pages/recovery.js";
import { SecurityPage } from "./pages/security.js";
import { SignInPage } from "./pages/sign-in.js";
import { SignUpPage, VerifyEmailPage } from "./pages/sign-up.js";
import { StatusPage } from "./pages/status.js";
import { WithdrawDemoPage } from "./pages/withdraw-demo.js";
import { Link, navigate, useLocation } from "./router.js";
import { SessionProvider, useSession } from "./session.js";
import { StepUpProvider } from "./step-up.js";

/** Pages anyone may open; every other page needs a session. */
const publicPages: Record<string, () => React.ReactNode> = {
  "/sign-in": () => <SignInPage />,
  "/sign-up": () => <SignUpPage />,
  "/verify-email": () => <VerifyEmailPage />,
  "/forgot-password": () => <ForgotPasswordPage />,
  "/forgot-username": () => <ForgotUsernamePage />,
  "/reset-password": () => <ResetPasswordPage />,
  "/approve-device": () => <ApproveDevicePage />,
  "/confirm-address": () => <ConfirmAddressPage />,
  "/disable-api-keys": () => <DisableApiKeysPage />,
  "/lock-account": () => <LockAccountPage />,
  "/confirm-email": () => <ConfirmEmailPage />,
  "/status": () => <StatusPage />,
};

const accountPages: Record<string, { title: string; render: () => React.ReactNode }> = {
  "/": { title: "Dashboard", render: () => <DashboardPage /> },
  "/security": { title: "Security", render: () => <SecurityPage /> },
  "/addresses": { title: "Withdrawal addresses", render: () => <AddressesPage /> },
  "/api-keys": { title: "API keys", render: () => <ApiKeysPage /> },
  "/demo/withdraw": { title: "Confirm a withdrawal", render: () => <WithdrawDemoPage /> },
};

export function App() {
  return (
    <SessionProvider>
      <StepUpProvider>
        <Shell />
      </StepUpProvider>
    </SessionProvider>
  );
}

function Shell() {
  const { path } = useLocation();
  const { session, signOut } = useSession();
  const publicPage = publicPages[path];
  const accountPage = accountPages[path];
  // On a phone the menu is one button; it closes again when a page is chosen.
  const [menuOpen, setMenuOpen] = useState(false);
  // biome-ignore lint/correctness/useExhaustiveDependencies: the path changing is what closes the menu
  useEffect(() => setMenuOpen(false), [path]);

  useEffect(() => {
    const title = accountPage?.title ?? titles[path] ?? "Portcullis";
    document.title = `${title} · Portcullis`;
  }, [path, accountPage]);

  useEffect(() => {
    // Signed-out visitors of an account page go to sign-in, and come back afterwards.
    if (session === null && accountPage)
      navigate(`/sign-in?next=${encodeURIComponent(path)}`, { replace: true });
  }, [session, accountPage, path]);

  let content: React.ReactNode;
  if (publicPage) content = publicPage();
  else if (!accountPage) content = <NotFound />;
  else if (session === undefined) content = <p aria-busy="true">Loading…</p>;
  // A frozen account's session can do nothing but see the freeze and lift it: every account page says so.
  else if (session?.account.frozen) content = <FrozenPage />;
  else if (session) content = accountPage.render();
  else content = null;

  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link href={session ? "/" : "/sign-in"} className="brand">
          Portcullis
        </Link>
        <button
          type="button"
          className="menu-toggle"
          aria-expanded={menuOpen}
          aria-controls="main-nav"
          onClick={() => setMenuOpen((open) => !open)}
        >
          Menu
        </button>
        <nav aria-label="Main" id="main-nav" className={menuOpen ? "open" : undefined}>
          {session && !session.account.frozen ? (
            <>
              <Link href="/" aria-current={path === "/" ? "page" : undefined}>
                Dashboard
              </Link>
              <Link href="/security" aria-current={path === "/security" ? "page" : undefined}>
                Security
              </Link>
              <Link href="/addresses" aria-current={path === "/addresses" ? "page" : undefined}>
                Addresses
              </Link>
              <Link href="/api-keys" aria-current={path === "/api-keys" ? "page" : undefined}>
                API keys
              </Link>
            </>
          ) : null}
          <Link href="/status" aria-current={path === "/status" ? "page" : undefined}>
            Status
          </Link>
          {session ? (
            <button
              type="button"
              className="quiet"
              onClick={() => void signOut().then(() => navigate("/sign-in"))}
            >
              Sign out
            </button>
          ) : null}
        </nav>
      </header>
      <MaintenanceBanner />
      <BreachedPasswordNotice />
      <main id="main" tabIndex={-1}>
        {content}
      </main>
    </>
  );
}

const titles: Record<string, string> = {
  "/sign-in": "Sign in",
  "/sign-up": "Create an account",
  "/verify-email": "Verify your email",
  "/forgot-password": "Forgot password",
  "/forgot-username": "Forgot username",
  "/reset-password": "Choose a new password",
  "/approve-device": "Approve a device",
  "/confirm-address": "Confirm a withdrawal address",
  "/disable-api-keys": "Disable your API keys",
  "/lock-account": "Lock your account",
  "/confirm-email": "Confirm your new email address",
  "/status": "Status",
};

/** Subsystems that are not operational, and windows open now, on every page (behaviour §10). */
function MaintenanceBanner() {
  const [status, setStatus] = useState<StatusInfo | null>(null);
  useEffect(() => {
    api<StatusInfo>("GET", "/v1/status")
      .then(setStatus)
      .catch(() => setStatus(null));
  }, []);
  if (!status) return null;
  const now = Date.now();
  const open = status.maintenance.filter((w) => Date.parse(w.startsAt) <= now && Date.parse(w.endsAt) > now);
  const troubled = status.subsystems.filter(
    (s) => s.status !== "operational" && !open.some((w) => w.subsystem === s.id),
  );
  if (open.length === 0 && troubled.length === 0) return null;
  return (
    <aside className="banner" aria-label="Service status">
      {open.map((w) => (
        <p key={w.id}>
          <strong>{subsystemName(w.subsystem)}</strong>: {w.message} (until{" "}
          {new Date(w.endsAt).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" })})
        </p>
      ))}
      {troubled.map((s) => (
        <p key={s.id}>
          <strong>{subsystemName(s.id)}</strong>: {s.status.replace("_", " ")}
          {s.message ? ` — ${s.message}` : ""}
        </p>
      ))}
      <p>
        <Link href="/status">See the status page</Link>
      </p>
    </aside>
  );
}

export function subsystemName(id: string): string {
  const names: Record<string, string> = {
    website: "Website",
    api: "API",
    spot_engine: "Spot trading",
    futures_engine: "Futures trading",
    "funding.crypto": "Crypto deposits and withdrawals",
    "funding.ach": "ACH transfers",
    "funding.wire": "Wire transfers",
    "funding.card": "Card payments",
    signups: "Sign-ups",
  };
  return names[id] ?? id;
}

function NotFound() {
  return (
    <div className="narrow">
      <h1>Page not found</h1>
      <p>
        There is nothing at this address. <Link href="/">Go to the dashboard</Link>.
      </p>
    </div>
  );
}
