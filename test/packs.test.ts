/**
 * The three tool packs as their users see them: `files` (capabilities/files), `http`
 * (capabilities/http) and `sql` (capabilities/sql). Calls come from real guest JavaScript run
 * by the QuickJS backend through a SessionManager (so records, codes and guest-visible errors
 * are checked), or, where that is simpler, through a ToolGateway directly. Nothing is mocked:
 * http_fetch talks to real node:http servers on the loopback interface, sql to the pack's real
 * SQLite worker thread.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFileTools } from "../capabilities/files/index.ts";
import {
  createHttpTools,
  type HttpOptions,
  isAllowed,
  isPublicAddress,
} from "../capabilities/http/index.ts";
import { createSqlTools, hasSeveralStatements } from "../capabilities/sql/index.ts";
import { defaultConfig } from "../src/config.ts";
import {
  DEFAULT_SESSION_LIMITS,
  type ExternalCallRecord,
  type JsonValue,
  type RegisteredTool,
  type RunResult,
  SessionManager,
  ToolGateway,
  ToolRegistry,
  WorkspaceRegistry,
} from "../src/index.ts";
import { createServer, type SandboxServer } from "../src/server.ts";

const ROOT = resolve(import.meta.dirname, "..");

/** The SQL pack's options in the server under test: small, so limits are reached quickly. */
const SQL_OPTIONS = { maxDatabaseBytes: 256 * 1_024, maxRows: 50, timeoutMs: 2_000 };

let server: SandboxServer;
const managers: SessionManager[] = [];
const scratch = mkdtempSync(join(tmpdir(), "packs-test-"));

beforeAll(async () => {
  // The real assembly: packs listed by absolute module path, as a configuration file would.
  server = await createServer({
    ...defaultConfig(),
    port: 0,
    logLevel: "silent",
    defaultLanguage: "javascript",
    runtimes: [{ module: resolve(ROOT, "runtimes/quickjs/index.ts"), options: { threads: 2 } }],
    capabilities: [
      { module: resolve(ROOT, "capabilities/files/index.ts"), options: {} },
      { module: resolve(ROOT, "capabilities/sql/index.ts"), options: SQL_OPTIONS },
    ],
  });
});
afterAll(async () => {
  for (const manager of managers) await manager.close();
  await server?.close();
  rmSync(scratch, { recursive: true, force: true });
});

/** A session manager over the server's QuickJS backend with tools of the test's choosing. */
function managerWith(tools: RegisteredTool[], workspaces?: WorkspaceRegistry): SessionManager {
  const registry = new ToolRegistry();
  for (const tool of tools) registry.register(tool);
  const manager = new SessionManager({
    runtimes: server.runtimes,
    tools: registry,
    ...(workspaces ? { workspaces } : {}),
    defaults: { ...DEFAULT_SESSION_LIMITS, wall_ms: 15_000, max_external_calls: 200 },
    ceilings: { ...DEFAULT_SESSION_LIMITS, wall_ms: 30_000, max_external_calls: 1_000 },
    defaultLanguage: "javascript",
  });
  managers.push(manager);
  return manager;
}

let counter = 0;
const sid = (prefix = "s") => `${prefix}${++counter}`;

/** Guest helper: `await attempt(() => tool(...))` is `{ok: value}` or `{code, message}`. */
const ATTEMPT =
  "globalThis.attempt = async (f) => { try { return { ok: await f() }; } catch (e) { return { code: e.code, message: String(e.message) }; } };\n";

/** Runs guest JavaScript in a session (ATTEMPT defined); the run must end `ok`. */
async function guest(manager: SessionManager, sessionId: string, code: string): Promise<RunResult> {
  const result = await manager.run({
    session_id: sessionId,
    language: "javascript",
    code: ATTEMPT + code,
    limits: { max_external_calls: 200 },
  });
  expect(result.error, JSON.stringify(result.error)).toBeNull();
  expect(result.status).toBe("ok");
  return result;
}

/** `[name, status, error code]` of each recorded call. */
const calls = (result: RunResult) =>
  result.external_calls.map((call: ExternalCallRecord) => [
    call.name,
    call.status,
    call.error?.code ?? null,
  ]);

interface Outcome {
  ok: boolean;
  value?: unknown;
  code?: string;
  message?: string;
  /** The record's status. */
  status: string;
  ms: number;
}

/** Calls one tool through a fresh ToolGateway, as a run would; answers what the guest would see. */
async function callTool(
  registry: ToolRegistry,
  name: string,
  args: JsonValue[],
  sessionId = "gateway-session",
): Promise<Outcome> {
  const gateway = new ToolGateway({
    registry,
    sessionId,
    runId: sid("run"),
    maxExternalCalls: 1_000,
    deadline: performance.now() + 60_000,
    signal: new AbortController().signal,
  });
  const started = performance.now();
  const reply = await gateway.call(name, JSON.stringify(args), "{}");
  const ms = performance.now() - started;
  gateway.settle();
  const record = gateway.records[0]!;
  if (reply.ok) {
    expect(record.status).toBe("ok");
    return { ok: true, value: JSON.parse(reply.valueJson), status: record.status, ms };
  }
  expect(record.error?.code).toBe(reply.code);
  return { ok: false, code: reply.code, message: reply.message, status: record.status, ms };
}

function registryOf(tools: RegisteredTool[]): ToolRegistry {
  const registry = new ToolRegistry();
  for (const tool of tools) registry.register(tool);
  return registry;
}

// ---------------------------------------------------------------------------------------------
// files
// ---------------------------------------------------------------------------------------------

