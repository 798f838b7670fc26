import { randomInt } from "node:crypto";
import type { Kysely, Transaction } from "kysely";
import { newId, sha256Hex } from "../crypto/tokens.js";
import type { Database } from "../db/schema.js";
import type { CheckResult } from "../protection/account-protection.js";
import type { Clock } from "../support/clock.js";

export const RECOVERY_CODE_COUNT = 10;
// Crockford's base32: no I, L, O or U, so a code read aloud or handwritten survives.
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_LENGTH = 16; // 16 × 5 bits = 80 bits (docs/behaviour.md §6: at least 80).

function newCode(): string {
  let code = "";
  for (let i = 0; i < CODE_LENGTH; i += 1) code += ALPHABET[randomInt(ALPHABET.length)];
  return code.match(/.{4}/g)!.join("-");
}

/** Accepts what people type: any case, with or without dashes or spaces, O for 0, I and L for 1. */
export function normalizeRecoveryCode(input: string): string {
  return input.toUpperCase().replace(/[\s-]/g, "").replace(/O/g, "0").replace(/[IL]/g, "1");
}

const hashCode = (accountId: string, code: string) =>
  sha256Hex(`${accountId}:${normalizeRecoveryCode(code)}`);

/**
 * Ten single-use recovery codes (behaviour §6), stored as SHA-256 (80 random bits need no slow hash).
 * Regenerating replaces the whole set; a code is spent by one conditional UPDATE.
 */
export class RecoveryCodes {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
  ) {}

  /** A new set replacing the old one, in `within` when given (the change that asks for it), else on its own. */
  async regenerate(accountId: string, within?: Transaction<Database>): Promise<string[]> {
    const codes = Array.from({ length: RECOVERY_CODE_COUNT }, newCode);
    const now = this.clock.now();
    const replace = async (trx: Transaction<Database>) => {
      await trx.deleteFrom("recovery_codes").where("account_id", "=", accountId).execute();
      await trx
        .insertInto("recovery_codes")
        .values(
          codes.map((code) => ({
            id: newId(),
            account_id: accountId,
            code_hash: hashCode(accountId, code),
            created_at: now,
          })),
        )
        .execute();
    };
    await (within ? replace(within) : this.db.transaction().execute(replace));
    return codes;
  }

  async clear(accountId: string, db: Kysely<Database> = this.db): Promise<void> {
    await db.deleteFrom("recovery_codes").where("account_id", "=", accountId).execute();
  }

  /** Spends a code; the value is how many unused codes remain. */
  async use(accountId: string, code: string): Promise<CheckResult<number>> {
    if (normalizeRecoveryCode(code).length !== CODE_LENGTH) return { ok: false };
    const spent = await this.db
      .updateTable("recovery_codes")
      .set({ used_at: this.clock.now() })
      .where("account_id", "=", accountId)
      .where("code_hash", "=", hashCode(accountId, code))
      .where("used_at", "is", null)
      .returning("id")
      .executeTakeFirst();
    if (!spent) return { ok: false };
    return { ok: true, value: await this.remaining(accountId) };
  }

  async remaining(accountId: string): Promise<number> {
    const row = await this.db
      .selectFrom("recovery_codes")
      .select((eb) => eb.fn.countAll<number>().as("count"))
      .where("account_id", "=", accountId)
      .where("used_at", "is", null)
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }
}
