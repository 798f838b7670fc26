import type { Kysely, Transaction } from "kysely";
import type { Settings } from "../config/settings.js";
import type { DataKey } from "../crypto/data-key.js";
import { newId } from "../crypto/tokens.js";
import type { Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import { type EmailMessage, isSecurityEmail, type RenderedEmail, renderEmail } from "./templates.js";
import type { MailTransport } from "./transports.js";

const BATCH = 50;

/** The sealed payload is bound to its row: moved to another row, it does not open. */
const sealContext = (id: string) => `outbox:${id}`;

export interface Recipient {
  email: string;
  accountId: string | null;
  antiPhishingCode: string | null;
}

/** Mints the single-use "lock my account" link a security email carries, in the email's own transaction. */
export interface LockLinkIssuer {
  issue(accountId: string, db: Kysely<Database>): Promise<string>;
}

interface Logger {
  warn(object: object, message: string): void;
}

/** What a row keeps until it is sent: the message and the frame it is rendered in, sealed together. */
interface StoredMessage {
  message: EmailMessage;
  antiPhishingCode: string | null;
  /** The "lock my account" link: a live single-use token, sealed like the rest. */
  lockLink?: string | null;
}

/** Rows written before messages were sealed carry their rendered text, marked with this prefix. */
const PLAIN_PREFIX = "plain:";

/**
 * Transactional outbox (behaviour §12): an email is a row first, written with the change that caused it, and
 * delivered afterwards by a worker that retries with backoff. SMTP being down delays mail; it never
 * loses it. Claims are conditional updates, so several instances can run workers side by side.
 *
 * A row holds what to send, not the rendered email: the template kind and its parameters with the
 * anti-phishing code, sealed under the data key (AES-GCM, bound to the row id), and rendered only when
 * it is handed to the transport. Reset links, approval links and bypass codes are therefore never in
 * clear in the database; a sent row's payload is cleared at once, and the row itself (recipient, kind,
 * times: what support needs to answer "did you send it?") is deleted after the retention period.
 */
export class Outbox {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;
  private stopped = true;
  /** A nudge arrived while a delivery pass was running: run another straight after it. */
  private nudgedWhileRunning = false;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly transport: MailTransport,
    private readonly clock: Clock,
    private readonly settings: Settings["outbox"],
    private readonly from: string,
    private readonly logger: Logger,
    private readonly dataKey: DataKey,
    private readonly lockLinks: LockLinkIssuer | null = null,
  ) {}

  async enqueue(
    recipient: Recipient,
    message: EmailMessage,
    trx?: Transaction<Database>,
    lockLink: string | null = null,
  ): Promise<string> {
    const id = newId();
    const now = this.clock.now();
    const stored: StoredMessage = { message, antiPhishingCode: recipient.antiPhishingCode, lockLink };
    await (trx ?? this.db)
      .insertInto("outbox")
      .values({
        id,
        account_id: recipient.accountId,
        kind: message.kind,
        recipient: recipient.email,
        payload: this.dataKey.seal(JSON.stringify(stored), sealContext(id)),
        created_at: now,
        next_attempt_at: now,
      })
      .execute();
    if (!trx) this.nudge();
    return id;
  }

  /**
   * An email to an account's owner, framed with their anti-phishing code. A security email also carries
   * a fresh "lock my account" link, whose token is written with the email: both or neither.
   */
  async notify(
    account: { id: string; email: string; antiPhishingCode: string | null },
    message: EmailMessage,
    trx?: Transaction<Database>,
  ): Promise<string> {
    const recipient = {
      email: account.email,
      accountId: account.id,
      antiPhishingCode: account.antiPhishingCode,
    };
    const lockLinks = this.lockLinks;
    if (!lockLinks || !isSecurityEmail(message.kind)) return this.enqueue(recipient, message, trx);
    const write = async (db: Transaction<Database>) =>
      this.enqueue(recipient, message, db, await lockLinks.issue(account.id, db));
    if (trx) return write(trx);
    const id = await this.db.transaction().execute(write);
    this.nudge();
    return id;
  }

  /** Delivers every message that is due; returns how many were sent. Safe to call concurrently. */
  async deliverDue(limit = BATCH): Promise<number> {
    const now = this.clock.now();
    const due = await this.db
      .selectFrom("outbox")
      .select("id")
      .where("sent_at", "is", null)
      .where("next_attempt_at", "<=", now)
      .where((eb) => eb.or([eb("claimed_until", "is", null), eb("claimed_until", "<", now)]))
      .orderBy("next_attempt_at")
      .limit(limit)
      .execute();
    let sent = 0;
    for (const { id } of due) {
      const claimed = await this.db
        .updateTable("outbox")
        .set((eb) => ({ claimed_until: now + this.settings.claimMs, attempts: eb("attempts", "+", 1) }))
        .where("id", "=", id)
        .where("sent_at", "is", null)
        .where((eb) => eb.or([eb("claimed_until", "is", null), eb("claimed_until", "<", now)]))
        .returningAll()
        .executeTakeFirst();
      if (!claimed) continue;
      try {
        const rendered = this.render(claimed.id, claimed.payload);
        await this.transport.deliver({
          id: claimed.id,
          from: this.from,
          to: claimed.recipient,
          subject: rendered.subject,
          text: rendered.text,
          html: rendered.html,
          kind: claimed.kind,
          createdAt: claimed.created_at,
        });
        // Sent: what it said (links, codes) is not kept a moment longer than needed.
        await this.db
          .updateTable("outbox")
          .set({ sent_at: this.clock.now(), claimed_until: null, last_error: null, payload: null })
          .where("id", "=", id)
          .execute();
        sent += 1;
      } catch (error) {
        const backoff = Math.min(
          this.settings.baseBackoffMs * 2 ** (claimed.attempts - 1),
          this.settings.maxBackoffMs,
        );
        const reason = error instanceof Error ? error.message : String(error);
        await this.db
          .updateTable("outbox")
          .set({
            next_attempt_at: this.clock.now() + backoff,
            claimed_until: null,
            last_error: reason.slice(0, 500),
          })
          .where("id", "=", id)
          .execute();
        this.logger.warn(
          { outboxId: id, attempts: claimed.attempts, retryInMs: backoff },
          "email delivery failed; will retry",
        );
      }
    }
    return sent;
  }

  /** The email a row stands for, rendered now. */
  private render(id: string, payload: string | null): RenderedEmail {
    if (payload === null) throw new Error("the message has no payload");
    if (payload.startsWith(PLAIN_PREFIX))
      return JSON.parse(payload.slice(PLAIN_PREFIX.length)) as RenderedEmail;
    const stored = JSON.parse(this.dataKey.open(payload, sealContext(id)).toString("utf8")) as StoredMessage;
    return renderEmail(stored.message, {
      antiPhishingCode: stored.antiPhishingCode,
      lockLink: stored.lockLink ?? null,
    });
  }

  /** Deletes sent rows older than the retention period; returns how many. */
  async purgeSent(): Promise<number> {
    const result = await this.db
      .deleteFrom("outbox")
      .where("sent_at", "is not", null)
      .where("sent_at", "<", this.clock.now() - this.settings.retentionMs)
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async pending(): Promise<number> {
    const row = await this.db
      .selectFrom("outbox")
      .select((eb) => eb.fn.countAll<number>().as("count"))
      .where("sent_at", "is", null)
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => 0);
  }

  /** Deliver soon rather than at the next poll: called after an enqueue. */
  nudge(): void {
    if (this.stopped) return;
    if (this.running) this.nudgedWhileRunning = true;
    else this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), delayMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.running) return;
    this.running = this.deliverDue(BATCH).catch((error) => {
      this.logger.warn({ err: error }, "outbox worker could not read the outbox");
      return 0;
    });
    const sent = await this.running;
    this.running = null;
    // A full batch means a backlog (after an SMTP outage, say): keep going rather than wait for the poll.
    const again = this.nudgedWhileRunning || sent === BATCH;
    this.nudgedWhileRunning = false;
    if (!this.stopped) this.schedule(again ? 0 : this.settings.pollIntervalMs);
  }
}
