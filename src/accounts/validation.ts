import countries from "i18n-iso-countries";

export interface FieldError {
  field: string;
  message: string;
}

const USERNAME = /^[a-z0-9_.-]{3,32}$/;
// Deliberately plain: one @, no spaces, a dot in the domain. The verification email is the real test.
const EMAIL = /^[^\s@\p{Cc}]{1,64}@[^\s@\p{Cc}]+\.[^\s@\p{Cc}]{2,}$/u;

// ISO 3166-2 subdivisions of the two countries where SPEC §1 requires a region.
const regions: Record<string, readonly string[]> = {
  US: [
    "AL",
    "AK",
    "AZ",
    "AR",
    "CA",
    "CO",
    "CT",
    "DE",
    "FL",
    "GA",
    "HI",
    "ID",
    "IL",
    "IN",
    "IA",
    "KS",
    "KY",
    "LA",
    "ME",
    "MD",
    "MA",
    "MI",
    "MN",
    "MS",
    "MO",
    "MT",
    "NE",
    "NV",
    "NH",
    "NJ",
    "NM",
    "NY",
    "NC",
    "ND",
    "OH",
    "OK",
    "OR",
    "PA",
    "RI",
    "SC",
    "SD",
    "TN",
    "TX",
    "UT",
    "VT",
    "VA",
    "WA",
    "WV",
    "WI",
    "WY",
    "DC",
    "AS",
    "GU",
    "MP",
    "PR",
    "UM",
    "VI",
  ],
  CA: ["AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT"],
};

export function usernameError(username: string): FieldError | null {
  return USERNAME.test(username.toLowerCase())
    ? null
    : { field: "username", message: "3 to 32 characters: letters, digits, '_', '.' or '-'." };
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
    errors.push({ field: "country", message: "Use a two-letter ISO 3166-1 country code, e.g. DE or US." });
    return errors;
  }
  const subdivisions = regions[country];
  if (subdivisions) {
    if (!region) {
      errors.push({
        field: "region",
        message: `Accounts in ${country} need a region, e.g. ${country}-${subdivisions[0]}.`,
      });
    } else if (!region.startsWith(`${country}-`) || !subdivisions.includes(region.slice(3))) {
      errors.push({ field: "region", message: `"${region}" is not a region of ${country}.` });
    }
  } else if (region) {
    errors.push({ field: "region", message: "A region is only recorded for the US and Canada." });
  }
  return errors;
}
