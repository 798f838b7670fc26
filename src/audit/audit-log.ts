import { createHmac } from "node:crypto";
import type { Kysely, Transaction } from "kysely";
import type { AuditAggregatesTable, AuditLogTable, Database } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import type { RequestContext } from "../support/request-context.js";

export type AuditOutcome = "success" | "failure" | "refused" | "info";

export interface AuditEvent {
  event: string;
  outcome: AuditOutcome;
  accountId?: string | null;
  /** "account", "operator", "system", or "api_key:<id>". */
  actor?: string;
  /** Never secrets: the factor used, reasons, ids. */
  details?: Record<string, unknown>;
}

export interface AuditEntry {
  seq: number;
  at: string;
  accountId: string | null;
  actor: string;
  ip: string | null;
  location: string | null;
  userAgent: string | null;
  event: string;
  outcome: string;
  details: Record<string, unknown>;
}

export interface VerifyResult {
  ok: boolean;
  checked: number;
  firstBadEntry?: { seq: number; reason: string };
}

const GENESIS = "0".repeat(64);

/**
 * The hash of an entry covers the previous hash and every field, in a fixed order (behaviour §12). It is an
 * HMAC-SHA256 under a key derived from the data key, which lives outside the database: someone who can
 * write to the database but does not hold the key cannot rewrite an entry and recompute the chain.
 */
export function entryHash(row: Omit<AuditLogTable, "hash">, chainKey: Buffer): string {
  const body = JSON.stringify([
    row.seq,
    row.at,
    row.account_id,
    row.actor,
    row.ip,
    row.location,
    row.user_agent,
    row.event,
    row.outcome,
    row.details,
  ]);
  return createHmac("sha256", chainKey).update(`${row.prev_hash}\n${body}`).digest("hex");
}

/** The chain entry of one aggregate: the first event of its minute, with the count and time span. */
function aggregateEntry(row: AuditAggregatesTable): NonNullable<Pending["row"]> {
  const details = JSON.parse(row.details) as Record<string, unknown>;
  return {
    at: row.first_at,
    account_id: row.account_id,
    actor: row.actor,
    ip: row.ip,
    location: row.location,
    user_agent: row.user_agent,
    event: row.event,
    outcome: row.outcome,
    details: JSON.stringify({
      ...details,
      count: row.count,
      firstAt: new Date(row.first_at).toISOString(),
      lastAt: new Date(row.last_at).toISOString(),
    }),
  };
}

interface Pending {
  /** The entry to chain; null for a caller that only waits for the next commit (`commit()`). */
  row: Omit<AuditLogTable, "seq" | "prev_hash" | "hash"> | null;
  resolve(seq: number): void;
  reject(error: unknown): void;
}

/**
 * Work written inside the transaction of the next group-committed batch, before its entries: state
 * decided in memory (the gateway's nonces and counters) becomes durable in the same commit as the
 * audit entries of the decisions that made it. It returns what to do once that commit failed (put its
 * changes back to be written by the next batch).
 */
export type BatchWriter = (trx: Transaction<Database>) => Promise<(() => void) | undefined>;

/** At most this many entries share one transaction (and one multi-row INSERT). */
const MAX_BATCH = 200;

/** Aggregated entries: one per key and minute. */
export const AGGREGATE_WINDOW_MS = 60_000;

/**
 * Append-only, hash-chained audit log. Appends take the chain head row in a transaction (a row lock on
 * PostgreSQL, the single writer on SQLite), so concurrent appends from any number of instances form one
 * unbroken chain.
 *
 * Group commit: appends made in one turn of the event loop, or while a transaction is in flight, go
 * together in the next one (one head update, one INSERT for all of them), so under load the chain costs
 * a few statements per batch instead of per entry; batch writers (the gateway's in-memory state) write
 * in the same transaction. Each `append` still resolves only after its entry is committed: no caller
 * answers before its audit entry is durable.
 */
