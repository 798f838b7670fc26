import type { FastifyReply, FastifyRequest } from "fastify";
import { mintToken } from "../crypto/tokens.js";
import type { ClientApp } from "../sessions/sessions.js";
import { requestCookie } from "./cookies.js";

const DEVICE_KEY = /^[A-Za-z0-9_-]{16,128}$/;
const FOUR_HUNDRED_DAYS_S = 400 * 24 * 3600;

export function deviceCookieName(publicUrl: URL): string {
  return publicUrl.protocol === "https:" ? "__Host-portcullis_device" : "portcullis_device";
}

/** The device key a request presents: the browser's device cookie, or an app's `X-Device-Id`. */
export function presentedDeviceKey(request: FastifyRequest, publicUrl: URL): string | undefined {
  const header = request.headers["x-device-id"];
  const candidate = typeof header === "string" ? header : requestCookie(request, deviceCookieName(publicUrl));
  return candidate && DEVICE_KEY.test(candidate) ? candidate : undefined;
}

/**
 * The device signing in (docs/behaviour.md §2 step 3). Browsers keep a long-lived random cookie, set here on their
 * first visit; apps send their own device id, or receive one to keep (`issued`).
 */
export function deviceKeyFor(
  request: FastifyRequest,
  reply: FastifyReply,
  publicUrl: URL,
  client: ClientApp,
  appDeviceId: string | undefined,
): { key: string; issued: boolean } {
  if (client !== "web") {
    if (appDeviceId && DEVICE_KEY.test(appDeviceId)) return { key: appDeviceId, issued: false };
    return { key: mintToken(), issued: true };
  }
  const existing = requestCookie(request, deviceCookieName(publicUrl));
  if (existing && DEVICE_KEY.test(existing)) return { key: existing, issued: false };
  const key = mintToken();
  reply.setCookie(deviceCookieName(publicUrl), key, {
    path: "/",
    httpOnly: true,
    sameSite: "strict",
    secure: publicUrl.protocol === "https:",
    maxAge: FOUR_HUNDRED_DAYS_S,
  });
  return { key, issued: true };
}
