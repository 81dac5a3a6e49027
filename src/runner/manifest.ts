/**
 * Copies a runner manifest's entries (seed 000 `RunnerManifestEntry`: `source` on the host,
 * `target` in the session, `writable`) from configured host roots into a session's virtual
 * workspace.
 *
 * Only files under a configured root are read: a relative `source` is looked up in each root
 * in order (the first that has it wins), an absolute one must lie under a root. Every file's
 * real path (symbolic links resolved) must stay under the root's real path, so a link can
 * point nowhere else; links to directories are not followed. Entries with `writable: false`
 * become read-only workspace files (guest code and runner writes are refused). Workspace
 * quotas apply while copying.
 *
 * Source: node:fs/promises.
 * @module
 */
import { lstat, readdir, readFile, realpath } from "node:fs/promises";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { SandboxError } from "../errors.ts";
import type { Workspace } from "../workspace.ts";
import type { RunnerManifestEntry } from "./types.ts";

/** Files one manifest may copy (on top of the workspace's own quotas). */
const MAX_MANIFEST_FILES = 10_000;

/** What copying a manifest did. */
export interface ManifestCopy {
  files: number;
  bytes: number;
}

function invalid(message: string): SandboxError {
  return new SandboxError("INVALID_DESTINATION", message);
}

/** `child` lies at or under `parent` (both absolute, normalized). */
function within(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel) && rel.split(sep)[0] !== "..");
}

/**
 * The real path of an entry's source and the real root it lies under.
 * @throws SandboxError `INVALID_DESTINATION` when no root holds it.
 */
export async function resolveManifestSource(
  source: string,
  roots: readonly string[],
): Promise<{ path: string; root: string }> {
  if (roots.length === 0) {
    throw invalid(
      "This server copies no host files into sessions: no runner host roots are configured (SANDBOX_RUNNER_ROOTS).",
    );
  }
  if (source === "" || source.includes("\0"))
    throw invalid("A manifest entry's source is empty or holds NUL.");
  for (const root of roots) {
    const realRoot = await realpath(root).catch(() => null);
    if (!realRoot) continue;
    const candidate = isAbsolute(source) ? resolve(source) : resolve(realRoot, source);
    if (!within(realRoot, candidate)) continue;
    const real = await realpath(candidate).catch(() => null);
    if (!real) continue;
    if (!within(realRoot, real)) {
      throw invalid(`Manifest source '${source}' leads outside its host root.`);
    }
    return { path: real, root: realRoot };
  }
  throw invalid(
    `Manifest source '${source}' is not under a configured host root (or does not exist there).`,
  );
}

/**
 * Copies every entry into `workspace`; answers how many files and bytes.
 * @throws SandboxError `INVALID_DESTINATION` (a source outside the roots, a bad target),
 *   `WORKSPACE_QUOTA_EXCEEDED`, `WORKSPACE_PATH_INVALID`.
 */
export async function copyManifest(
  entries: readonly RunnerManifestEntry[],
  roots: readonly string[],
  workspace: Workspace,
): Promise<ManifestCopy> {
  const copied: ManifestCopy = { files: 0, bytes: 0 };
  for (const entry of entries) {
    const { path, root } = await resolveManifestSource(entry.source, roots);
    let target: string;
    try {
      target = workspace.normalize(entry.target);
    } catch (error) {
      throw invalid(`Manifest target '${entry.target}': ${(error as Error).message}`);
    }
    const info = await lstat(path);
    if (info.isFile()) {
      await copyFile(
        path,
        target === "" ? baseName(path) : target,
        !entry.writable,
        workspace,
        copied,
      );
      continue;
    }
    if (!info.isDirectory())
      throw invalid(`Manifest source '${entry.source}' is not a file or directory.`);
    await copyDirectory(path, root, target, !entry.writable, workspace, copied);
  }
  return copied;
}

function baseName(path: string): string {
  return path.split(sep).pop() ?? path;
}

async function copyFile(
  path: string,
  target: string,
  readOnly: boolean,
  workspace: Workspace,
  copied: ManifestCopy,
): Promise<void> {
  if (++copied.files > MAX_MANIFEST_FILES) {
    throw invalid(`A manifest may copy at most ${MAX_MANIFEST_FILES} files.`);
  }
  const info = await lstat(path);
  if (info.size > workspace.limits.maxFileBytes) {
    throw new SandboxError(
      "WORKSPACE_QUOTA_EXCEEDED",
      `'${target}' would be ${info.size} bytes; a file may hold ${workspace.limits.maxFileBytes}.`,
    );
  }
  const content = await readFile(path);
  workspace.write(target, content, { readOnly, force: true });
  copied.bytes += content.byteLength;
}

async function copyDirectory(
  directory: string,
  root: string,
  target: string,
  readOnly: boolean,
  workspace: Workspace,
  copied: ManifestCopy,
): Promise<void> {
  const names = (await readdir(directory)).sort();
  for (const name of names) {
    const path = join(directory, name);
    const info = await lstat(path);
    const into = target === "" ? name : `${target}/${name}`;
    if (info.isDirectory()) {
      await copyDirectory(path, root, into, readOnly, workspace, copied);
    } else if (info.isFile()) {
      await copyFile(path, into, readOnly, workspace, copied);
    } else if (info.isSymbolicLink()) {
      // A link is copied as the file it names, only when that file is under the root.
      const real = await realpath(path).catch(() => null);
      if (!real || !within(root, real)) {
        throw invalid(`'${into}' is a link leading outside its host root.`);
      }
      if ((await lstat(real)).isFile()) await copyFile(real, into, readOnly, workspace, copied);
    }
  }
}
