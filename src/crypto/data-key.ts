import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { ConfigError } from "../config/env.js";

/**
 * Secrets that must be used again (TOTP seeds, API secrets) are sealed with AES-256-GCM under the data key.
 * The sealed form names the key by id, so a rotated key can still open what the previous one sealed.
 */
export class DataKey {
  readonly id: string;
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error("data key must be 32 bytes");
    this.id = createHash("sha256").update(key).digest("hex").slice(0, 8);
  }

  seal(plaintext: string | Buffer, associatedData = ""): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(associatedData, "utf8"));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return [
      "v1",
      this.id,
      iv.toString("base64url"),
      body.toString("base64url"),
      cipher.getAuthTag().toString("base64url"),
    ].join(".");
  }

  open(sealed: string, associatedData = ""): Buffer {
    const [version, keyId, iv, body, tag] = sealed.split(".");
    if (version !== "v1" || !iv || !body || !tag) throw new Error("not a sealed value");
    if (keyId !== this.id) throw new Error(`sealed with key ${keyId}, which is not loaded`);
    const decipher = createDecipheriv("aes-256-gcm", this.key, Buffer.from(iv, "base64url"));
    decipher.setAAD(Buffer.from(associatedData, "utf8"));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    return Buffer.concat([decipher.update(Buffer.from(body, "base64url")), decipher.final()]);
  }

  /** A key for a purpose (e.g. bot-check HMAC) derived from the data key, so one secret serves all. */
  derive(purpose: string): Buffer {
    return createHash("sha256").update(this.key).update(`portcullis:${purpose}`).digest();
  }
}

/**
 * The data key from PORTCULLIS_SECRET_KEY, or in development a key generated once into the data
 * folder (mode 0600) so restarts keep working without set-up.
 */
export function loadDataKey(secretKeyBase64: string | undefined, dataDir: string): DataKey {
  if (secretKeyBase64) return new DataKey(Buffer.from(secretKeyBase64, "base64"));
  const file = path.join(dataDir, "secret.key");
  if (!fs.existsSync(file)) {
    fs.mkdirSync(dataDir, { recursive: true });
    try {
      fs.writeFileSync(file, randomBytes(32).toString("base64"), { mode: 0o600, flag: "wx" });
    } catch (error) {
      // Another process created it first; use theirs.
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
  }
  // A key others can read is a key others may have: refuse it rather than keep using it.
  const mode = fs.statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new ConfigError(
      "PORTCULLIS_DATA_DIR",
      `the data key file ${file} can be read by other users (mode ${mode.toString(8)}); run chmod 600 ${file}`,
    );
  }
  return new DataKey(Buffer.from(fs.readFileSync(file, "utf8").trim(), "base64"));
}
