import { defaultSettings } from "../../src/config/settings.js";
import { Argon2idHasher, type PasswordHasher } from "../../src/factors/password.js";

/** The real Argon2id hasher, counting how often each kind of verification ran. */
export class CountingHasher implements PasswordHasher {
  private readonly inner = new Argon2idHasher(defaultSettings.password);
  realVerifications = 0;
  dummyVerifications = 0;

  hash(password: string): Promise<string> {
    return this.inner.hash(password);
  }
  verify(passwordHash: string, password: string): Promise<boolean> {
    this.realVerifications += 1;
    return this.inner.verify(passwordHash, password);
  }
  needsRehash(passwordHash: string): boolean {
    return this.inner.needsRehash(passwordHash);
  }
  verifyDummy(password: string): Promise<void> {
    this.dummyVerifications += 1;
    return this.inner.verifyDummy(password);
  }
  reset(): void {
    this.realVerifications = 0;
    this.dummyVerifications = 0;
  }
}
