import type { FastifyInstance, FastifyRequest } from "fastify";
import { Problem } from "../support/problem.js";

/**
 * Why this exists: schemas check shapes, but two kinds of value pass them and then break storage.
 * A NUL character is valid JSON yet PostgreSQL text cannot hold it; and Ajv's coercion turns
 * "Infinity" or "1e400" into numbers that satisfy `integer` and even `maximum`. Every route's params,
 * query and body are walked once, after validation, and such values are refused as bad input.
 */
function findBadValue(root: unknown, rootName: string): { field: string; message: string } | null {
  const stack: { value: unknown; path: string }[] = [{ value: root, path: rootName }];
  while (stack.length > 0) {
    const { value, path } = stack.pop()!;
    if (typeof value === "string") {
      if (value.includes("\u0000"))
        return { field: path, message: "Remove the NUL character from this field." };
    } else if (typeof value === "number") {
      if (!Number.isFinite(value) || (Number.isInteger(value) && !Number.isSafeInteger(value))) {
        return { field: path, message: "Enter a number of ordinary size." };
      }
    } else if (Array.isArray(value)) {
      for (const [index, item] of value.entries()) stack.push({ value: item, path: `${path}.${index}` });
    } else if (value && typeof value === "object") {
      for (const [key, item] of Object.entries(value)) {
        if (key.includes("\u0000"))
          return { field: path, message: "Remove the NUL character from this field." };
        stack.push({ value: item, path: `${path}.${key}` });
      }
    }
  }
  return null;
}

export function registerInputHygiene(app: FastifyInstance): void {
  app.addHook("preHandler", (request: FastifyRequest, _reply, done) => {
    for (const [name, value] of [
      ["params", request.params],
      ["query", request.query],
      ["body", request.body],
    ] as const) {
      const bad = findBadValue(value, name);
      if (bad) {
        const field = bad.field.replace(/^(params|query|body)\.?/, "") || bad.field;
        done(
          new Problem(400, "invalid_request", "Some fields need attention.", {
            details: [{ field, message: bad.message }],
          }),
        );
        return;
      }
    }
    done();
  });
}
