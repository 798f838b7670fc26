import { type FormEvent, useState } from "react";
import { type Action, api } from "../api.js";
import { Link } from "../router.js";
import { type ConfirmedAction, useConfirmAction } from "../step-up.js";
import { Card, ErrorMessage, Field, Notice, Select, useTask } from "../ui.js";
import { useAddresses } from "./addresses.js";

/**
 * What a venue embeds where money moves (behaviour §8): the server builds the withdrawal from the request, the
 * dialog shows exactly what is signed, and the confirmed action's grant goes to the venue's backend.
 */
export function WithdrawDemoPage() {
  const { addresses, error } = useAddresses();
  const confirm = useConfirmAction();
  const task = useTask();
  const [addressId, setAddressId] = useState("");
  const [amount, setAmount] = useState("0.5");
  const [confirmed, setConfirmed] = useState<ConfirmedAction | null>(null);
  const usable = (addresses ?? []).filter((address) => address.state === "active");
  const chosen = usable.find((address) => address.id === addressId) ?? usable[0];

  async function withdraw(event: FormEvent) {
    event.preventDefault();
    if (!chosen) return;
    setConfirmed(null);
    const result = await task.run(async () => {
      const action = await api<Action>("POST", "/v1/actions", {
        body: {
          type: "withdraw",
          params: { asset: chosen.asset, amount: amount.trim(), addressId: chosen.id },
        },
      });
      if (action.state === "confirmed") return { state: action.state, action, grant: action.grant };
      return confirm(action);
    });
    if (result) setConfirmed(result);
  }

  return (
    <div className="page">
      <h1>Confirm a withdrawal</h1>
      <p>
        A demonstration of the confirmation a venue embeds: the dialog shows the server's description of the
        withdrawal and the digest your security key signs.
      </p>
      <ErrorMessage error={error} />
      <Card title="Withdraw">
        {addresses && usable.length === 0 ? (
          <p>
            No address is ready yet. <Link href="/addresses">Add one</Link>, confirm it from the email, and
            wait for its hold to end.
          </p>
        ) : (
          <form onSubmit={withdraw}>
            <Select
              label="To"
              name="addressId"
              value={chosen?.id ?? ""}
              onChange={setAddressId}
              options={usable.map((address) => ({
                value: address.id,
                label: `${address.label} (${address.asset}) ${address.address.slice(0, 10)}…`,
              }))}
            />
            <Field label="Amount" name="amount" inputMode="numeric" value={amount} onChange={setAmount} />
            <ErrorMessage error={task.error} />
            <button type="submit" className="primary" disabled={task.busy || !chosen}>
              Withdraw
            </button>
          </form>
        )}
      </Card>
      {confirmed ? (
        <Card title="Confirmed">
          <Notice tone="success">{confirmed.action.summary}: confirmed.</Notice>
          <p>The venue's backend receives this grant and redeems it once, within a minute:</p>
          <pre className="mono wrap grant" data-testid="grant">
            {confirmed.grant}
          </pre>
        </Card>
      ) : null}
    </div>
  );
}
