import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { setImmediate as nextTurn } from "node:timers/promises";
import type SqliteDatabase from "better-sqlite3";
import { type Kysely, SqliteAdapter, sql, type Transaction } from "kysely";
import type { AuditAggregatesTable, AuditHeadTable, AuditLogTable, Database } from "../db/schema.js";
import { type Clock, iso } from "../support/clock.js";
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

/** A problem `verify` found: the chain, and where in it (a position, the entry's global seq) when it is one entry. */
export interface VerifyProblem {
  chain: number;
  /** The position in the chain (from 1); absent when the problem is the chain as a whole. */
  position?: number;
  /** The global seq of the entry, when the entry exists. */
  seq?: number;
  reason: string;
}

export interface VerifyResult {
  ok: boolean;
  /** Entries found intact, over every chain. */
  checked: number;
  /** Chains found: with a head, with entries, or announced in the root chain (the root chain included). */
  chains: number;
  /** The first problem: in the lowest-numbered bad chain, at its first bad position. */
  firstBadEntry?: VerifyProblem;
  /** The first problem of each bad chain, by chain. */
  badChains?: VerifyProblem[];
}

/** Chain 1: the chain the log had before there were several, and where every other chain is announced. */
export const ROOT_CHAIN = 1;

/** What an entry links to when it is the first of its chain. Chain 1 keeps the 64 zeros it began with. */
export function chainGenesis(chainId: number): string {
  if (chainId === ROOT_CHAIN) return "0".repeat(64);
  return createHash("sha256").update(`portcullis audit chain ${chainId}`).digest("hex");
}

/**
 * The hash of an entry covers the previous hash and every field, in a fixed order (behaviour §12): its
 * chain and position there, its global seq, and everything it records. It is an HMAC-SHA256 under a key
 * derived from the data key, which lives outside the database: someone who can write to the database but
 * does not hold the key cannot rewrite an entry, move it to another chain or place, and recompute the chain.
 */
export function entryHash(row: Omit<AuditLogTable, "hash">, chainKey: Buffer): string {
  return chainHmac(row.prev_hash, [row.chain_id, row.chain_seq, ...recordedFields(row)], chainKey);
}

/** The hash of an entry written when there was one chain (chain 1's first `legacy_entries`): no chain, no position. */
function legacyEntryHash(row: Omit<AuditLogTable, "hash">, chainKey: Buffer): string {
  return chainHmac(row.prev_hash, recordedFields(row), chainKey);
}

/** What an entry (or an aggregate) records about its event, in the order a hash covers it. */
function recordedEvent(row: Omit<AuditRow, "at">): unknown[] {
  return [
    row.account_id,
    row.actor,
    row.ip,
    row.location,
    row.user_agent,
    row.event,
    row.outcome,
    row.details,
  ];
}

/** The global seq and everything an entry records, in the order its hash covers them. */
function recordedFields(row: Omit<AuditLogTable, "hash">): unknown[] {
  return [row.seq, row.at, ...recordedEvent(row)];
}

function chainHmac(prevHash: string, fields: unknown[], chainKey: Buffer): string {
  return createHmac("sha256", chainKey)
    .update(`${prevHash}\n${JSON.stringify(fields)}`)
    .digest("hex");
}

/** An entry before it is linked: what it records, without its place in a chain. */
export type AuditRow = Omit<AuditLogTable, "seq" | "chain_id" | "chain_seq" | "prev_hash" | "hash">;

/** The entry for `event`, at `at`, from the request of `context`. */
export function auditRow(event: AuditEvent, context: RequestContext | null, at: number): AuditRow {
  return {
    at,
    account_id: event.accountId ?? null,
    actor: event.actor ?? (event.accountId ? "account" : "anonymous"),
    ip: context?.ip ?? null,
    location: context?.location ?? null,
    user_agent: context?.userAgent ?? null,
    event: event.event,
    outcome: event.outcome,
    details: JSON.stringify(event.details ?? {}),
  };
}

type AggregateValues = Omit<AuditAggregatesTable, "count" | "first_at" | "last_at" | "mac"> & {
  count: number;
  first_at: number;
  last_at: number;
};

/** The row counting `event` under `key` for its minute, as its first occurrence. */
function aggregateValues(
  key: string,
  windowStart: number,
  now: number,
  event: AuditEvent,
  context: RequestContext | null,
): AggregateValues {
  const { at: _at, ...recorded } = auditRow(event, context, now);
  return { key, window_start: windowStart, count: 1, first_at: now, last_at: now, ...recorded };
}

/** Adds occurrences to an aggregate still waiting for its batch. */
function countInto(pending: AggregateValues, count: number, firstAt: number, lastAt: number): void {
  pending.count += count;
  pending.first_at = Math.min(pending.first_at, firstAt);
  pending.last_at = Math.max(pending.last_at, lastAt);
}

/**
 * The code that shows an aggregate row was written by the server: an HMAC under the chain's key of every
 * field its count and last time leave unchanged. A row inserted by anyone else (write access to the
 * database is not the key) is chained as a refusal, never as the event it claims (`flushedEntry`).
 */
function aggregateMac(row: AggregateValues, chainKey: Buffer): string {
  return chainHmac("aggregate", [row.key, row.window_start, row.first_at, ...recordedEvent(row)], chainKey);
}

/**
 * What a root-chain announcement says: the chain it opens or closes, and for a closing its length and last
 * hash; null when the row does not say it in that form (a row written by anyone but the server).
 */
