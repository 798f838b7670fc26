import type { FastifyInstance, FastifyRequest } from "fastify";
import { Problem } from "../support/problem.js";

const NUL = "Remove the NUL character from this field.";
/** Where a request's input is, in the order it is walked. */
const parts = ["params", "query", "body"] as const;

/**
 * Why this exists: schemas check shapes, but two kinds of value pass them and then break storage.
 * A NUL character is valid JSON yet PostgreSQL text cannot hold it; and Ajv's coercion turns
 * "Infinity" or "1e400" into numbers that satisfy `integer` and even `maximum`. Every route's params,
 * query and body are walked once, after validation, and such values are refused as bad input.
 *
 * The first bad value under `value`, with its path from `value` in reverse (built only when one is
 * found: this walk runs on every request, and nearly every request has none). Nesting is bounded by the
 * body limit; past 64 levels a body is refused as a whole.
 */
function badValueAt(value: unknown, depth: number): { path: string[]; message: string } | null {
  if (typeof value === "string") {
    return value.includes("\u0000") ? { path: [], message: NUL } : null;
  }
  if (typeof value === "number") {
    return !Number.isFinite(value) || (Number.isInteger(value) && !Number.isSafeInteger(value))
      ? { path: [], message: "Enter a number of ordinary size." }
      : null;
  }
  if (!value || typeof value !== "object") return null;
  if (depth > 64) return { path: [], message: "Send fewer levels of nesting." };
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) {
      const bad = badValueAt(value[index], depth + 1);
      if (bad) {
        bad.path.push(String(index));
        return bad;
      }
    }
    return null;
  }
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue;
    if (key.includes("\u0000")) return { path: [], message: NUL };
    const bad = badValueAt((value as Record<string, unknown>)[key], depth + 1);
    if (bad) {
      bad.path.push(key);
      return bad;
    }
  }
  return null;
}

export function registerInputHygiene(app: FastifyInstance): void {
  app.addHook("preHandler", (request: FastifyRequest, _reply, done) => {
    for (const part of parts) {
      const bad = badValueAt(request[part], 0);
      if (!bad) continue;
      // The field by its path inside the part; the part itself when the whole of it is bad.
      const field = bad.path.length > 0 ? bad.path.reverse().join(".") : part;
      done(
        new Problem(400, "invalid_request", "Some fields need attention.", {
          details: [{ field, message: bad.message }],
        }),
      );
      return;
    }
    done();
  });
}
