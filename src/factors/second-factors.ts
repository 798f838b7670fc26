import type { Kysely, Selectable } from "kysely";
import type { Database, SecondFactorsTable } from "../db/schema.js";
import { iso } from "../support/clock.js";

export type SecondFactorType = "totp" | "webauthn";

/** The second factors a sign-in flow may offer, in the names of docs/http-api.md. */
export type SignInFactor = "totp" | "webauthn" | "recovery_code" | "master_key";

/**
 * What a factor is, in the words the security centre uses: an authenticator app, a security key (a
 * roaming WebAuthn authenticator, by the rule of `isRoaming`), or a passkey that is not roaming — kept on
 * one device, or synced by its platform between the owner's devices (`synced`).
 */
export type FactorKind = "authenticator_app" | "security_key" | "passkey";

export interface SecondFactorView {
  id: string;
  type: SecondFactorType;
  kind: FactorKind;
  name: string;
  roaming: boolean;
  /** Passkeys only: backed up by the platform and usable on the owner's other devices (a synced passkey). */
  synced: boolean;
  createdAt: string;
  lastUsedAt: string | null;
}

/** Transports only a separate, carried authenticator (a security key) speaks. */
const roamingTransports = new Set(["usb", "nfc", "ble", "smart-card"]);

/**
 * A factor can be the account's first sign-in factor only if it roams with the owner: an authenticator
 * app, or a security key rather than a passkey bound to one device.
 *
 * What is trusted for a security key: the transports in the attestation response
 * (`response.transports`, what the authenticator itself says it speaks), stored at registration. Not
 * `authenticatorAttachment`: that is the browser's own label for how it reached the authenticator this
 * once, outside anything the authenticator produced. A key is roaming when it speaks USB, NFC, BLE or
 * smart-card and is not built in ("internal"); no transports at all is not roaming. With attestation
 * "none" no third party vouches even for the transports, so this rule keeps owners from locking
 * themselves out with a device-bound passkey; it is not a proof of hardware (that would need attestation
 * checked against the FIDO metadata service).
 */
export function isRoaming(row: Pick<Selectable<SecondFactorsTable>, "type" | "transports">): boolean {
  if (row.type === "totp") return true;
  const transports = row.transports ? (JSON.parse(row.transports) as unknown) : [];
  if (!Array.isArray(transports) || transports.includes("internal")) return false;
  return transports.some((t) => typeof t === "string" && roamingTransports.has(t));
}

export function factorKind(row: Pick<Selectable<SecondFactorsTable>, "type" | "transports">): FactorKind {
  if (row.type === "totp") return "authenticator_app";
  return isRoaming(row) ? "security_key" : "passkey";
}

/**
 * The second factors an account can present, in the names of docs/http-api.md: an authenticator app, security
 * keys, and — once either exists — recovery codes.
 */
export function secondFactorNames(rows: Pick<Selectable<SecondFactorsTable>, "type">[]): SignInFactor[] {
  const types = new Set(rows.map((r) => r.type));
  const names: SignInFactor[] = [];
  if (types.has("totp")) names.push("totp");
  if (types.has("webauthn")) names.push("webauthn");
  if (names.length > 0) names.push("recovery_code");
  return names;
}

/** Reads and removals of enrolled second factors, whatever their type. */
export class SecondFactorRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async listConfirmed(accountId: string): Promise<Selectable<SecondFactorsTable>[]> {
    return this.db
      .selectFrom("second_factors")
      .selectAll()
      .where("account_id", "=", accountId)
      .where("confirmed_at", "is not", null)
      .orderBy("created_at")
      .execute();
  }

  async describe(accountId: string): Promise<SecondFactorView[]> {
    return (await this.listConfirmed(accountId)).map((row) => ({
      id: row.id,
      type: row.type,
      kind: factorKind(row),
      name: row.name,
      roaming: isRoaming(row),
      synced: factorKind(row) === "passkey" && (row.backed_up === 1 || row.device_type === "multiDevice"),
      createdAt: iso(row.created_at),
      lastUsedAt: row.last_used_at === null ? null : iso(row.last_used_at),
    }));
  }

  async find(accountId: string, factorId: string): Promise<Selectable<SecondFactorsTable> | undefined> {
    return this.db
      .selectFrom("second_factors")
      .selectAll()
      .where("account_id", "=", accountId)
      .where("id", "=", factorId)
      .where("confirmed_at", "is not", null)
      .executeTakeFirst();
  }

  async remove(accountId: string, factorId: string, db: Kysely<Database> = this.db): Promise<boolean> {
    const row = await db
      .deleteFrom("second_factors")
      .where("account_id", "=", accountId)
      .where("id", "=", factorId)
      .returning("id")
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Every factor of the account, confirmed or not (the Master Key bypass starts over without them). */
  async removeAll(accountId: string, db: Kysely<Database>): Promise<void> {
    await db.deleteFrom("second_factors").where("account_id", "=", accountId).execute();
  }

  /** Enrollments started and not finished: dropped when the Global Settings Lock turns on. */
  async removePending(accountId: string, db: Kysely<Database>): Promise<number> {
    const rows = await db
      .deleteFrom("second_factors")
      .where("account_id", "=", accountId)
      .where("confirmed_at", "is", null)
      .returning("id")
      .execute();
    return rows.length;
  }

  /** The factors that turn on sign-in 2FA: an authenticator app or a security key / passkey. */
  async hasSignInFactor(accountId: string): Promise<boolean> {
    return (await this.listConfirmed(accountId)).length > 0;
  }

  async recordUse(factorId: string, at: number): Promise<void> {
    await this.db
      .updateTable("second_factors")
      .set({ last_used_at: at })
      .where("id", "=", factorId)
      .execute();
  }
}
