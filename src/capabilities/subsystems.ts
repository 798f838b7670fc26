import type { Kysely, Selectable } from "kysely";
import { newId } from "../crypto/tokens.js";
import type { Database, MaintenanceWindowsTable, SubsystemsTable } from "../db/schema.js";
import type { Clock } from "../support/clock.js";
import { iso } from "../support/clock.js";
import { notFound, Problem } from "../support/problem.js";
import { type SubsystemId, subsystemIds } from "./policy.js";

export const statuses = [
  "operational",
  "degraded",
  "maintenance",
  "outage",
  "cancel_only",
  "post_only",
] as const;
export type SubsystemStatus = (typeof statuses)[number];
/** Kraken's trading-engine states exist only for the engines. */
const engineOnly: SubsystemStatus[] = ["cancel_only", "post_only"];
const engines: SubsystemId[] = ["spot_engine", "futures_engine"];

export interface MaintenanceWindow {
  id: string;
  subsystem: SubsystemId;
  state: SubsystemStatus;
  startsAt: number;
  endsAt: number;
  message: string;
}

export interface SubsystemState {
  id: SubsystemId;
  /** The status in force now: an open window's state, else the status operators set. */
  status: SubsystemStatus;
  message: string | null;
  /** When the open window that sets the status ends. */
  until: number | null;
}

/** What every gate sees of the venue's subsystems at one moment. */
export interface SubsystemSnapshot {
  at: number;
  states: Record<SubsystemId, SubsystemState>;
  /** Windows open now or still to come, soonest first. */
  windows: MaintenanceWindow[];
}

export interface ScheduleInput {
  subsystem: string;
  state: string;
  startsAt: number;
  endsAt: number;
  message: string;
}

function checkStatus(subsystem: string, status: string): asserts status is SubsystemStatus {
  if (!(subsystemIds as readonly string[]).includes(subsystem))
    throw notFound(`The subsystem "${subsystem}"`);
  if (!(statuses as readonly string[]).includes(status)) {
    throw new Problem(400, "invalid_request", `status must be one of ${statuses.join(", ")}.`, {
      details: [{ field: "status", message: `The status must be one of: ${statuses.join(", ")}.` }],
    });
  }
  if (engineOnly.includes(status as SubsystemStatus) && !engines.includes(subsystem as SubsystemId)) {
    throw new Problem(400, "invalid_request", `${status} applies to the trading engines only.`, {
      details: [{ field: "status", message: "A status is set only for spot_engine and futures_engine." }],
    });
  }
}

function describe(w: Selectable<MaintenanceWindowsTable>): MaintenanceWindow {
  return {
    id: w.id,
    subsystem: w.subsystem as SubsystemId,
    state: w.state as SubsystemStatus,
    startsAt: w.starts_at,
    endsAt: w.ends_at,
    message: w.message,
  };
}

/**
 * Subsystem status and maintenance windows (behaviour §10). A window takes effect and ends by itself: the
 * status in force is computed from the clock at each read, never switched by a job.
 */
