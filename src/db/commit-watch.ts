import fs from "node:fs";
import type SqliteDatabase from "better-sqlite3";

/** The two copies of the wal-index header at the start of the `-shm` file (https://sqlite.org/walformat.html §2.1). */
const HEADER_BYTES = 96;

/**
 * Whether any connection to an SQLite database in WAL mode (this process's, another instance's, the
 * CLI's) has committed since the last look, for the price of one small read and no lock.
 *
 * Every commit rewrites the wal-index header in the database's `-shm` file: its change counter, the last
 * valid frame and the checksums. SQLite keeps two copies of it and its readers compare them; here both
 * are read with one `pread` and compared with what was seen last. The answer errs one way only: a header
 * caught mid-write, or rewritten by a checkpoint that reset the log, reads as a change. So a caller that
 * looks here first and reads the database when told of a change sees every commit that completed before
 * its look. Without a `-shm` file (an in-memory database) every look is a change.
 */
export class CommitWatch {
  private readonly fd: number | null;
  private readonly seen = Buffer.alloc(HEADER_BYTES);
  private readonly current = Buffer.alloc(HEADER_BYTES);
  private looked = false;

  constructor(sqlite: SqliteDatabase.Database) {
    let fd: number | null = null;
    if (!sqlite.memory && sqlite.pragma("journal_mode", { simple: true }) === "wal") {
      try {
        fd = fs.openSync(`${sqlite.name}-shm`, "r");
      } catch {
        fd = null;
      }
    }
    this.fd = fd;
  }

  /** True when a commit may have happened since the last call (always, the first time). */
  changed(): boolean {
    if (this.fd === null) return true;
    const read = fs.readSync(this.fd, this.current, 0, HEADER_BYTES, 0);
    if (this.looked && read === HEADER_BYTES && this.current.equals(this.seen)) return false;
    this.current.copy(this.seen);
    this.looked = true;
    return true;
  }

  /** The next call answers true: what was read meanwhile may not last (a transaction still open). */
  forget(): void {
    this.looked = false;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
  }
}
