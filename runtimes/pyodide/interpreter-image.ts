/**
 * The interpreter thread's part of session images (./interpreter.ts): what Pyodide's memory
 * snapshot does not hold, and what stops one from being taken.
 *
 * A memory snapshot holds the WebAssembly memory — the whole of CPython's state — and the
 * JavaScript objects Python holds, by name: each must be reachable from `globalThis` by a
 * path (Pyodide records paths when loaded with `_makeSnapshot`), or be one the serializer
 * here names. The only such objects this backend hands Python are the bridge and its
 * functions; any other (a `js.Date.new()` kept in a variable, an un-awaited tool call from
 * async code) refuses the image with an {@link ImageRefusal}, and the session is then
 * snapshotted as a journal only.
 *
 * Not in the memory: Emscripten's file system (MEMFS keeps file contents in JavaScript) and
 * its open file descriptors. The files the session created, changed or removed since its
 * interpreter was ready are carried beside the memory ({@link FsBaseline.diff},
 * {@link applyFiles}); a session holding a file open between runs refuses the image.
 *
 * Loaded by ./interpreter.ts only; no run-time imports.
 *
 * @module
 */

/** The part of Emscripten's FS API used here. */
export interface EmscriptenFs {
  streams: ({ path?: string } | null | undefined)[];
  lookupPath(path: string, options: { follow: boolean }): { node: FsNode };
  readdir(path: string): string[];
  lstat(path: string): { mode: number; size: number; mtime: Date; ctime: Date };
  isDir(mode: number): boolean;
  isFile(mode: number): boolean;
  isLink(mode: number): boolean;
  readFile(path: string): Uint8Array;
  readlink(path: string): string;
  writeFile(path: string, data: Uint8Array): void;
  mkdir(path: string, mode: number): void;
  symlink(target: string, path: string): void;
  chmod(path: string, mode: number): void;
  utime(path: string, atimeMs: number, mtimeMs: number): void;
  unlink(path: string): void;
  rmdir(path: string): void;
  cwd(): string;
  chdir(path: string): void;
}

interface FsNode {
  contents?: unknown;
}

/** Why an image cannot be taken; its message is shown to the user. */
export class ImageRefusal extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImageRefusal";
  }
}

/** One entry of the files manifest. */
export interface FileEntry {
  path: string;
  kind: "dir" | "file" | "link";
  /** Permission bits. */
  mode: number;
  /** Modification time, epoch ms. */
  mtime: number;
  /** A link's target. */
  target?: string;
  /** A file's contents: `[offset, length]` in the blob. */
  blob?: [number, number];
}

/** The session's files, as an image carries them. */
export interface FilesManifest {
  cwd: string;
  /** Paths of the ready interpreter that are gone (deepest first). */
  removed: string[];
  /** Entries created or changed, parents before children. */
  entries: FileEntry[];
}

/** Directories that are devices and kernel views, not the session's files. */
const SKIPPED = new Set(["/dev", "/proc"]);

interface Seen {
  node: FsNode;
  signature: string;
  contents: unknown;
}

function signature(stat: { mode: number; size: number; mtime: Date; ctime: Date }): string {
  return `${stat.mode}:${stat.size}:${stat.mtime.getTime()}:${stat.ctime.getTime()}`;
}

function walk(fs: EmscriptenFs, visit: (path: string) => void, dir = "/"): void {
  for (const name of fs.readdir(dir)) {
    if (name === "." || name === "..") continue;
    const path = dir === "/" ? `/${name}` : `${dir}/${name}`;
    if (SKIPPED.has(path)) continue;
    visit(path);
    if (fs.isDir(fs.lstat(path).mode)) walk(fs, visit, path);
  }
}

/**
 * The file system of a ready interpreter (taken before any guest code ran, or right after an
 * image was loaded and before its files were applied): what a later image leaves out.
 */
export class FsBaseline {
  readonly #seen = new Map<string, Seen>();
  readonly #openFds: Set<number>;

  constructor(fs: EmscriptenFs) {
    walk(fs, (path) => {
      const node = fs.lookupPath(path, { follow: false }).node;
      this.#seen.set(path, { node, signature: signature(fs.lstat(path)), contents: node.contents });
    });
    this.#openFds = new Set(openFds(fs));
  }

