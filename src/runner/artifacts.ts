/**
 * Artifacts exported from runner sessions: content-addressed bytes (the id is the SHA3-256
 * of the bytes, hex), kept in a {@link FsSnapshotStore} configured for artifacts (same atomic
 * writes, quota and TTL). A file exports as itself; a directory (`recursive`) as a POSIX tar
 * (ustar) of its files, sorted by path with fixed times and modes, so the same files always
 * give the same archive and the same id.
 *
 * Source: node:crypto (sha3-256), tar-stream (tar writing).
 * @module
 */
import { createHash } from "node:crypto";
import { extname } from "node:path";
import { pack } from "tar-stream";
import { SandboxError } from "../errors.ts";
import { FsSnapshotStore, MemorySnapshotStore, type SnapshotStore } from "../snapshot/store.ts";
import type { Workspace } from "../workspace.ts";

/** What an export produced. */
export interface ArtifactRecord {
  /** SHA3-256 of the bytes (hex). */
  artifact_id: string;
  /** Bytes of the artifact. */
  size: number;
  /** `application/x-tar` for a directory, a type guessed from the extension for a file. */
  media_type: string;
  /** Files inside (1 for a file). */
  files: number;
}

/** Where artifacts are kept; {@link ArtifactStore.filesystem} or {@link ArtifactStore.memory}. */
export class ArtifactStore {
  readonly #store: SnapshotStore;

  private constructor(store: SnapshotStore) {
    this.#store = store;
  }

  /** Artifacts in `directory` (default quota 4 GiB, TTL 7 days). */
  static filesystem(directory: string, maxBytes?: number, ttlMs?: number): ArtifactStore {
    return new ArtifactStore(
      new FsSnapshotStore({
        directory,
        ...(maxBytes !== undefined ? { maxBytes } : {}),
        ...(ttlMs !== undefined ? { ttlMs } : {}),
        kind: {
          extension: ".artifact",
          noun: "artifact",
          fullCode: "ARTIFACT_STORE_FULL",
          badIdCode: "ARTIFACT_NOT_FOUND",
        },
      }),
    );
  }

  /** Artifacts in this process's memory (tests, embedders). */
  static memory(maxBytes?: number): ArtifactStore {
    return new ArtifactStore(new MemorySnapshotStore(maxBytes !== undefined ? { maxBytes } : {}));
  }

  /**
   * Exports `path` of a workspace: a file as itself, a directory as a tar when `recursive`.
   * @throws SandboxError `FILE_NOT_FOUND`, `WORKSPACE_PATH_INVALID` (a directory without
   *   `recursive`), `ARTIFACT_STORE_FULL`.
   */
  async export(workspace: Workspace, path: string, recursive: boolean): Promise<ArtifactRecord> {
    const key = workspace.normalize(path);
    const file = key === "" ? undefined : workspace.stat(key);
    let bytes: Uint8Array;
    let mediaType: string;
    let files: number;
    if (file) {
      bytes = file.content;
      mediaType = mediaTypeOf(key);
      files = 1;
    } else {
      const prefix = key === "" ? "" : `${key}/`;
      const inside = workspace.entries().filter(([name]) => name.startsWith(prefix));
      if (inside.length === 0)
        throw new SandboxError("FILE_NOT_FOUND", `No file or directory '${key}'.`);
      if (!recursive) {
        throw new SandboxError(
          "WORKSPACE_PATH_INVALID",
          `'${key || "/"}' is a directory: export it with recursive: true (a tar archive).`,
        );
      }
      bytes = await tarOf(
        inside.map(([name, entry]) => [name.slice(prefix.length), entry.content]),
      );
      mediaType = "application/x-tar";
      files = inside.length;
    }
    const id = createHash("sha3-256").update(bytes).digest("hex");
    await this.#store.put(id, bytes);
    return { artifact_id: id, size: bytes.byteLength, media_type: mediaType, files };
  }

  /**
   * An artifact's bytes.
   * @throws SandboxError `ARTIFACT_NOT_FOUND`.
   */
  async get(id: string): Promise<Uint8Array> {
    const bytes = /^[0-9a-f]{64}$/.test(id) ? await this.#store.get(id) : null;
    if (!bytes) throw new SandboxError("ARTIFACT_NOT_FOUND", `No artifact '${id}'.`);
    return bytes;
  }

  /** Deletes expired artifacts (periodically). */
  async gc(now?: number): Promise<number> {
    return this.#store.gc(now);
  }
}

/** A deterministic ustar archive of `entries` (path, bytes), sorted by path. */
function tarOf(entries: [string, Uint8Array][]): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const archive = pack();
    const chunks: Buffer[] = [];
    archive.on("data", (chunk: unknown) => chunks.push(chunk as Buffer));
    archive.on("end", () => resolve(new Uint8Array(Buffer.concat(chunks))));
    archive.on("error", reject);
    for (const [name, content] of [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      archive.entry(
        { name, size: content.byteLength, mode: 0o644, mtime: new Date(0) },
        Buffer.from(content),
      );
    }
    archive.finalize();
  });
}

const MEDIA_TYPES: Record<string, string> = {
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".csv": "text/csv; charset=utf-8",
  ".html": "text/html; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".pdf": "application/pdf",
  ".py": "text/x-python; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".ts": "text/plain; charset=utf-8",
  ".tar": "application/x-tar",
  ".zip": "application/zip",
};

function mediaTypeOf(path: string): string {
  return MEDIA_TYPES[extname(path).toLowerCase()] ?? "application/octet-stream";
}
