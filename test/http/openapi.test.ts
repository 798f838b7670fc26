import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Harness } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

type Operation = {
  responses?: Record<string, { content?: Record<string, { schema?: unknown }> }>;
  parameters?: { in: string; name: string }[];
  description?: string;
  requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown> } }> };
};

describe.each(engines)("the OpenAPI document on %s", (engine) => {
  let h: Harness;
  let paths: Record<string, Record<string, Operation>>;
  beforeAll(async () => {
    h = await Harness.create(engine);
    paths = (await h.request("GET", "/openapi.json")).json().paths;
  });
  afterAll(async () => {
    await h.close();
  });

  const operations = () =>
    Object.entries(paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, operation]) => ({ path, method, operation })),
    );

  it("declares a success answer with its schema for every operation", () => {
    const missing = operations()
      .filter(({ operation }) => {
        const success = Object.entries(operation.responses ?? {}).filter(([status]) => /^2/.test(status));
        return success.length === 0 || success.some(([, answer]) => !answer.content?.["application/json"]);
      })
      .map(({ path, method }) => `${method.toUpperCase()} ${path}`);
    expect(operations().length).toBeGreaterThan(60);
    expect(missing).toEqual([]);
  });

  it("documents the status each route answers with", () => {
    const statuses = (path: string, method: string) =>
      Object.keys(paths[path]?.[method]?.responses ?? {}).filter((status) => /^2/.test(status));
    expect(statuses("/v1/accounts", "post")).toEqual(["202"]);
    expect(statuses("/v1/actions", "post")).toEqual(["201"]);
    expect(statuses("/v1/api-keys", "post")).toEqual(["201"]);
    expect(statuses("/v1/withdrawal-addresses", "post")).toEqual(["202"]);
    expect(statuses("/v1/recovery/password", "post")).toEqual(["202"]);
    expect(statuses("/v1/recovery/username", "post")).toEqual(["202"]);
    expect(statuses("/v1/sign-in/{flowId}/master-key", "post")).toEqual(["202"]);
    expect(statuses("/v1/admin/maintenance", "post")).toEqual(["201"]);
    expect(statuses("/v1/session", "get")).toEqual(["200"]);
    // The one error shape is documented beside the answers.
    expect(Object.keys(paths["/v1/session"]!.get!.responses!)).toEqual(
      expect.arrayContaining(["4XX", "5XX"]),
    );
  });

  it("documents how an app collects its session: deviceId, then X-Device-Id while polling", () => {
    const start = paths["/v1/sign-in"]!.post!;
    expect(start.requestBody!.content["application/json"]!.schema.properties).toHaveProperty("deviceId");
    const answer = start.responses!["200"]!.content!["application/json"]!.schema as {
      properties: Record<string, { description?: string }>;
    };
    expect(answer.properties.deviceId!.description).toMatch(/X-Device-Id/);
    const poll = paths["/v1/sign-in/{flowId}"]!.get!;
    expect(poll.parameters).toEqual(
      expect.arrayContaining([expect.objectContaining({ in: "header", name: "x-device-id" })]),
    );
  });

  it("documents the parameters of each funding and trading action", () => {
    const text = JSON.stringify(paths["/v1/actions"]!.post);
    for (const word of ["withdraw", "addressId", "BTC/USD", "place_order", "cancel_order", "orderId"]) {
      expect(text).toContain(word);
    }
  });
});
