import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Portcullis } from "../../src/app.js";
import type { Storage } from "../../src/db/database.js";
import { portcullisBehindPostgresProxy } from "../helpers/postgres-behind-proxy.js";
import { SmtpCapture } from "../helpers/smtp.js";
import type { TcpProxy } from "../helpers/tcp-proxy.js";
import { until } from "../helpers/until.js";

const MINUTE = 60_000;

/**
 * PostgreSQL goes away in the middle of a stream of sign-ups and comes back: requests during the outage
 * answer 503, the same process carries on afterwards, every acknowledged sign-up has its audit entry,
 * and every account that exists gets exactly one verification email (the outbox row is written with the
 * account, in one transaction).
 */
describe("PostgreSQL stopped mid-run", () => {
  let proxy: TcpProxy;
  let storage: Storage;
  let app: Portcullis;
  let close: () => Promise<void>;
  const smtp = new SmtpCapture();

  beforeAll(async () => {
    await smtp.start();
    ({ app, proxy, storage, close } = await portcullisBehindPostgresProxy({
      env: { PORTCULLIS_SMTP_URL: smtp.url },
    }));
  });

  afterAll(async () => {
    await close();
    await smtp.stop();
  });

  it("answers 503 during the outage, recovers without a restart, and loses no email or acknowledged audit entry", async () => {
    const acknowledged: string[] = [];
    const statuses: number[] = [];
    let n = 0;
    let stop = false;
    const signUps = async () => {
      while (!stop) {
        n += 1;
        const email = `outage.${n}.${process.pid}@example.test`;
        const response = await app.http.inject({
          method: "POST",
          url: "/v1/accounts",
          payload: {
            email,
            username: `outage_${process.pid}_${n}`,
            password: "violet tractor mango 42",
            country: "DE",
          },
          remoteAddress: `10.20.${n >> 8}.${n & 255}`,
        });
        statuses.push(response.statusCode);
        if (response.statusCode === 202) acknowledged.push(email);
        else expect(response.json().error.code).toBe("unavailable");
        if (response.statusCode === 503) await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    const loops = Array.from({ length: 4 }, () => signUps());
    await until(() => acknowledged.length >= 8, "sign-ups before the outage", MINUTE);
    proxy.cut();
    const beforeOutage = statuses.length;
    await until(
      () => statuses.slice(beforeOutage).filter((s) => s === 503).length >= 8,
      "refusals during the outage",
      MINUTE,
    );
    proxy.restore();
    const afterOutage = acknowledged.length;
    await until(() => acknowledged.length >= afterOutage + 8, "sign-ups after the outage", MINUTE);
    stop = true;
    await Promise.all(loops);

    expect(statuses.every((s) => s === 202 || s === 503)).toBe(true);
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThanOrEqual(8);

    // Everything due in the outbox is sent; every account has exactly one verification email.
    while ((await app.services.outbox.deliverDue()) > 0);
    const accounts = await storage.db.selectFrom("accounts").select("email").execute();
    expect(accounts.length).toBeGreaterThanOrEqual(acknowledged.length);
    await until(() => smtp.messages.length >= accounts.length, "every verification mail", MINUTE);
    for (const { email } of accounts) {
      const sent = smtp.messages.filter((m) => m.to.includes(email) && /Verify your email/.test(m.subject));
      expect(sent, email).toHaveLength(1);
    }

    // Every acknowledged sign-up is in the audit log, and the chain is whole.
    const created = await app.services.audit.list({ events: ["account.created"], limit: 10_000 });
    const auditedAccounts = new Set(created.map((e) => e.accountId));
    const acknowledgedIds = await storage.db
      .selectFrom("accounts")
      .select("id")
      .where("email", "in", acknowledged)
      .execute();
    expect(acknowledgedIds).toHaveLength(acknowledged.length);
    for (const { id } of acknowledgedIds) expect(auditedAccounts.has(id)).toBe(true);
    expect((await app.services.audit.verify()).ok).toBe(true);
  }, 120_000);
});
