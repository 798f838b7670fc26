#!/usr/bin/env node
import { Command } from "commander";
import { createLogger, createPortcullis } from "../app.js";
import { describeWindow } from "../capabilities/subsystems.js";
import { ConfigError, type EnvConfig, loadEnvConfig } from "../config/env.js";
import { migrateToLatest, openStorage } from "../db/database.js";
import type { Services } from "../services.js";
import { Problem } from "../support/problem.js";
import { systemContext } from "../support/request-context.js";
import { makeAddressesReady } from "./dev.js";

/** Reads the configuration or stops with one line naming the variable that is wrong. */
function config(): EnvConfig {
  try {
    return loadEnvConfig();
  } catch (error) {
    if (error instanceof ConfigError) fail(`configuration error: ${error.message}`, 2);
    throw error;
  }
}

function fail(message: string, code = 1): never {
  process.stderr.write(`portcullis: ${message}\n`);
  process.exit(code);
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * Operator commands run the same services as the admin API, against the configured database, so an
 * operation means the same (and is audited the same) whichever way it is done.
 */
async function withServices(run: (services: Services) => Promise<void>): Promise<void> {
  let app: Awaited<ReturnType<typeof createPortcullis>>;
  try {
    app = await createPortcullis({ config: config(), logger: false });
  } catch (error) {
    if (error instanceof ConfigError) fail(`configuration error: ${error.message}`, 2);
    throw error;
  }
  try {
    await run(app.services);
  } catch (error) {
    if (error instanceof Problem) fail(`${error.message} (${error.code})`);
    throw error;
  } finally {
    await app.close();
  }
}

/** An account by id or username. */
async function accountId(services: Services, reference: string): Promise<string> {
  const account =
    (await services.accounts.findById(reference)) ?? (await services.accounts.findByUsername(reference));
  if (!account) fail(`no account "${reference}"`);
  return account.id;
}

const cliContext = { ...systemContext, userAgent: "portcullis-cli" };

const program = new Command()
  .name("portcullis")
  .description("The account-access layer of a trading venue: server and operator tools.");

program
  .command("serve")
  .description("Run the API server (migrates the database first)")
  .action(async () => {
    const cfg = config();
    // Readable lines for a person at a terminal in development; JSON lines for everything else.
    const logger = createLogger(cfg.logLevel, {
      pretty: cfg.env === "development" && process.stdout.isTTY === true,
    });
    let app: Awaited<ReturnType<typeof createPortcullis>>;
    try {
      app = await createPortcullis({ config: cfg, logger, startWorkers: true });
    } catch (error) {
      if (error instanceof ConfigError) fail(`configuration error: ${error.message}`, 2);
      throw error;
    }
    await app.http.listen({ port: cfg.port, host: cfg.host });
    logger.info(
      { url: cfg.publicUrl.origin, database: cfg.databaseUrl.split(":")[0], env: cfg.env },
      cfg.env === "development" && app.services.localMailbox
        ? `Portcullis is up. Emails are in ${cfg.publicUrl.origin}/dev/mailbox`
        : "Portcullis is up",
    );
    let closing = false;
    const shutdown = async (signal: string) => {
      if (closing) return;
      closing = true;
      logger.info({ signal }, "shutting down: finishing requests in flight");
      const force = setTimeout(() => process.exit(1), 10_000);
      force.unref();
      await app.close();
      process.exit(0);
    };
    process.on("SIGTERM", () => void shutdown("SIGTERM"));
    process.on("SIGINT", () => void shutdown("SIGINT"));
  });

program
  .command("migrate")
  .description("Bring the database schema up to date")
  .action(async () => {
    const storage = openStorage(config().databaseUrl);
    try {
      const applied = await migrateToLatest(storage);
      print(applied.length ? `applied: ${applied.join(", ")}` : "schema is up to date");
    } finally {
      await storage.close();
    }
  });

const audit = program.command("audit").description("The hash-chained audit log");
audit
  .command("verify")
  .description(
    "Check every chain of the audit log and how they fit together; exits 1 if anything was edited, deleted or reordered",
  )
  .action(() =>
    withServices(async (services) => {
      const result = await services.audit.verify();
      if (result.ok) {
        print(`audit log intact: ${result.checked} entries checked in ${result.chains} chains`);
        return;
      }
      for (const bad of result.badChains ?? []) {
        const where = bad.position === undefined ? "" : ` at position ${bad.position}`;
        const entry = bad.seq === undefined ? "" : ` (entry ${bad.seq})`;
        print(`audit log BROKEN in chain ${bad.chain}${where}${entry}: ${bad.reason}`);
      }
      print(`${result.checked} entries intact in ${result.chains} chains`);
      process.exitCode = 1;
    }),
  );
audit
  .command("list")
  .description("Print the newest audit entries as JSON lines")
  .option("--account <id>", "only this account's entries")
  .option("--limit <n>", "how many", "50")
  .action((options: { account?: string; limit: string }) =>
    withServices(async (services) => {
      const entries = await services.audit.list({
        accountId: options.account,
        limit: Math.min(Math.max(Number.parseInt(options.limit, 10) || 50, 1), 1000),
      });
      for (const entry of entries) print(JSON.stringify(entry));
    }),
  );

const accounts = program.command("accounts").description("Accounts");
accounts
  .command("create <username> <email>")
  .description(
    "Create a verified account, e.g. for a demo (the password is read from PORTCULLIS_NEW_PASSWORD)",
  )
  .option("--country <code>", "ISO 3166-1 alpha-2", "DE")
  .option("--region <code>", "ISO 3166-2, for US and CA")
  .option("--tier <tier>", "starter, intermediate or pro", "starter")
  .action((username: string, email: string, options: { country: string; region?: string; tier: string }) =>
    withServices(async (services) => {
      const password = process.env.PORTCULLIS_NEW_PASSWORD;
      if (!password) fail("set PORTCULLIS_NEW_PASSWORD to the new account's password");
      const id = await services.signUp.createVerified(
        { email, username, password, country: options.country, region: options.region },
        cliContext,
      );
      if (options.tier !== "starter") await services.admin.setTier(id, options.tier, cliContext);
      print(`created ${username} (${id})`);
    }),
  );
accounts
  .command("unrestrict <account>")
  .description("Lift a temporary or permanent restriction (account id or username); audited")
  .action((reference: string) =>
    withServices(async (services) => {
      await services.admin.liftRestriction(await accountId(services, reference), cliContext);
      print(`restriction lifted for ${reference}`);
    }),
  );
accounts
  .command("set-tier <account> <tier>")
  .description("Set the verification tier: starter, intermediate or pro")
  .action((reference: string, tier: string) =>
    withServices(async (services) => {
      await services.admin.setTier(await accountId(services, reference), tier, cliContext);
      print(`${reference} is now ${tier}`);
    }),
  );
accounts
  .command("set-jurisdiction <account> <country> [region]")
  .description("Set the country (ISO 3166-1) and, for US and CA, the region (ISO 3166-2)")
  .action((reference: string, country: string, region: string | undefined) =>
    withServices(async (services) => {
      await services.admin.setJurisdiction(
        await accountId(services, reference),
        country,
        region ?? null,
        cliContext,
      );
      print(`${reference} is now in ${region ?? country}`);
    }),
  );

for (const [command, disabled] of [
  ["disable", true],
  ["enable", false],
] as const) {
  accounts
    .command(`${command} <account>`)
    .description(
      disabled ? "Disable an account: every session ends at once; audited" : "Enable a disabled account",
    )
    .action((reference: string) =>
      withServices(async (services) => {
        await services.admin.setDisabled(await accountId(services, reference), disabled, cliContext);
        print(`${reference} ${command}d`);
      }),
    );
}
accounts
  .command("remove-global-lock <account>")
  .description("Remove an account's Global Settings Lock (the 0-day case without a Master Key); audited")
  .action((reference: string) =>
    withServices(async (services) => {
      await services.globalLock.remove(await accountId(services, reference), cliContext);
      print(`Global Settings Lock removed for ${reference}`);
    }),
  );
accounts
  .command("unfreeze <account>")
  .description(
    "Lift a freeze the owner set with a lock link (account id or username); audited, the owner is told",
  )
  .action((reference: string) =>
    withServices(async (services) => {
      await services.accountFreeze.liftByOperator(await accountId(services, reference), cliContext);
      print(`freeze lifted for ${reference}`);
    }),
  );

const dev = program.command("dev").description("Development shortcuts (refused outside development)");
dev
  .command("make-address-ready <account> [addressId]")
  .description(
    "Confirm an account's withdrawal addresses and end their 48-hour hold now, to try a withdrawal at once",
  )
  .action((reference: string, addressId: string | undefined) =>
    withServices(async (services) => {
      const changed = await makeAddressesReady(
        services,
        await accountId(services, reference),
        cliContext,
        addressId,
      );
      if (changed.length === 0) fail(`no address of ${reference} is waiting to become usable`);
      for (const address of changed)
        print(`ready: ${address.asset} ${address.address} (${address.label}) ${address.id}`);
      print(`Try a withdrawal at ${services.config.publicUrl.origin}/demo/withdraw`);
    }),
  );

const apiKeys = program.command("api-keys").description("API keys");
apiKeys
  .command("list <account>")
  .description("An account's API keys as JSON lines (never their secrets)")
  .action((reference: string) =>
    withServices(async (services) => {
      for (const key of await services.apiKeys.list(await accountId(services, reference)))
        print(JSON.stringify(key));
    }),
  );
apiKeys
  .command("disable <keyId>")
  .description("Disable an API key at once; audited, and the owner is told")
  .action((keyId: string) =>
    withServices(async (services) => {
      await services.apiKeys.disableByOperator(keyId, cliContext);
      print(`API key ${keyId} disabled`);
    }),
  );

const subsystems = program.command("subsystems").description("Subsystem status");
subsystems
  .command("list")
  .description("Every subsystem's status now")
  .action(() =>
    withServices(async (services) => {
      const snapshot = await services.subsystems.snapshot();
      for (const state of Object.values(snapshot.states)) {
        const until = state.until ? ` until ${new Date(state.until).toISOString()}` : "";
        print(`${state.id.padEnd(16)} ${state.status}${until}${state.message ? ` — ${state.message}` : ""}`);
      }
    }),
  );
subsystems
  .command("set <subsystem> <status>")
  .description("operational, degraded, maintenance, outage (engines also cancel_only, post_only)")
  .option("--message <text>", "shown to users")
  .action((subsystem: string, status: string, options: { message?: string }) =>
    withServices(async (services) => {
      await services.admin.setSubsystemStatus(subsystem, status, options.message ?? null, cliContext);
      print(`${subsystem} is now ${status}`);
    }),
  );

const maintenance = program.command("maintenance").description("Scheduled maintenance windows");
maintenance
  .command("schedule <subsystem> <state>")
  .description("Schedule a window; it takes effect and ends by itself")
  .requiredOption("--starts <time>", "ISO-8601 start")
  .requiredOption("--ends <time>", "ISO-8601 end")
  .requiredOption("--message <text>", "shown to users")
  .action((subsystem: string, state: string, options: { starts: string; ends: string; message: string }) =>
    withServices(async (services) => {
      const startsAt = Date.parse(options.starts);
      const endsAt = Date.parse(options.ends);
      if (Number.isNaN(startsAt) || Number.isNaN(endsAt)) fail("--starts and --ends must be ISO-8601 times");
      const window = await services.admin.scheduleMaintenance(
        { subsystem, state, startsAt, endsAt, message: options.message },
        cliContext,
      );
      print(JSON.stringify(describeWindow(window)));
    }),
  );
maintenance
  .command("list")
  .description("Windows open now or to come")
  .action(() =>
    withServices(async (services) => {
      for (const window of (await services.subsystems.snapshot()).windows)
        print(JSON.stringify(describeWindow(window)));
    }),
  );
maintenance
  .command("cancel <id>")
  .description("Cancel a window")
  .action((id: string) =>
    withServices(async (services) => {
      await services.admin.cancelMaintenance(id, cliContext);
      print(`cancelled ${id}`);
    }),
  );

program.parseAsync().catch((error: unknown) => {
  fail(error instanceof Error ? error.message : String(error));
});
