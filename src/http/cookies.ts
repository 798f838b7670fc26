import fastifyCookie from "@fastify/cookie";
import type { FastifyInstance, FastifyRequest } from "fastify";

/**
 * Cookies are set through @fastify/cookie's `reply.setCookie`, but read only where a route asks for one
 * (`requestCookie`): the plugin's own hook would parse the Cookie header of every request, the gateway's
 * and the apps' bearer-token calls included, which never carry one that matters.
 */
export async function registerCookies(app: FastifyInstance): Promise<void> {
  await app.register(fastifyCookie, { hook: false });
}

/** The value of the cookie `name` that the request carries, parsed as @fastify/cookie parses it. */
export function requestCookie(request: FastifyRequest, name: string): string | undefined {
  const header = request.headers.cookie;
  return header === undefined ? undefined : request.server.parseCookie(header)[name];
}
