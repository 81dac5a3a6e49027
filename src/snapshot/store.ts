/**
 * Where snapshots are kept: a {@link SnapshotStore} interface and its filesystem default.
 *
 * {@link FsSnapshotStore} is content-addressed (a snapshot's file is named by its id, the
 * SHA3-256 of its bytes, under a two-character shard directory), and writes atomically: bytes
 * go to a temporary file that is fsynced, renamed into place, and the directory fsynced — a
 * kill mid-write leaves a stray temporary file (collected later), never a partial snapshot
 * under a real name. It keeps a running total of bytes against `maxBytes`, and `gc()` deletes
 * snapshots older than `ttlMs` and temporary files older than an hour.
 *
 * Hosts that share the store's directory (a shared filesystem) share its snapshots.
 *
 * Source: node:fs/promises.
 * @module
 */
import { randomUUID } from "node:crypto";
import {
  constants,
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
} from "node:fs/promises";
import { join } from "node:path";
import { type ErrorCode, SandboxError } from "../errors.ts";

/** One stored snapshot. */
export interface StoredSnapshot {
  id: string;
  bytes: number;
  /** Unix epoch ms it was stored. */
  stored_at: number;
}

/** A place to keep snapshots by id. Implementations must be safe for concurrent calls. */
export interface SnapshotStore {
  /**
   * Stores bytes under their id (content-addressed: storing the same bytes twice is a no-op).
   * @throws SandboxError `SNAPSHOT_STORE_FULL`.
   */
  put(id: string, bytes: Uint8Array): Promise<StoredSnapshot>;
  /** The bytes of a snapshot, or null. */
  get(id: string): Promise<Uint8Array | null>;
  /** Deletes a snapshot; answers whether it existed. */
  delete(id: string): Promise<boolean>;
  /** Every snapshot, newest first. */
  list(): Promise<StoredSnapshot[]>;
  /** Bytes held and the quota. */
  usage(): Promise<{ bytes: number; count: number; max_bytes: number }>;
  /**
   * Deletes snapshots older than the store's TTL (but those in `keep`) and stray temporary
   * files; answers how many snapshots went.
   */
  gc(now?: number, keep?: ReadonlySet<string>): Promise<number>;
}

/** Options of {@link FsSnapshotStore}. */
export interface FsSnapshotStoreOptions {
  /** Directory of the store (created if missing). */
  directory: string;
  /** Most bytes held at once (default 4 GiB). */
  maxBytes?: number;
  /** Age after which `gc()` deletes a snapshot, in ms (default 7 days). */
  ttlMs?: number;
  /**
   * What the store keeps, for reuse as another content-addressed store (e.g. artifacts):
   * file extension (default `.snap`), the noun in messages (default `snapshot`), and the codes
   * for a full store and an id that is not one (default `SNAPSHOT_STORE_FULL`,
   * `SNAPSHOT_NOT_FOUND`).
   */
  kind?: { extension: string; noun: string; fullCode: ErrorCode; badIdCode: ErrorCode };
}

const SNAPSHOT_KIND = {
  extension: ".snap",
  noun: "snapshot",
  fullCode: "SNAPSHOT_STORE_FULL",
  badIdCode: "SNAPSHOT_NOT_FOUND",
} as const;

const ID = /^[0-9a-f]{64}$/;
const TEMP_TTL_MS = 3_600_000;

/** See the module comment. */
export class FsSnapshotStore implements SnapshotStore {
  readonly #directory: string;
  readonly #tmp: string;
  readonly #maxBytes: number;
  readonly #ttlMs: number;
  #totals: Promise<{ bytes: number; count: number }> | null = null;
  readonly #inflight = new Map<string, Promise<StoredSnapshot>>();
  readonly #kind: NonNullable<FsSnapshotStoreOptions["kind"]>;

  constructor(options: FsSnapshotStoreOptions) {
    this.#kind = options.kind ?? SNAPSHOT_KIND;
    this.#directory = options.directory;
    this.#tmp = join(options.directory, "tmp");
    this.#maxBytes = options.maxBytes ?? 4 * 1_073_741_824;
    this.#ttlMs = options.ttlMs ?? 7 * 86_400_000;
  }

