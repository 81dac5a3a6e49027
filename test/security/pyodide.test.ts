/**
 * The Pyodide escape suite: a hostile Python program tries every route out of its sandbox
 * named in issue 4, and more. Python can reach Pyodide's JavaScript realm (`import js`,
 * `pyodide_js`, `pyodide.code.run_js`, ctypes → `emscripten_run_script_string`, the
 * `.constructor` of a JavaScript function it is handed), so each route is tried from there
 * too. Every case asserts what the guest saw and what the host saw (a server on 127.0.0.1
 * that must stay untouched, a secret file and environment variable that must stay unread),
 * and that the server keeps serving.
 */

import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { chmodSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createTcpServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPyodideRuntime, type PyodideRuntime } from "../../runtimes/pyodide/index.ts";
import {
  createSyncTool,
  DEFAULT_SESSION_LIMITS,
  type SessionLimits,
  ToolGateway,
  ToolRegistry,
} from "../../src/index.ts";

const SECRET = `escape-secret-${process.pid}-${Math.random().toString(36).slice(2)}`;
const secretFile = join(tmpdir(), `sandbox-escape-${process.pid}.txt`);
const unixSocketPath = join(tmpdir(), `sandbox-escape-${process.pid}.sock`);
const REPOSITORY = fileURLToPath(new URL("../..", import.meta.url));

let runtime: PyodideRuntime;
let tcp: Server;
let unix: Server;
let udp: UdpSocket;
let tcpPort = 0;
let udpPort = 0;
/** Everything the host's listeners saw. */
const seen: string[] = [];

const registry = new ToolRegistry();
registry.register(
  createSyncTool({ name: "echo", description: "Returns its arguments." }, (c) => c.args),
);

beforeAll(async () => {
  process.env.SANDBOX_ESCAPE_SECRET = SECRET;
  writeFileSync(secretFile, SECRET, { mode: 0o644 });
  tcp = createTcpServer((socket) => {
    seen.push("tcp connection");
    socket.on("data", (data) => seen.push(`tcp data ${data.toString().slice(0, 40)}`));
    socket.end("pong\n");
  });
  await new Promise<void>((resolve) => tcp.listen(0, "127.0.0.1", resolve));
  tcpPort = (tcp.address() as { port: number }).port;
  unix = createTcpServer((socket) => {
    seen.push("unix connection");
    socket.end();
  });
  rmSync(unixSocketPath, { force: true });
  await new Promise<void>((resolve) => unix.listen(unixSocketPath, resolve));
  chmodSync(unixSocketPath, 0o777);
  udp = createSocket("udp4");
  udp.on("message", () => seen.push("udp datagram"));
  await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve));
  udpPort = udp.address().port;
  runtime = createPyodideRuntime({ poolSize: 2 });
  await runtime.warmUp(1);
});

afterAll(async () => {
  await runtime?.close();
  tcp?.close();
  unix?.close();
  udp?.close();
  rmSync(secretFile, { force: true });
  rmSync(unixSocketPath, { force: true });
  delete process.env.SANDBOX_ESCAPE_SECRET;
});

let counter = 0;
async function session(limits: Partial<SessionLimits> = {}): Promise<string> {
  const id = `escape-${++counter}`;
  await runtime.createSession(id, { ...DEFAULT_SESSION_LIMITS, ...limits }, "python");
  return id;
}

async function run(sessionId: string, code: string, limits: Partial<SessionLimits> = {}) {
  const effective = { ...DEFAULT_SESSION_LIMITS, ...limits };
  const controller = new AbortController();
  const gateway = new ToolGateway({
    registry,
    sessionId,
    runId: `r${counter}`,
    maxExternalCalls: effective.max_external_calls,
    deadline: performance.now() + effective.wall_ms,
    signal: controller.signal,
  });
  const started = performance.now();
  const outcome = await runtime.run({
    runId: `run-${Math.random().toString(36).slice(2)}`,
    sessionId,
    language: "python",
    code,
    inputs: {
      port: tcpPort,
      udp_port: udpPort,
      secret_file: secretFile,
      unix_socket: unixSocketPath,
      server_pid: process.pid,
      repository: REPOSITORY,
      secret_name: "SANDBOX_ESCAPE_SECRET",
    },
    limits: effective,
    validateOnly: false,
    tools: gateway,
    signal: controller.signal,
  });
  gateway.settle();
  return { ...outcome, elapsedMs: performance.now() - started, records: gateway.records };
}

