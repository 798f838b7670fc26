import type { Account } from "../accounts/accounts.js";
import type { Product } from "../capabilities/policy.js";
import type { WithdrawalAddressBook } from "../security/withdrawal-addresses.js";
import { shortAddress } from "../security/withdrawal-addresses.js";
import { invalidRequest } from "../support/problem.js";

/** The funding and trading actions of docs/behaviour.md §8. */
export const transactionTypes = [
  "withdraw",
  "new_deposit_address",
  "transfer_futures",
  "place_order",
  "cancel_order",
] as const;
export type TransactionType = (typeof transactionTypes)[number];

export const productOf: Record<TransactionType, Product> = {
  withdraw: "withdraw.crypto",
  new_deposit_address: "deposit.crypto",
  transfer_futures: "futures",
  place_order: "spot",
  cancel_order: "spot",
};

const ASSET = /^[A-Z0-9]{2,10}$/;
const PAIR = /^[A-Z0-9]{2,10}\/[A-Z0-9]{2,10}$/;
// Amounts are decimal strings: a float would not say exactly what the owner signs.
const AMOUNT = /^(0|[1-9]\d{0,15})(\.\d{1,18})?$/;

export interface Transaction {
  type: TransactionType;
  params: Record<string, string | boolean>;
  summary: string;
}

function field(params: Record<string, unknown>, name: string, pattern: RegExp, hint: string): string {
  const value = params[name];
  if (typeof value !== "string" || !pattern.test(value))
    throw invalidRequest(`${name} must be ${hint}.`, [
      { field: `params.${name}`, message: `The ${name} must be ${hint}.` },
    ]);
  return value;
}

function positiveAmount(params: Record<string, unknown>, name: string): string {
  const value = field(params, name, AMOUNT, 'a positive decimal string such as "0.5"');
  if (/^0(\.0+)?$/.test(value))
    throw invalidRequest(`${name} must be more than zero.`, [
      { field: `params.${name}`, message: `The ${name} must be more than zero.` },
    ]);
  return value;
}

/**
 * Builds the action from the request: checks each parameter, keeps only the known ones (so the digest
 * covers exactly what is shown), and writes the summary the owner confirms.
 */
export async function describeTransaction(
  type: string,
  params: Record<string, unknown>,
  account: Account,
  addresses: WithdrawalAddressBook,
): Promise<Transaction> {
  switch (type) {
    case "withdraw": {
      const asset = field(params, "asset", ASSET, "an asset code such as BTC");
      const amount = positiveAmount(params, "amount");
      const addressId = field(
        params,
        "addressId",
        /^[0-9a-f-]{36}$/,
        "the id of an address in the address book",
      );
      const address = await addresses.assertUsable(account.id, addressId, asset);
      return {
        type,
        // The full address and its label are part of what is signed, so the owner confirms the
        // destination itself, not an id; a label or address changed since is a different action.
        params: { asset, amount, addressId, address: address.address, label: address.label },
        summary: `Withdraw ${amount} ${asset} to ${shortAddress(address)}`,
      };
    }
    case "new_deposit_address": {
      const asset = field(params, "asset", ASSET, "an asset code such as BTC");
      return { type, params: { asset }, summary: `Create a new ${asset} deposit address` };
    }
    case "transfer_futures": {
      const asset = field(params, "asset", ASSET, "an asset code such as USD");
      const amount = positiveAmount(params, "amount");
      return {
        type,
        params: { asset, amount },
        summary: `Transfer ${amount} ${asset} to the futures wallet`,
      };
    }
    case "place_order": {
      const pair = field(params, "pair", PAIR, "a pair such as BTC/USD");
      const side = field(params, "side", /^(buy|sell)$/, "buy or sell");
      const orderType = field(params, "type", /^(market|limit)$/, "market or limit");
      const volume = positiveAmount(params, "volume");
      const price = orderType === "limit" ? positiveAmount(params, "price") : undefined;
      const [base, quote] = pair.split("/");
      // Post-only: the order may only add liquidity (what a market in post_only mode accepts).
      if (params.postOnly !== undefined && typeof params.postOnly !== "boolean")
        throw invalidRequest("postOnly is true or false.", [{ field: "postOnly", message: "true or false" }]);
      const postOnly = params.postOnly === true;
      if (postOnly && orderType !== "limit")
        throw invalidRequest("Only a limit order can be post-only.", [
          { field: "postOnly", message: "limit orders only" },
        ]);
      return {
        type,
        params: {
          pair,
          side,
          type: orderType,
          volume,
          ...(price ? { price } : {}),
          ...(postOnly ? { postOnly } : {}),
        },
        summary: `${side === "buy" ? "Buy" : "Sell"} ${volume} ${base} ${price ? `at ${price} ${quote} (limit${postOnly ? ", post-only" : ""})` : "at market"}`,
      };
    }
    case "cancel_order": {
      const orderId = field(params, "orderId", /^[A-Za-z0-9_-]{1,64}$/, "the order id");
      return { type, params: { orderId }, summary: `Cancel order ${orderId}` };
    }
    default:
      throw invalidRequest(`type must be one of ${transactionTypes.join(", ")}.`, [
        { field: "type", message: `The type must be one of: ${transactionTypes.join(", ")}.` },
      ]);
  }
}
