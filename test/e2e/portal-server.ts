import { createPortcullis, type Portcullis } from "../../src/app.js";
import { loadEnvConfig } from "../../src/config/env.js";
import { withSettings } from "../../src/config/settings.js";
import type { Engine } from "../../src/db/database.js";
import type { Clock } from "../../src/support/clock.js";
import { freePort } from "../helpers/free-port.js";
import { ADMIN_TOKEN } from "../helpers/harness.js";
import { openTestStorage, type TestStorage } from "../helpers/storage.js";

/** Real time that a test can move forward, e.g. to the next TOTP step (a code is accepted once). */
export class ShiftedClock implements Clock {
  private offset = 0;
  now(): number {
    return Date.now() + this.offset;
  }
  advance(ms: number): void {
    this.offset += ms;
  }
}

export interface PortalServer {
  url: string;
  app: Portcullis;
  clock: ShiftedClock;
  storage: TestStorage;
  close(): Promise<void>;
}

/**
 * Portcullis listening on a real port, as `npm start` runs it: development mode, mail in the local outbox
 * shown at /dev/mailbox, the outbox worker running, device approval on. The public URL is the origin the
 * browser uses (http://localhost:<port>, a secure context), so WebAuthn's origin and RP ID check out.
 * `env` adds to the environment, e.g. PORTCULLIS_SMTP_URL to send the mail to a test's SMTP server instead.
 */
export async function startPortalServer(
  engine: Engine,
  options: { env?: Record<string, string> } = {},
): Promise<PortalServer> {
  const storage = await openTestStorage(engine);
  const port = await freePort();
  const url = `http://localhost:${port}`;
  const clock = new ShiftedClock();
  const config = loadEnvConfig({
    PORTCULLIS_ENV: "development",
    PORTCULLIS_DATABASE_URL: storage.url,
    PORTCULLIS_DATA_DIR: storage.dataDir,
    PORTCULLIS_PUBLIC_URL: url,
    PORTCULLIS_PORT: String(port),
    PORTCULLIS_ADMIN_TOKEN: ADMIN_TOKEN,
    ...options.env,
  });
  // A real proof of work for the widget to solve, kept small so the suite stays quick.
  const settings = withSettings({
    botCheck: { minCounter: 500, maxCounter: 3000 },
    outbox: { pollIntervalMs: 200 },
  });
  const app = await createPortcullis({
    config,
    settings,
    clock,
    storage: storage.storage,
    logger: false,
    startWorkers: true,
  }).catch(async (error: unknown) => {
    await storage.dispose();
    throw error;
  });
  await app.http.listen({ port, host: "127.0.0.1" });
  return {
    url,
    app,
    clock,
    storage,
    async close() {
      await app.close();
      await storage.dispose();
    },
  };
}