/** Runs `attempts` (Python: a dict of name → callable); answers name → "ok: …" or "error: …". */
async function attempt(code: string, limits: Partial<SessionLimits> = {}) {
  const id = await session(limits);
  const outcome = await run(
    id,
    `${code}
_results = {}
for _name, _fn in attempts.items():
    try:
        _value = _fn()
        if hasattr(_value, "__await__"):
            _value = await _value
        _results[_name] = "ok: " + str(_value)[:200]
    except BaseException as _error:
        _results[_name] = "error: " + type(_error).__name__ + ": " + str(_error)[:200]
_results`,
    limits,
  );
  expect(outcome.status, outcome.stderr).toBe("ok");
  return outcome.result as Record<string, string>;
}

async function stillServes(): Promise<void> {
  const id = await session();
  expect(await run(id, "sum(range(10))")).toMatchObject({ status: "ok", result: 45 });
}

const JS_NET_CONNECT = `
from pyodide.code import run_js
def js_connect(target):
    return run_js("""(target) => new Promise((resolve) => {
      const net = process.getBuiltinModule("node:net");
      const socket = net.connect(target);
      socket.on("connect", () => { socket.write("escaped"); resolve("connected"); });
      socket.on("error", (error) => resolve("refused " + error.code));
      setTimeout(() => resolve("no answer"), 1000);
    })""")(target)
`;

describe("Pyodide escape suite: network", () => {
  it("cannot reach a server on the host's 127.0.0.1 by any route", async () => {
    const results = await attempt(`
import socket, js, pyodide_js
${JS_NET_CONNECT}
from pyodide.ffi import to_js
def python_socket():
    s = socket.create_connection(("127.0.0.1", port), timeout=1)
    s.sendall(b"escaped\\n")
    return s.recv(10)
async def js_fetch():
    response = await js.fetch(f"http://127.0.0.1:{port}/escaped")
    return await response.text()
async def node_net():
    answer = await js_connect(to_js({"host": "127.0.0.1", "port": port}, dict_converter=js.Object.fromEntries))
    if answer.startswith("connected"):
        return answer
    raise OSError(answer)
async def node_http():
    http = js.process.getBuiltinModule("node:http")
    return await run_js("""(http, port) => new Promise((resolve, reject) => {
      const request = http.get("http://127.0.0.1:" + port + "/escaped", (r) => resolve("status " + r.statusCode));
      request.on("error", (e) => reject(new Error(e.code)));
    })""")(http, port)
async def websocket():
    return await run_js("""(port) => new Promise((resolve, reject) => {
      const ws = new WebSocket("ws://127.0.0.1:" + port + "/");
      ws.onopen = () => resolve("open");
      ws.onerror = () => reject(new Error("websocket failed"));
    })""")(port)
async def udp():
    dgram = js.process.getBuiltinModule("node:dgram")
    return await run_js("""(dgram, port) => new Promise((resolve, reject) => {
      const s = dgram.createSocket("udp4");
      s.send("escaped", port, "127.0.0.1", (e) => e ? reject(new Error(e.code)) : resolve("sent"));
    })""")(dgram, udp_port)
def interfaces():
    return list(js.Object.keys(js.process.getBuiltinModule("node:os").networkInterfaces()))
def js_require():
    return js.require("node:net").connect(port, "127.0.0.1")
attempts = {
    "js.require": js_require,
    "python socket": python_socket,
    "js.fetch": js_fetch,
    "node net": node_net,
    "node http": node_http,
    "WebSocket": websocket,
    "udp": udp,
    "interfaces": interfaces,
}
`);
    for (const name of [
      "js.require",
      "python socket",
      "js.fetch",
      "node net",
      "node http",
      "WebSocket",
    ]) {
      expect(results[name], name).toMatch(/^error/);
    }
    // A datagram can be "sent" into the empty namespace; it must not arrive.
    expect(results.interfaces).toBe("ok: []");
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(seen).toEqual([]);
  });

  it("cannot reach a host Unix socket, even a world-writable one", async () => {
    const results = await attempt(`
${JS_NET_CONNECT}
async def unix():
    answer = await js_connect(unix_socket)
    if answer.startswith("connected"):
        return answer
    raise OSError(answer)
attempts = {"unix socket": unix}
`);
    expect(results["unix socket"]).toMatch(/^error/);
    expect(seen).toEqual([]);
  });
});

