import type { Account } from "../accounts/accounts.js";
import type { SecurityHold } from "../capabilities/evaluate.js";
import type { SecondFactorView } from "../factors/second-factors.js";
import { iso } from "../support/clock.js";
import type { LockState } from "./global-lock.js";

/**
 * The security level of docs/behaviour.md §13's overview: one point each for the password, sign-in 2FA, funding 2FA,
 * trading 2FA, and the Global Settings Lock with a Master Key — with what to do next.
 */
export function securityOverview(
  account: Account,
  factors: SecondFactorView[],
  lock: LockState,
  holds: SecurityHold[],
) {
  const signIn = factors.length > 0;
  const breached = account.passwordBreachedAt !== null;
  const items = [
    {
      id: "password",
      // docs/behaviour.md §1: a password found on the breached list counts as not done until it is changed.
      done: !breached,
      title: "A strong password",
      ...(breached
        ? {
            problem: "password_breached",
            message: "Your password has appeared in a data breach. Change it to one you use nowhere else.",
          }
        : {}),
    },
    {
      id: "sign_in_2fa",
      done: signIn,
      title: "Two-factor authentication for sign-in (authenticator app or security key)",
    },
    {
      id: "funding_2fa",
      done: account.fundingTwoFactor,
      title: "Two-factor authentication for withdrawals and funding",
    },
    { id: "trading_2fa", done: account.tradingTwoFactor, title: "Two-factor authentication for trading" },
    {
      id: "global_settings_lock",
      done: lock.enabled && account.masterKeyHash !== null,
      title: "A Master Key and the Global Settings Lock",
    },
  ];
  const level = items.filter((item) => item.done).length;
  if (lock.enabled) {
    // docs/behaviour.md §7: the lock hides the security page's details.
    return { level, checklist: items, globalLock: lock, hidden: true };
  }
  return {
    level,
    checklist: items,
    secondFactors: factors,
    globalLock: lock,
    masterKey: { set: account.masterKeyHash !== null },
    tradingPasscode: { set: account.tradingPasscodeHash !== null },
    antiPhishingCode: { set: account.antiPhishingCode !== null },
    requirements: { signIn, funding: account.fundingTwoFactor, trading: account.tradingTwoFactor },
    holds: holds.map((hold) => ({ kind: hold.kind, until: iso(hold.until) })),
  };
}
