import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Harness } from "../helpers/harness.js";
import { engines } from "../helpers/storage.js";

/**
 * A step-up rotates its session (the old one ends, a successor begins) while the owner ends every
 * session ("disconnect all", a password change, a freeze): whichever commits first, no session of the
 * account may outlive the "end all".
 */
describe.each(engines)("a session rotated while every session is ended, on %s", (engine) => {
  let h: Harness;
  beforeAll(async () => {
    h = await Harness.create(engine);
  });
  afterAll(async () => {
    await h.close();
  });

  it("leaves no session of the account alive, whichever of the two commits first", async () => {
    const user = await h.createVerifiedUser();
    const accountId = await h.accountId(user);
    const { sessions } = h.services;
    for (let round = 0; round < 30; round += 1) {
      const { session } = await sessions.issue({
        accountId,
        client: "app",
        methods: ["password"],
        deviceId: null,
        context: { ip: "10.255.0.2", userAgent: null, location: null, country: null, city: null },
      });
      await Promise.all([
        sessions.rotate(session, ["totp"]),
        sessions.endAll(accountId, null, "disconnect_all"),
      ]);
      expect(await sessions.listActive(accountId), `round ${round}`).toEqual([]);
    }
  });
});
