import type { ApiKeyService } from "../api-keys/api-keys.js";
import { advanceSecurityEpoch } from "../flows/one-time-tokens.js";
import type { DeviceService } from "../sessions/devices.js";
import type { SessionService } from "../sessions/sessions.js";
import type { ChangeRequest, SettingChanges } from "./setting-changes.js";

/**
 * "Disconnect all devices": every device forgotten and every session ended, this one too. A step-up
 * first (a stolen session must not lock the owner out in one request); allowed under the Global Settings
 * Lock, since it only takes access away. API keys are not sessions: the email names every key that still
 * works, with one link that disables them all.
 */
export class DisconnectAll {
  constructor(
    private readonly changes: SettingChanges,
    private readonly devices: DeviceService,
    private readonly sessions: SessionService,
    private readonly apiKeys: ApiKeyService,
  ) {}

  run(request: ChangeRequest): Promise<{ removedDevices: number; endedSessions: number }> {
    return this.changes.run(
      request,
      {
        stepUp: {
          type: "disconnect_all",
          params: {},
          summary: "Sign out every device and forget them all",
        },
        whileLocked: "allowed",
      },
      async (trx) => {
        const { account, context } = request;
        const removed = await this.devices.removeAll(account.id, trx);
        const ended = await this.sessions.endAllWithin(trx, account.id, null, "disconnect_all");
        // The links already emailed (a reset, an email change's confirmation, a device approval) die too.
        await advanceSecurityEpoch(trx, account.id);
        const keys = await this.apiKeys.stillActiveNotice(trx, account.id, context);
        return {
          result: { removedDevices: removed, endedSessions: ended },
          event: "device.disconnect_all",
          details: { removed, ended },
          change: "signed out every device (every session ended)",
          emails: keys ? [keys] : [],
        };
      },
    );
  }
}
