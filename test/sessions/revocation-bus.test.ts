import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { RedisRevocationBus, type Revocation } from "../../src/sessions/revocation.js";
import { redisUrl } from "../helpers/storage.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { until } from "../helpers/until.js";

/** The bus's own subscriber connection (private): the test drops it at chosen moments. */
const subscriberOf = (bus: RedisRevocationBus) => (bus as unknown as { subscriber: Redis }).subscriber;

describe("revocations over Redis while Redis comes and goes", () => {
  const closing: (() => unknown)[] = [];
  afterEach(async () => {
    for (const close of closing.splice(0).reverse()) await close();
  });

  it("hears revocations again after Redis returns, and a connection lost while subscribing again rejects nothing unhandled", async () => {
    const target = new URL(redisUrl);
    const proxy = new TcpProxy(target.hostname, Number(target.port || 6379));
    await proxy.start();
    closing.push(() => proxy.stop());
    const channel = `portcullis-test:${process.pid}:${Math.random().toString(36).slice(2)}:revocations`;
    const redis = new Redis(`redis://127.0.0.1:${proxy.port}`, {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
    });
    redis.on("error", () => {});
    await redis.connect();
    closing.push(() => redis.disconnect());
    const bus = new RedisRevocationBus(redis, channel);
    closing.push(() => bus.close());
    const heard: Revocation[] = [];
    bus.subscribe((revocation) => heard.push(revocation));
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    closing.push(() => process.off("unhandledRejection", onUnhandled));

    const publisher = new Redis(redisUrl);
    closing.push(() => publisher.disconnect());
    const announce = async (accountId: string) => {
      heard.length = 0;
      const deadline = Date.now() + 10_000;
      // Published until heard: the subscription may still be on its way.
      while (!heard.some((r) => r.accountId === accountId)) {
        if (Date.now() > deadline) throw new Error(`revocation of ${accountId} never heard`);
        await publisher.publish(channel, JSON.stringify({ accountId }));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    await announce("first");

    // Redis drops away and returns: the bus subscribes again by itself.
    proxy.cut();
    await until(() => subscriberOf(bus).status !== "ready", "the subscriber to notice");
    proxy.restore();
    await announce("after-return");

    // The instance stops the moment Redis is back, before the bus's SUBSCRIBE is answered: nothing may
    // reject without a handler (which would end the process).
    proxy.cut();
    await until(() => subscriberOf(bus).status !== "ready", "the subscriber to notice again");
    let closedWhileReady = false;
    subscriberOf(bus).once("ready", () => {
      bus.close();
      closedWhileReady = true;
    });
    proxy.restore();
    await until(() => closedWhileReady, "the subscriber to come back");
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(unhandled.map(String)).toEqual([]);
  });
});
