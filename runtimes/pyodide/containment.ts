/**
 * How a Pyodide child process is started so that its JavaScript realm holds nothing worth
 * reaching. Python reaches that realm (`import js`, `pyodide_js`, ctypes), so every layer
 * here assumes the guest runs arbitrary JavaScript with the process's rights:
 *
 * 1. **Linux namespaces** (`unshare`): a network namespace with no interface up (no route
 *    to the host's 127.0.0.1, or anywhere), a PID namespace (the process sees and can signal
 *    only itself), an IPC and a UTS namespace, and a mount namespace whose root is an empty,
 *    read-only tmpfs holding read-only bind mounts of exactly what the process needs: the
 *    system libraries, the Node binary, the Pyodide package, this backend's source and the
 *    base image. Unix sockets, the repository, configuration, other sessions' files: not
 *    there. When the server runs as root, the process also drops to uid/gid 65534 (when
 *    everyone can read what it needs; otherwise it keeps root inside the namespaces).
 * 2. **Node's permission model** (`--permission`): file reads only below those same paths,
 *    no writes, no child processes, no native addons, no WASI, no inspector. Worker threads
 *    are allowed (the interpreter is one).
 * 3. **A scrubbed environment**: the process gets no environment variables at all.
 *
 * "auto" uses namespaces when the host allows them (probed once) and otherwise refuses to
 * start Python sessions unless `allowUncontained` is set; "none" runs with layers 2 and 3
 * only. An operator may also give an explicit wrapper command.
 *
 * @module
 */
