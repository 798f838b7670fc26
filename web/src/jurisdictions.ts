import { iso31661 } from "iso-3166/1.js";
import type { CodeOption } from "./code-picker.js";

export { countriesWithRegions } from "../../src/accounts/jurisdictions.js";

const displayNames = new Intl.DisplayNames(["en"], { type: "region" });

/** ISO 3166-1 countries by their everyday English name, the ISO name kept as an alias for search. */
export const countryOptions: CodeOption[] = iso31661
  .filter((country) => country.state === "assigned")
  .map((country) => {
    const name = displayNames.of(country.alpha2) ?? country.name;
    return { code: country.alpha2, name, aliases: name === country.name ? [] : [country.name] };
  })
  .sort((a, b) => a.name.localeCompare(b.name, "en"));

/** ISO 3166-2 subdivisions of one country, loaded when first needed (the full list is large). */
export async function regionOptions(country: string): Promise<CodeOption[]> {
  const { iso31662 } = await import("iso-3166/2.js");
  return iso31662
    .filter((subdivision) => subdivision.parent === country)
    .map((subdivision) => ({ code: subdivision.code, name: subdivision.name }))
    .sort((a, b) => a.name.localeCompare(b.name, "en"));
}
