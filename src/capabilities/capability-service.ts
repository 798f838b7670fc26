import type { Account } from "../accounts/accounts.js";
import type { SecondFactorRepository } from "../factors/second-factors.js";
import type { AttemptGuard } from "../protection/attempt-guard.js";
import type { SecurityHolds } from "../security/holds.js";
import type { Clock } from "../support/clock.js";
import { accountFrozen, Problem } from "../support/problem.js";
import {
  type CapabilityInput,
  type CapabilityVector,
  evaluateCapabilities,
  type SecurityHold,
} from "./evaluate.js";
import type { ClientName, Policy, Product } from "./policy.js";
import type { SubsystemService, SubsystemSnapshot } from "./subsystems.js";

/** What the capability function needs of an account's security, beside the account row. */
export interface SecurityInputs {
  hasSecondFactor: boolean;
  restricted: boolean;
  holds: SecurityHold[];
}

/** Gathers what the capability function needs for one account and client, and answers gates with it. */
export class CapabilityService {
  /** Vectors by the full text of their input (see `inputKey`); bounded, it starts again empty when full. */
  private readonly vectors = new Map<string, CapabilityVector>();

  constructor(
    readonly policy: Policy,
    private readonly subsystems: SubsystemService,
    private readonly factors: SecondFactorRepository,
    private readonly guard: AttemptGuard,
    private readonly holds: SecurityHolds,
    private readonly clock: Clock,
  ) {}

  /**
   * The vector for an account. `known` is what an authenticated request already read with its session
   * (for display); gates that move money leave it out, so everything is read fresh.
   */
  async vector(
    account: Account,
    client: ClientName,
    known?: { hasSecondFactor: boolean; restricted: boolean; holds: SecurityHold[] },
  ): Promise<CapabilityVector> {
    return this.evaluate(await this.input(account, client, known));
  }

  /**
   * `vector` for what an authenticated request already read (`known`), when the subsystems' state is
   * cached and nothing needs a read; undefined otherwise (then ask `vector`). The same input and memo.
   */
  cachedVector(account: Account, client: ClientName, known: SecurityInputs): CapabilityVector | undefined {
    const snapshot = this.subsystems.cachedSnapshot();
    return snapshot ? this.evaluate(this.inputOf(account, client, known, snapshot)) : undefined;
  }

  /**
   * The vector is a pure function of its input: the same input, written out in full, gives the same
   * vector, so one evaluated for an equal input is served as is (frozen: every caller shares it).
   */
  private evaluate(input: CapabilityInput): CapabilityVector {
    const key = inputKey(input);
    const memo = this.vectors.get(key);
    if (memo) return memo;
    const vector = deepFreeze(evaluateCapabilities(input));
    if (this.vectors.size >= MAX_MEMO_ENTRIES) this.vectors.clear();
    this.vectors.set(key, vector);
    return vector;
  }

  /**
   * Only the products named, each exactly as `vector` has it (the same memo): the gateway asks for the
   * API and the one product a request uses on every decision.
   */
  async products<P extends Product>(
    account: Account,
    client: ClientName,
    wanted: readonly P[],
    known?: SecurityInputs,
  ): Promise<Pick<CapabilityVector, P>> {
    const vector = this.evaluate(await this.input(account, client, known));
    const picked = {} as Pick<CapabilityVector, P>;
    for (const product of wanted) picked[product] = vector[product];
    return picked;
  }

  private async input(
    account: Account,
    client: ClientName,
    known?: SecurityInputs,
  ): Promise<CapabilityInput> {
    // Without `known` (a gate that moves money) the subsystems are read now too, as other instances and
    // the CLI may have changed them within the second their rows are otherwise kept. The gateway passes
    // `known` from its cache, whose generations tell the subsystems to forget their rows on any change.
    const [snapshot, security] = known
      ? [await this.subsystems.snapshot(), known]
      : await Promise.all([this.subsystems.snapshot({ fresh: true }), this.securityInputs(account)]);
    return this.inputOf(account, client, security, snapshot);
  }

