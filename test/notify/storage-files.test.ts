import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/config/env.js";
import { loadDataKey } from "../../src/crypto/data-key.js";
import { migrateToLatest, openStorage } from "../../src/db/database.js";

/** Files that hold secrets are the owner's alone. */
describe("files at rest", () => {
  const folders: string[] = [];
  const folder = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-files-"));
    folders.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of folders.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });
  const modeOf = (file: string) => fs.statSync(file).mode & 0o777;

  it("creates the SQLite file and its WAL and shared-memory files readable by the owner only", async () => {
    const previous = process.umask(0o022);
    try {
      const file = path.join(folder(), "portcullis.db");
      const storage = openStorage(`sqlite:${file}`);
      await migrateToLatest(storage);
      for (const name of [file, `${file}-wal`, `${file}-shm`]) {
        expect(fs.existsSync(name), name).toBe(true);
        expect(modeOf(name).toString(8), name).toBe("600");
      }
      await storage.close();
    } finally {
      process.umask(previous);
    }
  });

  it("tightens an existing database file others could read", async () => {
    const file = path.join(folder(), "portcullis.db");
    fs.writeFileSync(file, "");
    fs.chmodSync(file, 0o644);
    const storage = openStorage(`sqlite:${file}`);
    await migrateToLatest(storage);
    expect(modeOf(file).toString(8)).toBe("600");
    await storage.close();
  });

  it("creates the development data key 0600 and refuses one others can read, with one clear line", () => {
    const dir = folder();
    loadDataKey(undefined, dir);
    const keyFile = path.join(dir, "secret.key");
    expect(modeOf(keyFile).toString(8)).toBe("600");
    fs.chmodSync(keyFile, 0o644);
    expect(() => loadDataKey(undefined, dir)).toThrow(ConfigError);
    expect(() => loadDataKey(undefined, dir)).toThrow(
      `PORTCULLIS_DATA_DIR: the data key file ${keyFile} can be read by other users (mode 644); run chmod 600 ${keyFile}`,
    );
  });
});
