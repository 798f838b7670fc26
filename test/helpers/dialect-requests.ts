import { createHash, createHmac } from "node:crypto";
import { request as httpRequest } from "node:http";

/** A key as the tests hold it: its id, public string, secret and (KuCoin) passphrase. */
export interface DialectKey {
  id: string;
  key: string;
  secret: string;
  passphrase: string;
}

/** An answer read off the socket: the status and the JSON body (in the dialect's shape `J`). */
export interface RawAnswer<J = Record<string, unknown>> {
  status: number;
  json: J;
}

/**
 * KuCoin's headers, written from KuCoin's documentation (not the project's code): KC-API-SIGN is
 * base64(HMAC-SHA256(secret, timestamp + method + requestPath + body)), the requestPath with its query
 * string; KC-API-PASSPHRASE for key version 2 is base64(HMAC-SHA256(secret, passphrase)).
 */
export function kucoinHeaders(
  key: Pick<DialectKey, "key" | "secret" | "passphrase">,
  method: string,
  requestPath: string,
  body: string,
  timestamp: number,
  version = "2",
): Record<string, string> {
  const ts = String(timestamp);
  return {
    "KC-API-KEY": key.key,
    "KC-API-SIGN": createHmac("sha256", key.secret)
      .update(ts + method + requestPath + body)
      .digest("base64"),
    "KC-API-TIMESTAMP": ts,
    "KC-API-PASSPHRASE":
      version === "1"
        ? key.passphrase
        : createHmac("sha256", key.secret).update(key.passphrase).digest("base64"),
    "KC-API-KEY-VERSION": version,
    ...(body === "" ? {} : { "Content-Type": "application/json" }),
  };
}

/**
 * Kraken Futures' headers, written from its documentation: Authent is base64(HMAC-SHA512(base64-decoded
 * secret, SHA-256(postData + Nonce + endpointPath))), endpointPath without the /derivatives prefix.
 */
export function futuresHeaders(
  key: Pick<DialectKey, "key" | "secret">,
  endpointPath: string,
  postData: string,
  nonce = "",
): Record<string, string> {
  const digest = createHash("sha256")
    .update(postData + nonce + endpointPath)
    .digest();
  return {
    APIKey: key.key,
    Authent: createHmac("sha512", Buffer.from(key.secret, "base64")).update(digest).digest("base64"),
    ...(nonce === "" ? {} : { Nonce: nonce }),
    "Content-Type": "application/x-www-form-urlencoded",
  };
}

/**
 * A request over a socket to a listening server, the path as written (Node's client neither resolves nor
 * encodes it), from `address` as a trusted proxy names it.
 */
export function rawRequest<J = Record<string, unknown>>(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: string,
  address: string,
): Promise<RawAnswer<J>> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        headers: {
          ...headers,
          "content-length": String(Buffer.byteLength(body)),
          "x-forwarded-for": address,
        },
      },
      (response) => {
        let text = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          text += chunk;
        });
        response.on("end", () => resolve({ status: response.statusCode ?? 0, json: JSON.parse(text) }));
      },
    );
    request.on("error", reject);
    request.end(body);
  });
}
