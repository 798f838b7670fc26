import type { Account } from "../accounts/accounts.js";
import type { SecondFactorRepository } from "../factors/second-factors.js";
import type { AttemptGuard } from "../protection/attempt-guard.js";
import { Problem } from "../support/problem.js";
import { type CapabilityVector, evaluateCapabilities } from "./evaluate.js";
import type { ClientName, Policy, Product } from "./policy.js";
import type { SubsystemService } from "./subsystems.js";

/** Gathers what the capability function needs for one account and client, and answers gates with it. */
export class CapabilityService {
  constructor(
    readonly policy: Policy,
    private readonly subsystems: SubsystemService,
    private readonly factors: SecondFactorRepository,
    private readonly guard: AttemptGuard,
  ) {}

  async vector(account: Account, client: ClientName): Promise<CapabilityVector> {
    const [snapshot, hasSecondFactor, guard] = await Promise.all([
      this.subsystems.snapshot(),
      this.factors.hasSignInFactor(account.id),
      this.guard.status(account.id),
    ]);
    return evaluateCapabilities({
      account: {
        tier: account.tier,
        country: account.country,
        region: account.region,
        restricted: account.disabled || guard.permanent,
      },
      client,
      security: { hasSecondFactor, holds: [] },
      subsystems: snapshot,
      policy: this.policy,
    });
  }

  /** A gate: 403 not_eligible with every reason unless the product is allowed right now. */
  async assertAllowed(
    account: Account,
    client: ClientName,
    product: Product,
  ): Promise<CapabilityVector[Product]> {
    const capability = (await this.vector(account, client))[product];
    if (!capability.allowed) {
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
