import "altcha/external";
import "altcha/altcha.css";
import ShaWorker from "altcha/workers/sha?worker";
import { useEffect, useRef } from "react";

// The "external" build ships no inline worker, so the page's CSP needs no blob: or inline script: the
// SHA worker is a file of its own from this origin. The server's challenges use SHA-256 (behaviour §3).
for (const algorithm of ["SHA-256", "SHA-384", "SHA-512"]) {
  globalThis.$altcha.algorithms.set(algorithm, () => new ShaWorker());
}

export interface BotCheckHandle {
  /** The solved payload for the request (`botCheck`), solving first if the widget has not finished. */
  solve(): Promise<string>;
  /** A payload is single-use: after each attempt the widget solves a fresh challenge. */
  renew(): void;
}

/**
 * The ALTCHA proof-of-work widget (behaviour §3): it fetches a challenge from /v1/bot-check and solves it in
 * the browser as soon as the form appears, so the person never waits for it.
 */
export function BotCheck({ handle }: { handle: React.RefObject<BotCheckHandle | null> }) {
  const widget = useRef<HTMLElement>(null);
  const payload = useRef<string | null>(null);

  useEffect(() => {
    const element = widget.current as HTMLElementTagNameMap["altcha-widget"] | null;
    if (!element) return;
    const onVerified = (event: Event) => {
      payload.current = (event as CustomEvent<{ payload: string }>).detail.payload;
    };
    const onExpired = () => {
      payload.current = null;
    };
    element.addEventListener("verified", onVerified);
    element.addEventListener("expired", onExpired);
    handle.current = {
      async solve() {
        if (payload.current) return payload.current;
        const result = await element.verify();
        if (!result?.payload)
          throw new Error("The bot check could not be completed. Reload the page and try again.");
        payload.current = result.payload;
        return result.payload;
      },
      renew() {
        payload.current = null;
        element.reset();
        void element.verify();
      },
    };
    return () => {
      element.removeEventListener("verified", onVerified);
      element.removeEventListener("expired", onExpired);
      handle.current = null;
    };
  }, [handle]);

  return (
    <div className="field">
      <altcha-widget ref={widget} challenge="/v1/bot-check" auto="onload" name="botCheck" />
    </div>
  );
}
