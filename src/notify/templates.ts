/**
 * Every email Portcullis sends, as plain text plus a simple HTML rendering. Each carries the owner's
 * anti-phishing code when set (SPEC §12), so a forged email is recognisable by its absence.
 */
export interface RenderedEmail {
  subject: string;
  text: string;
  html: string;
}

export interface EmailFrame {
  antiPhishingCode: string | null;
}

export interface SecurityEventDetails {
  at: string;
  ip: string;
  location: string | null;
  userAgent: string | null;
}

export type EmailMessage =
  | { kind: "verify_email"; username: string; link: string }
  | { kind: "sign_up_email_taken"; signInLink: string; resetLink: string }
  | { kind: "sign_up_username_taken"; username: string; signUpLink: string }
  | ({
      kind: "account_restricted";
      until: string | null;
      permanent: boolean;
      resetLink: string;
    } & SecurityEventDetails);

const escapeHtml = (value: string) =>
  value.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );

function describeRequest(details: SecurityEventDetails): string[] {
  return [
    `Time: ${details.at}`,
    `IP address: ${details.ip}`,
    `Location: ${details.location ?? "unknown"}`,
    `Browser / app: ${details.userAgent ?? "unknown"}`,
  ];
}

function body(message: EmailMessage): { subject: string; lines: string[] } {
  switch (message.kind) {
    case "verify_email":
      return {
        subject: "Verify your email address",
        lines: [
          `Welcome, ${message.username}.`,
          "Confirm this email address to finish creating your account:",
          message.link,
          "The link works once and expires in 24 hours. If you did not sign up, ignore this email.",
        ],
      };
    case "sign_up_email_taken":
      return {
        subject: "Someone tried to sign up with your email address",
        lines: [
          "Someone tried to create an account with this email address, but you already have one.",
          `Sign in: ${message.signInLink}`,
          `Forgot your password? ${message.resetLink}`,
          "If this was not you, no action is needed: no new account was created.",
        ],
      };
    case "sign_up_username_taken":
      return {
        subject: "Choose another username",
        lines: [
          `Someone signed up with this email address, but the username "${message.username}" is already taken.`,
          `Sign up again with another username: ${message.signUpLink}`,
          "If this was not you, ignore this email: no account was created.",
        ],
      };
    case "account_restricted":
      return {
        subject: message.permanent
          ? "Your account has been restricted"
          : "Your account is temporarily restricted after failed sign-in attempts",
        lines: [
          message.permanent
            ? "After 100 failed sign-in attempts in a row, your account has been restricted until you reset your password (with your Master Key, if you set one) or contact support."
            : `After repeated failed sign-in attempts, sign-in to your account is restricted until ${message.until}.`,
          "The last attempt:",
          ...describeRequest(message),
          "If this was you, wait and try again. If it was not, your password may be known to someone else:",
          `reset it now: ${message.resetLink}`,
          "Password reset works even while the account is restricted.",
        ],
      };
  }
}

export function renderEmail(message: EmailMessage, frame: EmailFrame): RenderedEmail {
  const { subject, lines } = body(message);
  const preamble = frame.antiPhishingCode ? [`Your anti-phishing code: ${frame.antiPhishingCode}`, ""] : [];
  const footer = ["", "— Portcullis security. We never ask for your password, 2FA codes or Master Key."];
  const text = [...preamble, ...lines, ...footer].join("\n");
  const html = [...preamble, ...lines, ...footer]
    .map((line) => {
      const escaped = escapeHtml(line);
      return /^https?:\/\/\S+$/.test(line)
        ? `<p><a href="${escaped}">${escaped}</a></p>`
        : `<p>${escaped}</p>`;
    })
    .join("\n");
  return { subject, text, html: `<!doctype html><html><body>${html}</body></html>` };
}
