import { KrakenClient } from "../../src/client/kraken-client.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../../test/helpers/factors.js";
import { ADMIN_TOKEN, Harness } from "../../test/helpers/harness.js";

const h = await Harness.create("sqlite");
const user = await h.createVerifiedUser({ country: "GB" });
const accountId = await h.accountId(user);
await h.request("PUT", `/v1/admin/accounts/${accountId}/verification`, {
  headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  body: { tier: "pro" },
});
const enrolled = await enrollTotp(h, await h.sessionToken(user, "pro"), { password: user.password });
const created = await withStepUp(
  h,
  enrolled.token,
  "POST",
  "/v1/api-keys",
  { totp: nextTotpCode(h, enrolled.secret) },
  { body: { name: "p", permissions: ["funds_query"] } },
);
const key = created.response.json();
const client = new KrakenClient({ baseUrl: "http://x", key: key.key, secret: key.secret });
const run = async (n: number) => {
  const started = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    h.clock.advance(1000);
    const s = client.sign("Balance");
    const r = await h.request("POST", "/v1/gateway/check", {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      body: { path: s.path, headers: s.headers, body: s.body, ip: "198.18.0.1" },
    });
    if (!r.json().allow) throw new Error(r.body);
  }
  const used = process.cpuUsage(started);
  return (used.user + used.system) / 1000 / n;
};
await run(500);
console.log("CPU ms per allowed decision (inject):", (await run(Number(process.env.N ?? 3000))).toFixed(3));
await h.close();
process.exit(0);
