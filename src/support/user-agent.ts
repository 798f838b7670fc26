/**
 * A readable label for a User-Agent header, built only from fixed words ("Chrome on Linux", "unknown
 * browser"). The header is whatever the client chose to send: it is never copied into anything a person
 * reads as coming from us (security emails vouch for themselves with the owner's anti-phishing code, so
 * an attacker's text must not appear under it). Unrecognised clients are "unknown browser".
 *
 * Order matters: browsers built on Chromium also announce "Chrome/" and "Safari/", and every Chromium
 * and WebKit browser on iOS announces "Safari/", so the more specific tokens are tested first.
 */
const browsers: [RegExp, string][] = [
  [/\bEdg(?:e|A|iOS)?\//, "Edge"],
  [/\b(?:OPR|Opera|OPiOS)\//, "Opera"],
  [/\bSamsungBrowser\//, "Samsung Internet"],
  [/\bYaBrowser\//, "Yandex Browser"],
  [/\bVivaldi\//, "Vivaldi"],
  [/\b(?:Firefox|FxiOS)\//, "Firefox"],
  // Chrome without a window, as automation drives it: worth telling apart from someone's own browser.
  [/\bHeadlessChrome\//, "Headless Chrome"],
  [/\b(?:Chrome|CriOS|Chromium)\//, "Chrome"],
  [/\bVersion\/[\d.]+.*\bSafari\//, "Safari"],
];

const systems: [RegExp, string][] = [
  [/\bWindows (?:NT|Phone)\b/, "Windows"],
  [/\bAndroid\b/, "Android"],
  [/\b(?:iPhone|iPad|iPod)\b/, "iOS"],
  [/\bCrOS\b/, "ChromeOS"],
  [/\bMacintosh\b|\bMac OS X\b/, "macOS"],
  [/\bLinux\b|\bX11\b/, "Linux"],
];

/** The label for a command-line session: set by the CLI itself, not by a client. */
const CLI_USER_AGENT = "portcullis-cli";

export function describeUserAgent(userAgent: string | null | undefined): string {
  if (!userAgent) return "unknown browser";
  if (userAgent === CLI_USER_AGENT) return "the Portcullis command line";
  const browser = browsers.find(([pattern]) => pattern.test(userAgent))?.[1] ?? "unknown browser";
  const system = systems.find(([pattern]) => pattern.test(userAgent))?.[1];
  return system ? `${browser} on ${system}` : browser;
}
