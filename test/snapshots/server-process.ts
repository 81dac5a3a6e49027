/**
 * Test helpers: real server processes (`node src/cli.ts serve`) on free ports, each with a
 * data directory, serving JavaScript sessions on QuickJS; and small HTTP helpers against them.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";

const CLI = new URL("../../src/cli.ts", import.meta.url).pathname;
const QUICKJS_MODULE = new URL("../../runtimes/quickjs/index.ts", import.meta.url).pathname;

/** How long a server process may take to listen, in ms. */
export const STARTUP_MS = 20_000;

/** A running server process. */
export interface Host {
  name: string;
  url: string;
  child: ChildProcess;
  /** Its data directory. */
  dataDir: string;
  /** What the process wrote to stderr, for failure messages. */
  stderr: string[];
}

/** Options of {@link startHost}. */
export interface HostOptions {
  /** Data directory (default: a new temporary one). */
  dataDir?: string | undefined;
  /** More environment (SANDBOX_* variables). */
  env?: Record<string, string> | undefined;
}

const children = new Set<ChildProcess>();

/** Kills every server process still running (SIGKILL). */
export function killAllHosts(): void {
  for (const child of children) child.kill("SIGKILL");
}
process.once("exit", killAllHosts);

/** Starts `sandbox serve` on a free port and answers once it prints where it listens. */
export function startHost(
  name: string,
  snapshotKey: string,
  options: HostOptions = {},
): Promise<Host> {
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(
      ([variable]) =>
        !variable.startsWith("SANDBOX_") && variable !== "PORT" && variable !== "HOST",
    ),
  );
  // JavaScript sessions only: the hosts start no Python interpreter pool they do not need.
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), `sandbox-${name}-`));
  const config = join(dataDir, "config.json");
  writeFileSync(
    config,
    JSON.stringify({
      runtimes: [{ module: QUICKJS_MODULE, options: { threads: 1 } }],
      defaultLanguage: "javascript",
    }),
  );
  const child = spawn(process.execPath, [CLI, "serve"], {
    env: {
      ...env,
      HOST: "127.0.0.1",
      PORT: "0",
      SANDBOX_CONFIG: config,
      SANDBOX_DATA_DIR: dataDir,
      SANDBOX_SNAPSHOT_KEY: snapshotKey,
      SANDBOX_LOG_LEVEL: "silent",
      SANDBOX_HIBERNATE_AFTER_MS: "off",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  const stderr: string[] = [];
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => stderr.push(chunk));
  return new Promise((resolve, reject) => {
    let stdout = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${name} did not start in ${STARTUP_MS} ms: ${stdout}${stderr.join("")}`));
    }, STARTUP_MS);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before listening: ${stderr.join("")}`));
    });
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      const listening = /sandbox listening on (http:\/\/\S+)/.exec(stdout);
      if (!listening) return;
      clearTimeout(timer);
      resolve({ name, url: listening[1]!, child, dataDir, stderr });
    });
  });
}

/**
 * Stops a server process with `signal` (default SIGTERM: a graceful shutdown; SIGKILL after
 * 15 s) and waits for it to exit; answers its exit code, or the signal that ended it.
 */
export async function stopHost(
  host: Host,
  signal: NodeJS.Signals = "SIGTERM",
): Promise<number | string | null> {
  const child = host.child;
  if (child.exitCode !== null || child.signalCode !== null)
    return child.exitCode ?? child.signalCode;
  const exited = new Promise<number | string | null>((resolve) =>
    child.once("exit", (code, ended) => resolve(code ?? ended)),
  );
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  const result = await exited;
  clearTimeout(timer);
  return result;
}

/** An HTTP answer. */
export interface Answer {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers are checked with expect.
  json: any;
  bytes: Buffer;
}

/** One request: `body` as JSON, or as application/octet-stream when it is a Buffer. */
export async function request(
  host: Host,
  method: string,
  path: string,
  body?: unknown,
): Promise<Answer> {
  const init: RequestInit = { method };
  if (Buffer.isBuffer(body)) {
    init.body = new Uint8Array(body);
    init.headers = { "content-type": "application/octet-stream" };
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "content-type": "application/json" };
  }
  const response = await fetch(new URL(path, host.url), init);
  const bytes = Buffer.from(await response.arrayBuffer());
  const isJson = response.headers.get("content-type")?.startsWith("application/json") ?? false;
  return {
    status: response.status,
    json: isJson ? JSON.parse(bytes.toString("utf8")) : null,
    bytes,
  };
}

/** Runs JavaScript (or TypeScript) in a session and answers its result; the run must succeed. */
export async function run(
  host: Host,
  sessionId: string,
  code: string,
  language = "javascript",
): Promise<unknown> {
  const answer = await request(host, "POST", "/v1/runs", { session_id: sessionId, language, code });
  expect(answer.status, `${host.name}: ${code}`).toBe(200);
  expect(answer.json, `${host.name}: ${code}`).toMatchObject({ status: "ok", error: null });
  return answer.json.result;
}
