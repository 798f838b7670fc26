import type { Kysely } from "kysely";
import type { Account } from "../accounts/accounts.js";
import type { DataKey } from "../crypto/data-key.js";
import { newId } from "../crypto/tokens.js";
import type { Database } from "../db/schema.js";
import type { CheckResult } from "../protection/account-protection.js";
import type { Clock } from "../support/clock.js";
import { expired, notFound } from "../support/problem.js";
import { driftHint, matchTotp, newTotpSecret, otpauthUri, qrSvg, toBase32 } from "./totp.js";

const ENROLLMENT_TTL_MS = 10 * 60_000;

export interface TotpEnrollment {
  enrollmentId: string;
  secret: string;
  otpauthUri: string;
  qrSvg: string;
}

/**
 * Authenticator-app factor (behaviour §6). The seed is sealed with the data key, bound to its row id; an
 * enrollment counts only once confirmed by a first valid code; each accepted code claims its time step
 * with a compare-and-set, so a code works once however many requests carry it.
 */
export class TotpFactor {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dataKey: DataKey,
    private readonly clock: Clock,
    private readonly issuer: string,
  ) {}

  async startEnrollment(account: Account, db: Kysely<Database> = this.db): Promise<TotpEnrollment> {
    const id = newId();
    const secret = newTotpSecret();
    await db
      .insertInto("second_factors")
      .values({
        id,
        account_id: account.id,
        type: "totp",
        name: "Authenticator app",
        created_at: this.clock.now(),
        totp_secret: this.dataKey.seal(Buffer.from(secret), id),
      })
      .execute();
    const uri = otpauthUri(secret, this.issuer, account.username);
    return { enrollmentId: id, secret: toBase32(secret), otpauthUri: uri, qrSvg: await qrSvg(uri) };
  }

  /** Confirms a pending enrollment with its first code (which is then spent). Null when the code is wrong. */
  async confirmEnrollment(
    account: Account,
    enrollmentId: string,
    code: string,
    name: string,
    db: Kysely<Database> = this.db,
  ): Promise<CheckResult<string>> {
    const row = await db
      .selectFrom("second_factors")
      .selectAll()
      .where("id", "=", enrollmentId)
      .where("account_id", "=", account.id)
      .where("type", "=", "totp")
      .where("confirmed_at", "is", null)
      .executeTakeFirst();
    if (!row?.totp_secret) throw notFound("This enrollment");
    const now = this.clock.now();
    if (now - row.created_at > ENROLLMENT_TTL_MS) throw expired("This enrollment has expired. Start again.");
    const match = matchTotp(this.open(row.id, row.totp_secret), code, now);
    if (!match) return { ok: false };
    if ("driftSeconds" in match) return { ok: false, hint: driftHint(match.driftSeconds) };
    const confirmed = await db
      .updateTable("second_factors")
      .set({ confirmed_at: now, totp_last_step: match.step, name, last_used_at: now })
      .where("id", "=", enrollmentId)
      .where("confirmed_at", "is", null)
      .returning("id")
      .executeTakeFirst();
    return confirmed ? { ok: true, value: enrollmentId } : { ok: false };
  }

  /** Checks a code against every confirmed authenticator of the account and spends its time step. */
  async verify(accountId: string, code: string): Promise<CheckResult<string>> {
    const rows = await this.db
      .selectFrom("second_factors")
      .select(["id", "totp_secret"])
      .where("account_id", "=", accountId)
      .where("type", "=", "totp")
      .where("confirmed_at", "is not", null)
      .execute();
    const now = this.clock.now();
    let hint: string | undefined;
    for (const row of rows) {
      if (!row.totp_secret) continue;
      const match = matchTotp(this.open(row.id, row.totp_secret), code.trim(), now);
      if (!match) continue;
      if ("driftSeconds" in match) {
        hint = driftHint(match.driftSeconds);
        continue;
      }
      const claimed = await this.db
        .updateTable("second_factors")
        .set({ totp_last_step: match.step, last_used_at: now })
        .where("id", "=", row.id)
        .where((eb) => eb.or([eb("totp_last_step", "is", null), eb("totp_last_step", "<", match.step)]))
        .returning("id")
        .executeTakeFirst();
      if (claimed) return { ok: true, value: row.id };
      return { ok: false, hint: "This code was already used. Wait for the next one." };
    }
    return { ok: false, hint };
  }

  private open(id: string, sealed: string): Uint8Array {
    return new Uint8Array(this.dataKey.open(sealed, id));
  }
}
