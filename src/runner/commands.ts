/**
 * How a runner command (seed 000 `RunnerCommandRequest`: program, args, cwd, env) maps onto a
 * sandbox run. The sandbox runs programs, not a shell:
 *
 * | command                                   | runs                                          |
 * | ----------------------------------------- | --------------------------------------------- |
 * | `python -c CODE [ARG…]`                   | CODE as Python's `-c` does (`sys.argv[0]` `-c`) |
 * | `python FILE [ARG…]`                      | the workspace file FILE as `__main__`         |
 * | `node -e CODE` / `node -p CODE`           | CODE as JavaScript (`-p` prints its value)    |
 * | `node FILE [ARG…]`                        | FILE as JavaScript, or TypeScript for `.ts`/`.mts`/`.cts` |
 * | `tsx FILE` / `tsx -e CODE` (and `ts-node`) | TypeScript                                    |
 * | `sh -c "…"` / `bash -lc "…"`             | one such command inside; pipes, redirections, `&&` are refused |
 *
 * `python3`, `python3.N` are `python`; `nodejs` is `node`; harmless flags (`-u`, `-B`, `-I`,
 * `-E`, `-s`, `-S`, `-q`, `-O`, `--experimental-strip-types`, `--input-type=…`) are ignored.
 * Anything else answers exit code 127 (unknown program) or 2 (usage), as a shell would.
 *
 * Source: shell-quote (splitting `sh -c` strings).
 * @module
 */
import { posix } from "node:path";
import { parse as parseShell } from "shell-quote";
import type { Language, RunStatus } from "../contract/types.ts";
import type { RunnerCommandRequest } from "./types.ts";

/** What a command runs. */
export interface CommandPlan {
  language: Language;
  /** The program text. */
  source: string;
  /** The name errors and tracebacks show: a workspace path, `<string>` or `[eval]`. */
  displayName: string;
  /** The script's workspace path, or null for `-c`/`-e`. */
  scriptPath: string | null;
  /** `sys.argv` / `process.argv` as the program sees them. */
  argv: string[];
  env: Record<string, string>;
  /** Working directory, a workspace path ("" for the root). */
  cwd: string;
  /** `node -p`: print the value of the code. */
  printValue: boolean;
}

/** A command the sandbox answers without running anything (as a shell would). */
export interface CommandRefusal {
  exitCode: number;
  stderr: string;
}

/** Reads a workspace file as text (for `python FILE`); throws when it does not exist. */
export type ReadWorkspaceText = (path: string) => string;

const PYTHON = /^python(?:3(?:\.\d+)?)?$/;
const NODE = /^(?:node|nodejs)$/;
const TSX = /^(?:tsx|ts-node)$/;
const SHELL = /^(?:sh|bash|dash|zsh)$/;
const PYTHON_IGNORED = new Set(["-u", "-B", "-I", "-E", "-s", "-S", "-q", "-O", "-OO"]);
const TS_EXTENSIONS = /\.(?:ts|mts|cts)$/;

/** Exit code of a run that ended with `status` (and `error.code`), as a process would give. */
export function exitCodeOf(status: RunStatus, errorCode: string | null): number | null {
  switch (status) {
    case "ok":
      return 0;
    case "timeout":
      return 124;
    case "cancelled":
      return 130;
    case "resource_exhausted":
      return errorCode === "MEMORY_LIMIT" ? 137 : 1;
    case "interrupted":
      return null;
    default:
      return 1;
  }
}

/**
 * Resolves `path` against the workspace directory `cwd` (both as a program sees them: relative,
 * or absolute under `/workspace`); answers a workspace path ("" for the root), or null when it
 * leaves the workspace (`..` above the root, or an absolute path elsewhere).
 */
export function workspacePath(cwd: string, path: string): string | null {
  let parts: string[];
  if (path.startsWith("/")) {
    if (path !== "/workspace" && !path.startsWith("/workspace/")) return null;
    parts = path.slice("/workspace".length).split("/");
  } else {
    parts = [...cwd.split("/"), ...path.split("/")];
  }
  const resolved: string[] = [];
  for (const part of parts) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (resolved.length === 0) return null;
      resolved.pop();
    } else resolved.push(part);
  }
  return resolved.join("/");
}

/**
 * Plans a command for a session of `language` (a runner session runs one language family).
 * Answers a plan, or a refusal with the exit code and message a shell would give.
 */