  #path(id: string): string {
    if (!ID.test(id)) {
      throw new SandboxError(
        this.#kind.badIdCode,
        `'${id}' is not a ${this.#kind.noun} id (64 hex digits).`,
      );
    }
    return join(this.#directory, id.slice(0, 2), `${id}${this.#kind.extension}`);
  }

  async #scan(): Promise<StoredSnapshot[]> {
    const found: StoredSnapshot[] = [];
    let shards: string[] = [];
    try {
      shards = await readdir(this.#directory);
    } catch {
      return found;
    }
    for (const shard of shards) {
      if (shard === "tmp" || shard.length !== 2) continue;
      let names: string[] = [];
      try {
        names = await readdir(join(this.#directory, shard));
      } catch {
        continue;
      }
      for (const name of names) {
        if (!name.endsWith(this.#kind.extension)) continue;
        const id = name.slice(0, -this.#kind.extension.length);
        if (!ID.test(id)) continue;
        try {
          const info = await stat(join(this.#directory, shard, name));
          found.push({ id, bytes: info.size, stored_at: info.mtimeMs });
        } catch {
          // deleted meanwhile
        }
      }
    }
    return found;
  }

  async #totalsNow(): Promise<{ bytes: number; count: number }> {
    this.#totals ??= this.#scan().then((all) => ({
      bytes: all.reduce((sum, entry) => sum + entry.bytes, 0),
      count: all.length,
    }));
    return this.#totals;
  }

  async put(id: string, bytes: Uint8Array): Promise<StoredSnapshot> {
    const path = this.#path(id);
    // Two puts of one id at once write once (and count once).
    const inflight = this.#inflight.get(id);
    if (inflight) return inflight;
    const writing = this.#write(id, path, bytes);
    this.#inflight.set(id, writing);
    try {
      return await writing;
    } finally {
      this.#inflight.delete(id);
    }
  }

  async #write(id: string, path: string, bytes: Uint8Array): Promise<StoredSnapshot> {
    try {
      const existing = await stat(path);
      return { id, bytes: existing.size, stored_at: existing.mtimeMs };
    } catch {
      // not stored yet
    }
    const totals = await this.#totalsNow();
    if (totals.bytes + bytes.byteLength > this.#maxBytes) {
      await this.gc();
      const after = await this.#totalsNow();
      if (after.bytes + bytes.byteLength > this.#maxBytes) {
        throw new SandboxError(
          this.#kind.fullCode,
          `The ${this.#kind.noun} store holds ${after.bytes} of ${this.#maxBytes} bytes; this ${this.#kind.noun} needs ${bytes.byteLength}.`,
        );
      }
    }
    await mkdir(this.#tmp, { recursive: true });
    await mkdir(join(this.#directory, id.slice(0, 2)), { recursive: true });
    const temporary = join(this.#tmp, `${id}.${randomUUID()}.part`);
    let handle: FileHandle | undefined;
    try {
      handle = await open(
        temporary,
        constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY,
        0o600,
      );
      await handle.writeFile(bytes);
      await handle.sync();
      await handle.close();
      handle = undefined;
      await rename(temporary, path);
      await fsyncDirectory(join(this.#directory, id.slice(0, 2)));
    } catch (error) {
      await handle?.close().catch(() => {});
      await rm(temporary, { force: true });
      throw error;
    }
    totals.bytes += bytes.byteLength;
    totals.count += 1;
    return { id, bytes: bytes.byteLength, stored_at: Date.now() };
  }

  async get(id: string): Promise<Uint8Array | null> {
    if (!ID.test(id)) return null;
    try {
      return await readFile(this.#path(id));
    } catch {
      return null;
    }
  }

  async delete(id: string): Promise<boolean> {
    if (!ID.test(id)) return false;
    const path = this.#path(id);
    // The totals are known before the file goes, so a first scan does not miss it twice.
    const totals = await this.#totalsNow();
    let size: number;
    try {
      size = (await stat(path)).size;
      await unlink(path);
    } catch {
      return false;
    }
    totals.bytes -= size;
    totals.count -= 1;
    return true;
  }

  async list(): Promise<StoredSnapshot[]> {
    return (await this.#scan()).sort((a, b) => b.stored_at - a.stored_at);
  }

  async usage(): Promise<{ bytes: number; count: number; max_bytes: number }> {
    const totals = await this.#totalsNow();
    return { bytes: totals.bytes, count: totals.count, max_bytes: this.#maxBytes };
  }

  async gc(now = Date.now(), keep: ReadonlySet<string> = new Set()): Promise<number> {
    let removed = 0;
    for (const entry of await this.#scan()) {
      if (keep.has(entry.id) || now - entry.stored_at < this.#ttlMs) continue;
      if (await this.delete(entry.id)) removed += 1;
    }
    let temporaries: string[] = [];
    try {
      temporaries = await readdir(this.#tmp);
    } catch {
      temporaries = [];
    }
    for (const name of temporaries) {
      const path = join(this.#tmp, name);
      try {
        if (now - (await stat(path)).mtimeMs >= TEMP_TTL_MS) await unlink(path);
      } catch {
        // gone already
      }
    }
    return removed;
  }
}

/** Makes a rename in `directory` durable. */
async function fsyncDirectory(directory: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(directory, constants.O_RDONLY);
    await handle.sync();
  } catch {
    // Some filesystems cannot fsync a directory; the rename is still atomic.
  } finally {
    await handle?.close().catch(() => {});
  }
}

/** Options of {@link MemorySnapshotStore}. */
export interface MemorySnapshotStoreOptions {
  /** Most bytes held at once (default 256 MiB). */
  maxBytes?: number;
  /** Age after which `gc()` deletes a snapshot, in ms (default 7 days). */
  ttlMs?: number;
}

/**
 * A {@link SnapshotStore} in this process's memory: for tests and embedders that keep
 * snapshots elsewhere. Nothing survives the process.
 */
export class MemorySnapshotStore implements SnapshotStore {
  readonly #entries = new Map<string, { bytes: Uint8Array; stored_at: number }>();
  readonly #maxBytes: number;
  readonly #ttlMs: number;
  #bytes = 0;

  constructor(options: MemorySnapshotStoreOptions = {}) {
    this.#maxBytes = options.maxBytes ?? 256 * 1_048_576;
    this.#ttlMs = options.ttlMs ?? 7 * 86_400_000;
  }

  async put(id: string, bytes: Uint8Array): Promise<StoredSnapshot> {
    if (!ID.test(id))
      throw new SandboxError("SNAPSHOT_NOT_FOUND", `'${id}' is not a snapshot id (64 hex digits).`);
    const existing = this.#entries.get(id);
    if (existing) return { id, bytes: existing.bytes.byteLength, stored_at: existing.stored_at };
    if (this.#bytes + bytes.byteLength > this.#maxBytes) {
      await this.gc();
      if (this.#bytes + bytes.byteLength > this.#maxBytes) {
        throw new SandboxError(
          "SNAPSHOT_STORE_FULL",
          `The snapshot store holds ${this.#bytes} of ${this.#maxBytes} bytes; this snapshot needs ${bytes.byteLength}.`,
        );
      }
    }
    const entry = { bytes: Uint8Array.from(bytes), stored_at: Date.now() };
    this.#entries.set(id, entry);
    this.#bytes += bytes.byteLength;
    return { id, bytes: bytes.byteLength, stored_at: entry.stored_at };
  }

  async get(id: string): Promise<Uint8Array | null> {
    return this.#entries.get(id)?.bytes ?? null;
  }

  async delete(id: string): Promise<boolean> {
    const entry = this.#entries.get(id);
    if (!entry) return false;
    this.#entries.delete(id);
    this.#bytes -= entry.bytes.byteLength;
    return true;
  }

  async list(): Promise<StoredSnapshot[]> {
    return [...this.#entries]
      .map(([id, entry]) => ({ id, bytes: entry.bytes.byteLength, stored_at: entry.stored_at }))
      .sort((a, b) => b.stored_at - a.stored_at);
  }

  async usage(): Promise<{ bytes: number; count: number; max_bytes: number }> {
    return { bytes: this.#bytes, count: this.#entries.size, max_bytes: this.#maxBytes };
  }

  async gc(now = Date.now(), keep: ReadonlySet<string> = new Set()): Promise<number> {
    let removed = 0;
    for (const [id, entry] of [...this.#entries]) {
      if (keep.has(id) || now - entry.stored_at < this.#ttlMs) continue;
      if (await this.delete(id)) removed += 1;
    }
    return removed;
  }
}