export class AuditLog {
  private queue: Pending[] = [];
  private writing = false;
  private readonly writers: BatchWriter[] = [];

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    /** The HMAC key of the chain: `dataKey.derive("audit-chain")`. */
    private readonly chainKey: Buffer,
  ) {}

  /**
   * Appends an entry. With `trx`, the entry is written in that transaction and not group-committed: it
   * takes the chain head there (its row lock holds other appenders until the commit on PostgreSQL; on
   * SQLite the transaction is the only writer), so it commits or rolls back with the change it records.
   */
  append(event: AuditEvent, context: RequestContext | null, trx?: Transaction<Database>): Promise<number> {
    const row = {
      at: this.clock.now(),
      account_id: event.accountId ?? null,
      actor: event.actor ?? (event.accountId ? "account" : "anonymous"),
      ip: context?.ip ?? null,
      location: context?.location ?? null,
      user_agent: context?.userAgent ?? null,
      event: event.event,
      outcome: event.outcome,
      details: JSON.stringify(event.details ?? {}),
    };
    if (trx) return this.chain(trx, [row]).then((seqs) => seqs[0]!);
    return this.enqueue(row);
  }

  /** Adds work to every group-committed batch's transaction (see `BatchWriter`). */
  joinBatches(writer: BatchWriter): void {
    this.writers.push(writer);
  }

  /**
   * Resolves once a batch that began after this call has committed: whatever a batch writer holds
   * in memory by now is durable then. A caller that answers without an audit entry of its own (a
   * refusal counted only in aggregate) waits for this before answering.
   */
  commit(): Promise<void> {
    return this.enqueue(null).then(() => undefined);
  }

  private enqueue(row: Pending["row"]): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.queue.push({ row, resolve, reject });
      if (!this.writing) {
        this.writing = true;
        // The batch starts after the requests already read from the sockets have been decided, so
        // that everything decided in one turn of the event loop shares one transaction.
        setImmediate(() => void this.writeQueued());
      }
    });
  }

  /** Writes batches until the queue is empty; one writer per instance, so batches keep their order. */
  private async writeQueued(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        try {
          const seqs = await this.writeBatch(batch.flatMap((entry) => (entry.row ? [entry.row] : [])));
          let i = 0;
          for (const entry of batch) entry.resolve(entry.row ? seqs[i++]! : 0);
        } catch (error) {
          for (const entry of batch) entry.reject(error);
        }
      }
    } finally {
      this.writing = false;
    }
  }

  /** One transaction: the batch writers' work, then the entries chained. */
  private async writeBatch(rows: NonNullable<Pending["row"]>[]): Promise<number[]> {
    const undo: (() => void)[] = [];
    try {
      return await this.db.transaction().execute(async (trx) => {
        for (const writer of this.writers) {
          const restore = await writer(trx);
          if (restore) undo.push(restore);
        }
        return rows.length > 0 ? this.chain(trx, rows) : [];
      });
    } catch (error) {
      for (const restore of undo) restore();
      throw error;
    }
  }

  /** Links rows to the end of the chain inside the caller's transaction; returns their sequence numbers. */
  private async chain(trx: Transaction<Database>, rows: NonNullable<Pending["row"]>[]): Promise<number[]> {
    const head = await trx
      .updateTable("audit_head")
      .set((eb) => ({ last_seq: eb("last_seq", "+", rows.length) }))
      .where("id", "=", 1)
      .returning(["last_seq", "last_hash"])
      .executeTakeFirstOrThrow();
    let seq = head.last_seq - rows.length;
    let prevHash = head.last_hash;
    const chained = rows.map((row) => {
      seq += 1;
      const linked = { ...row, seq, prev_hash: prevHash };
      prevHash = entryHash(linked, this.chainKey);
      return { ...linked, hash: prevHash };
    });
    for (let i = 0; i < chained.length; i += MAX_BATCH) {
      await trx
        .insertInto("audit_log")
        .values(chained.slice(i, i + MAX_BATCH))
        .execute();
    }
    await trx.updateTable("audit_head").set({ last_hash: prevHash }).where("id", "=", 1).execute();
    return chained.map((row) => row.seq);
  }

  /**
   * Counts an event under `key` instead of appending it, so that a flood from one source costs one audit
   * entry a minute, not one per request. The first event of the key in a minute is kept whole (its
   * request, details and time); later ones only add to its count. Meant for refusals of requests nobody
   * authenticated (a foreign Origin, a wrong operator token, a gateway signature that does not verify):
   * the key names the source, e.g. `access.refused|anonymous|2001:db8:1::/64|forbidden`.
   *
   * Exactness and durability: each call is one atomic upsert, committed before it resolves, so the count
   * survives a crash; `flushAggregates` moves closed minutes into the chain (one entry each, with
   * `details.count`, `details.firstAt`, `details.lastAt`) and deletes them in the same transaction, so a
   * count is in the chain exactly once. Until it is flushed (within a minute or so of its minute ending,
   * on a timer and at shutdown) the count is visible only in `audit_aggregates`.
   */
  async appendAggregated(key: string, event: AuditEvent, context: RequestContext | null): Promise<void> {
    const now = this.clock.now();
    await this.db
      .insertInto("audit_aggregates")
      .values({
        key,
        window_start: now - (now % AGGREGATE_WINDOW_MS),
        count: 1,
        first_at: now,
        last_at: now,
        account_id: event.accountId ?? null,
        actor: event.actor ?? (event.accountId ? "account" : "anonymous"),
        ip: context?.ip ?? null,
        location: context?.location ?? null,
        user_agent: context?.userAgent ?? null,
        event: event.event,
        outcome: event.outcome,
        details: JSON.stringify(event.details ?? {}),
      })
      .onConflict((conflict) =>
        conflict.columns(["key", "window_start"]).doUpdateSet((eb) => ({
          count: eb("audit_aggregates.count", "+", 1),
          last_at: eb.ref("excluded.last_at"),
        })),
      )
      .execute();
  }

  /**
   * Writes every aggregate whose minute is over (or every one, with `all`, at shutdown) to the chain and
   * removes it, in one transaction; returns how many entries were written. Any instance may run it: the
   * DELETE … RETURNING hands each aggregate to exactly one flusher.
   */
  async flushAggregates(options: { all?: boolean } = {}): Promise<number> {
    const now = this.clock.now();
    const currentWindow = now - (now % AGGREGATE_WINDOW_MS);
    return this.db.transaction().execute(async (trx) => {
      let query = trx.deleteFrom("audit_aggregates");
      if (!options.all) query = query.where("window_start", "<", currentWindow);
      const closed = await query.returningAll().execute();
      if (closed.length === 0) return 0;
      closed.sort((a, b) => a.first_at - b.first_at || a.key.localeCompare(b.key));
      await this.chain(trx, closed.map(aggregateEntry));
      return closed.length;
    });
  }

  async list(filter: {
    accountId?: string;
    events?: string[];
    /** Of these events, only the entries that did not succeed. */
    onlyUnsuccessful?: string[];
    before?: number;
    limit: number;
  }): Promise<AuditEntry[]> {
    let query = this.db.selectFrom("audit_log").selectAll().orderBy("seq", "desc").limit(filter.limit);
    if (filter.accountId !== undefined) query = query.where("account_id", "=", filter.accountId);
    if (filter.events?.length) query = query.where("event", "in", filter.events);
    const unsuccessful = filter.onlyUnsuccessful;
    if (unsuccessful?.length)
      query = query.where((eb) =>
        eb.or([eb("event", "not in", unsuccessful), eb("outcome", "!=", "success")]),
      );
    if (filter.before !== undefined) query = query.where("seq", "<", filter.before);
    const rows = await query.execute();
    return rows.map((row) => ({
      seq: row.seq,
      at: new Date(row.at).toISOString(),
      accountId: row.account_id,
      actor: row.actor,
      ip: row.ip,
      location: row.location,
      userAgent: row.user_agent,
      event: row.event,
      outcome: row.outcome,
      details: JSON.parse(row.details) as Record<string, unknown>,
    }));
  }

  /**
   * Walks the whole chain: a changed field breaks that entry's hash, a deleted or reordered entry breaks
   * the sequence or the link to its predecessor, and a deleted tail no longer matches the head.
   */
  async verify(batchSize = 1000): Promise<VerifyResult> {
    let expectedSeq = 1;
    let previousHash = GENESIS;
    let checked = 0;
    for (;;) {
      const rows = await this.db
        .selectFrom("audit_log")
        .selectAll()
        .where("seq", ">=", expectedSeq)
        .orderBy("seq", "asc")
        .limit(batchSize)
        .execute();
      for (const row of rows) {
        const bad = (reason: string): VerifyResult => ({
          ok: false,
          checked,
          firstBadEntry: { seq: row.seq, reason },
        });
        if (row.seq !== expectedSeq) {
          return { ok: false, checked, firstBadEntry: { seq: expectedSeq, reason: "missing entry" } };
        }
        if (row.prev_hash !== previousHash) return bad("does not link to the previous entry");
        const { hash, ...body } = row;
        if (entryHash(body, this.chainKey) !== hash) return bad("contents changed");
        previousHash = hash;
        expectedSeq += 1;
        checked += 1;
      }
      if (rows.length < batchSize) break;
    }
    const head = await this.db
      .selectFrom("audit_head")
      .selectAll()
      .where("id", "=", 1)
      .executeTakeFirstOrThrow();
    if (head.last_seq !== checked || head.last_hash !== previousHash) {
      return {
        ok: false,
        checked,
        firstBadEntry: { seq: checked + 1, reason: "entries missing at the end" },
      };
    }
    return { ok: true, checked };
  }
}
