import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** Prometheus metrics (behaviour §14), one registry per app so tests and several apps in a process stay apart. */
export class Metrics {
  readonly registry = new Registry();
  readonly attempts = new Counter({
    name: "portcullis_auth_attempts_total",
    help: "Authentication attempts by factor and outcome",
    labelNames: ["factor", "outcome"] as const,
    registers: [this.registry],
  });
  readonly restrictions = new Counter({
    name: "portcullis_account_restrictions_total",
    help: "Account restrictions applied, by kind",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  readonly stepUps = new Counter({
    name: "portcullis_step_ups_total",
    help: "Step-up confirmations by outcome",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });
  readonly apiKeyDecisions = new Counter({
    name: "portcullis_api_key_decisions_total",
    help: "Signed API request decisions by outcome",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });
  readonly gatewayPassThrough = new Counter({
    name: "portcullis_gateway_public_calls_total",
    help: "Public market-data calls passed through to the venue, by dialect and method",
    labelNames: ["dialect", "method", "outcome"] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: "portcullis_http_request_duration_seconds",
    help: "HTTP request latency by route and status class",
    labelNames: ["method", "route", "status"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  /**
   * Each label set's child, made once and found by one string: `labels()` validates the labels and builds
   * two closures on every call. (The child's `observe` still joins the label values into prom-client's key.)
   */
  private readonly httpDurationByRoute = new Map<string, { observe(seconds: number): void }>();

  /** One answered HTTP request: its method, route pattern (or "unmatched"), status and latency. */
  observeHttp(method: string, route: string, statusCode: number, seconds: number): void {
    const status = `${Math.floor(statusCode / 100)}xx`;
    const key = `${method} ${status} ${route}`;
    let histogram = this.httpDurationByRoute.get(key);
    if (!histogram) {
      histogram = this.httpDuration.labels({ method, route, status });
      this.httpDurationByRoute.set(key, histogram);
    }
    histogram.observe(seconds);
  }

  private readonly decisionsByOutcome = new Map<string, { inc(): void }>();

  /** One signed-request decision: "allow", or the exchange's error it answered. */
  countDecision(outcome: string): void {
    let counter = this.decisionsByOutcome.get(outcome);
    if (!counter) {
      counter = this.apiKeyDecisions.labels({ outcome });
      this.decisionsByOutcome.set(outcome, counter);
    }
    counter.inc();
  }

  /**
   * SQLite: how many lockout subjects the gateway holds in memory, read when scraped. A flood of guesses
   * from rotating addresses shows here; it stays near one lockout window's worth of them.
   */
  watchLockoutSubjects(read: () => number): void {
    new Gauge({
      name: "portcullis_gateway_lockout_subjects",
      help: "Lockout subjects (sources and keys) the gateway holds in memory: counting failures, or locked",
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
  }
}
