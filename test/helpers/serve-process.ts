import { type ChildProcess, spawn } from "node:child_process";

/**
 * A real `portcullis serve` in a child process on `port`, resolved once `/readyz` answers: what the crash
 * tests kill with SIGKILL. Its output is kept for the error when it does not come up.
 */
export async function startServe(env: Record<string, string>, port: number): Promise<ChildProcess> {
  const url = `http://127.0.0.1:${port}`;
  let output = "";
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve"], {
    env: { ...process.env, ...env, PORTCULLIS_PORT: String(port), PORTCULLIS_PUBLIC_URL: url },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    output += chunk;
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`server did not start:\n${output}`);
    const up = await fetch(`${url}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) return child;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Resolves once the process has exited (at once if it already has). */
export const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) =>
    child.exitCode !== null || child.signalCode ? resolve() : child.once("exit", () => resolve()),
  );