function announcement(
  text: string | null,
  closing: boolean,
): { chain: number; length: number; lastHash: string } | null {
  let details: unknown;
  try {
    details = JSON.parse(text ?? "");
  } catch {
    return null;
  }
  if (typeof details !== "object" || details === null) return null;
  const { chain, length, lastHash } = details as Record<string, unknown>;
  if (typeof chain !== "number" || !Number.isSafeInteger(chain) || chain <= ROOT_CHAIN) return null;
  if (!closing) return { chain, length: 0, lastHash: "" };
  if (typeof length !== "number" || !Number.isSafeInteger(length) || length < 0) return null;
  if (typeof lastHash !== "string") return null;
  return { chain, length, lastHash };
}

/** The chain entry of one aggregate: the first event of its minute, with the count and time span. */
function aggregateEntry(row: AuditAggregatesTable): AuditRow {
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
      firstAt: iso(row.first_at),
      lastAt: iso(row.last_at),
    }),
  };
}

/**
 * Rows linked at the positions `head` was advanced over, with their global seqs: each one's hash covers
 * its predecessor's. Within a chain `at` never goes back: an entry whose time is before its
 * predecessor's takes its predecessor's time.
 */
function linkRows(
  chain: number,
  head: Head,
  rows: AuditRow[],
  seqs: number[],
  chainKey: Buffer,
): AuditLogTable[] {
  let position = head.last_chain_seq - rows.length;
  let prevHash = head.last_hash;
  let at = head.last_at;
  return rows.map((row, i) => {
    position += 1;
    at = Math.max(at, row.at);
    // Written out field by field: a spread with fields after it took V8's slow path on every entry.
    const linked: AuditLogTable = {
      seq: seqs[i]!,
      chain_id: chain,
      chain_seq: position,
      at,
      account_id: row.account_id,
      actor: row.actor,
      ip: row.ip,
      location: row.location,
      user_agent: row.user_agent,
      event: row.event,
      outcome: row.outcome,
      details: row.details,
      prev_hash: prevHash,
      hash: "",
    };
    linked.hash = prevHash = entryHash(linked, chainKey);
    return linked;
  });
}

interface Pending {
  /** The entry to chain; null for a caller that only waits for the next commit (`commit()`). */
  row: AuditRow | null;
  resolve(seq: number): void;
  reject(error: unknown): void;
}

/**
 * Work written inside the transaction of the next group-committed batch, before its entries: state
 * decided in memory (the gateway's nonces and counters) becomes durable in the same commit as the
 * audit entries of the decisions that made it. It runs synchronously, with statements prepared on the
 * SQLite connection (the batch's transaction is open on it), and returns what to do once that commit
 * failed (put its changes back to be written by the next batch).
 */
export type BatchWriter = () => (() => void) | undefined;

