import {
  type AuthenticationResponseJSON,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from "@simplewebauthn/server";
import type { Kysely } from "kysely";
import type { Account } from "../accounts/accounts.js";
import { newId } from "../crypto/tokens.js";
import type { Database } from "../db/schema.js";
import type { CheckResult } from "../protection/account-protection.js";
import type { Clock } from "../support/clock.js";
import { isUniqueViolation } from "../support/db-errors.js";
import { Problem } from "../support/problem.js";

const CHALLENGE_TTL_MS = 5 * 60_000;

export type ChallengePurpose = "register" | "sign_in" | "action";

export interface RelyingParty {
  name: string;
  id: string;
  origin: string;
}

/** The challenge the authenticator signed, read from clientDataJSON (verified in full afterwards). */
function signedChallenge(clientDataJSON: unknown): string | null {
  if (typeof clientDataJSON !== "string" || clientDataJSON.length > 4096) return null;
  try {
    const parsed = JSON.parse(Buffer.from(clientDataJSON, "base64url").toString("utf8")) as {
      challenge?: unknown;
    };
    return typeof parsed.challenge === "string" ? parsed.challenge : null;
  } catch {
    return null;
  }
}

export type AssertionFailure = "unknown_credential" | "counter_regression" | "invalid";

/**
 * Security keys and passkeys (docs/behaviour.md §6, STANDARDS "WebAuthn") through @simplewebauthn/server: attestation
 * "none", user verification preferred, origin and RP ID from the public URL. Every challenge is stored
 * with its purpose and subject and spent once; a credential id belongs to one account (unique index);
 * a sign count that does not increase is refused.
 */
export class WebAuthnFactor {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly rp: RelyingParty,
  ) {}

  async registrationOptions(account: Account): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const existing = await this.credentials(account.id);
    const options = await generateRegistrationOptions({
      rpName: this.rp.name,
      rpID: this.rp.id,
      userName: account.username,
      userID: new TextEncoder().encode(account.id),
      attestationType: "none",
      excludeCredentials: existing.map((c) => ({
        id: c.credential_id!,
        transports: this.transportsOf(c.transports),
      })),
      authenticatorSelection: { residentKey: "preferred", userVerification: "preferred" },
    });
    await this.storeChallenge(account.id, "register", account.id, options.challenge);
    return options;
  }

  /** Verifies a registration and stores the credential; the value is the new factor's id. */
  async register(
    account: Account,
    response: RegistrationResponseJSON,
    name: string,
    db: Kysely<Database> = this.db,
  ): Promise<string> {
    const challenge = signedChallenge(response?.response?.clientDataJSON);
    if (!challenge || !(await this.spendChallenge(account.id, "register", account.id, challenge, db))) {
      throw new Problem(
        400,
        "invalid_webauthn_response",
        "This registration is not for a current request. Start again.",
      );
    }
    let verification: Awaited<ReturnType<typeof verifyRegistrationResponse>>;
    try {
      verification = await verifyRegistrationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: this.rp.origin,
        expectedRPID: this.rp.id,
        requireUserVerification: false,
      });
    } catch {
      verification = { verified: false };
    }
    if (!verification.verified) {
      throw new Problem(400, "invalid_webauthn_response", "The security key's answer could not be verified.");
    }
    const { credential, credentialBackedUp } = verification.registrationInfo;
    const id = newId();
    const now = this.clock.now();
    try {
      await db
        .insertInto("second_factors")
        .values({
          id,
          account_id: account.id,
          type: "webauthn",
          name,
          created_at: now,
          confirmed_at: now,
          credential_id: credential.id,
          public_key: Buffer.from(credential.publicKey).toString("base64url"),
          sign_count: credential.counter,
          // What the authenticator reported in its attestation response: the roaming decision reads it.
          transports: JSON.stringify(response.response.transports ?? []),
          attachment: response.authenticatorAttachment ?? null,
          backed_up: credentialBackedUp ? 1 : 0,
        })
        .execute();
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new Problem(409, "conflict", "This security key is already registered.");
      }
      throw error;
    }
    return id;
  }

  /** Assertion options; `challenge` lets the caller bind the signature to something (an action's digest). */
  async assertionOptions(
    accountId: string,
    purpose: Exclude<ChallengePurpose, "register">,
    subject: string,
    challenge?: string,
  ): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const credentials = await this.credentials(accountId);
    const options = await generateAuthenticationOptions({
      rpID: this.rp.id,
      allowCredentials: credentials.map((c) => ({
        id: c.credential_id!,
        transports: this.transportsOf(c.transports),
      })),
      userVerification: "preferred",
      challenge: challenge ? Buffer.from(challenge, "base64url") : undefined,
    });
    await this.storeChallenge(accountId, purpose, subject, options.challenge);
    return options;
  }

  /** Verifies an assertion made for this purpose and subject; the value is the factor's id. */
  async verifyAssertion(
    accountId: string,
    purpose: Exclude<ChallengePurpose, "register">,
    subject: string,
    response: AuthenticationResponseJSON,
  ): Promise<CheckResult<string> & { failure?: AssertionFailure }> {
    const credentialId = typeof response?.id === "string" ? response.id : "";
    const row = await this.db
      .selectFrom("second_factors")
      .selectAll()
      .where("account_id", "=", accountId)
      .where("type", "=", "webauthn")
      .where("credential_id", "=", credentialId)
      .executeTakeFirst();
    if (!row?.public_key || row.sign_count === null) return { ok: false, failure: "unknown_credential" };
    const challenge = signedChallenge(response?.response?.clientDataJSON);
    if (!challenge || !(await this.spendChallenge(accountId, purpose, subject, challenge))) {
      return { ok: false, failure: "invalid" };
    }
    try {
      const verification = await verifyAuthenticationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: this.rp.origin,
        expectedRPID: this.rp.id,
        credential: {
          id: credentialId,
          publicKey: new Uint8Array(Buffer.from(row.public_key, "base64url")),
          counter: row.sign_count,
          transports: this.transportsOf(row.transports),
        },
        requireUserVerification: false,
      });
      if (!verification.verified) return { ok: false, failure: "invalid" };
      const { newCounter } = verification.authenticationInfo;
      // The counter moves forward atomically: a cloned key replaying the same count loses the race.
      const updated = await this.db
        .updateTable("second_factors")
        .set({ sign_count: newCounter, last_used_at: this.clock.now() })
        .where("id", "=", row.id)
        .where((eb) => (newCounter === 0 ? eb("sign_count", "=", 0) : eb("sign_count", "<", newCounter)))
        .returning("id")
        .executeTakeFirst();
      if (!updated) return { ok: false, failure: "counter_regression" };
      return { ok: true, value: row.id };
    } catch (error) {
      const message = error instanceof Error ? error.message : "";
      return { ok: false, failure: /counter/i.test(message) ? "counter_regression" : "invalid" };
    }
  }

  /** Registrations started and not finished: dropped when the Global Settings Lock turns on. */
  async dropPendingRegistrations(accountId: string, db: Kysely<Database>): Promise<void> {
    await db
      .deleteFrom("webauthn_challenges")
      .where("account_id", "=", accountId)
      .where("purpose", "=", "register")
      .where("used_at", "is", null)
      .execute();
  }

  private async credentials(accountId: string) {
    return this.db
      .selectFrom("second_factors")
      .select(["credential_id", "transports"])
      .where("account_id", "=", accountId)
      .where("type", "=", "webauthn")
      .execute();
  }

  private transportsOf(json: string | null) {
    return json ? (JSON.parse(json) as string[]) : undefined;
  }

  private async storeChallenge(
    accountId: string,
    purpose: ChallengePurpose,
    subject: string,
    challenge: string,
  ) {
    const now = this.clock.now();
    await this.db
      .insertInto("webauthn_challenges")
      .values({
        id: newId(),
        account_id: accountId,
        purpose,
        subject,
        challenge,
        created_at: now,
        expires_at: now + CHALLENGE_TTL_MS,
      })
      .execute();
  }

  private async spendChallenge(
    accountId: string,
    purpose: ChallengePurpose,
    subject: string,
    challenge: string,
    db: Kysely<Database> = this.db,
  ) {
    const now = this.clock.now();
    const row = await db
      .updateTable("webauthn_challenges")
      .set({ used_at: now })
      .where("account_id", "=", accountId)
      .where("purpose", "=", purpose)
      .where("subject", "=", subject)
      .where("challenge", "=", challenge)
      .where("used_at", "is", null)
      .where("expires_at", ">", now)
      .returning("id")
      .executeTakeFirst();
    return row !== undefined;
  }
}
