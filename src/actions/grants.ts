import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { CompactSign, calculateJwkThumbprint, exportJWK, type JWK } from "jose";
import type { DataKey } from "../crypto/data-key.js";

export const GRANT_TTL_MS = 60_000;

export interface GrantClaims {
  /** The grant's unique id. */
  jti: string;
  /** The account that confirmed. */
  sub: string;
  /** The action: its id, type and the digest of its canonical parameters. */
  act: { id: string; type: string; digest: string };
  iat: number;
  exp: number;
  iss: string;
}

/** PKCS#8 prefix of an Ed25519 private key; the 32-byte seed follows. */
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/**
 * Grants (behaviour §8): compact JWS, EdDSA, proving the owner confirmed exactly this action; verifiable offline
 * with /.well-known/jwks.json. The Ed25519 key is derived from the data key, so every instance signs with
 * the same key and publishes the same JWKS with no key to distribute.
 */
export class GrantSigner {
  private readonly privateKey: KeyObject;
  private readonly publicKey: KeyObject;
  private jwk: Promise<JWK & { kid: string }> | null = null;

  constructor(
    dataKey: DataKey,
    private readonly issuer: string,
  ) {
    const seed = dataKey.derive("grant-signing-key");
    this.privateKey = createPrivateKey({
      key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]),
      format: "der",
      type: "pkcs8",
    });
    this.publicKey = createPublicKey(this.privateKey);
  }

  async sign(claims: Omit<GrantClaims, "iss">): Promise<string> {
    const { kid } = await this.publicJwk();
    return new CompactSign(new TextEncoder().encode(JSON.stringify({ ...claims, iss: this.issuer })))
      .setProtectedHeader({ alg: "EdDSA", kid, typ: "portcullis-grant+jws" })
      .sign(this.privateKey);
  }

  async jwks(): Promise<{ keys: JWK[] }> {
    return { keys: [await this.publicJwk()] };
  }

  private publicJwk(): Promise<JWK & { kid: string }> {
    this.jwk ??= (async () => {
      const jwk = await exportJWK(this.publicKey);
      return { ...jwk, kid: await calculateJwkThumbprint(jwk), alg: "EdDSA", use: "sig" };
    })();
    return this.jwk;
  }
}