describe("Pyodide escape suite: files, environment, processes", () => {
  it("sees no environment variable of the server, from Python or JavaScript", async () => {
    const results = await attempt(`
import os, js
attempts = {
    "os.environ": lambda: os.environ.get(secret_name, "absent"),
    "process.env": lambda: js.process.env[secret_name] if secret_name in js.Object.keys(js.process.env) else "absent",
    "env keys": lambda: list(js.Object.keys(js.process.env)),
    "/proc/self/environ": lambda: js.process.getBuiltinModule("node:fs").readFileSync("/proc/self/environ", "utf8"),
    f"/proc/{server_pid}/environ": lambda: js.process.getBuiltinModule("node:fs").readFileSync(f"/proc/{server_pid}/environ", "utf8"),
}
`);
    expect(results["os.environ"]).toBe("ok: absent");
    expect(results["process.env"]).toBe("ok: absent");
    expect(results["env keys"]).toBe("ok: []");
    expect(results["/proc/self/environ"]).toMatch(/^error/);
    expect(results[`/proc/${process.pid}/environ`]).toMatch(/^error/);
    expect(JSON.stringify(results)).not.toContain(SECRET);
  });

  it("reads no host file: not through node:fs, NODEFS, ctypes, or a function's constructor", async () => {
    const results = await attempt(`
import js, pyodide_js, os, _sandbox
fs = js.process.getBuiltinModule("node:fs")
def node_fs():
    return fs.readFileSync(secret_file, "utf8")
def nodefs_mount():
    os.makedirs("/host", exist_ok=True)
    pyodide_js.FS.mount(pyodide_js.FS.filesystems.NODEFS, js.JSON.parse('{"root": "/"}'), "/host")
    with open("/host" + secret_file) as f:
        return f.read()
def constructor_route():
    make = _sandbox._bridge.write.constructor
    return make("path", "return process.getBuiltinModule('node:fs').readFileSync(path, 'utf8')")(secret_file)
def list_root():
    return list(fs.readdirSync("/"))
def repository_files():
    return list(fs.readdirSync(repository))
def in_the_root_but_not_allowed():
    # These exist inside the process's root; Node's permission model refuses them anyway.
    return [fs.readFileSync("/proc/self/status", "utf8")[:20], fs.readFileSync("/usr/lib/os-release", "utf8")[:20]]
def write_file():
    fs.writeFileSync("/tmp/escaped", "x")
    return "written"
attempts = {
    "node fs": node_fs,
    "NODEFS": nodefs_mount,
    "Function constructor": constructor_route,
    "list /": list_root,
    "list the repository": repository_files,
    "permission model": in_the_root_but_not_allowed,
    "write": write_file,
    "python open": lambda: open(secret_file).read(),
}
`);
    for (const name of [
      "node fs",
      "NODEFS",
      "Function constructor",
      "list /",
      "list the repository",
      "permission model",
      "write",
      "python open",
    ]) {
      expect(results[name], name).toMatch(/^error/);
    }
    expect(JSON.stringify(results)).not.toContain(SECRET);
  });

  it("ctypes → emscripten_run_script_string runs JavaScript in the same contained realm, no further", async () => {
    const id = await session();
    const outcome = await run(
      id,
      `import ctypes
lib = ctypes.CDLL(None)
script = lib.emscripten_run_script_string
script.restype = ctypes.c_char_p
print(script(b"String(process.pid) + ' ' + Object.keys(process.env).length"))
print(script(("process.getBuiltinModule('node:fs').readFileSync(" + repr(secret_file) + ", 'utf8')").encode()))`,
    );
    // The first script runs (PID 1, no environment); the second throws inside a C call, which
    // Pyodide treats as fatal: the interpreter is discarded and the run says so.
    expect(outcome.stdout).toMatch(/^b'1 0'\n/);
    expect(outcome).toMatchObject({ status: "interrupted", error: { code: "ENGINE_CRASHED" } });
    expect(JSON.stringify(outcome)).not.toContain(SECRET);
    await stillServes();
  });

  it("starts no process and signals none outside its own", async () => {
    const results = await attempt(`
import js, os, subprocess
cp = js.process.getBuiltinModule("node:child_process")
attempts = {
    "child_process": lambda: cp.execSync("id").toString(),
    "subprocess": lambda: subprocess.run(["id"], capture_output=True).stdout,
    "kill the server": lambda: js.process.kill(server_pid, "SIGTERM"),
    "own pid": lambda: js.process.pid,
    "addon": lambda: js.process.dlopen(js.Object.new(), "/nonexistent.node"),
}
`);
    expect(results.child_process).toMatch(/^error/);
    expect(results.subprocess).toMatch(/^error/);
    expect(results["kill the server"]).toMatch(/^error.*ESRCH/);
    // Its own PID namespace: the process is PID 1 and sees no other.
    expect(results["own pid"]).toBe("ok: 1");
    expect(results.addon).toMatch(/^error/);
    // os.system goes through Node's child_process inside Pyodide; the permission model's
    // refusal surfaces in a C call, which fails the interpreter (announced, session reset).
    const id = await session();
    const system = await run(id, "import os\nos.system('id > /dev/null')");
    expect(system.status).not.toBe("ok");
    expect(system.stdout).not.toMatch(/uid=/);
    await stillServes();
  });
});

