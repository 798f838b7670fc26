import fs from "node:fs";
import path from "node:path";
import nodemailer, { type Transporter } from "nodemailer";

export interface OutgoingEmail {
  id: string;
  from: string;
  to: string;
  subject: string;
  text: string;
  html: string;
  kind: string;
  createdAt: number;
}

/** Hands a message to the world; throws when it could not (the outbox then retries later). */
export interface MailTransport {
  deliver(message: OutgoingEmail): Promise<void>;
  close?(): void;
}

export class SmtpTransport implements MailTransport {
  private readonly transporter: Transporter;
  constructor(smtpUrl: string) {
    this.transporter = nodemailer.createTransport(smtpUrl, {});
  }
  async deliver(message: OutgoingEmail): Promise<void> {
    await this.transporter.sendMail({
      from: message.from,
      to: message.to,
      subject: message.subject,
      text: message.text,
      html: message.html,
      messageId: `<${message.id}@portcullis>`,
      headers: { "X-Portcullis-Kind": message.kind },
    });
  }
  close(): void {
    this.transporter.close();
  }
}

/** Development: every message becomes a JSON file in the data folder, listed at /dev/mailbox. */
export class LocalOutboxTransport implements MailTransport {
  constructor(readonly folder: string) {}
  async deliver(message: OutgoingEmail): Promise<void> {
    await fs.promises.mkdir(this.folder, { recursive: true });
    const file = path.join(this.folder, `${message.createdAt}-${message.id}.json`);
    await fs.promises.writeFile(file, JSON.stringify(message, null, 2), { mode: 0o600 });
  }
  async list(limit = 100): Promise<OutgoingEmail[]> {
    let names: string[];
    try {
      names = await fs.promises.readdir(this.folder);
    } catch {
      return [];
    }
    const newest = names
      .filter((name) => name.endsWith(".json"))
      .sort()
      .reverse()
      .slice(0, limit);
    return Promise.all(
      newest.map(async (name) =>
        JSON.parse(await fs.promises.readFile(path.join(this.folder, name), "utf8")),
      ),
    );
  }
}
