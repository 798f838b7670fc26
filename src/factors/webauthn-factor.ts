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
import type { Kysely, Selectable } from "kysely";
import type { Account } from "../accounts/accounts.js";
import { newId } from "../crypto/tokens.js";
import type { Database, SecondFactorsTable } from "../db/schema.js";
import type { CheckResult } from "../protection/account-protection.js";
import type { Clock } from "../support/clock.js";
import { isUniqueViolation } from "../support/db-errors.js";
import { Problem } from "../support/problem.js";

const CHALLENGE_TTL_MS = 5 * 60_000;

export type ChallengePurpose = "register" | "sign_in" | "action";

/**
 * What the owner is adding: a security key they carry (USB, NFC, BLE), a passkey kept on this device
 * (discoverable, so it can sign in without a username), or either (the browser lets the person choose).
 */
export type CredentialKind = "security_key" | "passkey";

export interface RelyingParty {
  name: string;
  id: string;
  origin: string;
}

/** The WebAuthn user handle of an account: its id, as UTF-8 bytes (returned by discoverable credentials). */
function userHandleOf(accountId: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(accountId, "utf8"));
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

/** A credential found from a "sign in with a passkey" assertion: its factor and the account it belongs to. */
export interface DiscoveredCredential {
  factorId: string;
  accountId: string;
}

/**
 * Security keys and passkeys (docs/behaviour.md §6, docs/SECURITY.md §5) through @simplewebauthn/server:
 * attestation "none", user verification required at registration and at every assertion, origin and RP
 * ID from the public URL. Every challenge is stored with its purpose and subject and spent once (those of
 * "sign in with a passkey", which name no account, in passkey_challenges); a credential id belongs to one
 * account (unique index); a sign count that does not increase is refused.
 */
