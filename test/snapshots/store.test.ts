/**
 * The filesystem snapshot store: content-addressed files, atomic writes (a process killed
 * mid-write leaves no partial snapshot under a real name), size accounting, TTL collection.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { FsSnapshotStore, MemorySnapshotStore } from "../../src/index.ts";

const idOf = (bytes: Uint8Array) => createHash("sha3-256").update(bytes).digest("hex");
const directory = () => mkdtempSync(join(tmpdir(), "snapshot-store-"));
const HOUR = 3_600_000;

describe("FsSnapshotStore", () => {
  it("stores bytes under their id, lists, accounts and deletes them", async () => {
    const dir = directory();
    const store = new FsSnapshotStore({ directory: dir });
    const bytes = new Uint8Array(randomBytes(1_000));
    const id = idOf(bytes);
    const stored = await store.put(id, bytes);
    expect(stored).toMatchObject({ id, bytes: 1_000 });
    expect(existsSync(join(dir, id.slice(0, 2), `${id}.snap`))).toBe(true);
    expect(Buffer.from((await store.get(id))!)).toEqual(Buffer.from(bytes));
    // Content-addressed: the same bytes again are not stored twice.
    await store.put(id, bytes);
    expect(await store.usage()).toMatchObject({ bytes: 1_000, count: 1 });
    expect((await store.list()).map((entry) => entry.id)).toEqual([id]);
    // A second store over the same directory sees it (hosts sharing a filesystem).
    expect(await new FsSnapshotStore({ directory: dir }).usage()).toMatchObject({ count: 1 });
    expect(await store.delete(id)).toBe(true);
    expect(await store.delete(id)).toBe(false);
    expect(await store.get(id)).toBeNull();
    expect(await store.get("../../etc/passwd")).toBeNull();
    expect(await store.usage()).toMatchObject({ bytes: 0, count: 0 });
  });

  it("counts concurrent puts of one snapshot once", async () => {
    const store = new FsSnapshotStore({ directory: directory() });
    const bytes = new Uint8Array(randomBytes(50_000));
    const id = idOf(bytes);
    await Promise.all([store.put(id, bytes), store.put(id, bytes), store.put(id, bytes)]);
    expect(await store.usage()).toMatchObject({ bytes: 50_000, count: 1 });
  });

  it("refuses past its quota, after collecting what expired", async () => {
    const store = new FsSnapshotStore({ directory: directory(), maxBytes: 3_000, ttlMs: HOUR });
    const first = new Uint8Array(randomBytes(2_000));
    const second = new Uint8Array(randomBytes(2_000));
    await store.put(idOf(first), first);
    await expect(store.put(idOf(second), second)).rejects.toMatchObject({
      code: "SNAPSHOT_STORE_FULL",
    });
    expect(await store.usage()).toMatchObject({ bytes: 2_000, count: 1, max_bytes: 3_000 });
    // Once the first expires, collection makes room.
    expect(await store.gc(Date.now() + 2 * HOUR)).toBe(1);
    await store.put(idOf(second), second);
    expect((await store.list()).map((entry) => entry.id)).toEqual([idOf(second)]);
  });

  it("collects expired snapshots but those it is told to keep, and stray temporary files", async () => {
    const dir = directory();
    const store = new FsSnapshotStore({ directory: dir, ttlMs: HOUR });
    const kept = new Uint8Array(randomBytes(100));
    const dropped = new Uint8Array(randomBytes(100));
    await store.put(idOf(kept), kept);
    await store.put(idOf(dropped), dropped);
    // What a process killed mid-write leaves: a temporary file, never a real name.
    const stray = join(dir, "tmp", `${"ab".repeat(32)}.x.part`);
    writeFileSync(stray, "partial");
    const old = new Date(Date.now() - 2 * HOUR);
    utimesSync(stray, old, old);
    expect((await store.list()).length).toBe(2);
    expect(await store.gc(Date.now() + 2 * HOUR, new Set([idOf(kept)]))).toBe(1);
    expect((await store.list()).map((entry) => entry.id)).toEqual([idOf(kept)]);
    expect(existsSync(stray)).toBe(false);
  });

  it("a process killed while writing leaves the whole snapshot or none", async () => {
    const dir = directory();
    const script = join(dir, "writer.ts");
    const storeModule = fileURLToPath(new URL("../../src/snapshot/store.ts", import.meta.url));
    writeFileSync(
      script,
      `import { createHash } from "node:crypto";
import { FsSnapshotStore } from ${JSON.stringify(storeModule)};
const bytes = new Uint8Array(64 * 1_048_576).fill(7);
const id = createHash("sha3-256").update(bytes).digest("hex");
process.stdout.write(id + "\\n");
await new FsSnapshotStore({ directory: ${JSON.stringify(join(dir, "store"))} }).put(id, bytes);
process.stdout.write("done\\n");
`,
    );
    for (const delayMs of [0, 10, 25, 50, 100, 200]) {
      const child = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"] });
      const exited = new Promise((resolve) => child.once("exit", resolve));
      const id = await new Promise<string>((resolve) => {
        child.stdout.once("data", (chunk: Buffer) => resolve(chunk.toString().trim().slice(0, 64)));
      });
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      child.kill("SIGKILL");
      await exited;
      const store = new FsSnapshotStore({ directory: join(dir, "store") });
      const found = await store.get(id);
      // Either absent, or complete and intact: never a prefix under the real name.
      if (found) expect(idOf(found)).toBe(id);
      const shard = join(dir, "store", id.slice(0, 2));
      const names = existsSync(shard) ? readdirSync(shard) : [];
      expect(names.every((name) => name === `${id}.snap`)).toBe(true);
      await store.delete(id);
    }
  }, 30_000);
});

describe("MemorySnapshotStore", () => {
  it("keeps, lists, bounds and collects snapshots", async () => {
    const store = new MemorySnapshotStore({ maxBytes: 150, ttlMs: HOUR });
    const a = new Uint8Array(randomBytes(100));
    const b = new Uint8Array(randomBytes(100));
    await store.put(idOf(a), a);
    await expect(store.put(idOf(b), b)).rejects.toMatchObject({ code: "SNAPSHOT_STORE_FULL" });
    await expect(store.put("nope", b)).rejects.toMatchObject({ code: "SNAPSHOT_NOT_FOUND" });
    expect(await store.gc(Date.now() + 2 * HOUR, new Set([idOf(a)]))).toBe(0);
    expect(await store.gc(Date.now() + 2 * HOUR)).toBe(1);
    await store.put(idOf(b), b);
    expect(await store.usage()).toEqual({ bytes: 100, count: 1, max_bytes: 150 });
  });
});
