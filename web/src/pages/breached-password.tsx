import { Link, useLocation } from "../router.js";
import { useSession } from "../session.js";
import { Notice } from "../ui.js";

/**
 * Shown on every page while a sign-in has found the account's password among those known from data
 * breaches (docs/behaviour.md §1): the account works as before, and the owner is asked to change it.
 */
export function BreachedPasswordNotice() {
  const { session } = useSession();
  const { path } = useLocation();
  if (!session?.account.passwordBreached) return null;
  return (
    <Notice tone="warning">
      <p>
        <strong>Change your password.</strong> It has appeared in a data breach, so attackers may try it
        against your account. Choose a new one that you use nowhere else.{" "}
        {path === "/security" ? (
          <a href="#password">Change it below</a>
        ) : (
          <Link href="/security#password">Change it in the security centre</Link>
        )}
        .
      </p>
    </Notice>
  );
}
