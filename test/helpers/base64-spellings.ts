const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/**
 * The same bytes as a (padded, standard) base64 signature, spelled the other ways Node's lenient decoder
 * also reads them: without padding or with more, with a character it skips (a space, `!`, a tab), with
 * the unused bits of the last character set, and (when the signature has + or /) in the URL-safe alphabet.
 */
export function otherSpellings(signature: string): string[] {
  const data = signature.replace(/=+$/, "");
  const last = data.length - 1;
  const flipped = BASE64[BASE64.indexOf(data[last]!) ^ 1]!;
  const urlSafe = signature.replace(/\+/g, "-").replace(/\//g, "_");
  return [
    data,
    `${signature}=`,
    `${signature.slice(0, 10)} ${signature.slice(10)}`,
    `${signature.slice(0, 10)}!${signature.slice(10)}`,
    `${signature.slice(0, 10)}\t${signature.slice(10)}`,
    `${data.slice(0, last)}${flipped}${signature.slice(last + 1)}`,
    ...(urlSafe === signature ? [] : [urlSafe]),
  ];
}
