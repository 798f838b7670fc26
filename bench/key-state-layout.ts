/**
 * What writing the gateway's per-key state costs a group-committed batch on SQLite, by layout:
 * `npx tsx bench/key-state-layout.ts`. Each batch is what a batch of eight allowed decisions over eight
 * different keys writes (BEGIN IMMEDIATE, the chain head advanced, eight audit entries, the head's hash,
 * COMMIT) plus the keys' state, either as an update of each key's `api_keys` row ("rows", as before the
 * state journal) or as one row appended to `api_key_state_journal` ("journal"), or not at all ("none", the
 * floor). The schema is the server's own (every migration run on a fresh file); 800 keys with sealed
 * secrets as the server writes them; WAL, synchronous=NORMAL, as the server opens it. A passive checkpoint
 * every 1,000 batches is counted in (the server runs it on a worker thread).
 */
import { randomBytes, randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { migrateToLatest, openStorage } from "../src/db/database.js";

const KEYS = 800;
const PER_BATCH = 8;
const BATCHES = 5_000;
const pad = (n: number) => String(n).padStart(20, "0");

async function measure(layout: "rows" | "journal" | "none"): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-layout-"));
  const storage = openStorage(`sqlite:${path.join(dir, "portcullis.db")}`);
  try {
    await migrateToLatest(storage);
    const db = storage.sqlite!;
    const accountId = randomUUID();
    db.prepare(
      "insert into accounts (id, email, email_key, username, password_hash, country, created_at) values (?, ?, ?, ?, 'x', 'GB', 0)",
    ).run(accountId, "bench@example.com", "bench@example.com", "bench");
    const insertKey = db.prepare(
      `insert into api_keys (id, account_id, name, key, secret_sealed, dialect, permissions, ip_allowlist,
         nonce_window, last_nonce, created_at) values (?, ?, ?, ?, ?, 'kraken', ?, '[]', 0, ?, 0)`,
    );
    const ids: string[] = [];
    for (let i = 0; i < KEYS; i += 1) {
      const id = randomUUID();
      ids.push(id);
      insertKey.run(
        id,
        accountId,
        `key ${i}`,
        randomBytes(42).toString("base64"),
        randomBytes(120).toString("base64"),
        '["funds_query","trades_query"]',
        pad(0),
      );
    }
    db.prepare(
      "insert into audit_head (id, last_chain_seq, last_hash, last_at, opened_at) values (2, 0, '', 0, 0)",
    ).run();
    const statements = {
      begin: db.prepare("begin immediate"),
      commit: db.prepare("commit"),
      head: db.prepare(
        "update audit_head set last_chain_seq = last_chain_seq + ? where id = 2 returning last_chain_seq, last_hash, last_at",
      ),
      entry: db.prepare(
        `insert into audit_log (seq, chain_id, chain_seq, at, account_id, actor, ip, location, user_agent, event,
           outcome, details, prev_hash, hash) values (?, 2, ?, ?, ?, ?, '198.18.0.1', null, 'bench', 'api_key.allowed',
           'success', ?, ?, ?)`,
      ),
      setHead: db.prepare("update audit_head set last_hash = ?, last_at = ? where id = 2"),
      row: db.prepare(
        "update api_keys set last_nonce = ?, nonce_floor = ?, otp_last_step = ?, rate_level = ?, rate_at = ?, last_used_at = ? where id = ?",
      ),
      journal: db.prepare("insert into api_key_state_journal (states) values (?)"),
      checkpoint: db.prepare("pragma wal_checkpoint(passive)"),
    };
    let seq = 0;
    let nonce = 1;
    const batch = () => {
      const keys = Array.from({ length: PER_BATCH }, () => ids[Math.floor(Math.random() * KEYS)]!);
      const now = Date.now();
      statements.begin.run();
      if (layout === "rows")
        for (const id of keys) statements.row.run(pad(nonce), pad(nonce++), null, 3.5, now, now, id);
      if (layout === "journal")
        statements.journal.run(
          JSON.stringify(keys.map((id) => [id, pad(nonce), pad(nonce++), null, 3.5, now, now])),
        );
      statements.head.get(PER_BATCH);
      for (const id of keys) {
        seq += 1;
        const details = `{"keyId":"${id}","method":"Balance"}`;
        statements.entry.run(
          seq,
          seq,
          now,
          accountId,
          `api_key:${id}`,
          details,
          "a".repeat(64),
          "b".repeat(64),
        );
      }
      statements.setHead.run("c".repeat(64), now);
      statements.commit.run();
    };
    for (let i = 0; i < 2_000; i += 1) batch();
    db.pragma("wal_checkpoint(truncate)");
    const started = process.hrtime.bigint();
    for (let i = 1; i <= BATCHES; i += 1) {
      batch();
      if (i % 1_000 === 0) statements.checkpoint.run();
    }
    return Number(process.hrtime.bigint() - started) / BATCHES / 1000;
  } finally {
    await storage.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const results: Record<string, number[]> = { rows: [], journal: [], none: [] };
for (let round = 0; round < 3; round += 1)
  for (const layout of ["rows", "journal", "none"] as const) results[layout]!.push(await measure(layout));
for (const [layout, times] of Object.entries(results))
  console.log(
    `${layout.padEnd(8)} ${times.map((t) => t.toFixed(1)).join(" / ")} µs a batch of ${PER_BATCH} decisions`,
  );