/** The statements of a batch on SQLite, run synchronously on the connection inside its transaction. */
function chainStatements(connection: SqliteDatabase.Database) {
  return {
    connection,
    // IMMEDIATE: the write lock is taken at once (waiting for another process's writer within the
    // busy timeout), never upgraded halfway through the batch.
    begin: connection.prepare("begin immediate"),
    commit: connection.prepare("commit"),
    rollback: connection.prepare("rollback"),
    advanceOpen: connection.prepare(
      `update audit_head set last_chain_seq = last_chain_seq + ?
         where id = ? and opened_at = ? and closed_at is null
         returning last_chain_seq, last_hash, last_at`,
    ),
    lastSeq: connection.prepare("select max(seq) as seq from audit_log"),
    insert: connection.prepare(
      `insert into audit_log (seq, chain_id, chain_seq, at, account_id, actor, ip, location, user_agent,
         event, outcome, details, prev_hash, hash) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    setHead: connection.prepare("update audit_head set last_hash = ?, last_at = ? where id = ?"),
    // The whole head moved at once, only from the end this instance last committed (see `ownHead`).
    moveHead: connection.prepare(
      `update audit_head set last_chain_seq = ?, last_hash = ?, last_at = ?
         where id = ? and opened_at = ? and closed_at is null and last_chain_seq = ? and last_hash = ?`,
    ),
    aggregate: connection.prepare(
      `insert into audit_aggregates (key, window_start, count, first_at, last_at, account_id, actor, ip,
         location, user_agent, event, outcome, details, mac)
       values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       on conflict (key, window_start) do update set count = count + excluded.count,
         last_at = max(last_at, excluded.last_at)`,
    ),
  };
}

/** A chain's end as its head row keeps it, after the appender advanced its position. */
type Head = Pick<AuditHeadTable, "last_chain_seq" | "last_hash" | "last_at">;

/** The events of the root chain that open and close the other chains. */
const CHAIN_OPENED = "audit.chain_opened";
const CHAIN_CLOSED = "audit.chain_closed";

/** At most this many entries share one transaction (and one multi-row INSERT). */
const MAX_BATCH = 200;

/** SQLite: at most this many entries are added to the account index in one transaction (a few ms). */
const ACCOUNT_INDEX_CHUNK = 2000;

/** At most this many closed aggregates are chained in one transaction (`flushAggregates`). */
const FLUSH_STEP = 250;

/** Aggregated entries: one per key and minute. */
export const AGGREGATE_WINDOW_MS = 60_000;

/**
 * Append-only, hash-chained audit log, as one chain per running instance. An instance opens its chain with
 * its first append and from then on appends only there: each append locks that chain's head row and no
 * other, takes its global seq from a PostgreSQL sequence (`nextval` locks nothing; on SQLite the single
 * writer numbers entries), and writes its entries. Instances sharing a database therefore never wait for
 * each other to append. Opening a chain is the one write to something shared: the root chain (chain 1)
 * records it in an `audit.chain_opened` entry, in the same transaction that creates the chain's head, and
 * records its end in an `audit.chain_closed` entry when the instance stops (`close`). So deleting a whole
 * chain, or the tail of a closed one, is detectable: `verify` checks each chain against the root chain.
 *
 * Group commit: appends made in one turn of the event loop, or while a transaction is in flight, go
 * together in the next one (one head update, one INSERT for all of them), so under load the chain costs
 * a few statements per batch instead of per entry; batch writers (the gateway's in-memory state) write
 * in the same transaction. Each `append` still resolves only after its entry is committed: no caller
 * answers before its audit entry is durable.
 */
export class AuditLog {
  private queue: Pending[] = [];
  /** SQLite: aggregated events counted since the last batch, written in the next one, by minute and key. */
  private aggregates = new Map<string, AggregateValues>();
  private writing = false;
  private draining: Promise<void> = Promise.resolve();
  private readonly writers: BatchWriter[] = [];
  /** This instance's chain, once an append opened it (until that append commits, possibly not for good). */
  private own: { id: number; openedAt: number } | null = null;
  /**
   * SQLite: the end of this instance's chain as its last batch on the connection committed it. The next
   * batch links from it and moves the head in one UPDATE that applies only if the row still holds exactly
   * that end (else it reads the head as usual): one statement a batch instead of two. Forgotten whenever
   * the chain is written another way.
   */
  private ownHead: Head | null = null;
  private readonly sqlite: boolean;

  /** SQLite: the batch's statements prepared once on the connection under `db` (see the constructor). */
  private readonly statements: ReturnType<typeof chainStatements> | null;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    /** The HMAC key of the chain: `dataKey.derive("audit-chain")`. */
    private readonly chainKey: Buffer,
    /**
     * SQLite: the one connection under `db`. A batch's head update and INSERTs then run as prepared
     * statements on it (always inside a kysely transaction's callback, so inside that transaction)
     * instead of a multi-row INSERT built through the query builder, which costs more than SQLite
     * spends executing it.
     */
    connection?: SqliteDatabase.Database,
  ) {
    this.sqlite = db.getExecutor().adapter instanceof SqliteAdapter;
    this.statements = connection ? chainStatements(connection) : null;
  }

  /** The id of this instance's chain, or null before its first append (and after `close`). */
  get chainId(): number | null {
    return this.own?.id ?? null;
  }

  /**
   * Appends an entry. With `trx`, the entry is written in that transaction and not group-committed: it
   * takes this instance's chain head there (its row lock holds this instance's other appenders until the
   * commit on PostgreSQL, and no other instance's; on SQLite the transaction is the only writer), so it
   * commits or rolls back with the change it records.
   */
  append(event: AuditEvent, context: RequestContext | null, trx?: Transaction<Database>): Promise<number> {
    const row = auditRow(event, context, this.clock.now());
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

  private enqueue(row: AuditRow | null): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.queue.push({ row, resolve, reject });
      if (!this.writing) {
        this.writing = true;
        // The batch starts one turn of the event loop later than it could: the requests read from the
        // sockets meanwhile (those answered by the previous batch, sent again) are decided by then and
        // share its transaction. Over 10 connections that doubled the decisions a commit carries (5.5 →
        // 9.9), at the price of one more turn, microseconds, before the commit.
        this.draining = new Promise<void>((started) => setImmediate(() => setImmediate(started))).then(() =>
          this.writeQueued(),
        );
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
  private async writeBatch(rows: AuditRow[]): Promise<number[]> {
    const written = this.writeBatchOnConnection(rows);
    if (written) return written;
    const undo: (() => void)[] = [];
    try {
      return await this.db.transaction().execute(async (trx) => {
        this.runWriters(undo);
        return this.chain(trx, rows);
      });
    } catch (error) {
      for (const restore of undo) restore();
      throw error;
    }
  }

  /** The batch writers' work and the aggregated refusals counted since the last batch; `undo` puts them back. */
  private runWriters(undo: (() => void)[]): void {
    for (const writer of this.writers) {
      const restore = writer();
      if (restore) undo.push(restore);
    }
    const aggregates = this.aggregates;
    if (aggregates.size === 0 || !this.statements) return;
    this.aggregates = new Map();
    // Rolled back: counted again in the next batch, with whatever arrived meanwhile.
    undo.push(() => {
      for (const [id, values] of aggregates) {
        const pending = this.aggregates.get(id);
        if (pending) countInto(pending, values.count, values.first_at, values.last_at);
        else this.aggregates.set(id, values);
      }
    });
    // Bound by position: a third faster than by name (13 names looked up per row).
    for (const v of aggregates.values())
      this.statements.aggregate.run(
        v.key,
        v.window_start,
        v.count,
        v.first_at,
        v.last_at,
        v.account_id,
        v.actor,
        v.ip,
        v.location,
        v.user_agent,
        v.event,
        v.outcome,
        v.details,
        aggregateMac(v, this.chainKey),
      );
  }

  /**
   * SQLite, the usual case: the whole batch from BEGIN to COMMIT as prepared statements on the
   * connection, synchronously. Nothing else runs on the connection meanwhile (one thread, and no await
   * until the commit), and a transaction of kysely's would show as one already open on it. Null when
   * the batch takes the transaction through kysely instead: no prepared statements (PostgreSQL), a
   * transaction open on the connection, or no open chain of this instance to append to (opening one
   * is done in kysely's transaction, once).
   */
  private writeBatchOnConnection(rows: AuditRow[]): number[] | null {
    const statements = this.statements;
    const own = this.own;
    if (!statements || statements.connection.inTransaction || (rows.length > 0 && !own)) return null;
    const undo: (() => void)[] = [];
    statements.begin.run();
    try {
      this.runWriters(undo);
      let seqs: number[] = [];
      let end: Head | null = null;
      if (rows.length > 0 && own) {
        seqs = this.sqliteSeqs(statements, rows.length);
        const linked =
          this.linkFromKnownEnd(statements, own, rows, seqs) ??
          this.linkFromHead(statements, own, rows, seqs);
        if (!linked) {
          // The chain was closed meanwhile: the batch goes through kysely, which opens a new one.
          statements.rollback.run();
          for (const restore of undo) restore();
          return null;
        }
        this.insertRows(statements, linked);
        const last = linked.at(-1)!;
        end = { last_chain_seq: last.chain_seq, last_hash: last.hash, last_at: last.at };
      }
      statements.commit.run();
      if (end) this.ownHead = end;
      return seqs;
    } catch (error) {
      if (statements.connection.inTransaction) statements.rollback.run();
      for (const restore of undo) restore();
      throw error;
    }
  }

  /**
   * Links rows after the end this instance last committed and moves the head there, if the head row still
   * holds exactly that end (position and hash: nothing else wrote the chain since); null otherwise, with
   * nothing written.
   */
  private linkFromKnownEnd(
    statements: ReturnType<typeof chainStatements>,
    own: { id: number; openedAt: number },
    rows: AuditRow[],
    seqs: number[],
  ): AuditLogTable[] | null {
    const known = this.ownHead;
    if (!known) return null;
    const advanced = { ...known, last_chain_seq: known.last_chain_seq + rows.length };
    const linked = linkRows(own.id, advanced, rows, seqs, this.chainKey);
    const last = linked.at(-1)!;
    const moved = statements.moveHead.run(
      last.chain_seq,
      last.hash,
      last.at,
      own.id,
      own.openedAt,
      known.last_chain_seq,
      known.last_hash,
    );
    return moved.changes === 1 ? linked : null;
  }

  /**
   * Reads and advances the head of this instance's open chain, links rows after it and writes their last
   * hash there; null if the chain is closed.
   */
  private linkFromHead(
    statements: ReturnType<typeof chainStatements>,
    own: { id: number; openedAt: number },
    rows: AuditRow[],
    seqs: number[],
  ): AuditLogTable[] | null {
    this.ownHead = null;
    const head = statements.advanceOpen.get(rows.length, own.id, own.openedAt) as Head | undefined;
    if (!head) return null;
    const linked = linkRows(own.id, head, rows, seqs, this.chainKey);
    const last = linked.at(-1)!;
    statements.setHead.run(last.hash, last.at, own.id);
    return linked;
  }

  /**
   * Links rows to the end of this instance's chain inside the caller's transaction (opening the chain
   * there if this instance has none yet); returns their global seqs, in the rows' order. The entries
   * commit or roll back with the caller's transaction; a rolled-back opening is opened again by the next
   * append. Within a chain, `at` never goes back: an entry whose time is before its predecessor's (an
   * aggregate of a minute that is over, an append that waited for the head) takes its predecessor's time.
   */
  async chain(trx: Transaction<Database>, rows: AuditRow[]): Promise<number[]> {
    if (rows.length === 0) return [];
    this.ownHead = null;
    const own = this.own;
    const advanced = own ? await this.advance(trx, own.id, rows.length, own.openedAt) : undefined;
    const { chain, head } = advanced ? { chain: own!.id, head: advanced } : await this.open(trx, rows.length);
    const linked = await this.link(trx, chain, head, rows);
    return linked.map((row) => row.seq);
  }

  /** Moves a chain's head `count` positions on, locking it; undefined if there is no such open chain. */
  private async advance(
    trx: Transaction<Database>,
    chain: number,
    count: number,
    openedAt?: number,
  ): Promise<Head | undefined> {
    if (this.statements && openedAt !== undefined)
      return this.statements.advanceOpen.get(count, chain, openedAt) as Head | undefined;
    let query = trx
      .updateTable("audit_head")
      .set((eb) => ({ last_chain_seq: eb("last_chain_seq", "+", count) }))
      .where("id", "=", chain);
    if (openedAt !== undefined)
      query = query.where("opened_at", "=", openedAt).where("closed_at", "is", null);
    return query.returning(["last_chain_seq", "last_hash", "last_at"]).executeTakeFirst();
  }

  /** Takes the root chain's head row (a row lock on PostgreSQL, the write lock on SQLite) without changing it. */
  private async lockRoot(trx: Transaction<Database>): Promise<void> {
    await trx
      .updateTable("audit_head")
      .set((eb) => ({ last_chain_seq: eb.ref("last_chain_seq") }))
      .where("id", "=", ROOT_CHAIN)
      .execute();
  }

  /** Appends entries to the root chain (whose head the transaction may already hold). */
  private async appendToRoot(trx: Transaction<Database>, rows: AuditRow[]): Promise<AuditLogTable[]> {
    const head = await this.advance(trx, ROOT_CHAIN, rows.length);
    if (!head) throw new Error("the audit log's root chain has no head row");
    return this.link(trx, ROOT_CHAIN, head, rows);
  }

  /**
   * Opens this instance's chain inside `trx`, `count` positions already taken, and announces it in the
   * root chain. The root head is locked first, as closing does, so the two never wait for each other in a
   * circle. If another transaction of this instance opened the chain meanwhile and committed, that chain is
   * used.
   */
  private async open(trx: Transaction<Database>, count: number): Promise<{ chain: number; head: Head }> {
    await this.lockRoot(trx);
    const own = this.own;
    if (own) {
      const head = await this.advance(trx, own.id, count, own.openedAt);
      if (head) return { chain: own.id, head };
    }
    const id = this.sqlite
      ? ((
          await trx
            .selectFrom("audit_head")
            .select((eb) => eb.fn.max("id").as("id"))
            .executeTakeFirst()
        )?.id ?? ROOT_CHAIN) + 1
      : Number(
          (await sql<{ id: string | number }>`select nextval('audit_chain_ids') as id`.execute(trx)).rows[0]!
            .id,
        );
    const openedAt = this.clock.now();
    const [announcement] = await this.appendToRoot(trx, [
      auditRow(
        { event: CHAIN_OPENED, outcome: "info", actor: "system", details: { chain: id } },
        null,
        openedAt,
      ),
    ]);
    // The chain's entries start no earlier than its announcement.
    const head: Head = { last_chain_seq: count, last_hash: chainGenesis(id), last_at: announcement!.at };
    await trx
      .insertInto("audit_head")
      .values({ id, opened_at: openedAt, ...head, closed_at: null, legacy_entries: 0 })
      .execute();
    this.own = { id, openedAt };
    return { chain: id, head };
  }

  /** Writes rows at the positions `head` was advanced over, with global seqs; returns them as stored. */
  private async link(
    trx: Transaction<Database>,
    chain: number,
    head: Head,
    rows: AuditRow[],
  ): Promise<AuditLogTable[]> {
    const seqs = await this.takeSeqs(trx, rows.length);
    const chained = linkRows(chain, head, rows, seqs, this.chainKey);
    const last = chained.at(-1)!;
    if (this.statements) {
      this.insertRows(this.statements, chained);
      this.statements.setHead.run(last.hash, last.at, chain);
      return chained;
    }
    for (let i = 0; i < chained.length; i += MAX_BATCH) {
      await trx
        .insertInto("audit_log")
        .values(chained.slice(i, i + MAX_BATCH))
        .execute();
    }
    await trx
      .updateTable("audit_head")
      .set({ last_hash: last.hash, last_at: last.at })
      .where("id", "=", chain)
      .execute();
    return chained;
  }

  /** SQLite: the linked rows, as a prepared statement. */
  private insertRows(statements: ReturnType<typeof chainStatements>, chained: AuditLogTable[]): void {
    const { insert } = statements;
    for (const r of chained) {
      insert.run(
        r.seq,
        r.chain_id,
        r.chain_seq,
        r.at,
        r.account_id,
        r.actor,
        r.ip,
        r.location,
        r.user_agent,
        r.event,
        r.outcome,
        r.details,
        r.prev_hash,
        r.hash,
      );
    }
  }

  /** SQLite: `count` global seqs after the last, under the single writer's lock. */
  private sqliteSeqs(statements: ReturnType<typeof chainStatements>, count: number): number[] {
    const from = ((statements.lastSeq.get() as { seq: number | null }).seq ?? 0) + 1;
    return Array.from({ length: count }, (_, i) => from + i);
  }

  /**
   * `count` global seqs, increasing. PostgreSQL: from a sequence, which no transaction holds (numbers of
   * rolled-back appends are skipped). SQLite: the next ones after the last, under the single writer's lock.
   */
  private async takeSeqs(trx: Transaction<Database>, count: number): Promise<number[]> {
    if (this.statements) return this.sqliteSeqs(this.statements, count);
    if (this.sqlite) {
      const last = await trx
        .selectFrom("audit_log")
        .select((eb) => eb.fn.max("seq").as("seq"))
        .executeTakeFirst();
      const from = (last?.seq ?? 0) + 1;
      return Array.from({ length: count }, (_, i) => from + i);
    }
    const taken = await sql<{
      seq: string | number;
    }>`select nextval('audit_log_seq') as seq from generate_series(1, ${count})`.execute(trx);
    return taken.rows.map((row) => Number(row.seq)).sort((a, b) => a - b);
  }

  /**
   * SQLite: brings the account index (`audit_account_entries`) up to date with every entry appended since
   * the last call, by any process, in chunks of `ACCOUNT_INDEX_CHUNK` entries, one transaction each (the
   * event loop runs between them). An entry is numbered by the one writer in
   * commit order, so what lies at or below `through` is in the index for good. Called every second by a
   * serving instance, and before every listing by account, which therefore sees every entry committed
   * before it began. PostgreSQL: nothing to do.
   */
  async indexAccounts(): Promise<void> {
    if (!this.sqlite) return;
    for (;;) {
      const state = await this.db
        .selectFrom("audit_account_index")
        .select((eb) => [
          "through",
          eb
            .selectFrom("audit_log")
            .select((inner) => inner.fn.max("seq").as("last"))
            .as("last"),
        ])
        .executeTakeFirstOrThrow();
      if ((state.last ?? 0) <= state.through) return;
      // `through` is read inside the transaction, which holds SQLite's write lock from its BEGIN (see
      // `ImmediateSqliteDriver`): two indexers, in this process or another, never index the same entries.
      await this.db.transaction().execute(async (trx) => {
        await sql`insert into audit_account_entries (account_id, seq)
          select account_id, seq from audit_log
          where seq > (select through from audit_account_index)
            and seq <= (select through from audit_account_index) + ${ACCOUNT_INDEX_CHUNK}
            and account_id is not null`.execute(trx);
        await sql`update audit_account_index set through =
          min(through + ${ACCOUNT_INDEX_CHUNK}, (select coalesce(max(seq), 0) from audit_log))`.execute(trx);
      });
      // SQLite's statements run synchronously: without this turn, a long backlog would be indexed
      // without a single request served in between.
      await nextTurn();
    }
  }

  /**
   * Ends this instance's chain: waits for the appends queued, then marks the head closed and records the
   * chain's last position and hash in the root chain, so that entries deleted from its end later are
   * found. An append after this opens a new chain. Called when the instance stops.
   */
  async close(): Promise<void> {
    while (this.writing) await this.draining;
    const own = this.own;
    if (!own) return;
    this.ownHead = null;
    await this.db.transaction().execute(async (trx) => {
      await this.lockRoot(trx);
      const now = this.clock.now();
      const head = await trx
        .updateTable("audit_head")
        .set({ closed_at: now })
        .where("id", "=", own.id)
        .where("opened_at", "=", own.openedAt)
        .where("closed_at", "is", null)
        .returning(["last_chain_seq", "last_hash", "last_at"])
        .executeTakeFirst();
      if (!head) return;
      const details = { chain: own.id, length: head.last_chain_seq, lastHash: head.last_hash };
      await this.appendToRoot(trx, [
        auditRow(
          { event: CHAIN_CLOSED, outcome: "info", actor: "system", details },
          null,
          Math.max(now, head.last_at),
        ),
      ]);
    });
    if (this.own === own) this.own = null;
  }

  /**
   * Counts an event under `key` instead of appending it, so that a flood from one source costs one audit
   * entry a minute, not one per request. The first event of the key in a minute is kept whole (its
   * request, details and time); later ones only add to its count. Meant for refusals of requests nobody
   * authenticated (a foreign Origin, a wrong operator token, a gateway signature that does not verify):
   * the key names the source, e.g. `access.refused|anonymous|2001:db8:1::/64|forbidden`.
   *
   * Exactness and durability: each call is one atomic upsert, committed before it resolves together with
   * whatever the batch writers held when it was called (a refused request's spent nonce; on SQLite both
   * in the next group-committed batch), so the count survives a crash; `flushAggregates` moves closed
   * minutes into the flushing instance's chain (one entry each, with `details.count`, `details.firstAt`,
   * `details.lastAt`; the entry's own time is the first event's, or its predecessor's in the chain if that
   * is later) and deletes them in the same transaction, so a count is in the log exactly once. Until it is flushed (within a minute or so of its minute ending,
   * on a timer and at shutdown) the count is visible only in `audit_aggregates`.
   */
  async appendAggregated(key: string, event: AuditEvent, context: RequestContext | null): Promise<void> {
    const now = this.clock.now();
    const windowStart = now - (now % AGGREGATE_WINDOW_MS);
    if (this.statements) {
      // Counted in the next group-committed batch, with whatever the batch writers hold (a refused
      // request's spent nonce): one upsert per key and minute for a flood's worth of refusals, and it
      // resolves once durable. A key already waiting for the batch only counts one more.
      const id = `${windowStart}\n${key}`;
      const pending = this.aggregates.get(id);
      if (pending) countInto(pending, 1, now, now);
      else this.aggregates.set(id, aggregateValues(key, windowStart, now, event, context));
      await this.commit();
      return;
    }
    const values = aggregateValues(key, windowStart, now, event, context);
    if (this.writers.length > 0) await this.commit();
    await this.db
      .insertInto("audit_aggregates")
      .values({ ...values, mac: aggregateMac(values, this.chainKey) })
      .onConflict((conflict) =>
        conflict.columns(["key", "window_start"]).doUpdateSet((eb) => ({
          count: eb("audit_aggregates.count", "+", 1),
          last_at: eb.ref("excluded.last_at"),
        })),
      )
      .execute();
  }

  /**
   * Writes every aggregate whose minute is over (or every one, with `all`, at shutdown) to this instance's
   * chain and removes it; returns how many entries were written. Any instance may run it: the
   * DELETE … RETURNING hands each aggregate to exactly one flusher. It goes in steps of at most
   * `FLUSH_STEP` aggregates, oldest first occurrence first, each step its own transaction and the event
   * loop free between them: a flood from rotating addresses leaves one aggregate per address and minute,
   * and chaining a minute of them in one go held every request (and, on SQLite, the writer) for seconds.
   */
  async flushAggregates(options: { all?: boolean } = {}): Promise<number> {
    const now = this.clock.now();
    const before = options.all ? null : now - (now % AGGREGATE_WINDOW_MS);
    let written = 0;
    for (;;) {
      const step = await this.flushAggregateStep(before);
      written += step;
      if (step < FLUSH_STEP) return written;
      await nextTurn();
    }
  }

  /**
   * The entry an aggregate row becomes: what it counted, when its code shows the server wrote it; else an
   * `audit.aggregate_refused` entry naming what the row claimed, on no account (a row written straight
   * into the database is evidence of that, not of the event).
   */
  private flushedEntry(row: AuditAggregatesTable): AuditRow {
    const expected = Buffer.from(aggregateMac(row, this.chainKey));
    const sent = Buffer.from(row.mac ?? "");
    if (sent.length === expected.length && timingSafeEqual(sent, expected)) return aggregateEntry(row);
    const claimed = (value: string | null) => (value === null ? null : value.slice(0, 2000));
    return {
      at: row.first_at,
      account_id: null,
      actor: "system",
      ip: null,
      location: null,
      user_agent: null,
      event: "audit.aggregate_refused",
      outcome: "failure",
      details: JSON.stringify({
        reason: "its code does not match: it was not written by the server",
        key: claimed(row.key),
        windowStart: row.window_start,
        count: row.count,
        claimed: {
          accountId: claimed(row.account_id),
          actor: claimed(row.actor),
          ip: claimed(row.ip),
          event: claimed(row.event),
          outcome: claimed(row.outcome),
          details: claimed(row.details),
        },
      }),
    };
  }

  /** One step of `flushAggregates`: the oldest closed aggregates (those before `before`, or all). */
  private flushAggregateStep(before: number | null): Promise<number> {
    return this.db.transaction().execute(async (trx) => {
      let oldest = trx.selectFrom("audit_aggregates").select(["key", "window_start"]);
      // A row's first occurrence lies in its window, so a closed window's rows are those first seen
      // before `before` too: that condition lets the index on first_at find them in order.
      if (before !== null) oldest = oldest.where("first_at", "<", before).where("window_start", "<", before);
      const closed = await trx
        .deleteFrom("audit_aggregates")
        .where((eb) =>
          eb(
            eb.refTuple("key", "window_start"),
            "in",
            oldest.orderBy("first_at").limit(FLUSH_STEP).$asTuple("key", "window_start"),
          ),
        )
        .returningAll()
        .execute();
      if (closed.length === 0) return 0;
      closed.sort((a, b) => a.first_at - b.first_at || a.key.localeCompare(b.key));
      await this.chain(
        trx,
        closed.map((row) => this.flushedEntry(row)),
      );
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
    const accountId = filter.accountId;
    // SQLite keeps the account index beside the table, brought up to date here first; PostgreSQL
    // indexes the table itself (see the 0020 migration).
    const byAccountIndex = accountId !== undefined && this.sqlite;
    if (byAccountIndex) await this.indexAccounts();
    let query = byAccountIndex
      ? this.db
          .selectFrom("audit_account_entries")
          .innerJoin("audit_log", "audit_log.seq", "audit_account_entries.seq")
          .where("audit_account_entries.account_id", "=", accountId)
          .orderBy("audit_account_entries.seq", "desc")
      : this.db.selectFrom("audit_log").orderBy("audit_log.seq", "desc");
    if (accountId !== undefined && !byAccountIndex)
      query = query.where("audit_log.account_id", "=", accountId);
    if (filter.events?.length) query = query.where("audit_log.event", "in", filter.events);
    const unsuccessful = filter.onlyUnsuccessful;
    if (unsuccessful?.length)
      query = query.where((eb) =>
        eb.or([eb("audit_log.event", "not in", unsuccessful), eb("audit_log.outcome", "!=", "success")]),
      );
    if (filter.before !== undefined) query = query.where("audit_log.seq", "<", filter.before);
    const rows = await query.selectAll("audit_log").limit(filter.limit).execute();
    return rows.map((row) => ({
      seq: row.seq,
      at: iso(row.at),
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
   * Checks every chain and how they fit together. Each chain is walked from its genesis: positions without
   * a gap, each entry linked to the one before, each hash right (a changed field, or an entry moved to
   * another chain or place, breaks it), the global seq and the time never going back, the head row on the
   * last entry. Across chains: every chain with a head or entries is announced in the root chain, every
   * announced chain still has its head and entries and starts after its announcement, a chain closed in
   * the root chain ends exactly where its closing says, and no two entries share a global seq. Reports the
   * first problem of each bad chain.
   */
  async verify(batchSize = 1000): Promise<VerifyResult> {
    const heads = new Map(
      (await this.db.selectFrom("audit_head").selectAll().execute()).map((head) => [head.id, head]),
    );
    const withEntries = new Set(
      (await this.db.selectFrom("audit_log").select("chain_id").distinct().execute()).map(
        (row) => row.chain_id,
      ),
    );
    const problems = new Map<number, VerifyProblem>();
    const report = (problem: VerifyProblem) => {
      const known = problems.get(problem.chain);
      if (!known || (problem.position ?? 0) < (known.position ?? 0)) problems.set(problem.chain, problem);
    };

    // The root chain's announcements, read apart from its walk: a break in the root chain is reported
    // there, and the other chains are still checked against what it says.
    const opened = new Map<number, { seq: number; at: number }>();
    const closed = new Map<number, { seq: number; at: number; length: number; lastHash: string }>();
    // Up to the root chain's head as read first: chains opened while verifying are checked next time.
    const rootEnd = heads.get(ROOT_CHAIN)?.last_chain_seq ?? Number.MAX_SAFE_INTEGER;
    const announcements = (after: number, upTo: number) =>
      this.db
        .selectFrom("audit_log")
        .select(["seq", "chain_seq", "at", "event", "details"])
        .where("chain_id", "=", ROOT_CHAIN)
        .where("event", "in", [CHAIN_OPENED, CHAIN_CLOSED])
        .where("chain_seq", ">", after)
        .where("chain_seq", "<=", upTo)
        .orderBy("chain_seq", "asc")
        .execute();
    const marks = await announcements(0, rootEnd);
    for (const mark of marks) {
      const at = { chain: ROOT_CHAIN, position: mark.chain_seq, seq: mark.seq };
      const details = announcement(mark.details, mark.event === CHAIN_CLOSED);
      if (!details) {
        // A row the server never wrote (its hash will not match either): reported, never thrown.
        report({ ...at, reason: "announces a chain in a form that cannot be read" });
        continue;
      }
      const { chain } = details;
      if (mark.event === CHAIN_OPENED) {
        if (opened.has(chain)) report({ ...at, reason: `announces chain ${chain} a second time` });
        else opened.set(chain, { seq: mark.seq, at: mark.at });
      } else if (!opened.has(chain) || closed.has(chain)) {
        report({ ...at, reason: `closes chain ${chain}, which is not open` });
      } else {
        closed.set(chain, {
          seq: mark.seq,
          at: mark.at,
          length: details.length,
          lastHash: details.lastHash,
        });
      }
    }

    const chains = [...new Set([ROOT_CHAIN, ...heads.keys(), ...withEntries, ...opened.keys()])].sort(
      (a, b) => a - b,
    );
    let checked = 0;
    for (const chain of chains) {
      const head = heads.get(chain);
      if (chain !== ROOT_CHAIN && !opened.has(chain)) {
        // A chain with no head when verifying began, announced since: opened meanwhile, checked next time.
        const since = head ? [] : await announcements(rootEnd, Number.MAX_SAFE_INTEGER);
        const openedSince = since.some(
          (mark) => mark.event === CHAIN_OPENED && announcement(mark.details, false)?.chain === chain,
        );
        if (!openedSince) report({ chain, reason: "not announced in the root chain" });
        continue;
      }
      if (!head && !withEntries.has(chain)) {
        report({ chain, reason: "announced in the root chain, but its head and entries are gone" });
        continue;
      }
      const walked = await this.walk(chain, head, opened.get(chain), closed.get(chain), batchSize);
      checked += walked.checked;
      if (walked.problem) report(walked.problem);
    }

    const shared = await this.db
      .selectFrom("audit_log")
      .select("seq")
      .groupBy("seq")
      .having((eb) => eb.fn.countAll(), ">", 1)
      .limit(1)
      .executeTakeFirst();
    if (shared) {
      const entries = await this.db
        .selectFrom("audit_log")
        .select(["chain_id", "chain_seq"])
        .where("seq", "=", shared.seq)
        .execute();
      for (const entry of entries) {
        report({
          chain: entry.chain_id,
          position: entry.chain_seq,
          seq: shared.seq,
          reason: "shares its seq with another entry",
        });
      }
    }

    const badChains = [...problems.values()].sort((a, b) => a.chain - b.chain);
    if (badChains.length === 0) return { ok: true, checked, chains: chains.length };
    return { ok: false, checked, chains: chains.length, firstBadEntry: badChains[0], badChains };
  }

  /** Walks one chain from its genesis to its head; stops at its first problem. */
  private async walk(
    chain: number,
    head: AuditHeadTable | undefined,
    opening: { seq: number; at: number } | undefined,
    closing: { seq: number; at: number; length: number; lastHash: string } | undefined,
    batchSize: number,
  ): Promise<{ checked: number; problem?: VerifyProblem }> {
    const legacy = head?.legacy_entries ?? 0;
    let position = 0;
    let previousHash = chainGenesis(chain);
    let previous = opening;
    let checked = 0;
    const bad = (reason: string, at: number, seq?: number) => ({
      checked,
      problem: { chain, position: at, ...(seq === undefined ? {} : { seq }), reason },
    });
    // Up to the head as read when verifying began: a running instance appends meanwhile, and its entries
    // past that point are checked against the head as it is by then (below), not reported as tampering.
    const end = head?.last_chain_seq ?? Number.MAX_SAFE_INTEGER;
    for (;;) {
      const rows = await this.db
        .selectFrom("audit_log")
        .selectAll()
        .where("chain_id", "=", chain)
        .where("chain_seq", ">", position)
        .where("chain_seq", "<=", end)
        .orderBy("chain_seq", "asc")
        .limit(batchSize)
        .execute();
      for (const row of rows) {
        if (row.chain_seq !== position + 1) return bad("missing entry", position + 1);
        const fail = (reason: string) => bad(reason, row.chain_seq, row.seq);
        if (row.prev_hash !== previousHash) return fail("does not link to the previous entry");
        const { hash, ...body } = row;
        const expected =
          row.chain_seq <= legacy ? legacyEntryHash(body, this.chainKey) : entryHash(body, this.chainKey);
        if (expected !== hash) return fail("contents changed");
        if (previous && row.seq <= previous.seq) {
          return fail(
            position === 0
              ? "numbered before the chain's announcement in the root chain"
              : "numbered before the previous entry",
          );
        }
        if (previous && row.chain_seq > legacy && row.at < previous.at) {
          return fail(
            position === 0
              ? "dated before the chain's announcement in the root chain"
              : "dated before the previous entry",
          );
        }
        previousHash = hash;
        previous = { seq: row.seq, at: row.at };
        position = row.chain_seq;
        checked += 1;
      }
      if (rows.length < batchSize) break;
    }
    if (!head) return bad("its head row is missing", position + 1);
    if (head.last_chain_seq > position) return bad("entries missing at the end", position + 1);
    if (head.last_hash !== previousHash) return bad("the head does not match the last entry", position);
    // Entries past the head as read: appended since (the head, moved in the same transaction, now covers
    // them), or a head moved back (it still does not).
    const beyond = await this.db
      .selectFrom("audit_log")
      .select((eb) => eb.fn.max("chain_seq").as("last"))
      .where("chain_id", "=", chain)
      .where("chain_seq", ">", end)
      .executeTakeFirst();
    if (beyond?.last != null) {
      const now = await this.db
        .selectFrom("audit_head")
        .select("last_chain_seq")
        .where("id", "=", chain)
        .executeTakeFirst();
      if (!now || now.last_chain_seq < Number(beyond.last)) return bad("entries after the head", end + 1);
      if (closing) return bad("entries after it was closed", closing.length + 1);
    }
    if (closing) {
      if (closing.length > position)
        return bad("entries missing at the end, where it was closed", position + 1);
      if (closing.length < position || closing.lastHash !== previousHash) {
        return bad("entries after it was closed", closing.length + 1);
      }
      if (previous && closing.seq <= previous.seq) return bad("entries after it was closed", position);
    } else if (head.closed_at !== null && chain !== ROOT_CHAIN) {
      return bad("marked closed, but its closing is not in the root chain", position);
    }
    return { checked };
  }
}
