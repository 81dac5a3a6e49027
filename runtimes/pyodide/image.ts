/**
 * The base image: a Pyodide memory snapshot taken after a cold load, the prelude
 * (./prelude.py) and the preloaded modules. Every interpreter is restored from it (a few
 * hundred milliseconds instead of seconds).
 *
 * It is built once, by a contained child in build mode, and cached on disk under a key that
 * covers everything it depends on: the Pyodide build (SHA-256 of its wasm, JavaScript and
 * standard library), the prelude, the preloaded modules and {@link IMAGE_FORMAT}. A missing
 * image, or one that does not match the SHA-256 written beside it, is built on demand; a lock file keeps concurrent servers (or test workers)
 * from building the same image twice. Pyodide's snapshot API is private
 * (`_makeSnapshot`/`makeMemorySnapshot`/`_loadSnapshot`); the exact package version is pinned.
 *
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, statSync } from "node:fs";
import { open, unlink, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { SandboxError } from "../../src/index.ts";
import type { BuiltImage } from "./process.ts";
import { PRELUDE_MODULES } from "./protocol.ts";

/** Bumped when the way images are made changes (interpreter set-up, prelude protocol). */
export const IMAGE_FORMAT = 1;
/** A build lock older than this is taken over (its builder died), in ms. */
const STALE_LOCK_MS = 5 * 60_000;
/** Longest wait for another builder's image, in ms. */
const WAIT_FOR_BUILDER_MS = 5 * 60_000;

/** The installed Pyodide distribution. */
export interface PyodideDistribution {
  /** npm version, e.g. `314.0.7`. */
  version: string;
  /** Directory of the `pyodide` package. */
  dir: string;
  /** SHA-256 (hex) of its wasm, JavaScript and standard library. */
  digest: string;
}

const requireHere = createRequire(import.meta.url);

let distribution: PyodideDistribution | null = null;

/** Locates the `pyodide` package and digests its build (once per process). */
export function pyodideDistribution(): PyodideDistribution {
  distribution ??= digestDistribution();
  return distribution;
}

function digestDistribution(): PyodideDistribution {
  const packageJson = requireHere.resolve("pyodide/package.json");
  const dir = dirname(packageJson);
  const version = (JSON.parse(readFileSync(packageJson, "utf8")) as { version: string }).version;
  const hash = createHash("sha256");
  for (const file of [
    "pyodide.asm.wasm",
    "pyodide.asm.mjs",
    "pyodide.mjs",
    "python_stdlib.zip",
    "pyodide-lock.json",
  ]) {
    hash.update(file).update(readFileSync(join(dir, file)));
  }
  return { version, dir, digest: hash.digest("hex") };
}

/** Source of the prelude's Python modules (part of the image key). */
export function preludeSource(): string {
  return PRELUDE_MODULES.map(([, file]) =>
    readFileSync(new URL(file, import.meta.url), "utf8"),
  ).join("\n");
}

/**
 * Key of the base image for a distribution, prelude and preload list (20 hex digits): names
 * its cache file, and ends the backend's engine string, since session images are deltas
 * against it (./session-image.ts).
 */
export function imageKey(
  distribution: PyodideDistribution,
  preloadModules: readonly string[],
): string {
  return createHash("sha256")
    .update(`format ${IMAGE_FORMAT}\n`)
    .update(`pyodide ${distribution.version} ${distribution.digest}\n`)
    .update(`preload ${JSON.stringify(preloadModules)}\n`)
    .update(preludeSource())
    .digest("hex")
    .slice(0, 20);
}

/** Path of the image for a distribution, prelude and preload list. */
export function imagePath(
  cacheDir: string,
  distribution: PyodideDistribution,
  preloadModules: readonly string[],
): string {
  const key = imageKey(distribution, preloadModules);
  return join(cacheDir, `pyodide-${distribution.version}-${key}.image`);
}

