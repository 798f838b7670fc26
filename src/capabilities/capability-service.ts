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
  evaluateProduct,
  type SecurityHold,
} from "./evaluate.js";
import type { ClientName, Policy, Product } from "./policy.js";
import type { SubsystemService } from "./subsystems.js";

/** What the capability function needs of an account's security, beside the account row. */
export interface SecurityInputs {
  hasSecondFactor: boolean;
  restricted: boolean;
  holds: SecurityHold[];
}

/** Gathers what the capability function needs for one account and client, and answers gates with it. */
export class CapabilityService {
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
    return evaluateCapabilities(await this.input(account, client, known));
  }

  /**
   * Only the products named, each exactly as `vector` would have it: the gateway asks for the API and
   * the one product a request uses on every decision, not for all of them.
   */
  async products<P extends Product>(
    account: Account,
    client: ClientName,
    wanted: readonly P[],
    known?: SecurityInputs,
  ): Promise<Pick<CapabilityVector, P>> {
    const input = await this.input(account, client, known);
    const picked = {} as Pick<CapabilityVector, P>;
    for (const product of wanted) picked[product] = evaluateProduct(product, input) as CapabilityVector[P];
    return picked;
  }

  private async input(
    account: Account,
    client: ClientName,
    known?: SecurityInputs,
  ): Promise<CapabilityInput> {
    const [snapshot, security] = known
      ? [await this.subsystems.snapshot(), known]
      : await Promise.all([this.subsystems.snapshot(), this.securityInputs(account)]);
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

/** The compact form for GET /v1/session: what is allowed, and why the rest is not. */
export function eligibilitySummary(vector: CapabilityVector) {
  const allowed: string[] = [];
  const refused: Record<string, string[]> = {};
  for (const [product, capability] of Object.entries(vector)) {
    if (capability.allowed) allowed.push(product);
    else refused[product] = capability.reasons.map((r) => r.code);
  }
  return { allowed, refused };
}
