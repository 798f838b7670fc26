import { createHash, createSign, generateKeyPairSync, type KeyObject, randomBytes } from "node:crypto";
import { type CBORType, encodeCBOR } from "@levischuck/tiny-cbor";
import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from "@simplewebauthn/server";

const b64url = (bytes: Uint8Array | Buffer) => Buffer.from(bytes).toString("base64url");
const sha256 = (data: Uint8Array | string) => createHash("sha256").update(data).digest();

/**
 * A FIDO2 authenticator in software: an ES256 key pair from node:crypto, "none" attestation, a sign
 * counter. It answers registration and assertion options exactly as a browser would pass a real key's
 * answers to the server, so WebAuthn runs end to end without a browser.
 */
/** What a test may get wrong on purpose in an assertion, as an attacker or a broken client would. */
export interface Tamper {
  origin?: string;
  /** clientDataJSON.type: "webauthn.get" unless set. */
  type?: string;
  /** The RP ID whose SHA-256 starts authenticatorData. */
  rpId?: string;
  /** The authenticatorData flags byte (UP = 0x01, UV = 0x04). */
  flags?: number;
  corruptSignature?: boolean;
  /** The user handle returned: the one stored at registration unless set; null leaves it out. */
  userHandle?: string | null;
}

export class SoftwareAuthenticator {
  readonly credentialId = randomBytes(16);
  private readonly privateKey: KeyObject;
  private readonly publicKey: KeyObject;
  signCount = 0;
  /** The user handle (user.id) of the registration, returned with every assertion as a passkey does. */
  userHandle: string | undefined;

  constructor(
    private readonly origin: string,
    readonly options: {
      attachment?: "platform" | "cross-platform";
      transports?: string[];
      /** Backup eligible and backed up (BE and BS flags): a synced passkey. */
      backedUp?: boolean;
      /** Without user verification at registration (the UV flag unset). */
      unverified?: boolean;
    } = {
      attachment: "cross-platform",
      transports: ["usb"],
    },
  ) {
    const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
    this.privateKey = pair.privateKey;
    this.publicKey = pair.publicKey;
  }

  get id(): string {
    return b64url(this.credentialId);
  }

  register(options: PublicKeyCredentialCreationOptionsJSON): RegistrationResponseJSON {
    this.userHandle = options.user.id;
    const clientDataJSON = Buffer.from(
      JSON.stringify({
        type: "webauthn.create",
        challenge: options.challenge,
        origin: this.origin,
        crossOrigin: false,
      }),
    );
    const jwk = this.publicKey.export({ format: "jwk" });
    const coseKey = new Map<number, number | Uint8Array>([
      [1, 2], // kty: EC2
      [3, -7], // alg: ES256
      [-1, 1], // crv: P-256
      [-2, Buffer.from(jwk.x!, "base64url")],
      [-3, Buffer.from(jwk.y!, "base64url")],
    ]);
    const credentialIdLength = Buffer.alloc(2);
    credentialIdLength.writeUInt16BE(this.credentialId.length);
    const authData = Buffer.concat([
      sha256(options.rp.id ?? new URL(this.origin).hostname),
      // User present, user verified, attested credential data; backup eligible and backed up if asked.
      Buffer.from([
        0x01 | (this.options.unverified ? 0 : 0x04) | 0x40 | (this.options.backedUp ? 0x08 | 0x10 : 0),
      ]),
      this.counterBytes(),
      Buffer.alloc(16), // AAGUID
      credentialIdLength,
      this.credentialId,
      Buffer.from(encodeCBOR(coseKey)),
    ]);
    const attestationObject = encodeCBOR(
      new Map<string, CBORType>([
        ["fmt", "none"],
        ["attStmt", new Map<string, CBORType>()],
        ["authData", new Uint8Array(authData)],
      ]),
    );
    return {
      id: this.id,
      rawId: this.id,
      type: "public-key",
      response: {
        clientDataJSON: b64url(clientDataJSON),
        attestationObject: b64url(attestationObject),
        transports: this.options.transports as never,
      },
      authenticatorAttachment: this.options.attachment,
      clientExtensionResults: {},
    };
  }

  assert(options: PublicKeyCredentialRequestOptionsJSON, tamper: Tamper = {}): AuthenticationResponseJSON {
    this.signCount += 1;
    return this.assertWithCount(options, this.signCount, tamper);
  }

  /** An assertion with a chosen counter, as a cloned key would produce. */
  assertWithCount(
    options: PublicKeyCredentialRequestOptionsJSON,
    count: number,
    tamper: Tamper = {},
  ): AuthenticationResponseJSON {
    const clientDataJSON = Buffer.from(
      JSON.stringify({
        type: tamper.type ?? "webauthn.get",
        challenge: options.challenge,
        origin: tamper.origin ?? this.origin,
      }),
    );
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(count);
    const authData = Buffer.concat([
      sha256(tamper.rpId ?? options.rpId ?? new URL(this.origin).hostname),
      // User present (0x01) and user verified (0x04), unless the test says otherwise.
      Buffer.from([tamper.flags ?? 0x01 | 0x04 | (this.options.backedUp ? 0x08 | 0x10 : 0)]),
      counter,
    ]);
    const signature = createSign("sha256")
      .update(Buffer.concat([authData, sha256(clientDataJSON)]))
      .sign(this.privateKey);
    // A signature made, then altered on the way: one bit of its last byte flipped.
    if (tamper.corruptSignature) signature[signature.length - 1]! ^= 0x01;
    return {
      id: this.id,
      rawId: this.id,
      type: "public-key",
      response: {
        clientDataJSON: b64url(clientDataJSON),
        authenticatorData: b64url(authData),
        signature: b64url(signature),
        ...(tamper.userHandle === null || (tamper.userHandle ?? this.userHandle) === undefined
          ? {}
          : { userHandle: tamper.userHandle ?? this.userHandle }),
      },
      authenticatorAttachment: this.options.attachment,
      clientExtensionResults: {},
    };
  }

  private counterBytes(): Buffer {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(this.signCount);
    return counter;
  }
}