export class SubsystemService {
  /** The rows as last read; the state in force is always computed from them with the current time. */
  private cached: {
    readAt: number;
    rows: Selectable<SubsystemsTable>[];
    windows: Selectable<MaintenanceWindowsTable>[];
  } | null = null;
  /** The last state computed, from which rows and for which millisecond (read-only to every caller). */
  private computed: {
    at: number;
    from: NonNullable<SubsystemService["cached"]>;
    /** The ids of the windows open at `at`. */
    open: string;
    snapshot: SubsystemSnapshot;
  } | null = null;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    /** How long rows read may be reused (changes made here clear them at once; other instances' within this). */
    private readonly cacheTtlMs = 1000,
  ) {}

  /**
   * Forgets the rows read, so the next snapshot reads them: the gateway calls it when the database's
   * subsystems generation says another process changed them.
   */
  forget(): void {
    this.cached = null;
    this.computed = null;
  }

  /** `fresh` reads the rows now, for gates that move money. */
  async snapshot(options: { fresh?: boolean } = {}): Promise<SubsystemSnapshot> {
    const now = this.clock.now();
    if (options.fresh || !this.rowsReusableAt(now)) {
      const [rows, windows] = await Promise.all([
        this.db.selectFrom("subsystems").selectAll().execute(),
        this.db
          .selectFrom("maintenance_windows")
          .selectAll()
          .where("cancelled_at", "is", null)
          .where("ends_at", ">", now)
          .orderBy("starts_at")
          .execute(),
      ]);
      this.cached = { readAt: now, rows, windows };
    }
    return this.snapshotAt(now);
  }

  /** The snapshot `snapshot()` would answer now when it needs no read; undefined when it would read. */
  cachedSnapshot(): SubsystemSnapshot | undefined {
    const now = this.clock.now();
    return this.rowsReusableAt(now) ? this.snapshotAt(now) : undefined;
  }

  private rowsReusableAt(now: number): boolean {
    return this.cached !== null && now - this.cached.readAt < this.cacheTtlMs && now >= this.cached.readAt;
  }

  /** The state in force at `now` from the rows read last. */
  private snapshotAt(now: number): SubsystemSnapshot {
    if (!this.cached) throw new Error("no subsystem rows read yet");
    // The state in force depends on the rows and the millisecond only: requests within one share it.
    const computed = this.computed;
    if (computed && computed.at === now && computed.from === this.cached) return computed.snapshot;
    const windows = this.cached.windows.filter((w) => w.ends_at > now);
    let open = "";
    for (const window of windows) if (window.starts_at <= now) open += `${window.id},`;
    // The states in force change only with the rows or the windows open: until then the same object
    // stands (the capability memo recognises it), in a snapshot of this millisecond.
    const states =
      computed && computed.from === this.cached && computed.open === open
        ? computed.snapshot.states
        : this.statesIn(this.cached.rows, windows, now);
    const snapshot = { at: now, states, windows: windows.map(describe) };
    this.computed = { at: now, from: this.cached, open, snapshot };
    return snapshot;
  }

  private statesIn(
    rows: Selectable<SubsystemsTable>[],
    windows: Selectable<MaintenanceWindowsTable>[],
    now: number,
  ): Record<SubsystemId, SubsystemState> {
    const states = {} as Record<SubsystemId, SubsystemState>;
    for (const row of rows) {
      const id = row.id as SubsystemId;
      states[id] = { id, status: row.status as SubsystemStatus, message: row.message, until: null };
    }
    for (const window of windows.map(describe)) {
      const state = states[window.subsystem];
      if (!state || window.startsAt > now) continue;
      // An open window overrides the set status; of several, the one ending last says until when.
      if (state.until === null || window.endsAt > state.until) {
        states[window.subsystem] = {
          ...state,
          status: window.state,
          message: window.message,
          until: window.endsAt,
        };
      }
    }
    return states;
  }

  async setStatus(subsystem: string, status: string, message: string | null): Promise<void> {
    checkStatus(subsystem, status);
    await this.db
      .updateTable("subsystems")
      .set({ status, message, updated_at: this.clock.now() })
      .where("id", "=", subsystem)
      .execute();
    this.cached = null;
  }

  async schedule(input: ScheduleInput): Promise<MaintenanceWindow> {
    checkStatus(input.subsystem, input.state);
    if (input.state === "operational") {
      throw new Problem(
        400,
        "invalid_request",
        "A maintenance window needs a state other than operational.",
        {
          details: [{ field: "state", message: "The state must not be operational." }],
        },
      );
    }
    if (!(input.endsAt > input.startsAt)) {
      throw new Problem(400, "invalid_request", "endsAt must be after startsAt.", {
        details: [{ field: "endsAt", message: "The end must come after the start." }],
      });
    }
    if (input.endsAt <= this.clock.now()) {
      throw new Problem(400, "invalid_request", "This window would already be over.", {
        details: [{ field: "endsAt", message: "The end must be in the future." }],
      });
    }
    const row = {
      id: newId(),
      subsystem: input.subsystem,
      state: input.state,
      starts_at: input.startsAt,
      ends_at: input.endsAt,
      message: input.message,
      created_at: this.clock.now(),
    };
    await this.db.insertInto("maintenance_windows").values(row).execute();
    this.cached = null;
    return describe({ ...row, cancelled_at: null });
  }

  async cancel(windowId: string): Promise<boolean> {
    const row = await this.db
      .updateTable("maintenance_windows")
      .set({ cancelled_at: this.clock.now() })
      .where("id", "=", windowId)
      .where("cancelled_at", "is", null)
      .returning("id")
      .executeTakeFirst();
    this.cached = null;
    return row !== undefined;
  }
}

export function describeWindow(window: MaintenanceWindow) {
  return {
    id: window.id,
    subsystem: window.subsystem,
    state: window.state,
    startsAt: iso(window.startsAt),
    endsAt: iso(window.endsAt),
    message: window.message,
  };
}
