/**
 * The countries whose accounts record a region (ISO 3166-2), because the eligibility rules differ by
 * state or province there. The server validates against it and the portal asks for a region from it.
 */
export const countriesWithRegions: readonly string[] = ["US", "CA"];
