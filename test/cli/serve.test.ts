import { type ChildProcess, execFile, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../helpers/free-port.js";

const run = promisify(execFile);

async function waitForHealth(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited early:\n${output()}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`server did not become healthy:\n${output()}`);
}

describe("portcullis serve, as a process", () => {
  let child: ChildProcess | null = null;
  let dir = "";
  afterEach(() => {
    child?.kill("SIGKILL");
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("starts on SQLite with no set-up, writes mail to the local outbox, and shuts down gracefully", async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-serve-"));
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    let output = "";
    child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve"], {
      env: {
        ...process.env,
        PORTCULLIS_DATABASE_URL: `sqlite:${path.join(dir, "portcullis.db")}`,
        PORTCULLIS_PORT: String(port),
        PORTCULLIS_PUBLIC_URL: url,
        PORTCULLIS_BOT_CHECK: "off",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.on("data", (chunk) => {
      output += chunk;
    });
    child.stderr?.on("data", (chunk) => {
      output += chunk;
    });
    await waitForHealth(url, child, () => output);

    const signUp = await fetch(`${url}/v1/accounts`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        email: "first@example.test",
        username: "first_trader",
        password: "violet tractor mango 42",
        country: "DE",
      }),
    });
    expect(signUp.status).toBe(202);
    // The development outbox: a JSON file per email, and /dev/mailbox to read them.
    const deadline = Date.now() + 10_000;
    let mailbox = "";
    while (Date.now() < deadline && !mailbox.includes("Verify your email")) {
      mailbox = await (await fetch(`${url}/dev/mailbox`)).text();
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(mailbox).toContain("Verify your email");
    expect(mailbox).toContain(`${url}/verify-email?token=`);
    expect(fs.readdirSync(path.join(dir, "outbox")).length).toBe(1);
    expect(fs.statSync(path.join(dir, "secret.key")).mode & 0o777).toBe(0o600);

    const exited = new Promise<number | null>((resolve) => child!.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(output).toMatch(/shutting down/);

    const cli = await run("npx", ["tsx", "src/cli/main.ts", "audit", "verify"], {
      env: { ...process.env, PORTCULLIS_DATABASE_URL: `sqlite:${path.join(dir, "portcullis.db")}` },
    });
    // The sign-up's entry in the server's chain, and in the root chain that chain's opening and, from the
    // graceful shutdown, its end.
    expect(cli.stdout).toMatch(/audit log intact: 3 entries checked in 2 chains/);
    const migrate = await run("npx", ["tsx", "src/cli/main.ts", "migrate"], {
      env: { ...process.env, PORTCULLIS_DATABASE_URL: `sqlite:${path.join(dir, "portcullis.db")}` },
    });
    expect(migrate.stdout).toMatch(/schema is up to date/);
  });
});
