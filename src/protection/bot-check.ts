import { createChallenge, randomInt, verifySolution } from "altcha-lib";
import { deriveKey } from "altcha-lib/algorithms/sha";
import type { Kysely } from "kysely";
import type { BotCheckMode } from "../config/env.js";
import type { Settings } from "../config/settings.js";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import { addressSubject } from "../support/network.js";
import { Problem } from "../support/problem.js";
import type { RateLimiter } from "./rate-limiter.js";

/**
 * Failed credential checks, counted per IP, per identifier and overall. They drive adaptive bot checks
 * and raise the proof-of-work difficulty while the venue is under attack (behaviour §3).
 */
export class FailureSignals {
  constructor(
    private readonly limiter: RateLimiter,
    private readonly settings: Settings["botCheck"],
  ) {}

  async record(ip: string, identifier: string | null): Promise<void> {
    const window = { max: Number.MAX_SAFE_INTEGER, windowMs: this.settings.adaptiveWindowMs };
    await this.limiter.hit(`failures:global`, window);
    await this.limiter.hit(`failures:ip:${addressSubject(ip)}`, window);
    if (identifier) await this.limiter.hit(`failures:id:${identifier.toLowerCase()}`, window);
  }

  async underAttack(): Promise<boolean> {
    return (
      (await this.limiter.peek("failures:global", this.settings.adaptiveWindowMs)) >=
      this.settings.attackFailureRate
    );
  }

  async suspicious(ip: string, identifier: string | null): Promise<boolean> {
    const threshold = this.settings.adaptiveFailureThreshold;
    const window = this.settings.adaptiveWindowMs;
    if ((await this.limiter.peek(`failures:ip:${addressSubject(ip)}`, window)) >= threshold) return true;
    if (
      identifier &&
      (await this.limiter.peek(`failures:id:${identifier.toLowerCase()}`, window)) >= threshold
    ) {
      return true;
    }
    return this.underAttack();
  }
}

interface SolvedPayload {
  challenge: Parameters<typeof verifySolution>[0]["challenge"];
  solution: Parameters<typeof verifySolution>[0]["solution"];
}

const botCheckFailed = (message: string) => new Problem(400, "bot_check_failed", message);

/**
 * ALTCHA proof-of-work challenges (behaviour §3). Challenges are signed with a key derived from the data key,
 * so any instance can verify any other's; a solved challenge is accepted once (a row in used_bot_checks)
 * and expires after five minutes by our clock.
 */
export class BotCheck {
  private readonly hmacSecret: string;
  private readonly hmacKeySecret: string;

  constructor(
    readonly mode: BotCheckMode,
    private readonly settings: Settings["botCheck"],
    secret: Buffer,
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly signals: FailureSignals,
  ) {
    this.hmacSecret = secret.toString("hex");
    this.hmacKeySecret = Buffer.from(this.hmacSecret).reverse().toString();
  }

  async createChallenge() {
    const factor = (await this.signals.underAttack()) ? this.settings.attackDifficultyFactor : 1;
    const counter = randomInt(this.settings.maxCounter * factor, this.settings.minCounter * factor);
    return createChallenge({
      algorithm: "SHA-256",
      cost: 1,
      counter,
      deriveKey,
      hmacSignatureSecret: this.hmacSecret,
      hmacKeySignatureSecret: this.hmacKeySecret,
      data: { expiresAt: this.clock.now() + this.settings.challengeTtlMs },
    });
  }

  async isRequired(ip: string, identifier: string | null): Promise<boolean> {
    if (this.mode === "off") return false;
    if (this.mode === "always") return true;
    return this.signals.suspicious(ip, identifier);
  }

  /** Throws 400 bot_check_failed unless the request carries a fresh, valid, unused solution (when one is required). */
  async check(payload: string | undefined, ip: string, identifier: string | null): Promise<void> {
    if (!(await this.isRequired(ip, identifier))) return;
    if (!payload) throw botCheckFailed("Complete the bot check and try again.");
    const solved = parsePayload(payload);
    if (!solved) throw botCheckFailed("The bot check answer is malformed.");
    const expiresAt = solved.challenge.parameters.data?.expiresAt;
    let verified = false;
    try {
      const result = await verifySolution({
        challenge: solved.challenge,
        solution: solved.solution,
        deriveKey,
        hmacSignatureSecret: this.hmacSecret,
        hmacKeySignatureSecret: this.hmacKeySecret,
      });
      verified = result.verified;
    } catch {
      verified = false;
    }
    if (!verified) throw botCheckFailed("The bot check answer is not valid.");
    // expiresAt is inside the signed parameters, so it is as trustworthy as the signature just checked.
    if (typeof expiresAt !== "number" || expiresAt <= this.clock.now()) {
      throw botCheckFailed("The bot check has expired. Solve a new one.");
    }
    const firstUse = await this.db
      .insertInto("used_bot_checks")
      .values({
        challenge_id: solved.challenge.signature ?? solved.challenge.parameters.nonce,
        expires_at: expiresAt,
      })
      .onConflict((oc) => oc.column("challenge_id").doNothing())
      .returning("challenge_id")
      .executeTakeFirst();
    if (!firstUse) throw botCheckFailed("This bot check answer was already used. Solve a new one.");
  }

  async prune(): Promise<void> {
    await this.db.deleteFrom("used_bot_checks").where("expires_at", "<", this.clock.now()).execute();
  }
}

function parsePayload(payload: string): SolvedPayload | null {
  if (payload.length > 8192) return null;
  try {
    const parsed = JSON.parse(Buffer.from(payload, "base64").toString("utf8")) as Partial<SolvedPayload>;
    const challenge = parsed?.challenge;
    const solution = parsed?.solution;
    if (
      !challenge ||
      typeof challenge !== "object" ||
      !challenge.parameters ||
      typeof challenge.parameters !== "object"
    ) {
      return null;
    }
    if (!solution || typeof solution !== "object" || typeof solution.counter !== "number") return null;
    if (typeof solution.derivedKey !== "string") return null;
    return { challenge, solution };
  } catch {
    return null;
  }
}