describe("files pack", () => {
  it("writes, reads, lists and deletes from guest code, recording each call", async () => {
    const manager = server.manager;
    const id = sid("files");
    const result = await guest(
      manager,
      id,
      `const wrote = await write_file('notes/a.txt', 'héllo');
       const text = await read_file('notes/a.txt');
       const again = await read_file('notes/a.txt', 'utf-8');
       const root = await list_dir();
       const notes = await list_dir('notes');
       const removed = await delete_file('notes/a.txt');
       const removedAgain = await delete_file('notes/a.txt');
       const gone = await attempt(() => read_file('notes/a.txt'));
       const rootAfter = await list_dir();
       ({ wrote, text, again, root, notes, removed, removedAgain, gone, rootAfter })`,
    );
    expect(result.result).toEqual({
      wrote: { path: "notes/a.txt", size: 6 },
      text: "héllo",
      again: "héllo",
      root: [{ name: "notes", path: "notes", type: "dir", size: 6 }],
      notes: [{ name: "a.txt", path: "notes/a.txt", type: "file", size: 6 }],
      removed: true,
      removedAgain: false,
      gone: { code: "FILE_NOT_FOUND", message: "No file 'notes/a.txt'." },
      rootAfter: [],
    });
    expect(calls(result)).toEqual([
      ["write_file", "ok", null],
      ["read_file", "ok", null],
      ["read_file", "ok", null],
      ["list_dir", "ok", null],
      ["list_dir", "ok", null],
      ["delete_file", "ok", null],
      ["delete_file", "ok", null],
      ["read_file", "error", "FILE_NOT_FOUND"],
      ["list_dir", "ok", null],
    ]);
    expect(result.external_calls.map((call) => call.side_effect)).toEqual([
      "write",
      "read",
      "read",
      "read",
      "read",
      "write",
      "write",
      "read",
      "read",
    ]);
    // The guest saw what the host holds.
    expect(server.workspaces.get(id).fileCount).toBe(0);
  });

  it("keeps nested directories, normalizes paths and tells files from directories", async () => {
    const id = sid("files");
    const result = await guest(
      server.manager,
      id,
      `await write_file('a/b/c.txt', 'ccc');
       await write_file('a/d.txt', 'dd');
       await write_file('a/b/e/f.txt', 'f');
       const moved = await write_file('a/b/../g.txt', 'gggg');
       ({
         a: await list_dir('a'),
         b: await list_dir('./a//b/'),
         root: await list_dir('/'),
         moved,
         readNormalized: await read_file('/a/./b/c.txt'),
         listFile: await attempt(() => list_dir('a/d.txt')),
         listMissing: await attempt(() => list_dir('nope')),
         writeOverDir: await attempt(() => write_file('a/b', 'x')),
         writeUnderFile: await attempt(() => write_file('a/d.txt/x', 'x')),
         writeRoot: await attempt(() => write_file('.', 'x')),
         readDir: await attempt(() => read_file('a/b')),
         deleteDir: await delete_file('a/b'),
         stillThere: await read_file('a/b/e/f.txt'),
       })`,
    );
    const value = result.result as Record<string, unknown>;
    expect(value.a).toEqual([
      { name: "b", path: "a/b", type: "dir", size: 4 },
      { name: "d.txt", path: "a/d.txt", type: "file", size: 2 },
      { name: "g.txt", path: "a/g.txt", type: "file", size: 4 },
    ]);
    expect(value.b).toEqual([
      { name: "c.txt", path: "a/b/c.txt", type: "file", size: 3 },
      { name: "e", path: "a/b/e", type: "dir", size: 1 },
    ]);
    expect(value.root).toEqual([{ name: "a", path: "a", type: "dir", size: 10 }]);
    expect(value.moved).toEqual({ path: "a/g.txt", size: 4 });
    expect(value.readNormalized).toBe("ccc");
    expect(value.listFile).toMatchObject({ code: "WORKSPACE_PATH_INVALID" });
    expect(value.listMissing).toMatchObject({ code: "FILE_NOT_FOUND" });
    expect(value.writeOverDir).toMatchObject({ code: "WORKSPACE_PATH_INVALID" });
    expect(value.writeUnderFile).toMatchObject({ code: "WORKSPACE_PATH_INVALID" });
    expect(value.writeRoot).toMatchObject({ code: "WORKSPACE_PATH_INVALID" });
    expect(value.readDir).toMatchObject({
      code: "FILE_NOT_FOUND",
      message: "'a/b' is a directory.",
    });
    expect(value.deleteDir).toBe(false);
    expect(value.stillThere).toBe("f");
  });

  it("writes and reads binary content as base64, and refuses non-UTF-8 as text", async () => {
    const id = sid("files");
    const result = await guest(
      server.manager,
      id,
      `({
         wrote: await write_file('bin/raw', 'AP8BgA==', 'base64'),
         asBase64: await read_file('bin/raw', 'base64'),
         asText: await attempt(() => read_file('bin/raw')),
         euro: await write_file('euro.txt', '€'),
         euroBase64: await read_file('euro.txt', 'base64'),
         fromBase64Text: (await write_file('t.txt', 'aGkg8J+Ygg==', 'base64'), await read_file('t.txt')),
         badEncoding: await attempt(() => read_file('euro.txt', 'latin1')),
         notBase64: await attempt(() => write_file('junk', 'this is not base64!', 'base64')),
         junkStored: await attempt(() => read_file('junk', 'base64')),
       })`,
    );
    expect(result.result).toEqual({
      wrote: { path: "bin/raw", size: 4 },
      asBase64: "AP8BgA==",
      asText: {
        code: "FILE_NOT_TEXT",
        message: "'bin/raw' is not UTF-8 text; read it with encoding 'base64'.",
      },
      euro: { path: "euro.txt", size: 3 },
      euroBase64: "4oKs",
      fromBase64Text: "hi 😂",
      badEncoding: { code: "INVALID_ARGUMENTS", message: expect.any(String) },
      notBase64: { code: "INVALID_ARGUMENTS", message: expect.stringContaining("base64") },
      junkStored: { code: "FILE_NOT_FOUND", message: "No file 'junk'." },
    });
    expect(Buffer.from(server.workspaces.get(id).read("bin/raw"))).toEqual(
      Buffer.from([0, 255, 1, 128]),
    );
  });

  it("refuses paths that leave the workspace, and keeps absolute paths inside it", async () => {
    const id = sid("files");
    // A real file outside the workspace that no guest path may reach.
    const secretPath = join(scratch, "secret.txt");
    writeFileSync(secretPath, "host secret");
    const bad = ["../x", "a/../../x", "..", "./..", "a/b/../../..", "a\\b", "..\\x", "a\0b"];
    const result = await guest(
      server.manager,
      id,
      `const bad = ${JSON.stringify(bad)};
       const codes = [];
       for (const path of bad) {
         codes.push([
           (await attempt(() => read_file(path))).code,
           (await attempt(() => write_file(path, 'x'))).code,
           (await attempt(() => list_dir(path))).code,
           (await attempt(() => delete_file(path))).code,
         ]);
       }
       const outside = [
         await attempt(() => read_file('/etc/passwd')),
         await attempt(() => read_file(${JSON.stringify(secretPath)})),
         await attempt(() => read_file('../'.repeat(20) + ${JSON.stringify(secretPath.slice(1))})),
         await attempt(() => list_dir('/etc')),
       ];
       const shadow = await write_file('/etc/passwd', 'workspace copy');
       ({ codes, outside, shadow, readBack: await read_file('/etc/passwd'), root: await list_dir('/') })`,
    );
    const value = result.result as {
      codes: string[][];
      outside: { code?: string; ok?: unknown }[];
      shadow: unknown;
      readBack: string;
      root: unknown;
    };
    expect(value.codes).toEqual(bad.map(() => Array(4).fill("WORKSPACE_PATH_INVALID")));
    expect(value.outside.map((answer) => answer.code)).toEqual([
      "FILE_NOT_FOUND",
      "FILE_NOT_FOUND",
      "WORKSPACE_PATH_INVALID",
      "FILE_NOT_FOUND",
    ]);
    expect(JSON.stringify(value.outside)).not.toContain("root:");
    expect(JSON.stringify(value.outside)).not.toContain("host secret");
    // `/etc/passwd` is the workspace's own `etc/passwd`: a file of the session, nothing more.
    expect(value.shadow).toEqual({ path: "etc/passwd", size: 14 });
    expect(value.readBack).toBe("workspace copy");
    expect(value.root).toEqual([{ name: "etc", path: "etc", type: "dir", size: 14 }]);
    expect(
      server.workspaces
        .get(id)
        .entries()
        .map(([path]) => path),
    ).toEqual(["etc/passwd"]);
    // Every refusal was recorded as an error with its code.
    const refused = result.external_calls.filter(
      (call) => call.error?.code === "WORKSPACE_PATH_INVALID",
    );
    expect(refused).toHaveLength(bad.length * 4 + 1);
    expect(refused.every((call) => call.status === "error")).toBe(true);
  });

  it("enforces the per-file, total-bytes and file-count quotas", async () => {
    const workspaces = new WorkspaceRegistry({ maxFileBytes: 10, maxBytes: 25, maxFiles: 3 });
    const manager = managerWith(createFileTools(workspaces), workspaces);
    const id = sid("quota");
    const result = await guest(
      manager,
      id,
      `const steps = {};
       steps.tooBig = await attempt(() => write_file('big', 'x'.repeat(11)));
       steps.tooBigBase64 = await attempt(() => write_file('big', 'AAAAAAAAAAAAAAA=', 'base64'));
       steps.a = await attempt(() => write_file('a', 'a'.repeat(10)));
       steps.b = await attempt(() => write_file('b', 'b'.repeat(10)));
       steps.overTotal = await attempt(() => write_file('c', 'c'.repeat(6)));
       steps.c = await attempt(() => write_file('c', 'c'.repeat(5)));
       steps.overCount = await attempt(() => write_file('d', ''));
       steps.replace = await attempt(() => write_file('a', 'A'.repeat(10)));
       steps.deleted = await delete_file('b');
       steps.d = await attempt(() => write_file('d', 'd'.repeat(10)));
       steps.list = await list_dir();
       steps`,
    );
    const steps = result.result as Record<string, { code?: string; ok?: unknown }>;
    expect(steps.tooBig!.code).toBe("WORKSPACE_QUOTA_EXCEEDED");
    expect(steps.tooBigBase64!.code).toBe("WORKSPACE_QUOTA_EXCEEDED");
    expect(steps.a!.ok).toEqual({ path: "a", size: 10 });
    expect(steps.b!.ok).toEqual({ path: "b", size: 10 });
    expect(steps.overTotal).toMatchObject({
      code: "WORKSPACE_QUOTA_EXCEEDED",
      message: expect.stringContaining("26 bytes"),
    });
    expect(steps.c!.ok).toEqual({ path: "c", size: 5 });
    expect(steps.overCount).toMatchObject({
      code: "WORKSPACE_QUOTA_EXCEEDED",
      message: expect.stringContaining("3 files"),
    });
    expect(steps.replace!.ok).toEqual({ path: "a", size: 10 });
    expect(steps.deleted).toBe(true);
    expect(steps.d!.ok).toEqual({ path: "d", size: 10 });
    expect(steps.list).toEqual([
      { name: "a", path: "a", type: "file", size: 10 },
      { name: "c", path: "c", type: "file", size: 5 },
      { name: "d", path: "d", type: "file", size: 10 },
    ]);
    const workspace = workspaces.get(id);
    expect([workspace.fileCount, workspace.bytes]).toEqual([3, 25]);
    expect(new TextDecoder().decode(workspace.read("a"))).toBe("A".repeat(10));
    expect(
      result.external_calls
        .filter((call) => call.error?.code === "WORKSPACE_QUOTA_EXCEEDED")
        .map((call) => call.status),
    ).toEqual(["error", "error", "error", "error"]);
  });

  it("takes and returns files up to the default 8 MiB per-file quota, and refuses more", async () => {
    const workspaces = new WorkspaceRegistry();
    const registry = registryOf(createFileTools(workspaces));
    const twoMiB = "0123456789abcdef".repeat(131_072);
    const wrote = await callTool(registry, "write_file", ["big.txt", twoMiB], "big");
    expect(wrote).toMatchObject({ ok: true, value: { path: "big.txt", size: 2_097_152 } });
    const read = await callTool(registry, "read_file", ["big.txt"], "big");
    expect(read.ok).toBe(true);
    expect(read.value === twoMiB).toBe(true);
    const binary = Buffer.alloc(3 * 1_048_576, 7).toString("base64");
    expect(
      await callTool(registry, "write_file", ["big.bin", binary, "base64"], "big"),
    ).toMatchObject({ ok: true, value: { size: 3 * 1_048_576 } });
    expect((await callTool(registry, "read_file", ["big.bin", "base64"], "big")).value).toBe(
      binary,
    );
    const tooBig = "x".repeat(8 * 1_048_576 + 1);
    expect(await callTool(registry, "write_file", ["huge.txt", tooBig], "big")).toMatchObject({
      ok: false,
      code: "WORKSPACE_QUOTA_EXCEEDED",
      status: "error",
    });
    expect(workspaces.get("big").stat("huge.txt")).toBeUndefined();
  }, 30_000);

  it("refuses to change read-only files but reads them", async () => {
    const id = sid("files");
    server.workspaces.get(id).write("manifest/input.csv", "a,b\n1,2\n", { readOnly: true });
    const result = await guest(
      server.manager,
      id,
      `({
         overwrite: await attempt(() => write_file('manifest/input.csv', 'changed')),
         remove: await attempt(() => delete_file('/manifest/input.csv')),
         read: await read_file('manifest/input.csv'),
         list: await list_dir('manifest'),
       })`,
    );
    expect(result.result).toEqual({
      overwrite: { code: "WORKSPACE_READ_ONLY", message: "'manifest/input.csv' is read-only." },
      remove: { code: "WORKSPACE_READ_ONLY", message: "'manifest/input.csv' is read-only." },
      read: "a,b\n1,2\n",
      list: [{ name: "input.csv", path: "manifest/input.csv", type: "file", size: 8 }],
    });
    expect(calls(result).slice(0, 2)).toEqual([
      ["write_file", "error", "WORKSPACE_READ_ONLY"],
      ["delete_file", "error", "WORKSPACE_READ_ONLY"],
    ]);
  });

  it("keeps sessions apart and drops a destroyed session's workspace", async () => {
    const manager = server.manager;
    const a = sid("files");
    const b = sid("files");
    await guest(manager, a, "await write_file('secret.txt', 'only a')");
    const other = await guest(
      manager,
      b,
      `({ read: await attempt(() => read_file('secret.txt')), list: await list_dir() })`,
    );
    expect(other.result).toEqual({
      read: { code: "FILE_NOT_FOUND", message: "No file 'secret.txt'." },
      list: [],
    });
    expect((await guest(manager, a, "await read_file('secret.txt')")).result).toBe("only a");

    await manager.destroySession(a);
    expect(server.workspaces.has(a)).toBe(false);
    // A new session with the same id starts with an empty workspace.
    const reborn = await guest(
      manager,
      a,
      `({ read: await attempt(() => read_file('secret.txt')), list: await list_dir() })`,
    );
    expect(reborn.result).toEqual({
      read: { code: "FILE_NOT_FOUND", message: "No file 'secret.txt'." },
      list: [],
    });
  });
});

