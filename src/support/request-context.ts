/** Who is knocking, as far as the request tells: passed from routes into services for audit and emails. */
export interface RequestContext {
  ip: string;
  userAgent: string | null;
  /** "City, CC" from the offline IP database, or null when unknown (private ranges, loopback). */
  location: string | null;
  country: string | null;
  city: string | null;
}

export const systemContext: RequestContext = {
  ip: "127.0.0.1",
  userAgent: "portcullis-cli",
  location: null,
  country: null,
  city: null,
};
