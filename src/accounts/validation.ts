import countries from "i18n-iso-countries";
import { iso31662 } from "iso-3166";
import { countriesWithRegions } from "./jurisdictions.js";

export interface FieldError {
  field: string;
  message: string;
}

const USERNAME = /^[a-z0-9_.-]{3,32}$/;
// Deliberately plain: one @, no spaces, a dot in the domain. The verification email is the real test.
const EMAIL = /^[^\s@\p{Cc}]{1,64}@[^\s@\p{Cc}]+\.[^\s@\p{Cc}]{2,}$/u;
/**
 * Printable ASCII and the space (which EMAIL refuses with its own sentence). Anything else is a way to write
 * an address that looks like, or folds to, another one: the Kelvin sign "\u212A" lower-cases to "k",
 * fullwidth letters normalise to ASCII ones, zero-width and direction marks hide, combining marks and a
 * non-breaking space look like nothing or like a space. An international domain is given in its xn-- form.
 */
const PLAIN = /^[\x20-\x7E]*$/;

// The portal lists the same subdivisions by name (iso-3166 carries ISO 3166-2 as published).
const regions: Record<string, ReadonlySet<string>> = Object.fromEntries(
  countriesWithRegions.map((country) => [
    country,
    new Set(iso31662.filter((entry) => entry.parent === country).map((entry) => entry.code)),
  ]),
);

export function usernameError(username: string): FieldError | null {
  return USERNAME.test(username.toLowerCase())
    ? null
    : { field: "username", message: "Use 3 to 32 letters, digits, dots, dashes or underscores." };
}

/**
 * Every address a person gives (sign-up, email change, recovery) passes here after trimming; `emailKey` of
 * an address it accepts is its ASCII lower-case, so two accepted spellings share a key only when they differ
 * in the case of A–Z.
 */
export function emailError(email: string): FieldError | null {
  if (!PLAIN.test(email)) {
    return {
      field: "email",
      message: "Use an email address written in plain letters, digits and the usual symbols.",
    };
  }
  return email.length <= 254 && EMAIL.test(email)
    ? null
    : { field: "email", message: "Enter a valid email address." };
}

/** Country (ISO 3166-1 alpha-2) and, for the US and Canada, region (ISO 3166-2, e.g. US-NY). */
export function jurisdictionErrors(country: string, region: string | undefined | null): FieldError[] {
  const errors: FieldError[] = [];
  if (!/^[A-Z]{2}$/.test(country) || !countries.isValid(country)) {
    errors.push({ field: "country", message: "Choose your country from the list." });
    return errors;
  }
  const subdivisions = regions[country];
  const kind = country === "US" ? "state" : "province or territory";
  if (subdivisions) {
    if (!region) {
      errors.push({ field: "region", message: `Choose your ${kind} from the list.` });
    } else if (!subdivisions.has(region)) {
      errors.push({ field: "region", message: `Choose your ${kind} from the list: "${region}" is not one.` });
    }
  } else if (region) {
    errors.push({ field: "region", message: "A state or province is recorded only for the US and Canada." });
  }
  return errors;
}