export class WebAuthnFactor {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly rp: RelyingParty,
  ) {}

  /**
   * Registration options. A passkey on this device is asked for as a platform authenticator with a
   * discoverable credential (residentKey "required"), so it can later sign in without a username; a
   * security key as a cross-platform one, not asked to be discoverable: it is the second factor after the
   * password, and a key's few discoverable slots stay free. Without a kind the browser offers both, and a
   * discoverable credential is preferred. User verification is required for all.
   * The user handle is the account id, which "sign in with a passkey" checks against the credential's owner.
   */
  async registrationOptions(
    account: Account,
    kind?: CredentialKind,
  ): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const existing = await this.credentials(account.id);
    const options = await generateRegistrationOptions({
      rpName: this.rp.name,
      rpID: this.rp.id,
      userName: account.username,
      userID: userHandleOf(account.id),
      attestationType: "none",
      excludeCredentials: existing.map((c) => ({
        id: c.credential_id!,
        transports: this.transportsOf(c.transports),
      })),
      authenticatorSelection: {
        residentKey: kind === "passkey" ? "required" : kind === "security_key" ? "discouraged" : "preferred",
        userVerification: "required",
      },
      ...(kind === "passkey" ? { preferredAuthenticatorType: "localDevice" as const } : {}),
      ...(kind === "security_key" ? { preferredAuthenticatorType: "securityKey" as const } : {}),
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
        requireUserVerification: true,
      });
    } catch {
      verification = { verified: false };
    }
    if (!verification.verified) {
      throw new Problem(400, "invalid_webauthn_response", "The security key's answer could not be verified.");
    }
    const { credential, credentialBackedUp, credentialDeviceType } = verification.registrationInfo;
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
          device_type: credentialDeviceType,
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
      userVerification: "required",
      challenge: challenge ? Buffer.from(challenge, "base64url") : undefined,
    });
    await this.storeChallenge(accountId, purpose, subject, options.challenge);
    return options;
  }

  /**
   * Options for "sign in with a passkey": no account yet, so no allowed credentials (the authenticator
   * offers its discoverable ones) and a challenge stored unbound, spent by the first assertion that
   * signs it. Expired ones are swept as new ones are made.
   */
  async discoverableOptions(): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const options = await generateAuthenticationOptions({
      rpID: this.rp.id,
      allowCredentials: [],
      userVerification: "required",
    });
    const now = this.clock.now();
    await this.db.deleteFrom("passkey_challenges").where("expires_at", "<=", now).execute();
    await this.db
      .insertInto("passkey_challenges")
      .values({
        id: newId(),
        challenge: options.challenge,
        created_at: now,
        expires_at: now + CHALLENGE_TTL_MS,
      })
      .execute();
    return options;
  }

  /**
   * The account a "sign in with a passkey" assertion is for: the credential id must belong to a factor,
   * and the user handle the authenticator returned must name that factor's account (WebAuthn L2 §7.2
   * step 6). Nothing is verified yet; `verifyDiscoverable` does that.
   */
  async discover(response: AuthenticationResponseJSON): Promise<DiscoveredCredential | null> {
    const credentialId = typeof response?.id === "string" ? response.id : "";
    const userHandle = response?.response?.userHandle;
    if (!credentialId || typeof userHandle !== "string") return null;
    const row = await this.db
      .selectFrom("second_factors")
      .select(["id", "account_id"])
      .where("type", "=", "webauthn")
      .where("credential_id", "=", credentialId)
      .where("confirmed_at", "is not", null)
      .executeTakeFirst();
    if (!row || userHandle !== Buffer.from(userHandleOf(row.account_id)).toString("base64url")) return null;
    return { factorId: row.id, accountId: row.account_id };
  }

  /** Spends a "sign in with a passkey" challenge whatever else is wrong with the answer that carries it. */
  async spendDiscoverableChallenge(response: AuthenticationResponseJSON): Promise<boolean> {
    const challenge = signedChallenge(response?.response?.clientDataJSON);
    if (!challenge) return false;
    const now = this.clock.now();
    const row = await this.db
      .updateTable("passkey_challenges")
      .set({ used_at: now })
      .where("challenge", "=", challenge)
      .where("used_at", "is", null)
      .where("expires_at", ">", now)
      .returning("id")
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * Verifies a "sign in with a passkey" assertion for the account `discover` found: the unbound challenge
   * spent once, then signature, origin, RP ID, user presence and user verification, and the counter.
   */
  async verifyDiscoverable(
    accountId: string,
    response: AuthenticationResponseJSON,
  ): Promise<CheckResult<string> & { failure?: AssertionFailure }> {
    const row = await this.credentialRow(accountId, response);
    if (!row) {
      await this.spendDiscoverableChallenge(response);
      return { ok: false, failure: "unknown_credential" };
    }
    if (!(await this.spendDiscoverableChallenge(response))) return { ok: false, failure: "invalid" };
    return this.verifyWith(row, signedChallenge(response.response.clientDataJSON)!, response);
  }

  /** Verifies an assertion made for this purpose and subject; the value is the factor's id. */
  async verifyAssertion(
    accountId: string,
    purpose: Exclude<ChallengePurpose, "register">,
    subject: string,
    response: AuthenticationResponseJSON,
  ): Promise<CheckResult<string> & { failure?: AssertionFailure }> {
    const row = await this.credentialRow(accountId, response);
    if (!row) return { ok: false, failure: "unknown_credential" };
    const challenge = signedChallenge(response?.response?.clientDataJSON);
    if (!challenge || !(await this.spendChallenge(accountId, purpose, subject, challenge))) {
      return { ok: false, failure: "invalid" };
    }
    return this.verifyWith(row, challenge, response);
  }

  private async credentialRow(accountId: string, response: AuthenticationResponseJSON) {
    const credentialId = typeof response?.id === "string" ? response.id : "";
    const row = await this.db
      .selectFrom("second_factors")
      .selectAll()
      .where("account_id", "=", accountId)
      .where("type", "=", "webauthn")
      .where("credential_id", "=", credentialId)
      .executeTakeFirst();
    return row?.public_key && row.sign_count !== null && row.credential_id ? row : null;
  }

  /** The library's checks (user verification required), then the counter moved forward atomically. */
  private async verifyWith(
    row: Selectable<SecondFactorsTable>,
    challenge: string,
    response: AuthenticationResponseJSON,
  ): Promise<CheckResult<string> & { failure?: AssertionFailure }> {
    try {
      const verification = await verifyAuthenticationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: this.rp.origin,
        expectedRPID: this.rp.id,
        credential: {
          id: row.credential_id!,
          publicKey: new Uint8Array(Buffer.from(row.public_key!, "base64url")),
          counter: row.sign_count!,
          transports: this.transportsOf(row.transports),
        },
        requireUserVerification: true,
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
