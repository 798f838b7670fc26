import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/** How often the background connection checkpoints the write-ahead log. */
const INTERVAL_MS = 100;

/**
 * Pages in the write-ahead log before the serving connection checkpoints it itself: only when the
 * background checkpoints cannot keep up (they never finish while a reader holds old pages, say) does a
 * commit pay for one. 64 MiB of 4 KiB pages.
 */
export const SERVING_AUTOCHECKPOINT_PAGES = 16_384;

// Plain JavaScript run as a worker thread (no file of its own, so the same code runs from src/ under a
// TypeScript loader and from dist/): a second connection to the same file that runs a PASSIVE checkpoint
// on a timer. PASSIVE copies what it can without waiting for or blocking the writer; SQLite's own locks
// keep the two connections correct.
const workerCode = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma("busy_timeout = 1000");
const checkpoint = db.prepare("pragma wal_checkpoint(passive)");
const timer = setInterval(() => {
  try {
    checkpoint.get();
  } catch {
    // Busy or the file gone: the serving connection's own checkpoint is the fallback.
  }
}, workerData.intervalMs);
parentPort.on("message", () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Checkpoints an SQLite database's write-ahead log from a worker thread. A checkpoint copies the log's
 * pages into the database file and syncs both; done by the connection that commits, as SQLite does by
 * default, it lands on one commit in every few hundred of the gateway's batches and holds every answer
 * waiting on that batch. Here the serving connection checkpoints only past `SERVING_AUTOCHECKPOINT_PAGES`.
 */
export class BackgroundCheckpointer {
  private readonly worker: Worker;
  private readonly exited: Promise<void>;

  constructor(file: string) {
    this.worker = new Worker(workerCode, {
      eval: true,
      workerData: {
        driver: createRequire(import.meta.url).resolve("better-sqlite3"),
        file,
        intervalMs: INTERVAL_MS,
      },
    });
    // It never keeps the process alive, and a failure to start leaves the default checkpointing.
    this.worker.unref();
    this.exited = new Promise((resolve) => {
      this.worker.once("exit", () => resolve());
      this.worker.once("error", () => resolve());
    });
  }

  /** Stops the timer and closes the worker's connection. */
  async stop(): Promise<void> {
    this.worker.postMessage("stop");
    const timeout = setTimeout(() => void this.worker.terminate(), 2000);
    await this.exited;
    clearTimeout(timeout);
  }
}