describe("Pyodide escape suite: other sessions and the protocol", () => {
  it("cannot see another session's Python or JavaScript state", async () => {
    const a = await session();
    await run(a, `import js\nsecret = ${JSON.stringify(SECRET)}\njs.globalThis.leak = secret`);
    const b = await session();
    const peek = await run(
      b,
      "import js, gc\n[js.globalThis.leak if hasattr(js.globalThis, 'leak') else None, 'secret' in globals(), any(isinstance(o, str) and o.startswith('escape-secret') for o in gc.get_objects())]",
    );
    expect(peek).toMatchObject({ status: "ok", result: [null, false, false] });
  });

  it("writing its own frames to the server's channel only kills its own process", async () => {
    const id = await session();
    await run(id, "kept = 1");
    const forged = await run(
      id,
      `import js
fs = js.process.getBuiltinModule("node:fs")
# A frame header announcing 2 GiB: the server refuses it before buffering anything.
fs.writeSync(3, js.Uint8Array.new([127, 255, 255, 255, 123]))
import time
time.sleep(2)`,
    );
    expect(forged.status).toBe("interrupted");
    expect(forged.error?.code).toBe("ENGINE_CRASHED");
    expect(forged.elapsedMs).toBeLessThan(1_500);
    const after = await run(id, "'kept' in globals()");
    expect(after).toMatchObject({ status: "ok", result: false });
    expect(after.diagnostics.map((d) => d.code)).toContain("SESSION_RESET");
    await stillServes();
  });

  it("forged tool calls past the budget are a protocol violation, not records", async () => {
    const id = await session({ max_external_calls: 2 });
    const forged = await run(
      id,
      `import js, json
fs = js.process.getBuiltinModule("node:fs")
for n in range(50):
    body = json.dumps({"kind": "tool-call", "callId": 1000 + n, "name": "echo", "argsJson": "[1]", "kwargsJson": "{}"}).encode()
    frame = len(body).to_bytes(4, "big") + body
    fs.writeSync(3, js.Uint8Array.new(list(frame)))
import time
time.sleep(2)`,
      { max_external_calls: 2 },
    );
    // Either the server sees a fourth call and kills the process for breaking the protocol, or
    // the denial of the third stops the run before the guest writes more: never a fourth record.
    expect(["interrupted", "resource_exhausted"]).toContain(forged.status);
    expect(forged.records.length).toBeLessThanOrEqual(3);
    await stillServes();
  });
});

