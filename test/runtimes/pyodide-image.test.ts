/**
 * Session images of the Pyodide backend (docs/snapshots.md): a session's interpreter memory
 * and files, made between runs by its own process, loaded by a fresh pool process under the
 * same containment and limits. What an image cannot carry is refused with the reason, and
 * the session is left as it was. Real Pyodide, real processes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPyodideRuntime, type PyodideRuntime } from "../../runtimes/pyodide/index.ts";
import { openSessionImage, sealSessionImage } from "../../runtimes/pyodide/session-image.ts";
import {
  createSyncTool,
  DEFAULT_SESSION_LIMITS,
  type SessionLimits,
  ToolGateway,
  ToolRegistry,
} from "../../src/index.ts";

const registry = new ToolRegistry();
let echoes = 0;
registry.register(
  createSyncTool({ name: "echo", description: "Returns its arguments." }, (context) => {
    echoes += 1;
    return context.args;
  }),
);

let runtime: PyodideRuntime;
beforeAll(async () => {
  runtime = createPyodideRuntime({ poolSize: 2 });
  await runtime.warmUp(2);
});
afterAll(async () => {
  await runtime?.close();
});

let counter = 0;
async function session(limits: Partial<SessionLimits> = {}): Promise<string> {
  const id = `img-${++counter}`;
  await runtime.createSession(id, { ...DEFAULT_SESSION_LIMITS, ...limits }, "python");
  return id;
}

async function run(id: string, code: string, limits: Partial<SessionLimits> = {}) {
  const effective = { ...DEFAULT_SESSION_LIMITS, ...limits };
  const controller = new AbortController();
  const gateway = new ToolGateway({
    registry,
    sessionId: id,
    runId: `r${counter}`,
    maxExternalCalls: effective.max_external_calls,
    deadline: performance.now() + effective.wall_ms,
    signal: controller.signal,
  });
  const outcome = await runtime.run({
    runId: `run-${Math.random().toString(36).slice(2)}`,
    sessionId: id,
    language: "python",
    code,
    inputs: {},
    limits: effective,
    validateOnly: false,
    tools: gateway,
    signal: controller.signal,
  });
  gateway.settle();
  return outcome;
}

describe("Pyodide session images", () => {
  it("carry the interpreter, its files and its random stream into a fresh process", async () => {
    const id = await session();
    const built = await run(
      id,
      [
        "import os, random",
        "class Point:",
        "    def __init__(self, x): self.x = x",
        "    def double(self): return Point(self.x * 2)",
        "p = Point(21)",
        "squares = {n: n * n for n in range(50_000)}",
        "os.makedirs('/tmp/work/sub', exist_ok=True)",
        "open('/tmp/work/sub/notes.txt', 'w').write('kept')",
        "os.rmdir('/home/web_user')",
        "os.chdir('/tmp/work')",
        "reply = echo('once')",
        "random.seed(5)",
        "random.random()",
      ].join("\n"),
    );
    expect(built.status).toBe("ok");
    const image = await runtime.snapshotSession(id);
    const { header } = openSessionImage(image);
    expect(header).toMatchObject({ session_id: id, cells: 1 });
    expect(header.changed_pages).toBeGreaterThan(0);
    // A delta against the base image: far below the 30 MiB of memory it describes.
    expect(image.byteLength).toBeLessThan(4 * 1_048_576);

    const echoesBefore = echoes;
    await runtime.restoreSession(image, `${id}-copy`);
    expect(await runtime.listSessions()).toContain(`${id}-copy`);
    const seen = await run(
      `${id}-copy`,
      "[p.double().x, len(squares), open('sub/notes.txt').read(), os.getcwd(), reply, os.path.exists('/home/web_user'), random.random()]",
    );
    const original = await run(id, "[p.double().x, len(squares), random.random()]");
    expect(seen.status).toBe("ok");
    expect(echoes).toBe(echoesBefore);
    const [doubled, size, notes, cwd, reply, removed, next] = seen.result as unknown[];
    expect([doubled, size, notes, cwd, reply, removed]).toEqual([
      42,
      50_000,
      "kept",
      "/tmp/work",
      ["once"],
      false,
    ]);
    // The random stream goes on where the original's does.
    expect(next).toBe((original.result as unknown[])[2]);
    // Cells go on numbering: a traceback names the restored session's next cell.
    const failed = await run(`${id}-copy`, "missing_name");
    expect(failed.stderr).toContain('File "<cell-3>"');
    // Tools are those of the restoring side, synced afresh, and work.
    expect((await run(`${id}-copy`, "echo(2)")).result).toEqual([2]);
  });

  it("carry a memory grown past the base image's, under the restoring side's memory_mb", async () => {
    const limits = { memory_mb: 128 };
    const id = await session(limits);
    const grown = await run(id, "data = bytearray(64 * 2**20)\ndata[-1] = 7\nlen(data)", limits);
    expect(grown.memoryPeakBytes).toBeGreaterThan(64 * 1_048_576);
    const image = await runtime.snapshotSession(id);
    expect(openSessionImage(image).header.heap_bytes).toBe(grown.memoryPeakBytes);
    // The zero pages past the base image's end are left out of the image.
    expect(image.byteLength).toBeLessThan(1_048_576);
    await expect(
      runtime.restoreSession(image, `${id}-small`, { ...DEFAULT_SESSION_LIMITS, memory_mb: 64 }),
    ).rejects.toMatchObject({ code: "SNAPSHOT_INVALID" });
    await runtime.restoreSession(image, `${id}-copy`, { ...DEFAULT_SESSION_LIMITS, ...limits });
    expect((await run(`${id}-copy`, "[len(data), data[-1], data[0]]", limits)).result).toEqual([
      64 * 1_048_576,
      7,
      0,
    ]);
  });

  it("are refused while the session holds JavaScript objects or open files, and the session goes on", async () => {
    const id = await session();
    await run(id, "import js\nwhen = js.Date.new(0)\nkept = 1");
    await expect(runtime.snapshotSession(id)).rejects.toMatchObject({
      code: "SNAPSHOT_NOT_SUPPORTED",
      message: expect.stringContaining("JavaScript object"),
    });
    await run(id, "del when\nhandle = open('/tmp/open.txt', 'w')");
    await expect(runtime.snapshotSession(id)).rejects.toMatchObject({
      code: "SNAPSHOT_NOT_SUPPORTED",
      message: expect.stringContaining("open file descriptors"),
    });
    expect((await run(id, "handle.close()\nkept + 1")).result).toBe(2);
    const image = await runtime.snapshotSession(id);
    await runtime.restoreSession(image, `${id}-copy`);
    expect((await run(`${id}-copy`, "[kept, handle.closed]")).result).toEqual([1, true]);
  });

  it("refuse another base image, damaged bytes and a memory above memory_mb, leaving nothing", async () => {
    const id = await session();
    await run(id, "x = 1");
    const image = await runtime.snapshotSession(id);
    const { header, image: encoded } = openSessionImage(image);
    const sessionsBefore = await runtime.listSessions();

    const otherBase = sealSessionImage({ ...header, base: "0".repeat(20) }, encoded);
    await expect(runtime.restoreSession(otherBase, "other-base")).rejects.toMatchObject({
      code: "SNAPSHOT_BUILD_MISMATCH",
    });
    const damaged = Uint8Array.from(encoded);
    damaged.fill(0xab, 16, 64);
    await expect(
      runtime.restoreSession(sealSessionImage(header, damaged), "damaged"),
    ).rejects.toMatchObject({ code: "SNAPSHOT_INVALID" });
    await expect(runtime.restoreSession(image.subarray(0, 20), "cut")).rejects.toMatchObject({
      code: "SNAPSHOT_INVALID",
    });
    const small = sealSessionImage(
      { ...header, limits: { ...header.limits, memory_mb: 16 } },
      encoded,
    );
    await expect(runtime.restoreSession(small, "small")).rejects.toMatchObject({
      code: "SNAPSHOT_INVALID",
    });
    await expect(runtime.restoreSession(image, id)).rejects.toMatchObject({
      code: "SESSION_EXISTS",
    });
    expect(await runtime.listSessions()).toEqual(sessionsBefore);
  });

  it("restore into a process as contained and limited as any other", async () => {
    const id = await session({ memory_mb: 64 });
    await run(id, "data = b'x' * 1_000_000", { memory_mb: 64 });
    await runtime.restoreSession(await runtime.snapshotSession(id), `${id}-copy`);
    const copy = `${id}-copy`;
    const probe = await run(
      copy,
      [
        "import js, os",
        "fs = js.process.getBuiltinModule('node:fs')",
        "try:",
        "    fs.readFileSync('/etc/hostname')",
        "    read = True",
        "except Exception:",
        "    read = False",
        "[read, js.Object.keys(js.process.env).length, len(data)]",
      ].join("\n"),
    );
    expect(probe.result).toEqual([false, 0, 1_000_000]);
    const grown = await run(copy, "block = bytearray(200 * 2**20)", { memory_mb: 64 });
    expect(grown).toMatchObject({ status: "resource_exhausted", error: { code: "MEMORY_LIMIT" } });
  });
});
