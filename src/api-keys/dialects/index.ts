import type { Dialect, DialectName } from "./dialect.js";
import { kraken } from "./kraken.js";
import { krakenFutures } from "./kraken-futures.js";
import { kucoin } from "./kucoin.js";

/** Every dialect by name. */
export const dialects: Record<DialectName, Dialect> = {
  kraken,
  kucoin,
  kraken_futures: krakenFutures,
};