/** Creates a directory readable by everyone (a child may run as another user). */
export function ensureDirectory(path: string): void {
  mkdirSync(path, { recursive: true });
  chmodSync(path, 0o755);
}

/**
 * The cache directory to use: `preferred`, or — when it is the default and cannot be created
 * (a read-only installation) — a directory of this user's own under the system's temporary
 * directory. That fallback is refused when someone else owns it or others can write to it:
 * an image planted there would run in every session.
 * @throws SandboxError `RUNTIME_UNAVAILABLE`; the file system's error for a configured directory.
 */
export function usableCacheDir(preferred: string, configured: boolean): string {
  try {
    ensureDirectory(preferred);
    return preferred;
  } catch (error) {
    if (configured) throw error;
  }
  const fallback = join(tmpdir(), `sandbox-runner-pyodide-${process.getuid?.() ?? "user"}`);
  mkdirSync(fallback, { recursive: true, mode: 0o755 });
  const stat = statSync(fallback);
  if ((process.getuid && stat.uid !== process.getuid()) || (stat.mode & 0o022) !== 0) {
    throw new SandboxError(
      "RUNTIME_UNAVAILABLE",
      `The Pyodide cache directory ${fallback} belongs to another user or is writable by others; set the pyodide option cacheDir.`,
    );
  }
  return fallback;
}

/** What {@link ensureImage} found or made. */
export interface ImageState {
  path: string;
  bytes: number;
  /** Built by this call (false: found on disk, or built by another process). */
  built: boolean;
  /** Milliseconds the build took (0 when found). */
  buildMs: number;
}

/**
 * Answers the image at `path`, building it with `build` when it is missing. Safe to call
 * from several processes at once: one builds, the others wait for its file.
 */
export async function ensureImage(
  path: string,
  build: () => Promise<BuiltImage>,
): Promise<ImageState> {
  if (isIntact(path)) return { path, bytes: statSync(path).size, built: false, buildMs: 0 };
  ensureDirectory(dirname(path));
  const lockPath = `${path}.lock`;
  for (;;) {
    const lock = await open(lockPath, "wx").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "EEXIST") return null;
      throw error;
    });
    if (lock) {
      try {
        if (isIntact(path)) return { path, bytes: statSync(path).size, built: false, buildMs: 0 };
        const started = performance.now();
        const image = await build();
        const suffix = `${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
        // The digest first, then the image: a reader that sees the image can check it.
        await writeReadable(`${path}.sha256.${suffix}`, sha256(image.bytes), `${path}.sha256`);
        await writeReadable(`${path}.${suffix}`, image.bytes, path);
        return {
          path,
          bytes: image.bytes.byteLength,
          built: true,
          buildMs: performance.now() - started,
        };
      } finally {
        await lock.close();
        await unlink(lockPath).catch(() => {});
      }
    }
    // Someone else is building: wait for the image, or take over a lock left by a dead builder.
    const waitUntil = performance.now() + WAIT_FOR_BUILDER_MS;
    while (!isIntact(path) && performance.now() < waitUntil) {
      let age = 0;
      try {
        age = Date.now() - statSync(lockPath).mtimeMs;
      } catch {
        break;
      }
      if (age > STALE_LOCK_MS) {
        await unlink(lockPath).catch(() => {});
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    if (isIntact(path)) return { path, bytes: statSync(path).size, built: false, buildMs: 0 };
    if (performance.now() >= waitUntil)
      throw new Error(`Timed out waiting for the Pyodide image ${path}`);
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function writeReadable(temporary: string, content: string | Uint8Array, path: string) {
  await writeFile(temporary, content, { mode: 0o644 });
  chmodSync(temporary, 0o644);
  renameSync(temporary, path);
}

/** Whether the image exists and matches the digest written beside it (a torn write does not). */
function isIntact(path: string): boolean {
  try {
    return readFileSync(`${path}.sha256`, "utf8").trim() === sha256(readFileSync(path));
  } catch {
    return false;
  }
}
