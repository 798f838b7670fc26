import { useEffect, useState } from "react";
import { api, type SecurityOverview } from "./api.js";
import { Link } from "./router.js";
import { Notice } from "./ui.js";

/**
 * Whether the Global Settings Lock is on, read when a page that it blocks opens, so the page can say so
 * before the owner fills in a form the server would refuse. Null while unknown (the server decides).
 */
export function useSettingsLocked(): boolean | null {
  const [locked, setLocked] = useState<boolean | null>(null);
  useEffect(() => {
    let current = true;
    api<SecurityOverview>("GET", "/v1/security")
      .then((overview) => current && setLocked(overview.globalLock.enabled))
      .catch(() => current && setLocked(null));
    return () => {
      current = false;
    };
  }, []);
  return locked;
}

export function LockedNotice({ what }: { what: string }) {
  return (
    <Notice tone="info">
      Your Global Settings Lock is on, so {what} cannot be changed.{" "}
      <Link href="/security#lock">Unlock it in Security</Link> first.
    </Notice>
  );
}
