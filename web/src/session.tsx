import { createContext, type ReactNode, useCallback, useContext, useEffect, useState } from "react";
import { ApiError, api, onSessionEvent, type SessionInfo } from "./api.js";

interface SessionState {
  /** undefined while loading; null when signed out. */
  session: SessionInfo | null | undefined;
  /** The session this page had was ended by the server (not by signing out here): sign-in says so. */
  ended: boolean;
  refresh(): Promise<SessionInfo | null>;
  signOut(): Promise<void>;
}

const SessionContext = createContext<SessionState | null>(null);

/** The signed-in account, from GET /v1/session; the cookie itself is HttpOnly and never read here. */
export function SessionProvider({ children }: { children: ReactNode }) {
  const [session, setSession] = useState<SessionInfo | null | undefined>(undefined);
  const [ended, setEnded] = useState(false);
  const refresh = useCallback(async () => {
    try {
      const info = await api<SessionInfo>("GET", "/v1/session");
      setSession(info);
      setEnded(false);
      return info;
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.code === "enrollment_required")) {
        setSession(null);
        return null;
      }
      throw error;
    }
  }, []);
  const signOut = useCallback(async () => {
    await api("DELETE", "/v1/session").catch(() => {});
    setSession(null);
  }, []);
  useEffect(() => {
    refresh().catch(() => setSession(null));
  }, [refresh]);
  // Any page's request may learn that the session ended or its account was frozen meanwhile.
  useEffect(
    () =>
      onSessionEvent((event) => {
        if (event === "frozen") {
          refresh().catch(() => setSession(null));
          return;
        }
        setSession((current) => {
          if (current) setEnded(true);
          return current === undefined ? current : null;
        });
      }),
    [refresh],
  );
  return (
    <SessionContext.Provider value={{ session, ended, refresh, signOut }}>{children}</SessionContext.Provider>
  );
}

export function useSession(): SessionState {
  const state = useContext(SessionContext);
  if (!state) throw new Error("useSession needs a SessionProvider");
  return state;
}

/** The signed-in account on pages that are only shown signed in. */
export function useAccount(): SessionInfo {
  const { session } = useSession();
  if (!session) throw new Error("useAccount on a signed-out page");
  return session;
}
