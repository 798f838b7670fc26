import type { LightMyRequestResponse } from "fastify";
import { expect } from "vitest";
import { totpCode } from "../../src/factors/totp.js";
import type { Harness, RequestOptions, TestUser } from "./harness.js";

export type StepUpProof =
  | { password: string }
  | { totp: string }
  | { recoveryCode: string }
  | { webauthn: unknown };

/**
 * A setting change the way a client makes it: the request answers 403 step_up_required with an action,
 * the action is confirmed with a proof (which renews the session token), and the request is repeated
 * with X-Action-Id. Returns the final answer and the token to go on with.
 */
export async function withStepUp(
  h: Harness,
  token: string,
  method: "POST" | "DELETE" | "PUT" | "PATCH",
  url: string,
  proof: StepUpProof | ((actionId: string, token: string) => Promise<StepUpProof>),
  options: Omit<RequestOptions, "token"> = {},
): Promise<{ response: LightMyRequestResponse; token: string; actionId: string }> {
  const first = await h.request(method, url, { ...options, token });
  expect(first.statusCode, first.body).toBe(403);
  expect(first.json().error.code).toBe("step_up_required");
  const actionId = first.json().error.actionId as string;
  const body = typeof proof === "function" ? await proof(actionId, token) : proof;
  const confirm = await h.request("POST", `/v1/actions/${actionId}/confirm`, { token, body });
  expect(confirm.statusCode, confirm.body).toBe(200);
  const next = (confirm.json().token as string | undefined) ?? token;
  const response = await h.request(method, url, {
    ...options,
    token: next,
    headers: { ...options.headers, "x-action-id": actionId },
  });
  return { response, token: next, actionId };
}

/** Enrolls an authenticator app (first factor: step-up with the password); returns its secret and codes. */
export async function enrollTotp(
  h: Harness,
  token: string,
  proof: StepUpProof,
): Promise<{ secret: Uint8Array; token: string; recoveryCodes: string[] | undefined; factorId: string }> {
  const start = await withStepUp(h, token, "POST", "/v1/security/totp", proof);
  expect(start.response.statusCode, start.response.body).toBe(200);
  const { enrollmentId, secret: base32, otpauthUri, qrSvg } = start.response.json();
  expect(otpauthUri).toMatch(/^otpauth:\/\/totp\//);
  expect(qrSvg).toMatch(/^<svg/);
  const secret = base32Decode(base32);
  const confirm = await h.request("POST", `/v1/security/totp/${enrollmentId}/confirm`, {
    token: start.token,
    body: { code: totpCode(secret, h.clock.now()), name: "Phone" },
  });
  expect(confirm.statusCode, confirm.body).toBe(200);
  return {
    secret,
    token: start.token,
    recoveryCodes: confirm.json().recoveryCodes,
    factorId: confirm.json().factorId,
  };
}

/** The next TOTP code nobody has used yet: the clock moves half a minute on (each step is accepted once). */
export function nextTotpCode(h: Harness, secret: Uint8Array): string {
  h.clock.advance(30_000);
  return totpCode(secret, h.clock.now());
}

export function base32Decode(input: string): Uint8Array {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const char of input.replace(/=+$/, "")) bits += alphabet.indexOf(char).toString(2).padStart(5, "0");
  const bytes = bits.match(/.{8}/g) ?? [];
  return new Uint8Array(bytes.map((b) => Number.parseInt(b, 2)));
}

/**
 * A pro-tier account with an authenticator and one API key created the way its owner would (step-up with
 * a TOTP code). Returns the user, the key as created (its secret shown this once), the session to go on
 * with and the account's id.
 */
export async function createKeyOwner(
  h: Harness,
  keyBody: Record<string, unknown>,
  user: Partial<TestUser> = {},
): Promise<{
  user: TestUser;
  key: { id: string; key: string; secret: string };
  session: string;
  accountId: string;
}> {
  const owner = await h.createVerifiedUser(user);
  const enrolled = await enrollTotp(h, await h.sessionToken(owner, "pro"), { password: owner.password });
  const created = await withStepUp(
    h,
    enrolled.token,
    "POST",
    "/v1/api-keys",
    { totp: nextTotpCode(h, enrolled.secret) },
    { body: keyBody },
  );
  expect(created.response.statusCode, created.response.body).toBe(201);
  const key = created.response.json() as { id: string; key: string; secret: string };
  return { user: owner, key, session: created.token, accountId: await h.accountId(owner) };
}
