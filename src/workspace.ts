/**
 * Per-session virtual workspaces: a small file tree held in the server's memory, with quotas.
 * The `files` tool pack reads and writes it for guest code; the runner surface copies
 * manifest entries into it; snapshots carry it.
 *
 * Paths are POSIX-style and relative to the workspace root; a leading `/` is the root, `.`
 * segments are dropped, and a `..` that would climb above the root is refused, as are empty
 * segments' tricks, NUL and backslashes. Directories exist implicitly (a path under which a
 * file exists). A file may be read-only (from a runner manifest with `writable: false`).
 *
 * @module
 */
import { SandboxError } from "./errors.ts";

/** Quotas of one workspace. */
export interface WorkspaceLimits {
  /** Total bytes of all files (default 32 MiB). */
  maxBytes: number;
  /** Files (default 1,000). */
  maxFiles: number;
  /** Bytes of one file (default 8 MiB). */
  maxFileBytes: number;
  /** Characters of a path (default 1,024). */
  maxPathChars: number;
}

/** Default {@link WorkspaceLimits}. */
export const DEFAULT_WORKSPACE_LIMITS: Readonly<WorkspaceLimits> = Object.freeze({
  maxBytes: 32 * 1_048_576,
  maxFiles: 1_000,
  maxFileBytes: 8 * 1_048_576,
  maxPathChars: 1_024,
});

/** One file. */
export interface WorkspaceFile {
  readonly content: Uint8Array;
  readonly readOnly: boolean;
  /** Unix epoch ms of the last write. */
  readonly modifiedAt: number;
}

/** An entry of {@link Workspace.list}. */
export interface WorkspaceEntry {
  name: string;
  path: string;
  type: "file" | "dir";
  /** Bytes (files), or total bytes below (directories). */
  size: number;
}

/** A workspace error's code; see docs/errors.md. */
type WorkspaceErrorCode =
  | "WORKSPACE_PATH_INVALID"
  | "FILE_NOT_FOUND"
  | "WORKSPACE_READ_ONLY"
  | "WORKSPACE_QUOTA_EXCEEDED";

function workspaceError(code: WorkspaceErrorCode, message: string): SandboxError {
  return new SandboxError(code, message);
}

/** One session's files. */
export class Workspace {
  readonly limits: WorkspaceLimits;
  readonly #files = new Map<string, WorkspaceFile>();
  #bytes = 0;

  constructor(limits: Partial<WorkspaceLimits> = {}) {
    this.limits = { ...DEFAULT_WORKSPACE_LIMITS, ...limits };
  }

  /**
   * The canonical form of a path (`"a/b.txt"`; `""` is the root).
   * @throws SandboxError `WORKSPACE_PATH_INVALID`.
   */
  normalize(path: string): string {
    if (typeof path !== "string" || path.length > this.limits.maxPathChars) {
      throw workspaceError(
        "WORKSPACE_PATH_INVALID",
        `A path must be a string of at most ${this.limits.maxPathChars} characters.`,
      );
    }
    if (path.includes("\0") || path.includes("\\")) {
      throw workspaceError("WORKSPACE_PATH_INVALID", `Path '${path}' has a NUL or a backslash.`);
    }
    const parts: string[] = [];
    for (const segment of path.split("/")) {
      if (segment === "" || segment === ".") continue;
      if (segment === "..") {
        if (parts.length === 0) {
          throw workspaceError("WORKSPACE_PATH_INVALID", `Path '${path}' leaves the workspace.`);
        }
        parts.pop();
        continue;
      }
      parts.push(segment);
    }
    return parts.join("/");
  }

  /** Total bytes of all files. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Number of files. */
  get fileCount(): number {
    return this.#files.size;
  }