// ---------------------------------------------------------------------------------------------
// http
// ---------------------------------------------------------------------------------------------

interface Seen {
  method: string;
  url: string;
}

/** A real HTTP server on the loopback interface that logs every request it receives. */
async function startServer(
  host: string,
  handle: (request: IncomingMessage, response: ServerResponse, body: string) => void,
): Promise<{ server: Server; port: number; seen: Seen[]; closed: string[] }> {
  const seen: Seen[] = [];
  /** Paths of requests whose connection the client closed before the answer was complete. */
  const closed: string[] = [];
  const httpServer = createHttpServer((request, response) => {
    const url = request.url ?? "";
    seen.push({ method: request.method ?? "", url });
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => handle(request, response, Buffer.concat(chunks).toString()));
    response.on("close", () => {
      if (!response.writableFinished) closed.push(url);
    });
  });
  await new Promise<void>((done) => httpServer.listen(0, host, done));
  return { server: httpServer, port: (httpServer.address() as AddressInfo).port, seen, closed };
}

describe("http pack", () => {
  let main: Awaited<ReturnType<typeof startServer>>;
  let other: Awaited<ReturnType<typeof startServer>>;
  let base: string;
  const MAX_BYTES = 1_000;
  const TIMEOUT_MS = 500;

  beforeAll(async () => {
    other = await startServer("127.0.0.1", (_request, response) => response.end("other secret"));
    // Dual-stack: reachable at 127.0.0.1, ::1 and ::ffff:127.0.0.1 alike, so a refusal of any
    // of them is the pack's doing, not an unreachable address.
    main = await startServer("::", (request, response, body) => {
      const path = request.url;
      if (path === "/ok/hello") {
        response.writeHead(200, { "content-type": "text/plain", "x-test": "yes" });
        response.end("hello");
      } else if (path === "/ok/echo") {
        response.writeHead(201, { "content-type": "application/json" });
        response.end(
          JSON.stringify({
            method: request.method,
            body,
            headers: request.headers,
          }),
        );
      } else if (path === "/ok/redirect") {
        response.writeHead(302, { location: "/ok/hello" });
        response.end();
      } else if (path === "/ok/redirect-twice") {
        response.writeHead(301, { location: `http://127.0.0.1:${main.port}/ok/redirect` });
        response.end();
      } else if (path === "/ok/away") {
        response.writeHead(302, { location: `http://127.0.0.1:${other.port}/secret` });
        response.end();
      } else if (path === "/ok/outside") {
        response.writeHead(307, { location: "/private/admin" });
        response.end();
      } else if (path === "/ok/to-file") {
        response.writeHead(302, { location: "file:///etc/passwd" });
        response.end();
      } else if (path === "/ok/to-localhost") {
        response.writeHead(302, { location: `http://localhost:${main.port}/ok/hello` });
        response.end();
      } else if (path === "/ok/loop") {
        response.writeHead(302, { location: "/ok/loop" });
        response.end();
      } else if (path?.startsWith("/ok/size/")) {
        response.writeHead(200);
        response.end("x".repeat(Number(path.slice("/ok/size/".length))));
      } else if (path === "/ok/binary") {
        response.writeHead(200, { "content-type": "application/octet-stream" });
        response.end(Buffer.from([0, 1, 254, 255]));
      } else if (path === "/ok/hang") {
        // Never answers.
      } else if (path === "/ok/stall-body") {
        response.writeHead(200, { "content-type": "text/plain" });
        response.write("partial");
        // ...and never finishes.
      } else {
        response.writeHead(404);
        response.end("not found");
      }
    });
    base = `http://127.0.0.1:${main.port}`;
  });
  afterAll(async () => {
    for (const { server: httpServer } of [main, other]) {
      httpServer?.closeAllConnections();
      await new Promise((done) => httpServer?.close(done));
    }
  });

  const open = (options: HttpOptions = {}) =>
    registryOf(
      createHttpTools({
        allow: [`${base}/ok/`, `http://localhost:${main.port}/ok/`],
        allowPrivateNetwork: true,
        maxResponseBytes: MAX_BYTES,
        timeoutMs: TIMEOUT_MS,
        maxRedirects: 2,
        ...options,
      }),
    );
  const fetchWith = (registry: ToolRegistry, url: string, options?: Record<string, JsonValue>) =>
    callTool(registry, "http_fetch", options ? [url, options] : [url]);

  /** Runs `body` and answers the requests the two servers received meanwhile. */
  async function received<T>(
    body: () => Promise<T>,
  ): Promise<{ answer: T; main: Seen[]; other: Seen[] }> {
    const mainBefore = main.seen.length;
    const otherBefore = other.seen.length;
    const answer = await body();
    return {
      answer,
      main: main.seen.slice(mainBefore),
      other: other.seen.slice(otherBefore),
    };
  }

  it("refuses every URL with the default options (no allow list)", async () => {
    const closed = registryOf(createHttpTools());
    expect(closed.get("http_fetch")!.capability.description).toContain("prefixes: none");
    for (const url of [
      `${base}/ok/hello`,
      "https://example.com/",
      `http://localhost:${main.port}/`,
    ]) {
      const { answer, main: hits } = await received(() => fetchWith(closed, url));
      expect(answer).toMatchObject({ ok: false, code: "HTTP_URL_NOT_ALLOWED", status: "error" });
      expect(hits).toEqual([]);
    }
  });

  it("refuses loopback on the allow list unless allowPrivateNetwork", async () => {
    const allow = [
      `${base}/`,
      `http://localhost:${main.port}/`,
      `http://[::1]:${main.port}/`,
      `http://[::ffff:127.0.0.1]:${main.port}/`,
    ];
    const guarded = registryOf(createHttpTools({ allow }));
    const literal = await received(() => fetchWith(guarded, `${base}/ok/hello`));
    expect(literal.answer).toMatchObject({
      code: "HTTP_URL_NOT_ALLOWED",
      message: "127.0.0.1 is not a public address.",
    });
    // Other spellings of 127.0.0.1 normalize to it and are refused the same way.
    for (const spelling of ["127.1", "0x7f000001", "2130706433", "0177.0.0.1"]) {
      const answer = await fetchWith(guarded, `http://${spelling}:${main.port}/ok/hello`);
      expect(answer, spelling).toMatchObject({ code: "HTTP_URL_NOT_ALLOWED" });
    }
    // A name is resolved by the pack's own lookup, which drops non-public addresses.
    const named = await received(() =>
      fetchWith(guarded, `http://localhost:${main.port}/ok/hello`),
    );
    expect(named.answer).toMatchObject({
      ok: false,
      code: "HTTP_FETCH_FAILED",
      status: "error",
      message: expect.stringContaining("no public address"),
    });
    // IPv6 loopback and IPv4-mapped loopback literals: refused (they cannot even be listed).
    for (const url of [
      `http://[::1]:${main.port}/ok/hello`,
      `http://[::ffff:127.0.0.1]:${main.port}/ok/hello`,
      `http://[0:0:0:0:0:ffff:7f00:1]:${main.port}/ok/hello`,
    ]) {
      for (const registry of [guarded, open({ allow })]) {
        expect(await fetchWith(registry, url), url).toMatchObject({ code: "HTTP_URL_NOT_ALLOWED" });
      }
    }
    expect([...literal.main, ...named.main]).toEqual([]);
    expect(main.seen.filter((seen) => seen.url === "/ok/hello")).toEqual([]);

    // The same URLs with allowPrivateNetwork do reach the server (so the refusals above are
    // the address rule's).
    const allowed = registryOf(createHttpTools({ allow, allowPrivateNetwork: true }));
    for (const url of [`${base}/ok/hello`, `http://localhost:${main.port}/ok/hello`]) {
      expect(await fetchWith(allowed, url), url).toMatchObject({
        ok: true,
        value: { body: "hello" },
      });
    }
  });

  it("fetches from guest code: status, final url, headers and body", async () => {
    const manager = managerWith(
      createHttpTools({
        allow: [`${base}/ok/`],
        allowPrivateNetwork: true,
      }),
    );
    const result = await guest(
      manager,
      sid("http"),
      `const page = await http_fetch('${base}/ok/hello');
       const head = await http_fetch('${base}/ok/hello', { method: 'head' });
       const refused = await attempt(() => http_fetch('${base}/private'));
       const post = await attempt(() => http_fetch('${base}/ok/echo', { method: 'POST', body: 'x' }));
       ({ page, head: { status: head.status, body: head.body, type: head.headers['content-type'] }, refused, post })`,
    );
    const value = result.result as Record<string, Record<string, unknown>>;
    expect(value.page).toMatchObject({
      status: 200,
      url: `${base}/ok/hello`,
      body: "hello",
      headers: { "content-type": "text/plain", "x-test": "yes" },
    });
    expect(value.head).toEqual({ status: 200, body: "", type: "text/plain" });
    expect(value.refused).toEqual({
      code: "HTTP_URL_NOT_ALLOWED",
      message: `${base}/private is not on this deployment's allow list.`,
    });
    expect(value.post).toMatchObject({ code: "HTTP_METHOD_NOT_ALLOWED" });
    expect(calls(result)).toEqual([
      ["http_fetch", "ok", null],
      ["http_fetch", "ok", null],
      ["http_fetch", "error", "HTTP_URL_NOT_ALLOWED"],
      ["http_fetch", "error", "HTTP_METHOD_NOT_ALLOWED"],
    ]);
    expect(result.external_calls.every((call) => call.side_effect === "network")).toBe(true);
    expect(main.seen.some((seen) => seen.method === "HEAD" && seen.url === "/ok/hello")).toBe(true);
    expect(main.seen.some((seen) => seen.url === "/private")).toBe(false);
    expect(main.seen.some((seen) => seen.method === "POST")).toBe(false);
  });

  it("sends only allowed methods and headers", async () => {
    const getOnly = open();
    const refused = await received(() =>
      fetchWith(getOnly, `${base}/ok/echo`, { method: "POST", body: "data" }),
    );
    expect(refused.answer).toMatchObject({
      code: "HTTP_METHOD_NOT_ALLOWED",
      message: "Method POST is not allowed (allowed: GET, HEAD).",
    });
    expect(refused.main).toEqual([]);

    const withPost = open({ methods: ["get", "post"] });
    const posted = await fetchWith(withPost, `${base}/ok/echo`, {
      method: "post",
      body: "data",
      headers: { "X-Custom": "value", "content-type": "text/plain" },
    });
    expect(posted).toMatchObject({ ok: true, value: { status: 201 } });
    const echoed = JSON.parse((posted.value as { body: string }).body);
    expect(echoed).toMatchObject({
      method: "POST",
      body: "data",
      headers: {
        "x-custom": "value",
        "content-type": "text/plain",
        host: `127.0.0.1:${main.port}`,
      },
    });
    expect(await fetchWith(withPost, `${base}/ok/echo`, { method: "DELETE" })).toMatchObject({
      code: "HTTP_METHOD_NOT_ALLOWED",
    });

    for (const name of [
      "host",
      "Host",
      "content-length",
      "Transfer-Encoding",
      "connection",
      "bad name",
      "x:y",
    ]) {
      const { answer, main: hits } = await received(() =>
        fetchWith(withPost, `${base}/ok/echo`, { headers: { [name]: "evil.example" } }),
      );
      expect(answer, name).toMatchObject({ code: "HTTP_HEADER_NOT_ALLOWED" });
      expect(hits).toEqual([]);
    }
  });

  it("follows redirects within the allow list and reports the final url", async () => {
    const registry = open();
    const once = await received(() => fetchWith(registry, `${base}/ok/redirect`));
    expect(once.answer).toMatchObject({
      ok: true,
      value: { status: 200, url: `${base}/ok/hello`, body: "hello" },
    });
    expect(once.main.map((seen) => seen.url)).toEqual(["/ok/redirect", "/ok/hello"]);
    // Across the two allowed origins (localhost resolves to loopback, allowed here).
    const across = await fetchWith(registry, `${base}/ok/to-localhost`);
    expect(across).toMatchObject({
      ok: true,
      value: { url: `http://localhost:${main.port}/ok/hello`, body: "hello" },
    });
    const twice = await fetchWith(registry, `${base}/ok/redirect-twice`);
    expect(twice).toMatchObject({ ok: true, value: { url: `${base}/ok/hello` } });
  });

  it("refuses a redirect off the allow list before requesting it", async () => {
    const registry = open();
    const away = await received(() => fetchWith(registry, `${base}/ok/away`));
    expect(away.answer).toMatchObject({
      ok: false,
      code: "HTTP_URL_NOT_ALLOWED",
      message: `http://127.0.0.1:${other.port}/secret is not on this deployment's allow list.`,
    });
    expect(away.other).toEqual([]);
    expect(other.seen).toEqual([]);

    const outside = await received(() => fetchWith(registry, `${base}/ok/outside`));
    expect(outside.answer).toMatchObject({ code: "HTTP_URL_NOT_ALLOWED" });
    expect(outside.main.map((seen) => seen.url)).toEqual(["/ok/outside"]);

    const toFile = await fetchWith(registry, `${base}/ok/to-file`);
    expect(toFile).toMatchObject({
      code: "HTTP_URL_NOT_ALLOWED",
      message: expect.stringContaining("file:"),
    });
  });

  it("stops after maxRedirects", async () => {
    const { answer, main: hits } = await received(() => fetchWith(open(), `${base}/ok/loop`));
    expect(answer).toMatchObject({
      ok: false,
      code: "HTTP_FETCH_FAILED",
      message: "More than 2 redirects.",
    });
    expect(hits.map((seen) => seen.url)).toEqual(["/ok/loop", "/ok/loop", "/ok/loop"]);
    const none = await received(() => fetchWith(open({ maxRedirects: 0 }), `${base}/ok/redirect`));
    expect(none.answer).toMatchObject({ code: "HTTP_FETCH_FAILED" });
    expect(none.main.map((seen) => seen.url)).toEqual(["/ok/redirect"]);
  });

  it("refuses responses larger than maxResponseBytes", async () => {
    const registry = open();
    expect(await fetchWith(registry, `${base}/ok/size/${MAX_BYTES}`)).toMatchObject({
      ok: true,
      value: { status: 200, body: "x".repeat(MAX_BYTES) },
    });
    expect(await fetchWith(registry, `${base}/ok/size/${MAX_BYTES + 1}`)).toMatchObject({
      ok: false,
      code: "HTTP_RESPONSE_TOO_LARGE",
      status: "error",
      message: `The response is larger than ${MAX_BYTES} bytes.`,
    });
    expect(await fetchWith(registry, `${base}/ok/size/${20 * MAX_BYTES}`)).toMatchObject({
      code: "HTTP_RESPONSE_TOO_LARGE",
    });
  });

  it("returns binary bodies as base64 when asked", async () => {
    expect(await fetchWith(open(), `${base}/ok/binary`, { encoding: "base64" })).toMatchObject({
      ok: true,
      value: { body: "AAH+/w==" },
    });
  });

  it("gives up on a server that never answers, within timeoutMs, and closes the connection", async () => {
    const registry = open();
    for (const path of ["/ok/hang", "/ok/stall-body"]) {
      const closedBefore = main.closed.length;
      const answer = await fetchWith(registry, `${base}${path}`);
      // The pack's own timer (timeoutMs) fires before the gateway's (timeoutMs + 1 s).
      expect(answer, path).toMatchObject({ ok: false, code: "HTTP_FETCH_FAILED", status: "error" });
      expect(answer.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
      expect(answer.ms).toBeLessThan(TIMEOUT_MS + 1_000);
      await expect.poll(() => main.closed.slice(closedBefore)).toContain(path);
    }
  });

  it("refuses URLs with credentials and schemes other than http(s)", async () => {
    const registry = open({ allow: [`${base}/`, "https://example.com/", "ftp://example.com/"] });
    const urls = [
      `http://user:pass@127.0.0.1:${main.port}/ok/hello`,
      `http://user@127.0.0.1:${main.port}/ok/hello`,
      "file:///etc/passwd",
      "ftp://example.com/",
      "data:text/plain,hello",
      "javascript:alert(1)",
      "ws://127.0.0.1/",
      "not a url",
      "/ok/hello",
    ];
    const { main: hits } = await received(async () => {
      for (const url of urls) {
        expect(await fetchWith(registry, url), url).toMatchObject({
          ok: false,
          code: "HTTP_URL_NOT_ALLOWED",
        });
      }
    });
    expect(hits).toEqual([]);
    expect((await fetchWith(registry, urls[0]!)).message).toBe(
      "URLs with credentials are refused.",
    );
  });

  it("isAllowed: hosts, wildcards, ports, schemes and path prefixes", () => {
    const check = (url: string, allow: string[]) => isAllowed(new URL(url), allow);
    const api = ["https://api.example.com/"];
    expect(check("https://api.example.com/x", api)).toBe(true);
    expect(check("https://API.Example.COM/x", api)).toBe(true);
    expect(check("https://api.example.com:443/x", api)).toBe(true);
    expect(check("http://api.example.com/x", api)).toBe(false);
    expect(check("https://api.example.com:8443/x", api)).toBe(false);
    expect(check("https://api.example.com.evil.net/", api)).toBe(false);
    expect(check("https://evilapi.example.com/", api)).toBe(false);
    expect(check("https://x.api.example.com/", api)).toBe(false);

    const wildcard = ["https://*.example.com/"];
    expect(check("https://a.example.com/", wildcard)).toBe(true);
    expect(check("https://a.b.example.com/p", wildcard)).toBe(true);
    expect(check("https://example.com/", wildcard)).toBe(false);
    expect(check("https://badexample.com/", wildcard)).toBe(false);
    expect(check("https://a.example.com.evil.net/", wildcard)).toBe(false);

    const ported = ["http://localhost:8080/"];
    expect(check("http://localhost:8080/a", ported)).toBe(true);
    expect(check("http://localhost/a", ported)).toBe(false);
    expect(check("http://localhost:8081/a", ported)).toBe(false);
    expect(check("http://localhost:80/a", ["http://localhost/"])).toBe(true);

    const prefixed = ["https://api.example.com/v1/"];
    expect(check("https://api.example.com/v1/users?q=1", prefixed)).toBe(true);
    expect(check("https://api.example.com/v1", prefixed)).toBe(false);
    expect(check("https://api.example.com/v2/users", prefixed)).toBe(false);
    expect(check("https://api.example.com/v1/../admin", prefixed)).toBe(false);
    expect(check("https://api.example.com/v1/%2e%2e/admin", prefixed)).toBe(false);
    // Without the trailing slash a prefix is a plain string prefix, as documented.
    expect(check("https://api.example.com/v1beta", ["https://api.example.com/v1"])).toBe(true);

    expect(check("https://api.example.com/", [])).toBe(false);
    for (const malformed of [
      "api.example.com",
      "ftp://api.example.com/",
      "https://",
      "*",
      "https://api.example.com/?q",
    ]) {
      expect(check("https://api.example.com/", [malformed]), malformed).toBe(false);
    }
    expect(check("https://b.example.org/", ["garbage", "https://b.example.org/"])).toBe(true);
  });

  it("isPublicAddress: only public unicast addresses", () => {
    for (const address of [
      "8.8.8.8",
      "1.1.1.1",
      "93.184.216.34",
      "2606:4700:4700::1111",
      "::ffff:8.8.8.8",
    ]) {
      expect(isPublicAddress(address), address).toBe(true);
    }
    for (const address of [
      "127.0.0.1",
      "127.255.255.254",
      "10.0.0.1",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "255.255.255.255",
      "224.0.0.1",
      "192.0.2.1",
      "::1",
      "::",
      "fe80::1",
      "fc00::1",
      "fd00::2",
      "ff02::1",
      "::ffff:127.0.0.1",
      "::ffff:10.0.0.1",
      "::ffff:169.254.169.254",
      "64:ff9b::7f00:1",
      "2002:7f00:1::",
      "2001:db8::1",
    ]) {
      expect(isPublicAddress(address), address).toBe(false);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// sql
// ---------------------------------------------------------------------------------------------

describe("sql pack", () => {
  it("creates, inserts and selects with positional and named parameters", async () => {
    const result = await guest(
      server.manager,
      sid("sql"),
      `await sql_exec('CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, active INTEGER, photo BLOB, score REAL)');
       const first = await sql_query('INSERT INTO people (name, active, photo, score) VALUES (?, ?, ?, ?)', ['ann', true, { $base64: 'AP8=' }, 1.5]);
       const second = await sql_query('INSERT INTO people (name, active, photo, score) VALUES (:name, $active, @photo, :score)', { name: 'bob', active: false, photo: null, score: null });
       const all = await sql_query('SELECT id, name, active, photo, typeof(photo), score FROM people ORDER BY id');
       const named = await sql_query('SELECT name FROM people WHERE active = :on AND id = $id', { on: true, id: 1 });
       const updated = await sql_query('UPDATE people SET score = ? WHERE active = ?', [2.25, false]);
       const none = await sql_query('SELECT name FROM people WHERE name = ?', ['nobody']);
       ({ first, second, all, named, updated, none })`,
    );
    expect(result.result).toEqual({
      first: { columns: [], rows: [], changes: 1, last_insert_rowid: 1 },
      second: { columns: [], rows: [], changes: 1, last_insert_rowid: 2 },
      all: {
        columns: ["id", "name", "active", "photo", "typeof(photo)", "score"],
        rows: [
          [1, "ann", 1, { $base64: "AP8=" }, "blob", 1.5],
          [2, "bob", 0, null, "null", null],
        ],
        changes: 0,
        last_insert_rowid: null,
      },
      named: { columns: ["name"], rows: [["ann"]], changes: 0, last_insert_rowid: null },
      updated: { columns: [], rows: [], changes: 1, last_insert_rowid: 2 },
      none: { columns: ["name"], rows: [], changes: 0, last_insert_rowid: null },
    });
    expect(calls(result).map(([name, status]) => [name, status])).toEqual([
      ["sql_exec", "ok"],
      ...Array(6).fill(["sql_query", "ok"]),
    ]);
    expect(result.external_calls.every((call) => call.side_effect === "database")).toBe(true);
  });

  it("returns integers beyond 2^53 as strings and blobs as {$base64}", async () => {
    const result = await guest(
      server.manager,
      sid("sql"),
      `(await sql_query("SELECT 9223372036854775807, -9223372036854775808, 9007199254740991, 9007199254740992, -9007199254740991, x'00ff10', zeroblob(0), 0.5, 'text', NULL")).rows[0]`,
    );
    expect(result.result).toEqual([
      "9223372036854775807",
      "-9223372036854775808",
      9007199254740991,
      "9007199254740992",
      -9007199254740991,
      { $base64: "AP8Q" },
      { $base64: "" },
      0.5,
      "text",
      null,
    ]);
  });

  it("reports SQL errors and bad parameters with codes the guest can catch", async () => {
    const result = await guest(
      server.manager,
      sid("sql"),
      `({
         syntax: await attempt(() => sql_query('SELEKT 1')),
         missing: await attempt(() => sql_query('SELECT * FROM nowhere')),
         badParam: await attempt(() => sql_query('SELECT ?', [{ nested: 1 }])),
         badParamNamed: await attempt(() => sql_query('SELECT :a', { a: [1] })),
         schema: await attempt(() => sql_query(42)),
         scriptError: await attempt(() => sql_exec('CREATE TABLE ok1(x); INSERT INTO missing VALUES (1)')),
       })`,
    );
    const value = result.result as Record<string, { code: string; message: string }>;
    expect(value.syntax).toMatchObject({
      code: "SQL_ERROR",
      message: expect.stringContaining("syntax error"),
    });
    expect(value.missing).toMatchObject({
      code: "SQL_ERROR",
      message: expect.stringContaining("no such table: nowhere"),
    });
    expect(value.badParam!.code).toBe("INVALID_ARGUMENTS");
    expect(value.badParamNamed!.code).toBe("INVALID_ARGUMENTS");
    expect(value.schema!.code).toBe("INVALID_ARGUMENTS");
    expect(value.scriptError).toMatchObject({
      code: "SQL_ERROR",
      message: expect.stringContaining("no such table: missing"),
    });
    expect(calls(result).map(([, status, code]) => [status, code])).toEqual([
      ["error", "SQL_ERROR"],
      ["error", "SQL_ERROR"],
      ["error", "INVALID_ARGUMENTS"],
      ["error", "INVALID_ARGUMENTS"],
      ["error", "INVALID_ARGUMENTS"],
      ["error", "SQL_ERROR"],
    ]);
  });

  it("runs one statement per sql_query and scripts with sql_exec", async () => {
    const result = await guest(
      server.manager,
      sid("sql"),
      `const script = await sql_exec(\`
         CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT); -- a comment; with a semicolon
         INSERT INTO t (note) VALUES ('a;b'), ('it''s; fine');
         /* block; comment */ INSERT INTO t (note) VALUES ('x');
       \`);
       const two = await attempt(() => sql_query("INSERT INTO t (note) VALUES ('c'); DELETE FROM t"));
       const doubled = await attempt(() => sql_query("SELECT 1;; DELETE FROM t"));
       const trailing = await sql_query("SELECT count(*) FROM t; -- done");
       const semis = await sql_query("SELECT note FROM t WHERE note LIKE '%;%' ORDER BY id;  ;");
       ({ script, two, doubled, trailing: trailing.rows, semis: semis.rows })`,
    );
    expect(result.result).toEqual({
      script: true,
      two: {
        code: "SQL_MULTIPLE_STATEMENTS",
        message: "sql_query runs one statement; use sql_exec for a script of several.",
      },
      doubled: expect.objectContaining({ code: "SQL_MULTIPLE_STATEMENTS" }),
      // Neither refused script ran any part of itself: all three rows are there.
      trailing: [[3]],
      semis: [["a;b"], ["it's; fine"]],
    });
  });

  it("hasSeveralStatements: only text after a ; outside strings, identifiers and comments counts", () => {
    for (const one of [
      "SELECT 1",
      "SELECT 1;",
      "SELECT 1;   \n\t",
      "SELECT 1; -- trailing comment",
      "SELECT 1; /* trailing; block */",
      "SELECT 1 -- ; comment\n",
      "SELECT ';' AS semi",
      "SELECT 'it''s; here'",
      'SELECT "a;b" FROM "t;1"',
      "SELECT [a;b] FROM `t;2`",
      "SELECT 1 /* ; */ + 2",
      "SELECT 1 -- unterminated; comment",
      "SELECT 'unterminated; string",
      "",
      ";",
    ]) {
      expect(hasSeveralStatements(one), one).toBe(false);
    }
    for (const several of [
      "SELECT 1; SELECT 2",
      "SELECT 1;SELECT 2",
      "SELECT 1; -- c\nSELECT 2",
      "SELECT 1; /* c */ SELECT 2",
      "SELECT ';'; SELECT 2",
      "SELECT 1;; SELECT 2",
      "SELECT 1; ; DROP TABLE t",
      "INSERT INTO t VALUES (1); x",
    ]) {
      expect(hasSeveralStatements(several), several).toBe(true);
    }
  });

  it("refuses ATTACH, VACUUM INTO, extensions and writable pragmas; allows table_info", async () => {
    const attachPath = join(scratch, "attached.db");
    const vacuumPath = join(scratch, "vacuumed.db");
    const result = await guest(
      server.manager,
      sid("sql"),
      `await sql_exec('CREATE TABLE t (a INTEGER NOT NULL, b TEXT)');
       const refused = {};
       refused.attach = await attempt(() => sql_exec("ATTACH DATABASE '${attachPath}' AS x"));
       refused.attachQuery = await attempt(() => sql_query("ATTACH DATABASE '${attachPath}' AS x"));
       refused.attachMemory = await attempt(() => sql_exec("ATTACH DATABASE ':memory:' AS m"));
       refused.vacuum = await attempt(() => sql_exec("VACUUM INTO '${vacuumPath}'"));
       refused.vacuumQuery = await attempt(() => sql_query("VACUUM INTO '${vacuumPath}'"));
       refused.extension = await attempt(() => sql_query("SELECT load_extension('/tmp/nothing')"));
       refused.pageCount = await attempt(() => sql_exec('PRAGMA max_page_count = 1000000'));
       refused.tempPageCount = await attempt(() => sql_exec('PRAGMA temp.max_page_count = 1000000'));
       refused.writableSchema = await attempt(() => sql_query('PRAGMA writable_schema = 1'));
       refused.journal = await attempt(() => sql_query('PRAGMA journal_mode = OFF'));
       const info = await sql_query('PRAGMA table_info(t)');
       const infoFunction = await sql_query("SELECT name, type FROM pragma_table_info('t') ORDER BY cid");
       const list = await sql_query('PRAGMA table_list');
       ({ refused, info, infoFunction, listed: list.rows.some((row) => row.includes('t')) })`,
    );
    const value = result.result as {
      refused: Record<string, { code?: string; message?: string }>;
      info: { columns: string[]; rows: unknown[][] };
      infoFunction: { rows: unknown[][] };
      listed: boolean;
    };
    for (const [what, answer] of Object.entries(value.refused)) {
      expect(answer, what).toMatchObject({
        code: "SQL_ERROR",
        message: expect.stringMatching(/not authorized|authorization denied/),
      });
    }
    expect(existsSync(attachPath)).toBe(false);
    expect(existsSync(vacuumPath)).toBe(false);
    expect(value.info.columns).toEqual(["cid", "name", "type", "notnull", "dflt_value", "pk"]);
    expect(value.info.rows).toEqual([
      [0, "a", "INTEGER", 1, null, 0],
      [1, "b", "TEXT", 0, null, 0],
    ]);
    expect(value.infoFunction.rows).toEqual([
      ["a", "INTEGER"],
      ["b", "TEXT"],
    ]);
    expect(value.listed).toBe(true);
  });

  it("keeps each database within maxDatabaseBytes, temporary tables included", async () => {
    const id = sid("sql");
    const fill = (table: string, kib: number) =>
      `sql_query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${kib}) INSERT INTO ${table} SELECT randomblob(1024) FROM n")`;
    const result = await guest(
      server.manager,
      id,
      `await sql_exec('CREATE TABLE blobs (b BLOB); CREATE TEMP TABLE scratch (b BLOB)');
       const small = await ${fill("blobs", 64)};
       const tooMuch = await attempt(() => ${fill("blobs", 1024)});
       const tooMuchTemp = await attempt(() => ${fill("scratch", 1024)});
       const counts = (await sql_query('SELECT (SELECT count(*) FROM blobs), (SELECT count(*) FROM scratch)')).rows[0];
       const stillWorks = await sql_query("INSERT INTO blobs VALUES (x'01')");
       ({ small: small.changes, tooMuch, tooMuchTemp, counts, stillWorks: stillWorks.changes })`,
    );
    expect(result.result).toEqual({
      small: 64,
      tooMuch: { code: "SQL_ERROR", message: "database or disk is full" },
      tooMuchTemp: { code: "SQL_ERROR", message: "database or disk is full" },
      // The failed statements were rolled back as a whole.
      counts: [64, 0],
      stillWorks: 1,
    });
  });

  it("refuses queries returning more than maxRows rows", async () => {
    const rows = (n: number) =>
      `sql_query('WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${n}) SELECT i FROM n')`;
    const result = await guest(
      server.manager,
      sid("sql"),
      `({
         atLimit: (await ${rows(SQL_OPTIONS.maxRows)}).rows.length,
         over: await attempt(() => ${rows(SQL_OPTIONS.maxRows + 1)}),
         limited: (await sql_query('WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) SELECT i FROM n LIMIT 3')).rows,
       })`,
    );
    expect(result.result).toEqual({
      atLimit: SQL_OPTIONS.maxRows,
      over: {
        code: "SQL_TOO_MANY_ROWS",
        message: `The query returns more than ${SQL_OPTIONS.maxRows} rows; add a LIMIT.`,
      },
      limited: [[1], [2], [3]],
    });
    expect(calls(result)[1]).toEqual(["sql_query", "error", "SQL_TOO_MANY_ROWS"]);
  });

  it("keeps sessions' databases apart and drops a destroyed session's", async () => {
    const manager = server.manager;
    const a = sid("sql");
    const b = sid("sql");
    await guest(
      manager,
      a,
      "await sql_exec(\"CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('from a')\")",
    );
    const fromB = await guest(
      manager,
      b,
      `const before = await attempt(() => sql_query('SELECT v FROM t'));
       await sql_exec("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('from b')");
       ({ before, after: (await sql_query('SELECT v FROM t')).rows })`,
    );
    expect(fromB.result).toEqual({
      before: { code: "SQL_ERROR", message: "no such table: t" },
      after: [["from b"]],
    });
    expect((await guest(manager, a, "(await sql_query('SELECT v FROM t')).rows")).result).toEqual([
      ["from a"],
    ]);

    await manager.destroySession(a);
    // Same id, new session: the old database is gone...
    const reborn = await guest(manager, a, "await attempt(() => sql_query('SELECT v FROM t'))");
    expect(reborn.result).toEqual({ code: "SQL_ERROR", message: "no such table: t" });
    // ...while the other session's database (in the same worker) is untouched.
    expect((await guest(manager, b, "(await sql_query('SELECT v FROM t')).rows")).result).toEqual([
      ["from b"],
    ]);
  });

  it("stops a runaway query at its timeout; the worker restarts with every database lost", async () => {
    const timeoutMs = 400;
    const manager = managerWith(createSqlTools({ timeoutMs }));
    const victim = sid("sql");
    const runaway = sid("sql");
    await guest(
      manager,
      victim,
      "await sql_exec('CREATE TABLE kept (x); INSERT INTO kept VALUES (1)')",
    );
    await guest(manager, runaway, "await sql_exec('CREATE TABLE mine (x)')");
    const started = performance.now();
    const result = await guest(
      manager,
      runaway,
      `await attempt(() => sql_query('WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c'))`,
    );
    const elapsed = performance.now() - started;
    // The pack's own timer ends the call (timeoutMs) before the gateway's (timeoutMs + 1 s),
    // so the guest learns that the database is gone.
    expect(result.result).toEqual({
      code: "SQL_DATABASE_LOST",
      message:
        "The query ran past its time; the SQL worker was stopped and every session's database was lost.",
    });
    expect(calls(result)).toEqual([["sql_query", "error", "SQL_DATABASE_LOST"]]);
    expect(result.external_calls[0]!.duration_ms).toBeGreaterThanOrEqual(timeoutMs - 20);
    expect(elapsed).toBeLessThan(timeoutMs + 3_000);

    // A fresh worker answers; the old tables (of both sessions) are gone.
    const after = await guest(
      manager,
      runaway,
      `({ one: (await sql_query('SELECT 1 AS one')).rows, mine: await attempt(() => sql_query('SELECT * FROM mine')) })`,
    );
    expect(after.result).toEqual({
      one: [[1]],
      mine: { code: "SQL_ERROR", message: "no such table: mine" },
    });
    const victimAfter = await guest(
      manager,
      victim,
      "await attempt(() => sql_query('SELECT * FROM kept'))",
    );
    expect(victimAfter.result).toEqual({ code: "SQL_ERROR", message: "no such table: kept" });
  });

  it("a call cut off by the run's deadline is a TOOL_TIMEOUT and also stops the worker", async () => {
    const registry = registryOf(createSqlTools({ timeoutMs: 5_000 }));
    expect(await callTool(registry, "sql_exec", ["CREATE TABLE t (x)"], "deadline")).toMatchObject({
      ok: true,
    });
    const gateway = new ToolGateway({
      registry,
      sessionId: "deadline",
      runId: sid("run"),
      maxExternalCalls: 10,
      deadline: performance.now() + 300,
      signal: new AbortController().signal,
    });
    const started = performance.now();
    const reply = await gateway.call(
      "sql_query",
      JSON.stringify([
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
      ]),
      "{}",
    );
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(reply).toMatchObject({ ok: false, status: "timeout", code: "TOOL_TIMEOUT" });
    expect(gateway.records[0]).toMatchObject({
      status: "timeout",
      error: { code: "TOOL_TIMEOUT" },
    });
    // The runaway query did not keep the worker: the next call answers at once, on a fresh database.
    const next = await callTool(registry, "sql_query", ["SELECT * FROM t"], "deadline");
    expect(next).toMatchObject({ ok: false, code: "SQL_ERROR", message: "no such table: t" });
    expect(next.ms).toBeLessThan(2_000);
  });
});
