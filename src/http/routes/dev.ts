import type { Services } from "../../services.js";
import type { App } from "../server.js";

const escapeHtml = (value: string) =>
  value.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );

/** Development only: the local outbox as a page, so a newcomer can click the links Portcullis emails. */
export function registerDevRoutes(app: App, services: Services): void {
  const mailbox = services.localMailbox;
  if (services.config.env !== "development" || !mailbox) return;

  app.get("/dev/mailbox.json", { schema: { hide: true } }, async () => ({ messages: await mailbox.list() }));

  // A stylesheet of its own: the page policy allows styles from this origin only, never inline ones.
  app.get("/dev/mailbox.css", { schema: { hide: true } }, async (_request, reply) => {
    reply.type("text/css; charset=utf-8");
    return "body{font:15px/1.5 system-ui,sans-serif;max-width:760px;margin:2rem auto;padding:0 1rem;color:#1b1f24}article{border:1px solid #d0d7de;border-radius:8px;padding:1rem;margin:1rem 0}pre{white-space:pre-wrap;font:inherit}";
  });

  app.get("/dev/mailbox", { schema: { hide: true } }, async (_request, reply) => {
    const messages = await mailbox.list();
    const items = messages
      .map((m) => {
        const text = escapeHtml(m.text).replace(/(https?:\/\/[^\s<]+)/g, '<a href="$1">$1</a>');
        return `<article><header><strong>${escapeHtml(m.subject)}</strong><br><small>to ${escapeHtml(m.to)} · ${new Date(m.createdAt).toISOString()}</small></header><pre>${text}</pre></article>`;
      })
      .join("\n");
    reply.type("text/html; charset=utf-8");
    return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>Development mailbox</title>
<link rel="stylesheet" href="/dev/mailbox.css"></head>
<body><h1>Development mailbox</h1><p>Emails Portcullis would have sent, newest first. Set PORTCULLIS_SMTP_URL to send real mail.</p>${items || "<p>No emails yet.</p>"}</body></html>`;
  });
}