  /**
   * Writes a file (creating it, or replacing a writable one).
   * @throws SandboxError `WORKSPACE_PATH_INVALID`, `WORKSPACE_READ_ONLY`, `WORKSPACE_QUOTA_EXCEEDED`.
   */
  write(
    path: string,
    content: Uint8Array | string,
    options: { readOnly?: boolean; force?: boolean; modifiedAt?: number } = {},
  ): string {
    const key = this.normalize(path);
    if (key === "")
      throw workspaceError(
        "WORKSPACE_PATH_INVALID",
        "The workspace root is a directory, not a file.",
      );
    if (this.#isDirectory(key))
      throw workspaceError("WORKSPACE_PATH_INVALID", `'${key}' is a directory.`);
    for (let i = key.indexOf("/"); i >= 0; i = key.indexOf("/", i + 1)) {
      if (this.#files.has(key.slice(0, i))) {
        throw workspaceError(
          "WORKSPACE_PATH_INVALID",
          `'${key.slice(0, i)}' is a file, not a directory.`,
        );
      }
    }
    const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
    const previous = this.#files.get(key);
    if (previous?.readOnly && !options.force)
      throw workspaceError("WORKSPACE_READ_ONLY", `'${key}' is read-only.`);
    if (bytes.byteLength > this.limits.maxFileBytes) {
      throw workspaceError(
        "WORKSPACE_QUOTA_EXCEEDED",
        `'${key}' would be ${bytes.byteLength} bytes; a file may hold ${this.limits.maxFileBytes}.`,
      );
    }
    if (!previous && this.#files.size >= this.limits.maxFiles) {
      throw workspaceError(
        "WORKSPACE_QUOTA_EXCEEDED",
        `The workspace holds its maximum of ${this.limits.maxFiles} files.`,
      );
    }
    const total = this.#bytes - (previous?.content.byteLength ?? 0) + bytes.byteLength;
    if (total > this.limits.maxBytes) {
      throw workspaceError(
        "WORKSPACE_QUOTA_EXCEEDED",
        `The workspace would hold ${total} bytes; it may hold ${this.limits.maxBytes}.`,
      );
    }
    this.#files.set(key, {
      content: bytes.slice(),
      readOnly: options.readOnly ?? false,
      modifiedAt: options.modifiedAt ?? Date.now(),
    });
    this.#bytes = total;
    return key;
  }

  /**
   * A file's bytes.
   * @throws SandboxError `WORKSPACE_PATH_INVALID`, `FILE_NOT_FOUND`.
   */
  read(path: string): Uint8Array {
    const key = this.normalize(path);
    const file = this.#files.get(key);
    if (!file) {
      throw workspaceError(
        "FILE_NOT_FOUND",
        this.#isDirectory(key) ? `'${key}' is a directory.` : `No file '${key}'.`,
      );
    }
    return file.content.slice();
  }

  /** The file at a path, or undefined. */
  stat(path: string): WorkspaceFile | undefined {
    return this.#files.get(this.normalize(path));
  }

  /**
   * Deletes a file; answers whether it existed.
   * @throws SandboxError `WORKSPACE_PATH_INVALID`, `WORKSPACE_READ_ONLY`.
   */
  delete(path: string): boolean {
    const key = this.normalize(path);
    const file = this.#files.get(key);
    if (!file) return false;
    if (file.readOnly) throw workspaceError("WORKSPACE_READ_ONLY", `'${key}' is read-only.`);
    this.#files.delete(key);
    this.#bytes -= file.content.byteLength;
    return true;
  }

  /**
   * The entries directly under a directory, sorted by name.
   * @throws SandboxError `WORKSPACE_PATH_INVALID`, `FILE_NOT_FOUND` (no such directory).
   */
  list(path = ""): WorkspaceEntry[] {
    const dir = this.normalize(path);
    if (dir !== "" && this.#files.has(dir))
      throw workspaceError("WORKSPACE_PATH_INVALID", `'${dir}' is a file.`);
    const prefix = dir === "" ? "" : `${dir}/`;
    const entries = new Map<string, WorkspaceEntry>();
    for (const [key, file] of this.#files) {
      if (!key.startsWith(prefix)) continue;
      const rest = key.slice(prefix.length);
      const slash = rest.indexOf("/");
      const name = slash < 0 ? rest : rest.slice(0, slash);
      const entry = entries.get(name) ?? {
        name,
        path: `${prefix}${name}`,
        type: slash < 0 ? "file" : "dir",
        size: 0,
      };
      entry.size += file.content.byteLength;
      entries.set(name, entry);
    }
    if (dir !== "" && entries.size === 0)
      throw workspaceError("FILE_NOT_FOUND", `No directory '${dir}'.`);
    return [...entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Every file, by path (for snapshots and exports). */
  entries(): [string, WorkspaceFile][] {
    return [...this.#files.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  #isDirectory(key: string): boolean {
    const prefix = `${key}/`;
    for (const path of this.#files.keys()) if (path.startsWith(prefix)) return true;
    return false;
  }
}

/** The workspaces of a server's sessions, created on first use. */
export class WorkspaceRegistry {
  readonly #workspaces = new Map<string, Workspace>();
  readonly #limits: Partial<WorkspaceLimits>;

  constructor(limits: Partial<WorkspaceLimits> = {}) {
    this.#limits = limits;
  }

  /** The workspace of a session (created empty on first use). */
  get(sessionId: string): Workspace {
    let workspace = this.#workspaces.get(sessionId);
    if (!workspace) {
      workspace = new Workspace(this.#limits);
      this.#workspaces.set(sessionId, workspace);
    }
    return workspace;
  }

  /** A new empty workspace under this registry's limits, not yet any session's (restore fills it). */
  blank(): Workspace {
    return new Workspace(this.#limits);
  }

  /** Whether a session has a workspace. */
  has(sessionId: string): boolean {
    return this.#workspaces.has(sessionId);
  }

  /** Replaces a session's workspace (restore). */
  set(sessionId: string, workspace: Workspace): void {
    this.#workspaces.set(sessionId, workspace);
  }

  /** Drops a session's workspace (the session was destroyed). */
  delete(sessionId: string): void {
    this.#workspaces.delete(sessionId);
  }
}