describe("Pyodide escape suite: limits hold against hostile code", () => {
  it("memory allocated through the JavaScript realm is stopped by the process backstop", async () => {
    const id = await session();
    const outcome = await run(
      id,
      "import js\nheld = []\nwhile True:\n    chunk = js.Uint8Array.new(32 * 1024 * 1024)\n    chunk.fill(1)\n    held.append(chunk)",
      { wall_ms: 20_000, cpu_ms: 20_000 },
    );
    expect(outcome).toMatchObject({
      status: "resource_exhausted",
      error: { code: "MEMORY_LIMIT" },
    });
    expect(outcome.diagnostics.map((d) => d.code)).toContain("SESSION_RESET");
    await stillServes();
  });

  it("the WebAssembly memory cannot be grown past memory_mb from JavaScript", async () => {
    const results = await attempt(
      `
import js, pyodide_js
memory = pyodide_js._module.memory
def grow():
    return memory.grow(4096)
def grow_via_prototype():
    return js.WebAssembly.Memory.prototype.grow.call(memory, 4096)
def replace_grow():
    js.Object.defineProperty(memory, "grow", js.JSON.parse('{"value": 0}'))
    return "replaced"
def replace_prototype():
    js.Object.defineProperty(js.WebAssembly.Memory.prototype, "grow", js.JSON.parse('{"value": 0}'))
    return "replaced"
attempts = {"grow": grow, "prototype": grow_via_prototype, "own property": replace_grow, "prototype property": replace_prototype, "size": lambda: memory.buffer.byteLength}
`,
      { memory_mb: 48 },
    );
    for (const name of ["grow", "prototype", "own property", "prototype property"]) {
      expect(results[name], name).toMatch(/^error/);
    }
    expect(Number(results.size!.slice(4))).toBeLessThanOrEqual(48 * 1_048_576);
  });

  it("time.sleep, except KeyboardInterrupt, an ignored SIGINT, C and JavaScript loops all end at the limit", async () => {
    const cases: [string, string, Partial<SessionLimits>, string][] = [
      ["sleep", "import time\ntime.sleep(60)", { wall_ms: 400 }, "WALL_TIME_LIMIT"],
      [
        "catches KeyboardInterrupt",
        "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass",
        { cpu_ms: 300 },
        "CPU_TIME_LIMIT",
      ],
      [
        "ignores SIGINT",
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        { cpu_ms: 300 },
        "CPU_TIME_LIMIT",
      ],
      ["C-level loop", "sum(range(10**13))", { cpu_ms: 300 }, "CPU_TIME_LIMIT"],
      [
        "JavaScript loop",
        "from pyodide.code import run_js\nrun_js('while (true) {}')",
        { cpu_ms: 300 },
        "CPU_TIME_LIMIT",
      ],
      [
        "JavaScript Atomics.wait",
        "from pyodide.code import run_js\nrun_js('Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)')",
        { wall_ms: 400 },
        "WALL_TIME_LIMIT",
      ],
    ];
    for (const [name, code, limits, errorCode] of cases) {
      const id = await session();
      const outcome = await run(id, code, limits);
      expect(outcome.status, name).toBe("timeout");
      expect(outcome.error?.code, name).toBe(errorCode);
      const limitMs = limits.wall_ms ?? limits.cpu_ms ?? 0;
      // Interrupt, then 200 ms for it to work, then the interpreter is terminated; the rest is
      // the time it takes to say so on a busy machine.
      expect(outcome.elapsedMs, name).toBeLessThan(limitMs + 1_500);
    }
    await stillServes();
  });

  it("a guest thread left running after the run is found and its process ended", async () => {
    const id = await session();
    const started = await run(
      id,
      `import js
Worker = js.process.getBuiltinModule("node:worker_threads").Worker
Worker.new("while (true) {}", js.JSON.parse('{"eval": true}'))
kept = 1
"started"`,
    );
    expect(started.result).toBe("started");
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const after = await run(id, "'kept' in globals()");
    expect(after).toMatchObject({ status: "ok", result: false });
    expect(after.diagnostics.map((d) => d.code)).toContain("SESSION_RESET");
  });

  it("C-level recursion ends as STACK_LIMIT, never silently", async () => {
    const id = await session();
    const guarded = [
      "import json\njson.loads('[' * 10**6)",
      "x = []\nfor _ in range(10**5):\n    x = [x]\nrepr(x)",
      "x = {}\nfor _ in range(10**5):\n    x = {'a': x}\nstr(x)",
    ];
    for (const code of guarded) {
      const outcome = await run(id, code, { wall_ms: 20_000, cpu_ms: 20_000 });
      expect(outcome, code).toMatchObject({
        status: "resource_exhausted",
        error: { code: "STACK_LIMIT" },
      });
    }
    expect((await run(id, "1 + 1")).result).toBe(2);
    // Hashing a deeply nested tuple recurses in C without CPython's check: the native
    // stack overflows, the interpreter is discarded, and the run says so.
    const unguarded = await run(id, "x = ()\nfor _ in range(10**6):\n    x = (x,)\nhash(x)", {
      memory_mb: 256,
      wall_ms: 20_000,
      cpu_ms: 20_000,
    });
    expect(unguarded).toMatchObject({
      status: "resource_exhausted",
      error: { code: "STACK_LIMIT" },
    });
    expect(unguarded.diagnostics.map((d) => d.code)).toContain("SESSION_RESET");
    expect((await run(id, "1 + 1")).result).toBe(2);
  });
});

