/**
 * Better Auth, for the side-by-side comparison of `npm run bench` (see bench/better-auth.ts): email and
 * password accounts on SQLite, served by node:http. Started in its own process by the bench.
 *
 *   BENCH_PORT    the port to listen on (127.0.0.1)
 *   BENCH_DB      the SQLite file; its tables are created at start when missing
 *   BENCH_SECRET  the secret that signs session cookies (at least 32 characters)
 *
 * It differs from Better Auth's defaults only where the comparison needs it: passwords are hashed with
 * Argon2id at Portcullis's parameters instead of scrypt, so both sides pay the same cost per password
 * check; the database uses Portcullis's SQLite pragmas; the rate limiter is off, as the load comes from
 * one address. Prints one line, `better-auth ready <url>`, once it listens.
 */
import http from "node:http";
import { hash, verify } from "@node-rs/argon2";
import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import Database from "better-sqlite3";
import { defaultSettings } from "../src/config/settings.js";

const port = Number(process.env.BENCH_PORT);
if (!Number.isInteger(port) || port <= 0) throw new Error("BENCH_PORT must be a port number");
const file = process.env.BENCH_DB;
if (!file) throw new Error("BENCH_DB must name the SQLite file");
const secret = process.env.BENCH_SECRET ?? "";
if (secret.length < 32) throw new Error("BENCH_SECRET must have at least 32 characters");

// The pragmas of src/db/database.ts. Better Auth wraps this very connection in Kysely's SqliteDialect,
// so they hold for every query it makes.
const sqlite = new Database(file);
sqlite.pragma("journal_mode = WAL");
sqlite.pragma("busy_timeout = 5000");
sqlite.pragma("foreign_keys = ON");
sqlite.pragma("synchronous = NORMAL");

// As Argon2idHasher in src/factors/password.ts: NFKC first, then Argon2id (2 in @node-rs/argon2's const
// enum, which isolated modules cannot read) with the same memory, time and parallelism.
const ARGON2ID = 2;
const { memoryCostKib, timeCost, parallelism } = defaultSettings.password;

const auth = betterAuth({
  database: sqlite,
  secret,
  baseURL: `http://127.0.0.1:${port}`,
  emailAndPassword: {
    enabled: true,
    password: {
      hash: (password) =>
        hash(password.normalize("NFKC"), {
          algorithm: ARGON2ID,
          memoryCost: memoryCostKib,
          timeCost,
          parallelism,
        }),
      verify: async ({ hash: passwordHash, password }) => {
        try {
          return await verify(passwordHash, password.normalize("NFKC"));
        } catch {
          return false; // not an Argon2 hash: a wrong password, as for Portcullis
        }
      },
    },
  },
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
});

// Better Auth's programmatic migrations: creates user, session, account and verification when missing,
// and does nothing on a restart over the same file.
const { runMigrations } = await getMigrations(auth.options);
await runMigrations();

const server = http.createServer(toNodeHandler(auth));
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`better-auth ready http://127.0.0.1:${port}\n`);
});

const stop = () => {
  server.close(() => {
    sqlite.close();
    process.exit(0);
  });
  // Keep-alive connections from the load generator would hold close() open.
  server.closeAllConnections();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
