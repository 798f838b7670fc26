import { createPortcullis, type Portcullis } from "../../src/app.js";
import { loadEnvConfig } from "../../src/config/env.js";
import { type SettingsOverrides, withSettings } from "../../src/config/settings.js";
import { openStorage, type Storage } from "../../src/db/database.js";
import { PUBLIC_URL } from "./harness.js";
import { openTestStorage, postgresUrl } from "./storage.js";
import { TcpProxy } from "./tcp-proxy.js";

export interface ProxiedPortcullis {
  app: Portcullis;
  /** Cut it to make PostgreSQL unreachable mid-run; restore it to bring it back. */
  proxy: TcpProxy;
  storage: Storage;
  close(): Promise<void>;
}

/**
 * A Portcullis on a private schema of the local PostgreSQL, reached through a TCP proxy the test can cut
 * and restore: an outage without stopping the server everyone else's tests use.
 */
export async function portcullisBehindPostgresProxy(
  options: { env?: Record<string, string>; settings?: SettingsOverrides } = {},
): Promise<ProxiedPortcullis> {
  const owner = await openTestStorage("postgres");
  const target = new URL(postgresUrl);
  const proxy = new TcpProxy(target.hostname, Number(target.port || 5432));
  await proxy.start();
  const viaProxy = new URL(postgresUrl);
  viaProxy.port = String(proxy.port);
  const storage = openStorage(viaProxy.href, { schema: owner.schema });
  const app = await createPortcullis({
    config: loadEnvConfig({
      PORTCULLIS_DATABASE_URL: viaProxy.href,
      PORTCULLIS_DATA_DIR: owner.dataDir,
      PORTCULLIS_PUBLIC_URL: PUBLIC_URL,
      PORTCULLIS_BOT_CHECK: "off",
      ...options.env,
    }),
    ...(options.settings ? { settings: withSettings(options.settings) } : {}),
    storage,
    logger: false,
  });
  return {
    app,
    proxy,
    storage,
    async close() {
      await app.close();
      await storage.close();
      await proxy.stop();
      await owner.dispose();
    },
  };
}
