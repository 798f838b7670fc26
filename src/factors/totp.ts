import { HOTP, Secret, TOTP } from "otpauth";
import QRCode from "qrcode";

/**
 * TOTP per RFC 6238 with the parameters every authenticator app understands: SHA-1, 6 digits, 30 s
 * (behaviour §6). The same functions take other parameters so the RFC's test vectors run through them.
 */
export interface TotpParameters {
  algorithm: "SHA1" | "SHA256" | "SHA512";
  digits: number;
  periodSeconds: number;
}

export const authenticatorParameters: TotpParameters = { algorithm: "SHA1", digits: 6, periodSeconds: 30 };

/** Steps either side of now that a code is accepted for (RFC 6238 §5.2: at most one of network delay). */
export const acceptWindow = 1;
/** Past steps that are recognised as "right code, clock behind" and answered with a hint. */
export const driftWindow = 10;

/** 160 bits from the CSPRNG (RFC 4226 R6 recommends 160). */
export function newTotpSecret(): Uint8Array {
  return new Uint8Array(new Secret({ size: 20 }).buffer);
}

export function toBase32(secret: Uint8Array): string {
  return new Secret({ buffer: toArrayBuffer(secret) }).base32;
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

function secretOf(secret: Uint8Array): Secret {
  return new Secret({ buffer: toArrayBuffer(secret) });
}

export function timeStep(timestampMs: number, parameters: TotpParameters = authenticatorParameters): number {
  return Math.floor(timestampMs / 1000 / parameters.periodSeconds);
}

export function hotpCode(
  secret: Uint8Array,
  counter: number,
  parameters: Omit<TotpParameters, "periodSeconds">,
): string {
  return HOTP.generate({
    secret: secretOf(secret),
    algorithm: parameters.algorithm,
    digits: parameters.digits,
    counter,
  });
}

export function totpCode(
  secret: Uint8Array,
  timestampMs: number,
  parameters: TotpParameters = authenticatorParameters,
): string {
  return hotpCode(secret, timeStep(timestampMs, parameters), parameters);
}

export type TotpMatch = { step: number } | { driftSeconds: number } | null;

/**
 * Which time step a code belongs to: within the accept window, the step (to be claimed once); within
 * the drift window in the past, how far behind the device's clock is; otherwise null. Comparison is
 * constant-time.
 */
export function matchTotp(
  secret: Uint8Array,
  code: string,
  timestampMs: number,
  parameters: TotpParameters = authenticatorParameters,
): TotpMatch {
  if (!new RegExp(`^\\d{${parameters.digits}}$`).test(code)) return null;
  const options = {
    token: code,
    secret: secretOf(secret),
    algorithm: parameters.algorithm,
    digits: parameters.digits,
    period: parameters.periodSeconds,
    timestamp: timestampMs,
  };
  const delta = TOTP.validate({ ...options, window: acceptWindow });
  if (delta !== null) return { step: timeStep(timestampMs, parameters) + delta };
  // Only a code of a past step earns the hint. A code of a future step becomes valid when its time
  // comes, so flagging it would tell someone guessing codes which guess to send again in a few minutes;
  // it is answered exactly like a wrong code. (A device whose clock runs ahead gets no hint: the price.)
  const drift = TOTP.validate({ ...options, window: driftWindow });
  if (drift !== null && drift < 0) return { driftSeconds: drift * parameters.periodSeconds };
  return null;
}

export function otpauthUri(secret: Uint8Array, issuer: string, accountName: string): string {
  return new TOTP({
    issuer,
    label: accountName,
    secret: secretOf(secret),
    algorithm: authenticatorParameters.algorithm,
    digits: authenticatorParameters.digits,
    period: authenticatorParameters.periodSeconds,
  }).toString();
}

export function qrSvg(text: string): Promise<string> {
  return QRCode.toString(text, { type: "svg", errorCorrectionLevel: "M", margin: 2 });
}

export function driftHint(driftSeconds: number): string {
  const direction = driftSeconds > 0 ? "ahead" : "behind";
  return `Your device clock appears to be ${Math.abs(driftSeconds)} seconds ${direction}. Set it to update automatically and try again.`;
}
