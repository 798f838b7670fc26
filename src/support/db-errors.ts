/** True when an insert or update broke a unique constraint (PostgreSQL 23505, SQLite SQLITE_CONSTRAINT_UNIQUE). */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "23505" || code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY";
}

const unavailableCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
  // Transient conflicts: the same request succeeds when sent again, so it is told to retry, not that the
  // server failed.
  "40001", // serialization_failure
  "40P01", // deadlock_detected
  "55P03", // lock_not_available
  "SQLITE_BUSY",
  "SQLITE_IOERR",
  "SQLITE_CANTOPEN",
  "SQLITE_FULL",
  "NR_CLOSED",
]);

/**
 * SQLite reports extended result codes (SQLITE_BUSY_SNAPSHOT, SQLITE_IOERR_WRITE, …): each belongs to the
 * family its first two words name. Other codes are their own family.
 */
function primaryCode(code: string): string {
  if (!code.startsWith("SQLITE_")) return code;
  const second = code.indexOf("_", "SQLITE_".length);
  return second === -1 ? code : code.slice(0, second);
}

/**
 * True when an error means a dependency could not be reached or could not answer, as opposed to a bug.
 * Such requests are answered 503 (fail closed), never let through.
 */
export function isDependencyFailure(error: unknown): boolean {
  const err = error as { code?: unknown; message?: unknown; name?: unknown } | null;
  if (!err) return false;
  if (
    typeof err.code === "string" &&
    (unavailableCodes.has(primaryCode(err.code)) || err.code.startsWith("08"))
  )
    return true;
  const message = typeof err.message === "string" ? err.message : "";
  return (
    /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|driver has already been destroyed|Connection is closed|ERR_REDIS|MaxRetriesPerRequest/i.test(
      message,
    ) || err.name === "MaxRetriesPerRequestError"
  );
}
