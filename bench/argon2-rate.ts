/**
 * The raw Argon2id verification rate for `npm run bench`: keeps BENCH_CONCURRENCY `verify()` calls of
 * @node-rs/argon2 in flight (on libuv's thread pool, as the server does) against a hash made with the
 * server's parameters, and prints one JSON line with the rate and p99 latency of the measured window.
 */
import { performance } from "node:perf_hooks";
import { hash, verify } from "@node-rs/argon2";
import { defaultSettings } from "../src/config/settings.js";

const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 4);
const warmupMs = Number(process.env.BENCH_WARMUP_MS ?? 1000);
const durationMs = Number(process.env.BENCH_DURATION_MS ?? 8000);

// Same as Argon2idHasher in src/factors/password.ts; 2 is Argon2id in @node-rs/argon2's const enum.
const ARGON2ID = 2;
const { memoryCostKib, timeCost, parallelism } = defaultSettings.password;
const password = "violet tractor mango 42";
const passwordHash = await hash(password, {
  algorithm: ARGON2ID,
  memoryCost: memoryCostKib,
  timeCost,
  parallelism,
});

const start = performance.now();
const measureFrom = start + warmupMs;
const measureUntil = measureFrom + durationMs;
const latenciesMs: number[] = [];

/** One of `concurrency` loops: verify, record when it finished inside the measured window, repeat. */
async function loop(): Promise<void> {
  while (performance.now() < measureUntil) {
    const began = performance.now();
    const ok = await verify(passwordHash, password);
    if (!ok) throw new Error("verify() returned false for the correct password");
    const ended = performance.now();
    if (ended >= measureFrom && ended <= measureUntil) latenciesMs.push(ended - began);
  }
}

await Promise.all(Array.from({ length: concurrency }, () => loop()));

latenciesMs.sort((a, b) => a - b);
const p99Ms = latenciesMs[Math.min(latenciesMs.length - 1, Math.ceil(latenciesMs.length * 0.99) - 1)] ?? 0;
const result = {
  verifies: latenciesMs.length,
  seconds: durationMs / 1000,
  perSecond: latenciesMs.length / (durationMs / 1000),
  p99Ms,
  concurrency,
  parameters: { memoryCostKib, timeCost, parallelism },
};
process.stdout.write(`${JSON.stringify(result)}\n`);
