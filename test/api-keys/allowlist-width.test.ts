import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { krakenSignature } from "../../src/client/kraken-client.js";
import { enrollTotp, nextTotpCode, withStepUp } from "../helpers/factors.js";
import { Harness, SERVICE_TOKEN } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

const service = { authorization: `Bearer ${SERVICE_TOKEN}` };
const TOO_WIDE =
  "is too wide: an allowlist for a key that can withdraw names addresses no wider than /16 (IPv4) or /32 (IPv6).";

/**
 * "A key that can withdraw needs an IP allowlist" means a list that names someone: an allowlist that admits
 * every address (0.0.0.0/0, ::/0, two halves, ::/1 which holds every IPv4 address as ::ffff:a.b.c.d) is
 * refused for such a key, at creation and at every change.
 */
describe.each(engines)("IP allowlists of keys that can withdraw, on %s (behaviour §11)", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  const owner = async () => {
    const user = await h.createVerifiedUser();
    const enrolled = await enrollTotp(h, await h.sessionToken(user, "pro"), { password: user.password });
    let token = enrolled.token;
    const change = async (method: "POST" | "PATCH", url: string, body: Record<string, unknown>) => {
      const result = await withStepUp(
        h,
        token,
        method,
        url,
        { totp: nextTotpCode(h, enrolled.secret) },
        { body },
      );
      token = result.token;
      return result.response;
    };
    /** A refused request is refused before any step-up is asked for. */
    const refused = async (method: "POST" | "PATCH", url: string, body: Record<string, unknown>) => {
      const response = await h.request(method, url, { token, body });
      expect(response.statusCode, `${JSON.stringify(body)}: ${response.body}`).toBe(400);
      return response.json().error as {
        code: string;
        message: string;
        details: { field: string; message: string }[];
      };
    };
    const createKey = async (body: Record<string, unknown>) => {
      const response = await change("POST", "/v1/api-keys", body);
      expect(response.statusCode, response.body).toBe(201);
      return response.json() as { id: string; key: string; secret: string; ipAllowlist: string[] };
    };
    return { change, refused, createKey };
  };

  let nonceCounter = BigInt(Date.now()) * 1000n;
  const nextNonce = () => {
    nonceCounter += 1n;
    return nonceCounter.toString();
  };

  /** A Kraken Balance request, checked through the venue's check endpoint from `ip` as the venue wrote it. */
  const check = (key: { key: string; secret: string }, ip: string, secret = key.secret) => {
    const nonce = nextNonce();
    const path = "/0/private/Balance";
    const body = `nonce=${nonce}`;
    return h.request("POST", "/v1/gateway/check", {
      headers: service,
      body: {
        path,
        headers: {
          "Content-Type": "application/x-www-form-urlencoded",
          "API-Key": key.key,
          "API-Sign": krakenSignature(secret, path, nonce, body),
        },
        body,
        ip,
      },
    });
  };

  const wideLists = [
    ["0.0.0.0/0"],
    ["::/0"],
    ["::ffff:0:0/96", "::/1", "8000::/1"],
    ["0.0.0.0/1", "128.0.0.0/1"],
    ["::/1"],
    ["::/64"],
    ["::ffff:0:0/96"],
    ["10.0.0.0/15"],
    ["::FFFF:10.0.0.0/111"],
    ["2001:db8::/31"],
    // One wide entry among narrow ones is enough to admit everyone.
    ["203.0.113.0/24", "2001:db8::/32", "0.0.0.0/0"],
  ];
  const withdrawingKeys = [
    { dialect: "kraken", permissions: ["funds_query", "funds_withdraw"] },
    { dialect: "kucoin", passphrase: "kucoin-pass", permissions: ["general", "withdrawal"] },
    { dialect: "kraken_futures", permissions: ["read", "withdrawal"] },
  ];

  it("refuses an allowlist wider than /16 (IPv4) or /32 (IPv6) for a key that can withdraw, in every dialect", async () => {
    const { refused } = await owner();
    let n = 0;
    for (const key of withdrawingKeys) {
      for (const ipAllowlist of wideLists) {
        n += 1;
        const error = await refused("POST", "/v1/api-keys", { name: `w${n}`, ...key, ipAllowlist });
        expect(error.code).toBe("invalid_request");
        expect(error.details).toHaveLength(1);
        expect(error.details[0]!.field).toBe("ipAllowlist");
        expect(error.message, JSON.stringify(ipAllowlist)).toContain(TOO_WIDE);
        expect(error.details[0]!.message).toBe(error.message);
      }
    }
  });

  it("creates a withdrawing key with narrow entries, and a key that cannot withdraw with any valid CIDR", async () => {
    const { createKey, refused } = await owner();
    const narrow = [
      "198.51.0.0/16",
      "192.0.2.7",
      "2001:db8::/32",
      "2001:db8:1::7",
      "::ffff:203.0.113.0/112",
      "::ffff:192.0.2.8",
    ];
    const withdrawer = await createKey({
      name: "narrow",
      permissions: ["funds_withdraw"],
      ipAllowlist: narrow,
    });
    expect(withdrawer.ipAllowlist).toEqual(narrow);
    const kucoin = await createKey({
      name: "narrow-kucoin",
      dialect: "kucoin",
      passphrase: "kucoin-pass",
      permissions: ["withdrawal"],
      ipAllowlist: ["203.0.113.0/24"],
    });
    expect(kucoin.ipAllowlist).toEqual(["203.0.113.0/24"]);
    const reader = await createKey({
      name: "reader",
      permissions: ["funds_query"],
      ipAllowlist: ["0.0.0.0/0", "::/0"],
    });
    expect(reader.ipAllowlist).toEqual(["0.0.0.0/0", "::/0"]);
    // The number of entries stays capped, narrow or not.
    const many = Array.from({ length: 33 }, (_, i) => `198.51.${i}.0/24`);
    const error = await refused("POST", "/v1/api-keys", {
      name: "many",
      permissions: ["funds_withdraw"],
      ipAllowlist: many,
    });
    expect(error.details[0]!.field).toBe("ipAllowlist");
  });

  it("holds every change to a withdrawing key to the rule, while a stored wide list keeps working until changed", async () => {
    const { change, refused, createKey } = await owner();
    const key = await createKey({
      name: "legacy",
      permissions: ["funds_query", "funds_withdraw"],
      ipAllowlist: ["198.51.100.0/24"],
    });
    // A key stored before the rule, with a list that admits everyone: the gateway still honours it.
    await h.db
      .updateTable("api_keys")
      .set({ ip_allowlist: JSON.stringify(["0.0.0.0/0"]) })
      .where("id", "=", key.id)
      .execute();
    const before = await check(key, "192.0.2.50");
    expect(before.json(), before.body).toMatchObject({ allow: true, keyId: key.id });
    // Any change re-checks the merged settings: a rename alone is refused until the list is narrowed.
    const rename = await refused("PATCH", `/v1/api-keys/${key.id}`, { name: "renamed" });
    expect(rename.details[0]!.field).toBe("ipAllowlist");
    expect(rename.message).toContain(TOO_WIDE);
    for (const ipAllowlist of wideLists) {
      const error = await refused("PATCH", `/v1/api-keys/${key.id}`, { ipAllowlist });
      expect(error.message, JSON.stringify(ipAllowlist)).toContain(TOO_WIDE);
    }
    const narrowed = await change("PATCH", `/v1/api-keys/${key.id}`, {
      name: "renamed",
      ipAllowlist: ["192.0.2.0/24"],
    });
    expect(narrowed.statusCode, narrowed.body).toBe(200);
    expect(narrowed.json()).toMatchObject({ name: "renamed", ipAllowlist: ["192.0.2.0/24"] });
    // Dropping the withdrawal permission frees the list again.
    const reader = await change("PATCH", `/v1/api-keys/${key.id}`, {
      permissions: ["funds_query"],
      ipAllowlist: ["0.0.0.0/1", "128.0.0.0/1"],
    });
    expect(reader.statusCode, reader.body).toBe(200);
    // Giving it back needs a narrow list again, whether the list is sent or kept.
    const back = await refused("PATCH", `/v1/api-keys/${key.id}`, {
      permissions: ["funds_query", "funds_withdraw"],
    });
    expect(back.message).toContain(TOO_WIDE);
    const backWide = await refused("PATCH", `/v1/api-keys/${key.id}`, {
      permissions: ["funds_withdraw"],
      ipAllowlist: ["::/0"],
    });
    expect(backWide.message).toContain(TOO_WIDE);
    const stored = await h.db
      .selectFrom("api_keys")
      .select(["permissions", "ip_allowlist"])
      .where("id", "=", key.id)
      .executeTakeFirstOrThrow();
    expect(JSON.parse(stored.permissions)).toEqual(["funds_query"]);
    expect(JSON.parse(stored.ip_allowlist)).toEqual(["0.0.0.0/1", "128.0.0.0/1"]);
  });

  it("takes the check endpoint's client address in any spelling as the one address it is, and refuses a zone id", async () => {
    const { createKey } = await owner();
    const key = await createKey({
      name: "spelled",
      permissions: ["funds_query", "funds_withdraw"],
      ipAllowlist: ["198.51.100.0/24"],
    });
    // A zone id names the proxy's interface, not the client: refused with the endpoint's 400.
    for (const ip of ["::ffff:198.51.100.7%eth0", "fe80::1%eth0", "198.51.100.7%1"]) {
      const response = await check(key, ip);
      expect(response.statusCode, `${ip}: ${response.body}`).toBe(400);
      expect(response.json().error).toMatchObject({
        code: "invalid_request",
        message: "The client's address is not an IP address.",
        details: [{ field: "ip" }],
      });
    }
    // Ten bad signatures from one IPv4 client, written four ways, lock out that client...
    const spellings = ["::FFFF:198.51.100.7", "0:0:0:0:0:ffff:198.51.100.7", "::ffff:c633:6407"];
    for (let i = 0; i < 10; i += 1) {
      const bad = await check(key, spellings[i % spellings.length]!, Buffer.alloc(64, 7).toString("base64"));
      expect(bad.json().allow, bad.body).toBe(false);
    }
    const locked = await check(key, "198.51.100.7");
    expect(locked.json(), locked.body).toEqual({ allow: false, error: "EGeneral:Temporary lockout" });
    // ...and no other IPv4 client behind the same proxy, however it spells them.
    const other = await check(key, "::FFFF:198.51.100.8");
    expect(other.json(), other.body).toMatchObject({ allow: true, keyId: key.id });
    // The audit records the address, not the proxy's spelling of it.
    const audited = await h.db
      .selectFrom("audit_log")
      .select(["ip", "outcome"])
      .where("actor", "=", `api_key:${key.id}`)
      .where("outcome", "=", "success")
      .execute();
    expect(audited.map((row) => row.ip)).toEqual(["198.51.100.8"]);
  });
});
