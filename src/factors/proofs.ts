import type { AuthenticationResponseJSON } from "@simplewebauthn/server";
import type { Account } from "../accounts/accounts.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Outbox } from "../notify/outbox.js";
import { securityDetails } from "../notify/templates.js";
import type { AccountProtection, AttemptResult, CheckResult } from "../protection/account-protection.js";
import type { Clock } from "../support/clock.js";
import { Problem } from "../support/problem.js";
import type { RequestContext } from "../support/request-context.js";
import type { PasswordHasher } from "./password.js";
import type { RecoveryCodes } from "./recovery-codes.js";
import type { TotpFactor } from "./totp-factor.js";
import type { WebAuthnFactor } from "./webauthn-factor.js";

/** Something a person presents to prove it is them, in the names of docs/http-api.md. */
export type Proof =
  | { kind: "password"; password: string }
  | { kind: "totp"; code: string }
  | { kind: "recovery_code"; code: string }
  | { kind: "trading_passcode"; passcode: string }
  | { kind: "master_key"; masterKey: string }
  | {
      kind: "webauthn";
      response: AuthenticationResponseJSON;
      purpose: "sign_in" | "action";
      subject: string;
    }
  /** "Sign in with a passkey": an assertion for an unbound challenge, with user verification. */
  | { kind: "passkey"; response: AuthenticationResponseJSON };

export const invalidCode = (hint?: string) =>
  new Problem(401, "invalid_code", "That code or security key was not accepted.", hint ? { hint } : {});

/**
 * Checks any proof through the one attempt mechanism (AccountProtection), so every factor counts on the
 * same per-account counter; tells the owner when a recovery code is used; audits a security key whose
 * sign count went backwards (a sign of a cloned key).
 */
export class ProofVerifier {
  constructor(
    private readonly protection: AccountProtection,
    private readonly hasher: PasswordHasher,
    private readonly totp: TotpFactor,
    private readonly webauthn: WebAuthnFactor,
    private readonly recoveryCodes: RecoveryCodes,
    private readonly outbox: Outbox,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
  ) {}

  /** The value on success is the method name recorded on the session. */
  async verify(
    account: Account,
    proof: Proof,
    stage: string,
    context: RequestContext,
  ): Promise<AttemptResult<string>> {
    let remainingRecoveryCodes: number | null = null;
    const result = await this.protection.attempt(
      account,
      { factor: proof.kind, stage },
      context,
      async () => {
        switch (proof.kind) {
          case "password":
            return (await this.hasher.verify(account.passwordHash, proof.password))
              ? { ok: true, value: "password" }
              : { ok: false };
          case "master_key":
            return account.masterKeyHash !== null &&
              (await this.hasher.verify(account.masterKeyHash, proof.masterKey))
              ? { ok: true, value: "master_key" }
              : { ok: false };
          case "trading_passcode":
            return account.tradingPasscodeHash !== null &&
              (await this.hasher.verify(account.tradingPasscodeHash, proof.passcode))
              ? { ok: true, value: "trading_passcode" }
              : { ok: false };
          case "totp": {
            const checked = await this.totp.verify(account.id, proof.code);
            return checked.ok ? { ok: true, value: "totp" } : checked;
          }
          case "recovery_code": {
            const checked = await this.recoveryCodes.use(account.id, proof.code);
            if (!checked.ok) return checked;
            remainingRecoveryCodes = checked.value;
            return { ok: true, value: "recovery_code" };
          }
          case "webauthn": {
            const checked = await this.webauthn.verifyAssertion(
              account.id,
              proof.purpose,
              proof.subject,
              proof.response,
            );
            if (checked.failure === "counter_regression") {
              await this.audit.append(
                { event: "webauthn.counter_regression", outcome: "refused", accountId: account.id },
                context,
              );
            }
            return checked.ok ? { ok: true, value: "webauthn" } : ({ ok: false } as CheckResult<string>);
          }
          case "passkey": {
            const checked = await this.webauthn.verifyDiscoverable(account.id, proof.response);
            if (checked.failure === "counter_regression") {
              await this.audit.append(
                { event: "webauthn.counter_regression", outcome: "refused", accountId: account.id },
                context,
              );
            }
            return checked.ok ? { ok: true, value: "passkey" } : ({ ok: false } as CheckResult<string>);
          }
        }
      },
    );
    if (result.kind === "passed" && remainingRecoveryCodes !== null) {
      await this.outbox.notify(account, {
        kind: "recovery_code_used",
        remaining: remainingRecoveryCodes,
        ...securityDetails(context, this.clock.now()),
      });
    }
    return result;
  }
}