describe("Pyodide: offline", () => {
  it("answers a missing package with ModuleNotFoundError at once, and downloads nothing", async () => {
    const id = await session();
    const missing = await run(id, "import numpy");
    expect(missing).toMatchObject({ status: "runtime_error" });
    expect(missing.error?.message).toMatch(/^ModuleNotFoundError: No module named 'numpy'/);
    expect(missing.elapsedMs).toBeLessThan(1_000);
    const loader = await run(
      id,
      "import pyodide_js\ntry:\n    await pyodide_js.loadPackage('numpy')\nexcept Exception as e:\n    print(type(e).__name__)\nimport importlib.util\nimportlib.util.find_spec('numpy') is None",
      { wall_ms: 10_000 },
    );
    expect(loader).toMatchObject({ status: "ok", result: true });
    expect(loader.elapsedMs).toBeLessThan(5_000);
    expect((await run(id, "import micropip")).error?.message).toMatch(/ModuleNotFoundError/);
  });
});

describe("Pyodide containment layers, one at a time", () => {
  it("without namespaces the permission model alone still refuses files and processes, but not the network", async () => {
    const uncontained = createPyodideRuntime({ poolSize: 0, containment: "none" });
    try {
      await uncontained.createSession("layers", { ...DEFAULT_SESSION_LIMITS }, "python");
      const controller = new AbortController();
      const outcome = await uncontained.run({
        runId: "layers",
        sessionId: "layers",
        language: "python",
        code: `import js
${JS_NET_CONNECT}
fs = js.process.getBuiltinModule("node:fs")
results = {}
for name, fn in {"file": lambda: fs.readFileSync(secret_file, "utf8"), "process": lambda: js.process.getBuiltinModule("node:child_process").execSync("true")}.items():
    try:
        results[name] = "ok: " + str(fn())
    except Exception as error:
        results[name] = "error: " + str(error)[:80]
results["network"] = await js_connect(js.JSON.parse(f'{{"host": "127.0.0.1", "port": {port}}}'))
results`,
        inputs: { secret_file: secretFile, port: tcpPort },
        limits: { ...DEFAULT_SESSION_LIMITS, wall_ms: 15_000 },
        validateOnly: false,
        tools: new ToolGateway({
          registry,
          sessionId: "layers",
          runId: "layers",
          maxExternalCalls: 0,
          deadline: performance.now() + 15_000,
          signal: controller.signal,
        }),
        signal: controller.signal,
      });
      expect(outcome.status, `${outcome.error?.message}\n${outcome.stderr}`).toBe("ok");
      const results = outcome.result as Record<string, string>;
      expect(results.file).toMatch(/^error: .*restricted/);
      expect(results.process).toMatch(/^error: .*restricted/);
      // This is why the namespaces are required: the permission model does not cover sockets.
      expect(results.network).toBe("connected");
      // The listener's side of the connection may lag on a busy machine.
      for (let waited = 0; !seen.includes("tcp connection") && waited < 3_000; waited += 50) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(seen).toContain("tcp connection");
    } finally {
      await uncontained.close();
      seen.length = 0;
    }
  });
});