  /**
   * The session's files now, as a manifest and a blob of their contents.
   * @throws ImageRefusal when a file is held open (its descriptor lives outside the memory).
   */
  diff(fs: EmscriptenFs): { manifest: FilesManifest; blob: Uint8Array } {
    const open = openFds(fs).filter((fd) => !this.#openFds.has(fd));
    if (open.length > 0) {
      const names = open.map((fd) => `${fd} (${fs.streams[fd]?.path ?? "?"})`).join(", ");
      throw new ImageRefusal(
        `the session holds open file descriptors between runs (${names}); close them (with open(...) as f) to allow an image`,
      );
    }
    const entries: FileEntry[] = [];
    const chunks: Uint8Array[] = [];
    let blobBytes = 0;
    const present = new Set<string>();
    walk(fs, (path) => {
      present.add(path);
      const node = fs.lookupPath(path, { follow: false }).node;
      const stat = fs.lstat(path);
      const before = this.#seen.get(path);
      if (
        before &&
        before.node === node &&
        before.signature === signature(stat) &&
        before.contents === node.contents
      ) {
        return;
      }
      const entry: FileEntry = {
        path,
        kind: fs.isDir(stat.mode) ? "dir" : fs.isLink(stat.mode) ? "link" : "file",
        mode: stat.mode & 0o7777,
        mtime: stat.mtime.getTime(),
      };
      if (entry.kind === "link") entry.target = fs.readlink(path);
      else if (entry.kind === "file") {
        if (!fs.isFile(stat.mode)) return; // a device or socket the guest made: nothing to carry
        const contents = fs.readFile(path);
        entry.blob = [blobBytes, contents.byteLength];
        chunks.push(contents);
        blobBytes += contents.byteLength;
      }
      entries.push(entry);
    });
    const removed = [...this.#seen.keys()]
      .filter((path) => !present.has(path))
      .sort((a, b) => b.split("/").length - a.split("/").length);
    const blob = new Uint8Array(blobBytes);
    let at = 0;
    for (const chunk of chunks) {
      blob.set(chunk, at);
      at += chunk.byteLength;
    }
    return { manifest: { cwd: fs.cwd(), removed, entries }, blob };
  }
}

function openFds(fs: EmscriptenFs): number[] {
  const fds: number[] = [];
  fs.streams.forEach((stream, fd) => {
    if (stream) fds.push(fd);
  });
  return fds;
}

function exists(fs: EmscriptenFs, path: string): { mode: number } | null {
  try {
    return fs.lstat(path);
  } catch {
    return null;
  }
}

/** Applies an image's files to a freshly loaded interpreter's file system. */
export function applyFiles(fs: EmscriptenFs, manifest: FilesManifest, blob: Uint8Array): void {
  for (const path of manifest.removed) {
    const stat = exists(fs, path);
    if (!stat) continue;
    if (fs.isDir(stat.mode)) fs.rmdir(path);
    else fs.unlink(path);
  }
  for (const entry of manifest.entries) {
    const stat = exists(fs, entry.path);
    if (entry.kind === "dir") {
      if (stat && !fs.isDir(stat.mode)) fs.unlink(entry.path);
      if (!stat || !fs.isDir(stat.mode)) fs.mkdir(entry.path, entry.mode);
      else fs.chmod(entry.path, entry.mode);
      continue;
    }
    if (stat && fs.isDir(stat.mode)) fs.rmdir(entry.path);
    else if (stat && (entry.kind === "link" || fs.isLink(stat.mode))) fs.unlink(entry.path);
    if (entry.kind === "link") {
      fs.symlink(entry.target ?? "", entry.path);
      continue;
    }
    const [offset, length] = entry.blob ?? [0, 0];
    if (offset + length > blob.byteLength) throw new Error(`the image's file ${entry.path} is cut`);
    fs.writeFile(entry.path, blob.subarray(offset, offset + length));
    fs.chmod(entry.path, entry.mode);
  }
  // Times last, children before parents: writing a file changes its directory's times.
  for (const entry of [...manifest.entries].reverse()) {
    if (entry.kind !== "link") fs.utime(entry.path, entry.mtime, entry.mtime);
  }
  if (exists(fs, manifest.cwd)) fs.chdir(manifest.cwd);
}

/**
 * Names the JavaScript objects Python may hold that an image can carry: the bridge and its
 * functions. Anything else refuses the image.
 */
export function imageSerializer(bridge: object): (value: unknown) => string {
  const functions = new Map<unknown, string>();
  for (const [name, value] of Object.entries(bridge)) {
    if (typeof value === "function") functions.set(value, name);
  }
  return (value) => {
    if (value === bridge) return "bridge";
    const name = functions.get(value);
    if (name !== undefined) return `bridge.${name}`;
    throw new ImageRefusal(
      `the session holds a JavaScript object (a ${describeValue(value)}, reached through \`import js\` or pyodide.ffi, or an un-awaited tool call) that an image cannot carry`,
    );
  };
}

/** The inverse of {@link imageSerializer} for this interpreter's bridge; unknown names are null. */
export function imageDeserializer(bridge: Record<string, unknown>): (token: unknown) => unknown {
  return (token) => {
    if (token === "bridge") return bridge;
    if (typeof token === "string" && token.startsWith("bridge.")) {
      const name = token.slice("bridge.".length);
      const value = Object.hasOwn(bridge, name) ? bridge[name] : undefined;
      if (typeof value === "function") return value;
    }
    return null;
  };
}

function describeValue(value: unknown): string {
  if (typeof value === "function") return "function";
  try {
    const name = (value as { constructor?: { name?: unknown } } | null)?.constructor?.name;
    return typeof name === "string" && name !== "" ? name.slice(0, 40) : typeof value;
  } catch {
    return typeof value;
  }
}
