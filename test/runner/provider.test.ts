/**
 * The `sandbox` runner provider through its own API (no HTTP): a destination's side-effect
 * policy binds its programs, a session that hibernates between commands keeps its files,
 * cancelling a command stops it for good, and exit codes are a process's.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKvTools } from "../../capabilities/kv/index.ts";
import { createQuickJsRuntime } from "../../runtimes/quickjs/index.ts";
import {
  ArtifactStore,
  DEFAULT_SESSION_LIMITS,
  MemorySnapshotStore,
  ProcessRegistry,
  type RunnerCommandRequest,
  RuntimeRegistry,
  SandboxRunnerProvider,
  SessionManager,
  ToolRegistry,
} from "../../src/index.ts";

let runtimes: RuntimeRegistry;
let manager: SessionManager;
let processes: ProcessRegistry;
let provider: SandboxRunnerProvider;

beforeAll(() => {
  runtimes = new RuntimeRegistry();
  runtimes.register(createQuickJsRuntime({ threads: 1 }));
  const tools = new ToolRegistry();
  for (const tool of createKvTools()) tools.register(tool);
  manager = new SessionManager({
    runtimes,
    tools,
    defaults: DEFAULT_SESSION_LIMITS,
    ceilings: { ...DEFAULT_SESSION_LIMITS, wall_ms: 30_000 },
    defaultLanguage: "javascript",
    snapshots: {
      store: new MemorySnapshotStore(),
      key: new Uint8Array(randomBytes(32)),
      hibernateAfterMs: 1_000,
    },
  });
  processes = new ProcessRegistry();
  provider = new SandboxRunnerProvider({
    manager,
    processes,
    artifacts: ArtifactStore.memory(),
    artifactUrl: (id) => `/v1/artifacts/${id}`,
    hostRoots: [],
  });
});
afterAll(async () => {
  await manager?.close();
  await runtimes?.close();
});

let counter = 0;
const command = (args: string[]): RunnerCommandRequest => ({
  command_id: `cmd-${++counter}`,
  program: "node",
  args,
  cwd: null,
  env: [],
});
const destination = (config: Record<string, unknown> = {}) => ({
  id: "js",
  provider_id: "sandbox",
  config: { language: "javascript", ...config },
  default_manifest: { entries: [], mounts: [] },
});

describe("the sandbox provider", () => {
  it("holds programs to the destination's side-effect policy", async () => {
    const session = await provider.createSession(destination({ allowed_side_effects: ["none"] }));
    const result = await session.runCommand(
      command(["-e", "await kv_set('k', 'x'); console.log(await kv_get('k'))"]),
    );
    expect(result.exit_code).toBe(1);
    expect(result.stderr).toContain("has side effect 'write', which this session may not use");
    expect(result.stdout).toBe("");
  });

  it("keeps a session's files when it hibernates between commands, and wakes it on use", async () => {
    const session = await provider.createSession(destination());
    await session.writeFile({ path: "notes.txt", contents: [...Buffer.from("hello")] });
    const append = () =>
      session.runCommand(
        command(["-e", "const fs = require('fs'); fs.appendFileSync('notes.txt', '!')"]),
      );
    expect((await append()).exit_code).toBe(0);
    await manager.sweep(Date.now() + 2_000);
    expect(manager.getSession(session.id).state).toBe("hibernated");
    expect((await append()).exit_code).toBe(0);
    expect(manager.getSession(session.id).state).toBe("idle");
    const read = await session.readFile({ path: "notes.txt" });
    expect(Buffer.from(read.contents).toString()).toBe("hello!!");
  });

  it("a cancelled command stops for good: no later step runs, nothing is written", async () => {
    const session = await provider.createSession(destination());
    const request = command([
      "-e",
      "await new Promise((r) => setTimeout(r, 300)); require('fs').writeFileSync('late.txt', 'x')",
    ]);
    const running = session.runCommand(request);
    // Cancel at once: the command may still be between its steps.
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await session.cancelCommand(request.command_id)).toBe(true);
    const result = await running;
    expect(result.exit_code).toBe(130);
    expect(processes.get(request.command_id)?.state).toBe("stopped");
    await expect(session.readFile({ path: "late.txt" })).rejects.toMatchObject({
      code: "FILE_NOT_FOUND",
    });
    expect(await session.cancelCommand(request.command_id)).toBe(false);
  });

  it("stopping through the registry waits for the command to end", async () => {
    const session = await provider.createSession(destination());
    const request = command(["-e", "for (;;) {}"]);
    const running = session.runCommand(request);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const stopped = await processes.stop(request.command_id, "enough");
    expect(stopped).toMatchObject({ stopped: true, process: { state: "stopped" } });
    expect((await running).exit_code).toBe(130);
  });

  it("gives exit codes as a process would", async () => {
    const session = await provider.createSession(destination());
    const exit = async (code: string) =>
      (await session.runCommand(command(["-e", code]))).exit_code;
    expect(await exit("process.exitCode = 300")).toBe(44);
    expect(await exit("process.exitCode = 1.5")).toBe(1);
    expect(await exit("process.exit(3)")).toBe(3);
    expect(await exit("throw new Error('x')")).toBe(1);
    expect(await exit("for (;;) {}")).toBe(124);
  }, 30_000);
});
