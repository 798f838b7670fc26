import { createHmac, hash } from "node:crypto";

/**
 * A small client for the Kraken-compatible private API that Portcullis guards, for the venue's own tools
 * and tests. It signs exactly as Kraken's clients do (behaviour §11), so anything it can do, ccxt or a bot
 * written against Kraken can do unchanged.
 */

/** Kraken's API-Sign: base64(HMAC-SHA512(base64-decoded secret, path + SHA-256(nonce + body))). */
export function krakenSignature(secretBase64: string, path: string, nonce: string, body: string): string {
  return krakenSignatureBytes(Buffer.from(secretBase64, "base64"), path, nonce, body).toString("base64");
}

/** The same signature as bytes, from the decoded secret: what a verifier holding the key compares. */
export function krakenSignatureBytes(hmacKey: Buffer, path: string, nonce: string, body: string): Buffer {
  const digest = hash("sha256", nonce + body, "buffer");
  return createHmac("sha512", hmacKey).update(path).update(digest).digest();
}

export interface KrakenAnswer<T = Record<string, unknown>> {
  error: string[];
  result: T;
}

export interface KrakenClientOptions {
  /** Where the gateway listens, e.g. https://api.venue.example */
  baseUrl: string;
  key: string;
  secret: string;
  /** The key's second factor, when it has one: a static password or a function giving a TOTP code. */
  otp?: string | (() => string);
  /** Nonces: increasing per key. Defaults to microseconds since the epoch, never repeating in-process. */
  nonce?: () => bigint;
  /** Send JSON instead of form-encoding (Kraken accepts both; the signature covers the body as sent). */
  json?: boolean;
  fetch?: typeof fetch;
}

export type Params = Record<string, string | number | boolean | undefined>;

/** The last nonce any client of this process made: two clients of one key never send the same one. */
let lastNonce = 0n;

/** Microseconds since the epoch, strictly increasing across every client of this process. */
export function microsecondNonces(): () => bigint {
  return () => {
    const now = BigInt(Date.now()) * 1000n;
    lastNonce = now > lastNonce ? now : lastNonce + 1n;
    return lastNonce;
  };
}

export class KrakenClient {
  private readonly nextNonce: () => bigint;
  private readonly fetcher: typeof fetch;

  constructor(private readonly options: KrakenClientOptions) {
    this.nextNonce = options.nonce ?? microsecondNonces();
    this.fetcher = options.fetch ?? fetch;
  }

  /** The request a call would send: path, headers and body, signed. Useful to replay or to check. */
  sign(method: string, params: Params = {}, nonce: bigint = this.nextNonce()) {
    const path = `/0/private/${method}`;
    const otp = typeof this.options.otp === "function" ? this.options.otp() : this.options.otp;
    const fields: Record<string, string> = { nonce: nonce.toString() };
    if (otp !== undefined) fields.otp = otp;
    for (const [name, value] of Object.entries(params)) if (value !== undefined) fields[name] = String(value);
    const body = this.options.json ? JSON.stringify(fields) : new URLSearchParams(fields).toString();
    return {
      path,
      body,
      headers: {
        "content-type": this.options.json ? "application/json" : "application/x-www-form-urlencoded",
        "API-Key": this.options.key,
        "API-Sign": krakenSignature(this.options.secret, path, fields.nonce!, body),
      },
    };
  }

  /** Calls a private method; resolves with Kraken's answer (errors included) and the HTTP status. */
  async private<T = Record<string, unknown>>(
    method: string,
    params: Params = {},
  ): Promise<KrakenAnswer<T> & { status: number }> {
    const request = this.sign(method, params);
    const response = await this.fetcher(new URL(request.path, this.options.baseUrl), {
      method: "POST",
      headers: request.headers,
      body: request.body,
    });
    return { ...((await response.json()) as KrakenAnswer<T>), status: response.status };
  }

  async public<T = Record<string, unknown>>(method: string): Promise<KrakenAnswer<T>> {
    const response = await this.fetcher(new URL(`/0/public/${method}`, this.options.baseUrl));
    return (await response.json()) as KrakenAnswer<T>;
  }
}
