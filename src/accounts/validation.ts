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

export function emailError(email: string): FieldError | null {
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