export function planCommand(
  request: RunnerCommandRequest,
  language: Language,
  readText: ReadWorkspaceText,
): CommandPlan | CommandRefusal {
  let program = posix.basename(request.program);
  let args = [...request.args];
  if (SHELL.test(program)) {
    const unwrapped = unwrapShell(program, args);
    if ("exitCode" in unwrapped) return unwrapped;
    program = posix.basename(unwrapped[0] ?? "");
    args = unwrapped.slice(1);
  }
  const cwd = workspacePath("", request.cwd ?? "") ?? null;
  if (cwd === null) return { exitCode: 2, stderr: `cd: ${request.cwd}: outside the workspace\n` };
  const env = Object.fromEntries(request.env);
  const base = { env, cwd, printValue: false };
  const wants: "python" | "javascript" | "typescript" | null = PYTHON.test(program)
    ? "python"
    : NODE.test(program)
      ? "javascript"
      : TSX.test(program)
        ? "typescript"
        : null;
  if (wants === null)
    return {
      exitCode: 127,
      stderr: `${program}: command not found (this sandbox runs python, node and tsx)\n`,
    };
  const family = wants === "python" ? "python" : "javascript";
  const sessionFamily = language === "python" ? "python" : "javascript";
  if (family !== sessionFamily) {
    return {
      exitCode: 127,
      stderr: `${program}: not available in this runner session, which runs ${sessionFamily === "python" ? "Python" : "JavaScript and TypeScript"} (choose the language in destination.config.language)\n`,
    };
  }
  const readScript = (path: string): string | CommandRefusal => {
    const resolved = workspacePath(cwd, path);
    if (resolved === null)
      return {
        exitCode: 2,
        stderr: `${program}: can't open file '${path}': outside the workspace\n`,
      };
    try {
      return readText(resolved);
    } catch {
      return {
        exitCode: wants === "python" ? 2 : 1,
        stderr:
          wants === "python"
            ? `${program}: can't open file '/workspace/${resolved}': [Errno 2] No such file or directory\n`
            : `Error: Cannot find module '/workspace/${resolved}'\n`,
      };
    }
  };

  if (wants === "python") {
    while (args.length > 0 && PYTHON_IGNORED.has(args[0]!)) args.shift();
    const first = args[0];
    if (first === "-c") {
      if (args.length < 2) return { exitCode: 2, stderr: "Argument expected for the -c option\n" };
      return {
        ...base,
        language: "python",
        source: args[1]!,
        displayName: "<string>",
        scriptPath: null,
        argv: ["-c", ...args.slice(2)],
      };
    }
    if (first === undefined || first === "-" || first.startsWith("-")) {
      return {
        exitCode: 2,
        stderr: `${program}: only -c CODE and FILE are supported here (no REPL, stdin or -m)\n`,
      };
    }
    const source = readScript(first);
    if (typeof source !== "string") return source;
    const scriptPath = workspacePath(cwd, first)!;
    return {
      ...base,
      language: "python",
      source,
      displayName: `/workspace/${scriptPath}`,
      scriptPath,
      argv: [first, ...args.slice(1)],
    };
  }

  // node / tsx
  while (
    args.length > 0 &&
    (args[0] === "--experimental-strip-types" ||
      args[0]!.startsWith("--input-type=") ||
      args[0] === "--no-warnings")
  ) {
    args.shift();
  }
  const first = args[0];
  const jsLanguage: Language = wants === "typescript" ? "typescript" : "javascript";
  if (first === "-e" || first === "--eval" || first === "-p" || first === "--print") {
    if (args.length < 2)
      return { exitCode: 9, stderr: `${program}: ${first} requires an argument\n` };
    return {
      ...base,
      language: jsLanguage,
      source: args[1]!,
      displayName: "[eval]",
      scriptPath: null,
      argv: [program, ...args.slice(2)],
      printValue: first === "-p" || first === "--print",
    };
  }
  if (first === undefined || first.startsWith("-")) {
    return {
      exitCode: 9,
      stderr: `${program}: only -e CODE, -p CODE and FILE are supported here (no REPL or stdin)\n`,
    };
  }
  const source = readScript(first);
  if (typeof source !== "string") return source;
  const scriptPath = workspacePath(cwd, first)!;
  return {
    ...base,
    language: TS_EXTENSIONS.test(scriptPath) ? "typescript" : jsLanguage,
    source,
    displayName: `/workspace/${scriptPath}`,
    scriptPath,
    argv: [program, `/workspace/${scriptPath}`, ...args.slice(1)],
  };
}

/** `sh -c "cmd args"` → `[cmd, ...args]`, or a refusal. */
function unwrapShell(program: string, args: string[]): string[] | CommandRefusal {
  const flag = args.findIndex((arg) => /^-[a-z]*c[a-z]*$/.test(arg));
  const script = flag >= 0 ? args[flag + 1] : undefined;
  if (script === undefined) {
    return { exitCode: 2, stderr: `${program}: only '${program} -c COMMAND' is supported here\n` };
  }
  const words = parseShell(script, (name) => `$${name}`);
  const plain: string[] = [];
  for (const word of words) {
    if (typeof word !== "string") {
      return {
        exitCode: 2,
        stderr: `${program}: pipes, redirections, globs and command lists are not supported here; run one program per command\n`,
      };
    }
    plain.push(word);
  }
  if (plain.length === 0) return { exitCode: 0, stderr: "" };
  if (SHELL.test(posix.basename(plain[0]!))) {
    return { exitCode: 2, stderr: `${program}: nested shells are not supported here\n` };
  }
  return plain;
}