import { spawn } from "node:child_process";
import { accessSync, constants, existsSync, lstatSync, statSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";

/** The containment setting of {@link PyodideRuntimeOptions}. */
export type ContainmentSetting = "auto" | "none" | { wrapper: string[] };

/** What a child process needs to be started. */
export interface ChildCommand {
  /** Node executable. */
  nodePath: string;
  /** Node flags (permission model and limits). */
  execArgv: string[];
  /** Module the child runs, and its options (JSON, the last argument). */
  entry: string;
  optionsJson: string;
  /** Directories and files the child may read (bound into its root, allowed by the permission model). */
  readDirs: string[];
  readFiles: string[];
}

/** A resolved way of starting children. */
export interface Containment {
  /** `namespaces`: layers 1–3. `wrapper`: an operator's command, then 2–3. `none`: 2–3 only. */
  readonly kind: "namespaces" | "wrapper" | "none";
  /** One line for `GET /v1/runtimes`. */
  readonly description: string;
  /** The program and arguments that start a child. */
  command(child: ChildCommand): { file: string; args: string[] };
}

/** System library directories bound read-only into a contained child's root. */
const LIBRARY_DIRS = ["/lib", "/lib64", "/usr/lib", "/usr/lib64"];

/**
 * Builds the child's root inside its fresh mount namespace, then starts Node there. Runs as
 * `sh -c SCRIPT sh ROOT USER DIR... -- FILE... -- NODE ARGS...`; every path is an argument,
 * never spliced into the script.
 */
const ROOT_SCRIPT = `set -eu
root=$1; user=$2; shift 2
mount -t tmpfs -o mode=0755,size=4m,nosuid,nodev sandbox-root "$root"
bind() {
  if [ -L "$1" ]; then
    mkdir -p "$root$(dirname "$1")"; ln -s "$(readlink "$1")" "$root$1"; return 0
  fi
  if [ -d "$1" ]; then mkdir -p "$root$1"
  elif [ -e "$1" ]; then mkdir -p "$root$(dirname "$1")"; : > "$root$1"
  else return 0; fi
  mount --bind "$1" "$root$1"
  mount -o remount,bind,ro,nosuid,nodev "$root$1"
}
while [ "$1" != "--" ]; do bind "$1"; shift; done; shift
while [ "$1" != "--" ]; do bind "$1"; shift; done; shift
mkdir -p "$root/dev" "$root/proc" "$root/tmp"
for n in null zero random urandom; do : > "$root/dev/$n"; mount --bind "/dev/$n" "$root/dev/$n"; done
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -o remount,bind,ro,nosuid,nodev "$root"
unset PWD OLDPWD
if [ "$user" = "-" ]; then exec chroot "$root" "$@"; fi
exec chroot --userspec="$user" --groups="\${user#*:}" "$root" "$@"
`;

/** Finds an executable on PATH (the server's own PATH). */
export function findExecutable(name: string): string | null {
  for (const dir of (process.env.PATH ?? "/usr/bin:/bin").split(delimiter)) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** The Node flags every child gets. */
export function nodeFlags(child: Pick<ChildCommand, "readDirs" | "readFiles">): string[] {
  return [
    "--permission",
    "--allow-worker",
    ...[...child.readDirs, ...child.readFiles].map((path) => `--allow-fs-read=${path}`),
    "--no-warnings",
    "--expose-gc",
    "--max-old-space-size=256",
  ];
}

function directCommand(
  child: ChildCommand,
  wrapper: string[] = [],
): { file: string; args: string[] } {
  const argv = [child.nodePath, ...child.execArgv, child.entry, child.optionsJson];
  const [file, ...rest] = [...wrapper, ...argv];
  return { file: file!, args: rest };
}

function namespaceContainment(
  unshare: string,
  sh: string,
  rootDir: string,
  user: string | null,
): Containment {
  const asRoot = process.getuid?.() === 0;
  const flags = [
    ...(asRoot ? [] : ["--map-root-user"]),
    "--mount",
    "--propagation=private",
    "--net",
    "--pid",
    "--ipc",
    "--uts",
    "--fork",
    "--kill-child",
  ];
  return {
    kind: "namespaces",
    description: `namespaces (network: none; pid, ipc, uts: own; filesystem: read-only root of the Pyodide package, this backend and system libraries)${user ? `; uid:gid ${user}` : ""}; Node permission model; empty environment`,
    command(child) {
      const existing = (paths: string[]) => paths.filter((path) => existsSync(path));
      const dirs = [
        ...LIBRARY_DIRS.filter((path) => existsSync(path) || isSymlink(path)),
        dirname(child.nodePath),
        ...existing(child.readDirs),
      ];
      return {
        file: unshare,
        args: [
          ...flags,
          sh,
          "-c",
          ROOT_SCRIPT,
          "sh",
          rootDir,
          user ?? "-",
          ...dirs,
          "--",
          ...existing(child.readFiles),
          "--",
          child.nodePath,
          ...child.execArgv,
          child.entry,
          child.optionsJson,
        ],
      };
    },
  };
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Options of {@link resolveContainment}. */
export interface ResolveContainmentOptions {
  setting: ContainmentSetting;
  /** An empty directory the child's root is mounted on (inside its own namespace). */
  rootDir: string;
  /** `uid:gid` to run as when the server is root (default `65534:65534`); null keeps root. */
  runAs: string | null;
  /** Node executable (to probe with). */
  nodePath: string;
  /** Files and directories a child must read: `runAs` is used only when others can read them all. */
  readPaths: readonly string[];
}

/**
 * Decides how children start. For "auto", probes once whether namespaces work here by
 * starting `node -e 0` inside them; answers `none` when they do not (the caller decides
 * whether that is allowed).
 */
export async function resolveContainment(options: ResolveContainmentOptions): Promise<Containment> {
  const { setting } = options;
  if (setting === "none") return noContainment();
  if (typeof setting === "object") {
    return {
      kind: "wrapper",
      description: `wrapper ${JSON.stringify(setting.wrapper)}; Node permission model; empty environment`,
      command: (child) => directCommand(child, setting.wrapper),
    };
  }
  const unshare = findExecutable("unshare");
  const sh = findExecutable("sh");
  if (process.platform !== "linux" || !unshare || !sh) return noContainment();
  const user =
    process.getuid?.() === 0 && options.runAs && options.readPaths.every(readableByOthers)
      ? options.runAs
      : null;
  const candidate = namespaceContainment(unshare, sh, options.rootDir, user);
  const probe = candidate.command({
    nodePath: options.nodePath,
    execArgv: [],
    entry: "-e",
    optionsJson: "process.exit(0)",
    readDirs: [],
    readFiles: [],
  });
  const ok = await new Promise<boolean>((resolve) => {
    const child = spawn(probe.file, probe.args, { env: {}, stdio: "ignore" });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve(false);
    }, 10_000);
    child.on("error", () => {
      clearTimeout(timer);
      resolve(false);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve(code === 0);
    });
  });
  return ok ? candidate : noContainment();
}

/** Whether a user with no relation to the owner can read `path` (mode bits of it and every directory above). */
function readableByOthers(path: string): boolean {
  try {
    const stat = statSync(path);
    if (
      (stat.mode & (stat.isDirectory() ? 0o005 : 0o004)) !==
      (stat.isDirectory() ? 0o005 : 0o004)
    ) {
      return false;
    }
    for (let dir = dirname(path); ; dir = dirname(dir)) {
      if ((statSync(dir).mode & 0o001) === 0) return false;
      if (dirname(dir) === dir) return true;
    }
  } catch {
    return false;
  }
}

function noContainment(): Containment {
  return {
    kind: "none",
    description: "none (Node permission model and an empty environment only)",
    command: (child) => directCommand(child),
  };
}