  private inputOf(
    account: Account,
    client: ClientName,
    security: SecurityInputs,
    snapshot: SubsystemSnapshot,
  ): CapabilityInput {
    return {
      account: {
        tier: account.tier,
        country: account.country,
        region: account.region,
        restricted: security.restricted,
        frozen: account.frozenAt !== null,
      },
      client,
      security: {
        hasSecondFactor: security.hasSecondFactor,
        holds: security.holds.filter((hold) => hold.until > this.clock.now()),
      },
      subsystems: snapshot,
      policy: this.policy,
    };
  }

  /** Holds are read as active now; `vector` drops any that have ended by the time it evaluates. */
  async securityInputs(account: Account): Promise<SecurityInputs> {
    const [hasSecondFactor, guard, holds] = await Promise.all([
      this.factors.hasSignInFactor(account.id),
      this.guard.status(account.id),
      this.holds.active(account.id),
    ]);
    return { hasSecondFactor, restricted: account.disabled || guard.permanent, holds };
  }

  /** A gate: 403 not_eligible with every reason unless the product is allowed right now. */
  async assertAllowed(
    account: Account,
    client: ClientName,
    product: Product,
  ): Promise<CapabilityVector[Product]> {
    const capability = (await this.vector(account, client))[product];
    if (!capability.allowed) {
      if (capability.reasons.some((reason) => reason.code === "account_frozen")) throw accountFrozen();
      throw new Problem(403, "not_eligible", capability.reasons[0]?.message ?? "Not available.", {
        product,
        reasons: capability.reasons,
      });
    }
    return capability;
  }
}

const MAX_MEMO_ENTRIES = 10_000;

/**
 * Everything the vector depends on, written out: the subsystems' states in force, the account's fields,
 * the client, the security inputs (holds already narrowed to those active now). Equal keys mean equal
 * inputs, so equal vectors. The policy is fixed for the life of the service.
 */
function inputKey(input: CapabilityInput): string {
  const { account, security } = input;
  let holds = "";
  for (const hold of security.holds) holds += `${hold.kind}@${hold.until},`;
  return `${statesId(input.subsystems)}|${account.tier}|${account.country}|${account.region ?? ""}|${account.restricted ? 1 : 0}|${account.frozen ? 1 : 0}|${input.client}|${security.hasSecondFactor ? 1 : 0}|${holds}`;
}

/**
 * A number for the subsystems' states, the same for every snapshot whose states read the same (the
 * service keeps one states object while nothing in force changes, so this is mostly one lookup).
 */
const idsByStates = new WeakMap<SubsystemSnapshot["states"], number>();
const idsByText = new Map<string, number>();
function statesId(snapshot: SubsystemSnapshot): number {
  let id = idsByStates.get(snapshot.states);
  if (id === undefined) {
    const text = JSON.stringify(snapshot.states);
    id = idsByText.get(text);
    if (id === undefined) {
      if (idsByText.size >= MAX_MEMO_ENTRIES) idsByText.clear();
      id = nextStatesId++;
      idsByText.set(text, id);
    }
    idsByStates.set(snapshot.states, id);
  }
  return id;
}
let nextStatesId = 1;

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

export type EligibilitySummary = { allowed: string[]; refused: Record<string, string[]> };
const summaries = new WeakMap<CapabilityVector, EligibilitySummary>();

/** The compact form for GET /v1/session: what is allowed, and why the rest is not (once per vector). */
export function eligibilitySummary(vector: CapabilityVector): EligibilitySummary {
  let summary = summaries.get(vector);
  if (summary === undefined) {
    summary = summarise(vector);
    if (Object.isFrozen(vector)) summaries.set(vector, summary);
  }
  return summary;
}

function summarise(vector: CapabilityVector): EligibilitySummary {
  const allowed: string[] = [];
  const refused: Record<string, string[]> = {};
  for (const [product, capability] of Object.entries(vector)) {
    if (capability.allowed) allowed.push(product);
    else refused[product] = capability.reasons.map((r) => r.code);
  }
  return { allowed, refused };
}
