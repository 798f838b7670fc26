#!/usr/bin/env node
import { Command } from "commander";
import { AccountRepository } from "../accounts/accounts.js";
import { createLogger, createPortcullis } from "../app.js";
import { AuditLog } from "../audit/audit-log.js";
import { ConfigError, type EnvConfig, loadEnvConfig } from "../config/env.js";
import { defaultSettings } from "../config/settings.js";
import { migrateToLatest, openStorage } from "../db/database.js";
import { AttemptGuard } from "../protection/attempt-guard.js";
import { systemClock } from "../support/clock.js";
import { systemContext } from "../support/request-context.js";

/** Reads the configuration or stops with one line naming the variable that is wrong. */
function config(): EnvConfig {
  try {
    return loadEnvConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`portcullis: configuration error: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

async function withStorage<T>(run: (storage: ReturnType<typeof openStorage>) => Promise<T>): Promise<T> {
  const storage = openStorage(config().databaseUrl);
  try {
    await migrateToLatest(storage);
    return await run(storage);
  } finally {
    await storage.close();
  }
}

const program = new Command()
  .name("portcullis")
  .description("The account-access layer of a trading venue: server and operator tools.");

program
  .command("serve")
  .description("Run the API server (migrates the database first)")
  .action(async () => {
    const cfg = config();
    const logger = createLogger(cfg.logLevel);
    const app = await createPortcullis({ config: cfg, logger, startWorkers: true });
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
    await withStorage(async (storage) => {
      const applied = await migrateToLatest(storage);
      process.stdout.write(applied.length ? `applied: ${applied.join(", ")}\n` : "schema is up to date\n");
    });
  });

const audit = program.command("audit").description("The hash-chained audit log");
audit
  .command("verify")
  .description("Check every entry of the audit chain; exits 1 if anything was edited, deleted or reordered")
  .action(async () => {
    await withStorage(async (storage) => {
      const result = await new AuditLog(storage.db, systemClock).verify();
      if (result.ok) {
        process.stdout.write(`audit log intact: ${result.checked} entries checked\n`);
      } else {
        process.stdout.write(
          `audit log BROKEN at entry ${result.firstBadEntry?.seq}: ${result.firstBadEntry?.reason} (${result.checked} entries intact before it)\n`,
        );
        process.exitCode = 1;
      }
    });
  });
audit
  .command("list")
  .description("Print the newest audit entries as JSON lines")
  .option("--account <id>", "only this account's entries")
  .option("--limit <n>", "how many", "50")
  .action(async (options: { account?: string; limit: string }) => {
    await withStorage(async (storage) => {
      const entries = await new AuditLog(storage.db, systemClock).list({
        accountId: options.account,
        limit: Math.min(Math.max(Number.parseInt(options.limit, 10) || 50, 1), 1000),
      });
      for (const entry of entries) process.stdout.write(`${JSON.stringify(entry)}\n`);
    });
  });

const accounts = program.command("accounts").description("Accounts");
accounts
  .command("unrestrict <account>")
  .description("Lift a temporary or permanent restriction (account id or username); audited")
  .action(async (reference: string) => {
    await withStorage(async (storage) => {
      const repository = new AccountRepository(storage.db);
      const account = (await repository.findById(reference)) ?? (await repository.findByUsername(reference));
      if (!account) {
        process.stderr.write(`no account ${reference}\n`);
        process.exitCode = 1;
        return;
      }
      await new AttemptGuard(storage.db, systemClock, defaultSettings.protection).lift(account.id);
      await new AuditLog(storage.db, systemClock).append(
        { event: "account.restriction_lifted", outcome: "success", accountId: account.id, actor: "operator" },
        systemContext,
      );
      process.stdout.write(`restriction lifted for ${account.username}\n`);
    });
  });

program.parseAsync().catch((error: unknown) => {
  process.stderr.write(`portcullis: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
