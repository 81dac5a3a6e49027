/**
 * Security tests of the QuickJS backend: guest programs that try to reach the host, misuse
 * the prelude's host bindings, exhaust resources, leak between sessions or break out of the
 * cell wrapper.
 *
 * Every case drives the real backend (worker threads, one WebAssembly instance per session)
 * through the LanguageRuntime interface with a real tool registry and gateway, as the session
 * manager does, and asserts what a user or operator sees: the outcome's status, error code
 * and result, the tool call records, which tool handlers actually ran, and that the server
 * thread kept answering. Nothing is mocked.
 *
 * Cases headed "REGRESSION" demonstrated weaknesses found by this suite (they were `it.fails`
 * until commit bc5ff4a fixed them); each comment says what the weakness was and where it
 * was fixed, so a change that reopens it fails here. Cases headed "WEAKNESS" are `it.fails`:
 * they show a weakness still open, say where the fix belongs, and must become `it` with it.
 */
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createQuickJsRuntime } from "../../runtimes/quickjs/index.ts";
import {
  createAsyncTool,
  createSyncTool,
  DEFAULT_SESSION_LIMITS,
  digestJson,
  type ExternalCallRecord,
  type FatalCall,
  type Language,
  type LanguageRuntime,
  type RunStatus,
  type RuntimeRunOutcome,
  type SessionLimits,
  ToolGateway,
  ToolRegistry,
} from "../../src/index.ts";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/** A tool handler invocation: proof that a call really reached the host's tool code. */
interface Invocation {
  name: string;
  args: unknown[];
  runId: string | undefined;
  sessionId: string | undefined;
}

/** Small limits that keep every case fast. */
const SMALL: SessionLimits = {
  ...DEFAULT_SESSION_LIMITS,
  memory_mb: 20,
  cpu_ms: 300,
  wall_ms: 1_000,
  max_stdout_bytes: 4_096,
  max_external_calls: 8,
};

/** Grace the tests give on top of wall_ms (the pool's watchdog alone adds 500 ms). */
const GRACE_MS = 2_000;

/** Longest stall of the server thread's event loop a case may cause. */
const STALL_LIMIT_MS = 1_000;

function makeTools(invocations: Invocation[]): ToolRegistry {
  const registry = new ToolRegistry();
  const log = (context: { name: string; args: unknown[]; run_id?: string; session_id?: string }) =>
    invocations.push({
      name: context.name,
      args: context.args,
      runId: context.run_id,
      sessionId: context.session_id,
    });
  registry.register(
    createSyncTool(
      { name: "echo", description: "Returns its arguments.", side_effect: "none" },
      (context) => {
        log(context);
        return { args: context.args };
      },
    ),
  );
  registry.register(
    createAsyncTool(
      { name: "slow", description: "Answers after 200 ms.", limits: { timeout_ms: 2_000 } },
      (context) => {
        log(context);
        return new Promise((resolve) => setTimeout(() => resolve("slow-done"), 200));
      },
    ),
  );
  return registry;
}

type Outcome = RuntimeRunOutcome & {
  records: readonly ExternalCallRecord[];
  fatal: FatalCall | null;
  elapsedMs: number;
  runId: string;
};

interface RunOptions {
  limits?: Partial<SessionLimits>;
  inputs?: Record<string, unknown>;
  validateOnly?: boolean;
  language?: Language;
}

let uniqueCounter = 0;
const unique = (tag: string) =>
  `sec-${tag}-${++uniqueCounter}-${Math.random().toString(36).slice(2, 8)}`;

/** One backend plus the registry its runs call, with helpers that mirror the session manager. */
class Harness {
  readonly invocations: Invocation[] = [];
  readonly registry: ToolRegistry;
  readonly sessions: string[] = [];
  readonly runtime: LanguageRuntime;

  constructor(runtime: LanguageRuntime) {
    this.runtime = runtime;
    this.registry = makeTools(this.invocations);
  }

  async session(limits: Partial<SessionLimits> = {}, language: Language = "javascript") {
    const id = unique("s");
    await this.runtime.createSession(id, { ...SMALL, ...limits }, language);
    this.sessions.push(id);
    return id;
  }

  /** Runs like the session manager: a fresh gateway per run, settled when the run ends. */
  async run(sessionId: string, code: string, options: RunOptions = {}): Promise<Outcome> {
    const limits = { ...SMALL, ...options.limits };
    const controller = new AbortController();
    const runId = unique("run");
    const started = performance.now();
    const gateway = new ToolGateway({
      registry: this.registry,
      sessionId,
      runId,
      maxExternalCalls: limits.max_external_calls,
      deadline: started + limits.wall_ms,
      signal: controller.signal,
    });
    const outcome = await this.runtime.run({
      runId,
      sessionId,
      language: options.language ?? "javascript",
      code,
      inputs: (options.inputs ?? {}) as never,
      limits,
      validateOnly: options.validateOnly ?? false,
      tools: gateway,
      signal: controller.signal,
    });
    gateway.settle();
    return {
      ...outcome,
      records: gateway.records,
      fatal: gateway.fatal,
      elapsedMs: performance.now() - started,
      runId,
    };
  }

  /** Handler invocations whose first argument is `marker`. */
  invoked(marker: unknown): Invocation[] {
    return this.invocations.filter((call) => call.args[0] === marker);
  }

  /** Destroys the sessions created so far (keeps worker memory low between cases). */
  async cleanup(): Promise<void> {
    for (const id of this.sessions.splice(0)) {
      await this.runtime.destroySession(id).catch(() => false);
    }
  }
}

/** Watches the test thread's event loop (the server thread in production) for stalls. */
function watchEventLoop(): { stop(): number } {
  let worst = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last - 10);
    last = now;
  }, 10);
  return {
    stop() {
      clearInterval(timer);
      return worst;
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The backend under test, as the server creates it. */
const main = new Harness(createQuickJsRuntime({ threads: 2 }));

afterEach(async () => {
  await main.cleanup();
});

afterAll(async () => {
  await main.runtime.close();
});

/** A fresh backend with one worker thread, so every session in it shares that thread. */
async function withSingleWorker(body: (harness: Harness) => Promise<void>): Promise<void> {
  const harness = new Harness(createQuickJsRuntime({ threads: 1 }));
  try {
    await body(harness);
  } finally {
    await harness.runtime.close();
  }
}

/** A run in a brand-new session must still work after an attack. */
async function expectOtherSessionWorks(harness: Harness = main): Promise<void> {
  const id = await harness.session();
  const outcome = await harness.run(id, "const probe = [1, 2, 3]; probe.reduce((a, b) => a + b)");
  expect(outcome).toMatchObject({ status: "ok", result: 6, error: null });
}

// ---------------------------------------------------------------------------------------------
// 1. Reaching the host
// ---------------------------------------------------------------------------------------------

/** Every global a session starts with (ECMAScript built-ins, the prelude's API, the tools). */
const KNOWN_GLOBALS = new Set([
  // The prelude's web globals (src/js/web-globals.ts), plain JavaScript in the guest.
  "atob",
  "btoa",
  "TextEncoder",
  "TextDecoder",
  "structuredClone",
  "AggregateError",
  "Array",
  "ArrayBuffer",
  "BigInt",
  "BigInt64Array",
  "BigUint64Array",
  "Boolean",
  "DataView",
  "Date",
  "Error",
  "EvalError",
  "FinalizationRegistry",
  "Float16Array",
  "Float32Array",
  "Float64Array",
  "Function",
  "Infinity",
  "Int16Array",
  "Int32Array",
  "Int8Array",
  "InternalError",
  "Iterator",
  "JSON",
  "Map",
  "Math",
  "NaN",
  "Number",
  "Object",
  "Promise",
  "Proxy",
  "RangeError",
  "ReferenceError",
  "Reflect",
  "RegExp",
  "Set",
  "SharedArrayBuffer",
  "String",
  "Symbol",
  "SyntaxError",
  "TypeError",
  "URIError",
  "Uint16Array",
  "Uint32Array",
  "Uint8Array",
  "Uint8ClampedArray",
  "WeakMap",
  "WeakRef",
  "WeakSet",
  "decodeURI",
  "decodeURIComponent",
  "encodeURI",
  "encodeURIComponent",
  "escape",
  "eval",
  "globalThis",
  "isFinite",
  "isNaN",
  "parseFloat",
  "parseInt",
  "undefined",
  "unescape",
  "Atomics",
  "WebAssembly",
  // The prelude and the registry's tools.
  "console",
  "tools",
  "ToolError",
  "setTimeout",
  "setInterval",
  "clearTimeout",
  "clearInterval",
  "queueMicrotask",
  "echo",
  "slow",
]);

/** Names of the prelude's host bindings (as the host created them, and as the prelude holds them). */
const HOST_BINDING_NAMES = ["print", "call", "setTimer", "clearTimer", "hostPrint", "hostCall"];

describe("reaching the host", () => {
  it("exposes no host objects: require, process, module loaders and friends do not exist", async () => {
    const id = await main.session();
    const names = [
      "require",
      "process",
      "module",
      "exports",
      "Buffer",
      "global",
      "Deno",
      "Bun",
      "std",
      "os",
      "fetch",
      "XMLHttpRequest",
      "WebSocket",
      "importScripts",
      "host",
      "print",
      "scriptArgs",
      "__filename",
      "__dirname",
      "Worker",
      "postMessage",
    ];
    const outcome = await main.run(
      id,
      `const names = ${JSON.stringify(names)};
       names.filter((name) => typeof globalThis[name] !== "undefined" || (() => { try { return typeof eval(name) !== "undefined" } catch { return false } })())`,
    );
    expect(outcome).toMatchObject({ status: "ok", result: [] });
  });

  it("has only known globals, even counting non-enumerable and symbol-keyed ones", async () => {
    const id = await main.session();
    const outcome = await main.run(
      id,
      "Reflect.ownKeys(globalThis).map((key) => typeof key === 'symbol' ? key.toString() : key)",
    );
    expect(outcome.status).toBe("ok");
    const unexpected = (outcome.result as string[]).filter(
      (name) => !KNOWN_GLOBALS.has(name) && name !== "Symbol(Symbol.toStringTag)",
    );
    expect(unexpected).toEqual([]);
  });

  it("cannot load modules with import(), whatever the specifier", async () => {
    const id = await main.session();
    const specifiers = [
      "fs",
      "node:child_process",
      "node:worker_threads",
      "std",
      "os",
      "data:text/javascript,export default 1",
      "file:///etc/passwd",
      "../../src/index.ts",
      "https://example.com/x.js",
    ];
    const outcome = await main.run(
      id,
      `const out = [];
       for (const spec of ${JSON.stringify(specifiers)}) {
         try { await import(spec); out.push("LOADED " + spec) } catch (e) { out.push("refused") }
       }
       out`,
    );
    expect(outcome.status).toBe("ok");
    expect(outcome.result).toEqual(specifiers.map(() => "refused"));
    expect(outcome.elapsedMs).toBeLessThan(SMALL.wall_ms);
  });

  it("Function constructor chains and eval only ever reach the guest's own global", async () => {
    const id = await main.session();
    const outcome = await main.run(
      id,
      `[
        (() => {}).constructor("return this")() === globalThis,
        (() => {}).constructor("return typeof process + typeof require")(),
        (async function () {}).constructor("return typeof process")() instanceof Promise,
        (function* () {}).constructor("yield typeof process")().next().value,
        [].constructor.constructor("return typeof require")(),
        eval("typeof require + typeof process"),
        (0, eval)("this") === globalThis,
        Function.prototype.constructor("return Object.getOwnPropertyNames(this).includes('process')")(),
        Reflect.construct(Function, ["return typeof module"])(),
      ]`,
    );
    expect(outcome).toMatchObject({
      status: "ok",
      result: [
        true,
        "undefinedundefined",
        true,
        "undefined",
        "undefined",
        "undefinedundefined",
        true,
        false,
        "undefined",
      ],
    });
  });

  it("prototype walks from inputs, tool results and tool errors stay inside the guest", async () => {
    const id = await main.session();
    const outcome = await main.run(
      id,
      `const fromInput = data.items.constructor.constructor("return typeof process")();
       const reply = await echo({ nested: [1] });
       const fromResult = reply.args[0].nested.constructor.constructor("return this")() === globalThis;
       let fromError;
       try { await echo(() => 1) } catch (e) {
         fromError = [e.constructor === TypeError, e.constructor.constructor("return typeof require")()];
       }
       let fromToolError;
       try { await tools.echo(...new Array(3)) ; await nosuchtool() } catch (e) { fromToolError = e.constructor.constructor("return typeof process")() }
       [fromInput, Object.getPrototypeOf(data) === Object.prototype, fromResult, fromError, fromToolError,
        Object.getPrototypeOf(reply) === Object.prototype, Object.getPrototypeOf(Object.getPrototypeOf(reply))]`,
      { inputs: { data: { items: [1, 2] } } },
    );
    expect(outcome).toMatchObject({
      status: "ok",
      result: ["undefined", true, true, [true, "undefined"], "undefined", true, null],
    });
  });

  it("never calls Error.prepareStackTrace or Error.captureStackTrace planted by the guest", async () => {
    const id = await main.session();
    const outcome = await main.run(
      id,
      `Error.prepareStackTrace = () => { for (;;) {} };
       Error.captureStackTrace = () => { for (;;) {} };
       Error.stackTraceLimit = Infinity;
       throw new Error("plain")`,
    );
    expect(outcome.status).toBe("runtime_error");
    expect(outcome.error?.message).toBe("Error: plain");
    expect(outcome.elapsedMs).toBeLessThan(SMALL.cpu_ms);
  });

  it("contains a Proxy result whose traps loop or throw", async () => {
    const looping = await main.run(
      await main.session(),
      "new Proxy({}, { ownKeys() { for (;;) {} }, getOwnPropertyDescriptor() { for (;;) {} } })",
    );
    expect(looping).toMatchObject({ status: "timeout", error: { code: "CPU_TIME_LIMIT" } });
    expect(looping.elapsedMs).toBeLessThan(SMALL.wall_ms + GRACE_MS);

    const throwing = await main.run(
      await main.session(),
      "new Proxy({}, { ownKeys() { throw new Error('no keys') }, get(t, k) { if (k === 'then') return undefined; throw new Error('no get') } })",
    );
    expect(throwing.status).toBe("ok");
    expect(throwing.diagnostics.map((d) => d.code)).toContain("RESULT_NOT_JSON");
    await expectOtherSessionWorks();
  });

  it("contains getters and toJSON on the result that throw, loop forever or never bottom out", async () => {
    const throwing = await main.run(
      await main.session(),
      "({ ok: 1, get boom() { throw new Error('nope') } })",
    );
    expect(throwing.status).toBe("ok");
    expect(throwing.diagnostics.map((d) => d.code)).toContain("RESULT_NOT_JSON");

    const getterLoop = await main.run(await main.session(), "({ get spin() { for (;;) {} } })");
    expect(getterLoop).toMatchObject({ status: "timeout", error: { code: "CPU_TIME_LIMIT" } });

    const toJsonLoop = await main.run(await main.session(), "({ toJSON() { for (;;) {} } })");
    expect(toJsonLoop).toMatchObject({ status: "timeout", error: { code: "CPU_TIME_LIMIT" } });

    const bottomless = await main.run(
      await main.session(),
      "const o = { toJSON() { return { again: o } } }; o",
    );
    expect(bottomless.status).toBe("ok");
    expect(bottomless.diagnostics.map((d) => d.code)).toContain("RESULT_NOT_JSON");

    for (const outcome of [throwing, getterLoop, toJsonLoop, bottomless]) {
      expect(outcome.elapsedMs).toBeLessThan(SMALL.wall_ms + GRACE_MS);
    }
    await expectOtherSessionWorks();
  });

  it("contains Proxy objects passed as tool arguments; nothing reaches a handler", async () => {
    const looping = await main.run(
      await main.session(),
      "await echo(new Proxy({}, { ownKeys() { for (;;) {} } }))",
    );
    expect(looping).toMatchObject({ status: "timeout", error: { code: "CPU_TIME_LIMIT" } });
    expect(looping.records).toHaveLength(0);

    const throwing = await main.run(
      await main.session(),
      "let m; try { await echo(new Proxy({}, { ownKeys() { throw new Error('trap') } })) } catch (e) { m = [e.name, e.message] } m",
    );
    expect(throwing).toMatchObject({
      status: "ok",
      result: ["TypeError", "arguments of echo are not JSON: trap"],
    });
    expect(throwing.records).toHaveLength(0);
    expect(
      main.invocations.filter((call) => call.name === "echo" && call.runId === throwing.runId),
    ).toHaveLength(0);
  });

  it("a patched JSON cannot forge a tool call's arguments or its reply", async () => {
    const id = await main.session();
    const outcome = await main.run(
      id,
      `JSON.stringify = () => '["forged"]';
       JSON.parse = () => ({ ok: true, value: "forged" });
       Object.defineProperty(Object.prototype, "value", { get() { return "forged" }, set(v) {}, configurable: true });
       const reply = await echo("real");
       reply.args`,
    );
    expect(outcome).toMatchObject({ status: "ok", result: ["real"] });
    expect(outcome.records).toHaveLength(1);
    expect(outcome.records[0]).toMatchObject({
      name: "echo",
      status: "ok",
      request_digest: digestJson({ name: "echo", args: ["real"], kwargs: {} }),
      response_digest: digestJson({ args: ["real"] }),
    });
    expect(main.invoked("real")).toHaveLength(1);
    expect(main.invoked("forged")).toHaveLength(0);
  });

  it("a patched Array.prototype before a tool call is re-checked by the gateway", async () => {
    const id = await main.session();
    const toJson = await main.run(
      id,
      `Array.prototype.toJSON = function () { return { not: "an array" } };
       let failure; try { await echo("x") } catch (e) { failure = e.name + ":" + e.code }
       delete Array.prototype.toJSON;
       failure`,
    );
    expect(toJson).toMatchObject({ status: "ok", result: "ToolError:INVALID_ARGUMENTS" });
    expect(toJson.records[0]).toMatchObject({
      name: "echo",
      status: "error",
      error: { code: "INVALID_ARGUMENTS" },
    });
    expect(main.invoked("x").filter((call) => call.runId === toJson.runId)).toHaveLength(0);

    const iterators = await main.run(
      await main.session(),
      `Array.prototype[Symbol.iterator] = function* () { yield "evil" };
       Array.from = () => ["evil"];
       Array.prototype.slice = () => ["evil"];
       (await echo("genuine")).args`,
    );
    expect(iterators).toMatchObject({ status: "ok", result: ["genuine"] });
  });

  it("a patched Array.prototype or Object before the result is encoded ends the run in a defined state", async () => {
    const arrays = await main.run(
      await main.session(),
      `for (const n of ["map", "indexOf", "concat", "join", "push", "slice", "forEach", "filter"]) {
         Array.prototype[n] = () => { throw new Error("patched " + n) };
       }
       Map.prototype[Symbol.iterator] = () => { throw new Error("iter") };
       [1, [2, { a: new Map([[1, 2]]), b: 10n }]]`,
    );
    expect(arrays.status).toBe("runtime_error");
    expect(arrays.elapsedMs).toBeLessThan(SMALL.wall_ms);

    const objects = await main.run(
      await main.session(),
      `Object.keys = () => { throw new Error("k") };
       Object.defineProperty = () => { throw new Error("d") };
       JSON.stringify = () => { throw new Error("s") };
       String = () => "x";
       ({ a: 1, b: [1n] })`,
    );
    expect(objects).toMatchObject({ status: "ok", result: { a: 1, b: ["1"] } });
    await expectOtherSessionWorks();
  });

  it("a patched Error (looping name/stack/message getters, Symbol.hasInstance) cannot hang the host", async () => {
    const cases = [
      `Object.defineProperty(Error.prototype, "name", { get() { for (;;) {} }, configurable: true }); throw new Error("x")`,
      `Object.defineProperty(Error.prototype, "stack", { get() { for (;;) {} }, configurable: true });
       Object.defineProperty(Error.prototype, "message", { get() { for (;;) {} }, configurable: true });
       null.x`,
      `Object.defineProperty(Error, Symbol.hasInstance, { value() { for (;;) {} } }); throw 5`,
      `throw new Proxy({}, { has() { for (;;) {} }, get() { for (;;) {} } })`,
      `Error.prototype.toString = function () { return String(this) }; throw new RangeError("r")`,
    ];
    for (const code of cases) {
      const outcome = await main.run(await main.session(), code);
      expect(["timeout", "runtime_error"]).toContain(outcome.status);
      expect(outcome.elapsedMs).toBeLessThan(SMALL.wall_ms + GRACE_MS);
      expect(outcome.records).toHaveLength(0);
    }
    await expectOtherSessionWorks();
  });

  it("a forged ToolError or error look-alike cannot change the run's status, records or budget", async () => {
    const forged = await main.run(
      await main.session(),
      `throw new ToolError("EXTERNAL_CALL_LIMIT", "forged budget error", "denied", "echo")`,
    );
    expect(forged.status).toBe("runtime_error");
    expect(forged.records).toHaveLength(0);
    expect(forged.fatal).toBeNull();
    expect(forged.sessionReset).toBe(false);

    const lookAlike = await main.run(
      await main.session(),
      `throw { name: "ToolError", code: "MEMORY_LIMIT", message: "m", stack: "    at evil (prelude.js:1:1)" }`,
    );
    expect(lookAlike).toMatchObject({ status: "runtime_error", error: { code: "RUNTIME_ERROR" } });
    expect(lookAlike.sessionReset).toBe(false);
  });

  it("passes NUL and the result-encoding separators through as data", async () => {
    const id = await main.session();
    const outcome = await main.run(
      id,
      `console.log("a\\u0000b"); console.error("\\u0001\\u0002"); ["\\u0001x\\u0002", { "\\u0001": "\\u0000" }, "\\uD800"]`,
    );
    expect(outcome.status).toBe("ok");
    expect(outcome.result).toEqual(["\u0001x\u0002", { "\u0001": "\u0000" }, "\uD800"]);
    expect(outcome.diagnostics).toEqual([]);
    expect(outcome.stdout).toBe("a\u0000b\n");
    expect(outcome.stderr).toBe("\u0001\u0002\n");
  });
});

// ---------------------------------------------------------------------------------------------
// 2. The prelude's host bindings
// ---------------------------------------------------------------------------------------------

describe("the prelude's host bindings", () => {
  it("are not reachable from globals, the prelude's functions or anything the prelude calls", async () => {
    const id = await main.session();
    const outcome = await main.run(
      id,
      `const HOST = ${JSON.stringify(HOST_BINDING_NAMES)};
       const apply = Reflect.apply, fnToString = Function.prototype.toString;
       const origCall = Function.prototype.call, origApply = Function.prototype.apply;
       const found = [];
       const isHost = (v) => typeof v === "function" && v !== origCall && v !== origApply && HOST.includes(v.name)
         && apply(fnToString, v, []).includes("[native code]");
       const note = (v) => { if (isHost(v)) found[found.length] = v.name };
       // 1. Everything reachable from the global object, three levels deep.
       const seen = new Set();
       const walk = (v, depth) => {
         if ((typeof v !== "object" && typeof v !== "function") || v === null || seen.has(v) || depth > 3) return;
         seen.add(v); note(v);
         for (const key of Reflect.ownKeys(v)) {
           let d; try { d = Reflect.getOwnPropertyDescriptor(v, key) } catch { continue }
           if (!d) continue;
           for (const x of [d.value, d.get, d.set]) walk(x, depth + 1);
         }
         try { walk(Reflect.getPrototypeOf(v), depth + 1) } catch {}
       };
       walk(globalThis, 0);
       // 2. Caller chains from code the prelude calls back.
       let callers = [];
       const hook = function () { try { callers.push(typeof arguments.callee.caller) } catch (e) { callers.push("refused") } return [] };
       // 3. Every value passing through methods the prelude looks up at call time.
       Function.prototype.call = function (...a) { note(this); for (const x of a) note(x); return apply(origCall, this, a) };
       Function.prototype.apply = function (t, a) { note(this); note(t); if (a) for (let i = 0; i < a.length; i++) note(a[i]); return apply(origApply, this, [t, a]) };
       for (const [proto, names] of [[Map.prototype, ["get", "set", "delete", "has", "clear"]], [Array.prototype, ["slice", "concat", "indexOf", "join"]], [Promise.prototype, ["then"]]]) {
         for (const name of names) { const orig = proto[name]; proto[name] = function (...a) { note(this); for (const x of a) note(x); return apply(orig, this, a) } }
       }
       console.log({ a: [1, new Map([[1, 2]])] }); console.error(new Error("e")); console.trace("t");
       const t = setTimeout(hook, 1000); clearTimeout(t);
       const i = setInterval(hook, 1); await new Promise((r) => setTimeout(r, 10)); clearInterval(i);
       await echo(1); try { await echo(1n) } catch {}
       queueMicrotask(hook);
       let hostCaller; try { hostCaller = typeof setTimeout.caller } catch (e) { hostCaller = "refused" }
       [found, [...new Set(callers)].filter((c) => c !== "undefined" && c !== "refused"), hostCaller === "function"]`,
    );
    expect(outcome.status).toBe("ok");
    expect(outcome.result).toEqual([[], [], false]);
  });

  it("refuses non-JSON tool arguments in the guest; no handler runs and nothing is recorded", async () => {
    const id = await main.session();
    const outcome = await main.run(
      id,
      `const bad = [() => 1, 1n, Symbol("s"), NaN, Infinity, new Map(), new Set([1]), (() => { const o = {}; o.self = o; return o })()];
       const seen = [];
       for (const value of bad) { try { await echo(value); seen.push("sent") } catch (e) { seen.push(e.name) } }
       seen`,
    );
    expect(outcome.status).toBe("ok");
    expect(outcome.result).toEqual(new Array(8).fill("TypeError"));
    expect(outcome.records).toHaveLength(0);
    expect(main.invocations.filter((call) => call.runId === outcome.runId)).toHaveLength(0);
  });

  it("denies oversized tool arguments at the gateway without reaching the handler", async () => {
    const id = await main.session({ memory_mb: 64 });
    const outcome = await main.run(
      id,
      `let code; try { await echo("x".repeat(2 * 1024 * 1024)) } catch (e) { code = e.code } code`,
      { limits: { memory_mb: 64 } },
    );
    // The gateway's code for max_request_bytes (REQUEST_TOO_LARGE; INVALID_ARGUMENTS before it had its own).
    expect(outcome.status).toBe("ok");
    expect(["REQUEST_TOO_LARGE", "INVALID_ARGUMENTS"]).toContain(outcome.result);
    expect(outcome.records).toHaveLength(1);
    expect(outcome.records[0]).toMatchObject({
      name: "echo",
      status: "denied",
      error: { code: outcome.result },
    });
    expect(main.invocations.filter((call) => call.runId === outcome.runId)).toHaveLength(0);
  });

  it("lets exactly max_external_calls concurrent calls through; the rest are denied and the run ends", async () => {
    const id = await main.session();
    const outcome = await main.run(
      id,
      `const settled = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => echo(i)));
       settled.map((s) => s.status)`,
      { limits: { max_external_calls: 5 } },
    );
    expect(outcome.status).toBe("resource_exhausted");
    expect(outcome.fatal?.error.code).toBe("EXTERNAL_CALL_LIMIT");
    expect(main.invocations.filter((call) => call.runId === outcome.runId)).toHaveLength(5);
    expect(outcome.records.filter((r) => r.status === "ok")).toHaveLength(5);
    expect(
      outcome.records.filter((r) => r.status !== "ok").every((r) => r.status === "denied"),
    ).toBe(true);
  });

  // REGRESSION (found by this suite, fixed in bc5ff4a). The engine used to learn that the
  // budget was spent only from the denied call's reply, which a synchronous loop never waits
  // for: `for (;;) echo(i)` made ~40,000 denied calls per second of CPU (each a message to
  // the server thread, a digest and a record kept for the run) and ended CPU_TIME_LIMIT
  // instead of EXTERNAL_CALL_LIMIT. Fixed in runtimes/quickjs/run.ts: ActiveRun counts
  // started calls and refuses synchronously past max_external_calls + 1.
  it("cuts off a synchronous flood of tool calls at the budget", async () => {
    const id = await main.session({ cpu_ms: 500 });
    const loop = watchEventLoop();
    const outcome = await main.run(id, `let n = 0; try { for (;;) { echo(n++) } } catch (e) {} n`, {
      limits: { max_external_calls: 2, cpu_ms: 500, wall_ms: 3_000 },
    });
    const stall = loop.stop();
    expect(main.invocations.filter((call) => call.runId === outcome.runId)).toHaveLength(2);
    expect(stall).toBeLessThan(STALL_LIMIT_MS);
    expect(outcome.records.length).toBeLessThanOrEqual(3);
    expect(outcome).toMatchObject({
      status: "resource_exhausted",
      error: { code: "EXTERNAL_CALL_LIMIT" },
    });
  });

  // REGRESSION (found by this suite, fixed in bc5ff4a). quickjs-emscripten-core's
  // QuickJSContext.newPromise() takes a typed-array view of the WebAssembly memory, then calls
  // QTS_NewPromiseCapability, which may grow that memory and detach the view: the guest saw
  // a host TypeError ("Cannot perform %TypedArray%.prototype.values on a detached
  // ArrayBuffer") from a tool call, and the promise and its resolvers leaked. A guest hit it
  // deterministically by calling tools until the heap grew inside that call. Fixed by having
  // the prelude own tool-call promises (settled by id through settleCall); newPromise is gone.
  it("tool calls never fail with a host error while the engine's memory grows", async () => {
    const limits = { memory_mb: 64, cpu_ms: 2_000, wall_ms: 5_000, max_external_calls: 1 };
    // A few heap layouts, so that some growth of the heap lands inside a tool call.
    for (const padding of [0, 4_096, 65_536]) {
      const id = await main.session(limits);
      const outcome = await main.run(
        id,
        `globalThis.pad = "p".repeat(${padding});
         let failure = null;
         try { for (let i = 0; i < 30000; i++) { echo(i) } } catch (e) { failure = String(e) }
         failure`,
        { limits },
      );
      expect(outcome.stderr + JSON.stringify(outcome.result)).not.toMatch(/detached ArrayBuffer/);
    }
  });

  it("a tool reference kept from an earlier run cannot call a tool that was since removed", async () => {
    const id = await main.session();
    main.registry.register(
      createSyncTool(
        { name: "secret", description: "Removed after the first run." },
        () => "classified",
      ),
    );
    try {
      const first = await main.run(
        id,
        "globalThis.kept = secret; globalThis.keptViaTools = tools.secret; await secret()",
      );
      expect(first).toMatchObject({ status: "ok", result: "classified" });
    } finally {
      main.registry.unregister("secret");
    }
    const second = await main.run(
      id,
      `const codes = [];
       for (const f of [kept, keptViaTools]) { try { await f(); codes.push("called") } catch (e) { codes.push(e.code) } }
       [codes, typeof secret, typeof tools.secret]`,
    );
    expect(second).toMatchObject({
      status: "ok",
      result: [["UNKNOWN_TOOL", "UNKNOWN_TOOL"], "undefined", "undefined"],
    });
    expect(second.records.map((r) => r.status)).toEqual(["denied", "denied"]);
  });

  it("a dangling tool promise from an ended run never settles into a later run", async () => {
    const id = await main.session();
    const first = await main.run(
      id,
      `slow("dangling").then((v) => { globalThis.late = "resolved:" + v }, (e) => { globalThis.late = "rejected:" + e.code }); "ended"`,
    );
    expect(first).toMatchObject({ status: "ok", result: "ended" });
    expect(first.records).toHaveLength(1);
    expect(first.records[0]).toMatchObject({
      name: "slow",
      status: "error",
      error: { code: "RUN_CANCELLED" },
    });
    await sleep(400);
    const second = await main.run(id, "await new Promise((r) => setTimeout(r, 50)); typeof late");
    expect(second).toMatchObject({ status: "ok", result: "undefined" });
    expect(second.records).toHaveLength(0);
  });

  it("timers left pending when a run ends never fire, call tools or print later", async () => {
    const id = await main.session();
    const first = await main.run(
      id,
      `setTimeout(() => { echo("late-timeout"); console.log("late") }, 30);
       setInterval(() => { echo("late-interval") }, 5);
       "ended"`,
    );
    expect(first).toMatchObject({ status: "ok", result: "ended" });
    await sleep(200);
    const second = await main.run(id, "await new Promise((r) => setTimeout(r, 100)); 'second'");
    expect(second).toMatchObject({ status: "ok", result: "second", stdout: "" });
    expect(second.records).toHaveLength(0);
    expect(main.invoked("late-timeout")).toHaveLength(0);
    expect(main.invoked("late-interval")).toHaveLength(0);
  });

  // REGRESSION (found by this suite, fixed in bc5ff4a). ActiveRun.finish() disposed the run's
  // pending calls and *then* (when the run had armed a timer) called the prelude's
  // clearTimers(), whose `timers.clear()` looked Map.prototype.clear up at call time. Guest
  // code planted there ran after the outcome was decided and could start tool calls (the
  // handler really ran) whose promises were never disposed; the reply then resolved into the
  // session and the guest's continuation ran during its next run. Fixed in
  // runtimes/quickjs/run.ts (the run is closed before any teardown call into the guest, and
  // every binding refuses) and src/js/prelude.ts (resetRun replaces its maps).
  it("guest code run while the host tears a run down cannot start tool calls", async () => {
    await withSingleWorker(async (harness) => {
      const id = await harness.session();
      const first = await harness.run(
        id,
        `globalThis.trace = [];
         Map.prototype.clear = function () {
           if (globalThis.armed) return;
           globalThis.armed = true;
           slow("teardown").then(() => trace.push("resolved"), (e) => trace.push("rejected:" + e.code));
         };
         setTimeout(() => {}, 60_000); // any timer makes the host call clearTimers() at the end
         "decided"`,
      );
      expect(first).toMatchObject({ status: "ok", result: "decided" });
      await sleep(400);
      await harness.run(id, "1");
      const third = await harness.run(id, "trace.slice()");
      expect(harness.invoked("teardown")).toHaveLength(0);
      expect(third).toMatchObject({ status: "ok", result: [] });
    });
  });

  // REGRESSION (found by this suite, fixed in bc5ff4a; follows from the one above). The call
  // started during teardown held a promise of a context that is disposed when the session is
  // destroyed or reset. When its reply arrived, startToolCall's `.then` called
  // context.newString on the freed context; QuickJSUseAfterFree became an unhandled rejection
  // and the worker thread died, wiping every other session on it. A hostile guest only had
  // to destroy its own session. Fixed in runtimes/quickjs/run.ts: no calls after the run is
  // closed, and replies for a closed run are dropped.
  it("a reply for a destroyed session does not take down the other sessions of its worker", async () => {
    await withSingleWorker(async (harness) => {
      const neighbour = await harness.session();
      expect((await harness.run(neighbour, "globalThis.precious = 'kept'; 1")).status).toBe("ok");
      const attacker = await harness.session();
      const planted = await harness.run(
        attacker,
        `Map.prototype.clear = function () { slow("teardown") }; setTimeout(() => {}, 60_000); "planted"`,
      );
      expect(planted.status).toBe("ok");
      await harness.runtime.destroySession(attacker);
      await sleep(400);
      const after = await harness.run(
        neighbour,
        "typeof precious === 'undefined' ? 'LOST' : precious",
      );
      expect(after.diagnostics.map((d) => d.code)).not.toContain("SESSION_RESET");
      expect(after).toMatchObject({ status: "ok", result: "kept" });
    });
  });

  // REGRESSION (found by this suite, fixed in bc5ff4a). When QuickJS rejects code acorn
  // accepted (here: nesting that overflows QuickJS's parser stack), validate() described the
  // SyntaxError with the prelude's describeError, which evaluated `error instanceof Error`,
  // `error.name`, ...: hooks planted by an earlier run (Error[Symbol.hasInstance], getters on
  // SyntaxError.prototype) ran during a validate_only request and called tools. Fixed:
  // describeError reads own data properties only, and validate mode refuses every binding.
  it("validate_only never runs guest code or calls tools", async () => {
    const id = await main.session({ wall_ms: 3_000 });
    const armed = await main.run(
      id,
      `Object.defineProperty(Error, Symbol.hasInstance, { configurable: true, value(v) {
         if (globalThis.validating) { echo("from-validate"); globalThis.ran = (globalThis.ran || 0) + 1 }
         return false;
       } });
       globalThis.validating = true; "armed"`,
    );
    expect(armed.status).toBe("ok");
    const validated = await main.run(id, "(".repeat(3000) + "1" + ")".repeat(3000), {
      validateOnly: true,
      limits: { wall_ms: 3_000 },
    });
    await sleep(100);
    expect(validated.status).toBe("validation_error");
    expect(
      main.invoked("from-validate").filter((call) => call.runId === validated.runId),
    ).toHaveLength(0);
    expect(validated.records).toHaveLength(0);
  });

  // REGRESSION (was it.fails). describeError walked the error's prototype chain with
  // Object.getPrototypeOf / getOwnPropertyDescriptor, both Proxy traps: a guest that put a
  // Proxy above the intrinsic error prototypes (Object.setPrototypeOf(Error.prototype, proxy))
  // had its trap run while a validate_only request described QuickJS's SyntaxError. Fixed in
  // src/js/prelude.ts: the walk stops at the first built-in error prototype captured at start.
  it("validate_only runs no guest code even through a Proxy in the error prototype chain", async () => {
    const id = await main.session({ cpu_ms: 300 });
    const armed = await main.run(
      id,
      `const trap = new Proxy(Object.create(null), {
         getPrototypeOf() { globalThis.ranInValidate = (globalThis.ranInValidate || 0) + 1; return null },
         getOwnPropertyDescriptor() { globalThis.ranInValidate = (globalThis.ranInValidate || 0) + 1; return undefined },
       });
       Object.setPrototypeOf(Error.prototype, trap);
       "armed"`,
    );
    expect(armed.status).toBe("ok");
    const validated = await main.run(id, `${"(".repeat(3000)}1${")".repeat(3000)}`, {
      validateOnly: true,
    });
    expect(validated).toMatchObject({
      status: "validation_error",
      error: { code: "SYNTAX_ERROR" },
    });
    const check = await main.run(id, "typeof globalThis.ranInValidate");
    expect(check).toMatchObject({ status: "ok", result: "undefined" });
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Denial of service
// ---------------------------------------------------------------------------------------------

interface DosCase {
  name: string;
  code: string;
  limits?: Partial<SessionLimits>;
  /** Acceptable statuses (the first is the one expected; others are equally bounded ends). */
  status: RunStatus | RunStatus[];
  /** Acceptable error codes (null: no error). */
  codes: (string | null)[];
  check?: (outcome: Outcome) => void;
}

const DEEP = 100_000;

const DOS_CASES: DosCase[] = [
  {
    name: "'x'.repeat(2**29)",
    code: "'x'.repeat(2 ** 29).length",
    status: "resource_exhausted",
    codes: ["MEMORY_LIMIT"],
  },
  {
    name: "String.prototype.padEnd with a huge size",
    code: "''.padEnd(2 ** 30, 'ab').length",
    status: "runtime_error",
    codes: ["RUNTIME_ERROR"],
  },
  {
    name: "a huge array sort with a slow comparator",
    code: "const a = Array.from({ length: 1e5 }, (_, i) => (i * 7919) % 100003); a.sort((x, y) => { for (let i = 0; i < 50; i++); return x - y }); a.length",
    status: "timeout",
    codes: ["CPU_TIME_LIMIT"],
  },
  {
    name: "catastrophic regexp backtracking",
    code: "/^(a+)+$/.test('a'.repeat(40) + 'b')",
    status: "timeout",
    codes: ["CPU_TIME_LIMIT"],
  },
  {
    name: "catastrophic backtracking on a longer subject",
    code: "/(x+x+)+y/.test('x'.repeat(5000))",
    status: "timeout",
    codes: ["CPU_TIME_LIMIT"],
  },
  {
    name: "BigInt exponentiation 10n ** 10000000n",
    code: "(10n ** 10000000n).toString().length",
    limits: { memory_mb: 64 },
    status: ["timeout", "runtime_error", "resource_exhausted"],
    codes: ["CPU_TIME_LIMIT", "RUNTIME_ERROR", "MEMORY_LIMIT"],
  },
  {
    name: "BigInt too large to allocate",
    code: "(7n ** 1000000n) % 1000n",
    limits: { memory_mb: 64 },
    status: "runtime_error",
    codes: ["RUNTIME_ERROR"],
  },
  {
    name: "JSON.stringify of a huge structure",
    code: "JSON.stringify(Array.from({ length: 2e6 }, (_, i) => ({ i }))).length",
    status: "resource_exhausted",
    codes: ["MEMORY_LIMIT"],
  },
  {
    name: "memory growth under memory_mb 20, errors caught",
    code: "const keep = []; let caught = 0; for (let i = 0; i < 100; i++) { try { keep.push('y'.repeat(1 << 20) + i) } catch (e) { caught++ } } await echo('escaped'); caught",
    status: "resource_exhausted",
    codes: ["MEMORY_LIMIT"],
    check: (o) => {
      expect(o.records).toHaveLength(0);
      expect(o.memoryPeakBytes).toBeLessThanOrEqual(20 * 1_048_576);
      expect(o.sessionReset).toBe(true);
    },
  },
  {
    name: "memory growth through arrays",
    code: "const keep = []; for (;;) keep.push(new Array(1e5).fill(1.5))",
    status: "resource_exhausted",
    codes: ["MEMORY_LIMIT"],
    check: (o) => expect(o.memoryPeakBytes).toBeLessThanOrEqual(20 * 1_048_576),
  },
  {
    name: "one huge ArrayBuffer",
    code: "new ArrayBuffer(100 * 1024 * 1024).byteLength",
    status: "resource_exhausted",
    codes: ["MEMORY_LIMIT"],
  },
  {
    name: "a flood of pending timers is capped",
    code: "let armed = 0; try { for (;;) { setTimeout(() => {}, 1e6); armed++ } } catch (e) { globalThis.why = e.name } [armed, why]",
    status: "ok",
    codes: [null],
    check: (o) => expect(o.result).toEqual([1000, "RangeError"]),
  },
  {
    name: "setTimeout(0) chains forever",
    code: "const again = () => setTimeout(again, 0); for (let i = 0; i < 100; i++) again(); await new Promise(() => {})",
    status: "timeout",
    codes: ["WALL_TIME_LIMIT", "CPU_TIME_LIMIT"],
  },
  {
    name: "setInterval(0) that arms more timers",
    code: "setInterval(() => { for (let i = 0; i < 10; i++) setTimeout(() => {}, 0) }, 0); await new Promise(() => {})",
    status: "timeout",
    codes: ["WALL_TIME_LIMIT", "CPU_TIME_LIMIT"],
  },
  {
    name: "an endless microtask loop",
    code: "const spin = () => { Promise.resolve().then(spin) }; spin(); await new Promise(() => {})",
    status: "timeout",
    codes: ["CPU_TIME_LIMIT", "WALL_TIME_LIMIT"],
  },
  {
    name: "an endless chain of promises",
    code: "const spin = () => Promise.resolve().then(spin); spin(); await new Promise(() => {})",
    status: "resource_exhausted",
    codes: ["MEMORY_LIMIT"],
  },
  {
    name: "console.log forever",
    code: "for (;;) console.log('flood '.repeat(100))",
    status: "timeout",
    codes: ["CPU_TIME_LIMIT"],
    check: (o) => {
      expect(Buffer.byteLength(o.stdout)).toBeLessThanOrEqual(SMALL.max_stdout_bytes);
      expect(o.diagnostics.map((d) => d.code)).toContain("OUTPUT_TRUNCATED");
    },
  },
  {
    name: "console.log past max_stdout_bytes, then a result",
    code: "for (let i = 0; i < 20000; i++) { console.log('out ' + i); console.error('err ' + i) } 'done'",
    status: "ok",
    codes: [null],
    check: (o) => {
      expect(o.result).toBe("done");
      expect(Buffer.byteLength(o.stdout)).toBeLessThanOrEqual(SMALL.max_stdout_bytes);
      expect(Buffer.byteLength(o.stderr)).toBeLessThanOrEqual(SMALL.max_stdout_bytes);
      const truncated = o.diagnostics.filter((d) => d.code === "OUTPUT_TRUNCATED");
      expect(truncated).toHaveLength(2);
      // Past the cap the prelude only counts what is printed; the count is still exact.
      for (const [stream, kept] of [
        ["out", o.stdout],
        ["err", o.stderr],
      ] as const) {
        let printed = 0;
        for (let i = 0; i < 20000; i++) printed += Buffer.byteLength(`${stream} ${i}\n`);
        const dropped = printed - Buffer.byteLength(kept);
        expect(truncated.map((d) => d.message).join("\n")).toContain(` ${dropped} more bytes`);
      }
    },
  },
  {
    name: "non-ASCII output past max_stdout_bytes, then a result",
    code: "for (let i = 0; i < 3000; i++) console.log('\u00e9\ud83d\ude00\ud800' + i); 'done'",
    status: "ok",
    codes: [null],
    check: (o) => {
      expect(o.result).toBe("done");
      let printed = 0;
      // A lone surrogate counts as U+FFFD: 3 bytes.
      for (let i = 0; i < 3000; i++) printed += 2 + 4 + 3 + Buffer.byteLength(`${i}\n`);
      const dropped = printed - Buffer.byteLength(o.stdout);
      const truncated = o.diagnostics.find((d) => d.code === "OUTPUT_TRUNCATED");
      expect(truncated?.message).toContain(` ${dropped} more bytes`);
    },
  },
  {
    name: "JavaScript recursion",
    code: "function f() { return f() + 1 } f()",
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
  {
    name: "recursion that catches its stack overflow",
    code: "function f(n) { try { return f(n + 1) } catch (e) { return f(n + 1) } } f(0)",
    status: ["resource_exhausted", "timeout"],
    // Exponential work: it ends on the CPU limit, or on the wall limit first when the machine is
    // busy (CPU time then advances slower than wall time).
    codes: ["STACK_LIMIT", "CPU_TIME_LIMIT", "WALL_TIME_LIMIT"],
  },
  {
    name: "JSON.parse of deep nesting",
    code: `JSON.parse('['.repeat(${DEEP}) + ']'.repeat(${DEEP}))`,
    limits: { memory_mb: 64 },
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
  {
    name: "JSON.stringify of nested arrays",
    code: `let a = []; for (let i = 0; i < ${DEEP}; i++) a = [a]; JSON.stringify(a).length`,
    limits: { memory_mb: 64 },
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
  {
    name: "Array.prototype.toString of nested arrays",
    code: `let a = []; for (let i = 0; i < ${DEEP}; i++) a = [a]; String(a).length`,
    limits: { memory_mb: 64 },
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
  {
    name: "Array.prototype.flat of nested arrays",
    code: `let a = []; for (let i = 0; i < ${DEEP}; i++) a = [a]; a.flat(Infinity).length`,
    limits: { memory_mb: 64 },
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
  {
    name: "nested Proxies",
    code: `let p = {}; for (let i = 0; i < ${DEEP}; i++) p = new Proxy(p, {}); p.x`,
    limits: { memory_mb: 64 },
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
  {
    name: "nested Proxies, ownKeys",
    code: `let p = {}; for (let i = 0; i < ${DEEP}; i++) p = new Proxy(p, {}); Object.keys(p)`,
    limits: { memory_mb: 64 },
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
  {
    name: "nested bound functions",
    code: "let f = function () {}; for (let i = 0; i < 5e4; i++) f = f.bind(null); f()",
    limits: { memory_mb: 64 },
    status: "resource_exhausted",
    codes: ["STACK_LIMIT", "MEMORY_LIMIT"],
  },
  {
    name: "a regexp of nested groups",
    code: "new RegExp('(?:'.repeat(3e4) + 'a' + ')'.repeat(3e4)).test('a')",
    limits: { memory_mb: 64 },
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
  {
    name: "eval of deeply nested parentheses",
    code: `eval('('.repeat(${DEEP}) + '1' + ')'.repeat(${DEEP}))`,
    limits: { memory_mb: 64 },
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
  {
    name: "a recursive getter",
    code: "const o = { get x() { return this.x } }; o.x",
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
  {
    name: "a recursive toString",
    code: "const o = { toString() { return String(this) } }; String(o)",
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
  {
    name: "async recursion",
    code: "async function f(n) { return n ? await f(n - 1) : 0 } await f(1e6)",
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
  {
    name: "generator delegation recursion",
    code: "function* g(n) { if (n) yield* g(n - 1); else yield 1 } [...g(1e5)]",
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
  {
    name: "nested thenables",
    code: `let p = Promise.resolve(1); for (let i = 0; i < ${DEEP}; i++) { const q = p; p = { then(r) { q.then(r) } } } await p`,
    limits: { memory_mb: 64 },
    status: "resource_exhausted",
    codes: ["STACK_LIMIT"],
  },
];

describe("denial of service", () => {
  for (const attack of DOS_CASES) {
    it(`ends ${attack.name} as ${[attack.status].flat().join(" or ")}, in bounded time, and stays usable`, async () => {
      const limits = { ...SMALL, ...attack.limits };
      const id = await main.session(limits);
      const loop = watchEventLoop();
      const outcome = await main.run(id, attack.code, { limits });
      const stall = loop.stop();
      expect([attack.status].flat()).toContain(outcome.status);
      expect(attack.codes).toContain(outcome.error?.code ?? null);
      expect(outcome.elapsedMs).toBeLessThan(limits.wall_ms + GRACE_MS);
      expect(stall).toBeLessThan(STALL_LIMIT_MS);
      attack.check?.(outcome);
      // The same session answers again (reset if it had to be).
      const again = await main.run(id, "'alive'");
      expect(again).toMatchObject({ status: "ok", result: "alive" });
      await expectOtherSessionWorks();
    });
  }

  it("stops a single native operation the engine cannot interrupt with the watchdog; others go on", async () => {
    const id = await main.session();
    const loop = watchEventLoop();
    const outcome = await main.run(id, "const a = []; a.length = 2 ** 32 - 1; a.lastIndexOf(1)");
    const stall = loop.stop();
    expect(outcome).toMatchObject({
      status: "timeout",
      error: { code: "WALL_TIME_LIMIT" },
      sessionReset: true,
    });
    expect(outcome.elapsedMs).toBeLessThan(SMALL.wall_ms + GRACE_MS);
    expect(stall).toBeLessThan(STALL_LIMIT_MS);
    const again = await main.run(id, "typeof a");
    expect(again).toMatchObject({ status: "ok", result: "undefined" });
    expect(again.diagnostics.map((d) => d.code)).toContain("SESSION_RESET");
    await expectOtherSessionWorks();
  });

  it("a watchdog kill costs neighbours on the same worker their state, visibly, never silently", async () => {
    await withSingleWorker(async (harness) => {
      const neighbour = await harness.session();
      await harness.run(neighbour, "globalThis.kept = 1");
      const attacker = await harness.session();
      const outcome = await harness.run(
        attacker,
        "const a = []; a.length = 2 ** 32 - 1; a.indexOf(1)",
      );
      expect(outcome).toMatchObject({ status: "timeout", error: { code: "WALL_TIME_LIMIT" } });
      // Documented design (src/runtime/worker-pool.ts): the neighbour comes back empty and
      // says so. See the report: this lets one tenant reset its neighbours at will.
      const after = await harness.run(neighbour, "typeof kept");
      expect(after.status).toBe("ok");
      if (after.result !== "number") {
        expect(after.diagnostics.map((d) => d.code)).toContain("SESSION_RESET");
      }
    });
  });

  // REGRESSION (found by this suite, fixed in bc5ff4a). The host mapped the guest's error
  // stack with a regexp (`(.*?)\s*\(?([^\s()]+):…`) that backtracks quadratically, on a
  // string the guest controls entirely (error.stack is writable; plain objects with
  // message/stack are accepted). One 60 KB line kept the worker in host code for minutes,
  // outside cpu_ms and uninterruptible: the watchdog killed the worker (WALL_TIME_LIMIT) and
  // every session on it was wiped; the in-thread engine would hang its caller. Fixed in
  // runtimes/quickjs/stack.ts: frames are parsed without backtracking, lines and length capped.
  it("maps a crafted error stack in bounded time, without hurting the worker's other sessions", async () => {
    await withSingleWorker(async (harness) => {
      const neighbour = await harness.session();
      await harness.run(neighbour, "globalThis.kept = 'yes'");
      const attacker = await harness.session();
      const outcome = await harness.run(
        attacker,
        "const e = new Error('boom'); e.stack = '    at ' + '1:'.repeat(30000) + 'x'; throw e",
      );
      expect(outcome).toMatchObject({ status: "runtime_error", error: { code: "RUNTIME_ERROR" } });
      expect(outcome.elapsedMs).toBeLessThan(SMALL.wall_ms);
      const after = await harness.run(neighbour, "kept");
      expect(after).toMatchObject({ status: "ok", result: "yes" });
    });
  });

  // REGRESSION (found by this suite, fixed in bc5ff4a). An interrupted run's pending QuickJS
  // jobs stayed queued and were drained at the start of the session's next run: an endless
  // microtask loop made every later run of the session time out (timeouts do not reset a
  // session), and code of the interrupted run executed inside later runs, calling tools under
  // *their* gateway, budget and records. Fixed in runtimes/quickjs/run.ts: leftover jobs are
  // drained with the run closed and interrupts forced; if they do not drain, the session is
  // reset.
  it("jobs left by a timed-out run do not run in the session's next run", async () => {
    const id = await main.session();
    const first = await main.run(
      id,
      `for (let k = 0; k < 8; k++) {
         (async () => { for (;;) { await null; if (globalThis.go && !globalThis.sent) { globalThis.sent = true; console.log("zombie-out"); echo("zombie") } } })();
       }
       await new Promise(() => {})`,
    );
    expect(first).toMatchObject({ status: "timeout", error: { code: "CPU_TIME_LIMIT" } });
    const second = await main.run(id, "globalThis.go = true; 1 + 1");
    expect(main.invoked("zombie")).toHaveLength(0);
    expect(second.records).toHaveLength(0);
    expect(second.stdout).not.toContain("zombie-out");
    expect(second).toMatchObject({ status: "ok", result: 2 });
  });
});

// ---------------------------------------------------------------------------------------------
// 4. Cross-session isolation
// ---------------------------------------------------------------------------------------------

const POLLUTE = `
  globalThis.secret = "from-A";
  Object.prototype.polluted = "A";
  Array.prototype.push = function () { return "hijacked" };
  JSON.parse = () => "hijacked";
  console.log = () => { throw new Error("hijacked") };
  tools.echo = () => "hijacked";
  globalThis.echo = () => "hijacked";
  Promise.prototype.then = function () { return "hijacked" };
  "polluted"`;

const INSPECT = `
  const a = []; a.push(1);
  console.log("b-out");
  [typeof secret, ({}).polluted, a.length, JSON.parse("[1]"), (await echo("b")).args, (await tools.echo("b2")).args]`;

describe("cross-session isolation", () => {
  it("keeps globals, prototypes and the prelude's API of one session out of another", async () => {
    const a = await main.session();
    const b = await main.session();
    expect((await main.run(a, POLLUTE)).status).toBe("ok");
    const outcome = await main.run(b, INSPECT);
    expect(outcome).toMatchObject({
      status: "ok",
      result: ["undefined", null, 1, [1], ["b"], ["b2"]],
      stdout: "b-out\n",
    });
  });

  it("keeps sessions on the same worker thread apart, including their timers and tool calls", async () => {
    await withSingleWorker(async (harness) => {
      const a = await harness.session({ wall_ms: 2_000 });
      const b = await harness.session({ wall_ms: 2_000 });
      expect((await harness.run(a, POLLUTE)).status).toBe("ok");
      const inspected = await harness.run(b, INSPECT);
      expect(inspected).toMatchObject({
        status: "ok",
        result: ["undefined", null, 1, [1], ["b"], ["b2"]],
      });

      // Runs of both sessions at once on the one thread, each with interval timers calling tools.
      const a2 = await harness.session({ wall_ms: 2_000 });
      const fromA = harness.run(
        a2,
        `let n = 0; const t = setInterval(() => { n++; tools.slow && 0; }, 1);
         const i = setInterval(() => { (0, eval)("1") }, 1);
         await new Promise((r) => setTimeout(r, 300)); clearInterval(t); clearInterval(i);
         setInterval(() => { console.log("A-late") }, 1);
         n > 0`,
        { limits: { wall_ms: 2_000 } },
      );
      const fresh = await harness.session({ wall_ms: 2_000 });
      const fromB = harness.run(
        fresh,
        `const seen = []; const t = setInterval(() => seen.push(1), 5);
         const r = await echo("b-only");
         await new Promise((res) => setTimeout(res, 400)); clearInterval(t);
         [r.args, seen.length > 0]`,
        { limits: { wall_ms: 2_000 } },
      );
      const [outA, outB] = await Promise.all([fromA, fromB]);
      expect(outA).toMatchObject({ status: "ok", result: true });
      expect(outB).toMatchObject({ status: "ok", result: [["b-only"], true], stdout: "" });
      expect(outB.records.map((r) => r.request_digest)).toEqual([
        digestJson({ name: "echo", args: ["b-only"], kwargs: {} }),
      ]);
      expect(
        harness.invocations.filter((call) => call.runId === outB.runId).map((c) => c.sessionId),
      ).toEqual([fresh]);

      // A's interval armed at the end of its run is gone: nothing prints into later runs.
      await sleep(100);
      const laterB = await harness.run(
        fresh,
        "await new Promise((r) => setTimeout(r, 100)); 'quiet'",
      );
      expect(laterB).toMatchObject({ status: "ok", result: "quiet", stdout: "" });
      const laterA = await harness.run(a2, "await new Promise((r) => setTimeout(r, 100)); 'quiet'");
      expect(laterA).toMatchObject({ status: "ok", result: "quiet", stdout: "" });
    });
  });

  it("a session hogging the shared thread delays, but never corrupts, a neighbour's run", async () => {
    await withSingleWorker(async (harness) => {
      const hog = await harness.session({ cpu_ms: 500, wall_ms: 2_000 });
      const other = await harness.session({ wall_ms: 3_000 });
      await harness.run(other, "globalThis.state = 41");
      const hogging = harness.run(hog, "for (;;) {}", { limits: { cpu_ms: 500, wall_ms: 2_000 } });
      const meanwhile = harness.run(other, "state + 1", { limits: { wall_ms: 3_000 } });
      const [hogged, answered] = await Promise.all([hogging, meanwhile]);
      expect(hogged).toMatchObject({ status: "timeout", error: { code: "CPU_TIME_LIMIT" } });
      expect(answered).toMatchObject({ status: "ok", result: 42 });
    });
  });
});

// ---------------------------------------------------------------------------------------------
// 5. The cell wrapper
// ---------------------------------------------------------------------------------------------

describe("the cell wrapper", () => {
  const BREAKOUTS = [
    "})(); globalThis.escaped = 1; (async () => {",
    "}); globalThis.escaped = 1; (() => {",
    "(async () => {",
    "}",
    "})()",
    "</script><script>globalThis.escaped = 1</script>",
    "\u2028})(); globalThis.escaped = 1",
    "return 9",
    "return; })(); globalThis.escaped = 1; (async () => {",
    "export const x = 1",
    "import x from 'y'",
    "new.target",
    "super.x",
    "yield 1",
    "/* unterminated })(); globalThis.escaped = 1",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: guest source text, not a template
    "`unterminated ${'})();'} ",
    '"use strict"; with ({}) {}',
    "#!/bin/sh\n#!/bin/sh\n1",
    " #!/bin/sh\n1",
    "let x = 1; let x = 2;",
    "break outer",
    "await = 1",
  ];

  it("answers break-out attempts as validation_error and never runs them", async () => {
    const id = await main.session();
    for (const code of BREAKOUTS) {
      const outcome = await main.run(id, code);
      expect({ code, status: outcome.status, error: outcome.error?.code }).toEqual({
        code,
        status: "validation_error",
        error: "SYNTAX_ERROR",
      });
    }
    const check = await main.run(id, "typeof escaped");
    expect(check).toMatchObject({ status: "ok", result: "undefined" });
  });

  it("runs wrapper-looking text in strings, comments, regexps, templates and HTML comments as ordinary code", async () => {
    const id = await main.session();
    const cases: [string, unknown][] = [
      [
        "'})(); globalThis.escaped = 1; (async () => {'",
        "})(); globalThis.escaped = 1; (async () => {",
      ],
      ["/* })(); globalThis.escaped = 1; (async () => { */ 7", 7],
      ["1 // })(); globalThis.escaped = 1", 1],
      // biome-ignore lint/suspicious/noTemplateCurlyInString: guest source text, not a template
      ["`${'})();'}${`}`}` + /\\}\\)\\(\\);/.source", "})();}\\}\\)\\(\\);"],
      ["x = 1\n--> 0; })(); globalThis.escaped = 1; (async () => {", 1],
      ["1 <!-- })(); globalThis.escaped = 1; (async () => {", 1],
      ["#!/usr/bin/env node })(); globalThis.escaped = 1\n8", 8],
      ['"use strict"; 10', 10],
      ['"use strict"', "use strict"],
      ["outer: for (;;) { break outer } 11", 11],
      ["block: { if (true) break block; globalThis.escaped = 1 } 12", 12],
      ["let yield = 13; yield", 13],
      ["this === globalThis", true],
      ["typeof arguments === 'undefined' ? 'none' : 'some'", "none"],
      ["'\u2028\u2029'.length", 2],
      ["(function () { return 14 })()", 14],
      ["{ 15 }", null],
      ["({ 16: 16 })[16]", 16],
    ];
    for (const [code, expected] of cases) {
      const outcome = await main.run(id, code);
      expect({ code, status: outcome.status, result: outcome.result }).toEqual({
        code,
        status: "ok",
        result: expected,
      });
    }
    expect(await main.run(id, "typeof escaped")).toMatchObject({
      status: "ok",
      result: "undefined",
    });
  });

  it('keeps "use strict" to the cell that says it', async () => {
    const id = await main.session();
    const strict = await main.run(
      id,
      '"use strict"; function f() { return this } undeclaredStrict = 1',
    );
    expect(strict.status).toBe("runtime_error");
    const sloppy = await main.run(
      id,
      "undeclaredSloppy = 2; [typeof f, f() === undefined, undeclaredSloppy]",
    );
    expect(sloppy).toMatchObject({ status: "ok", result: ["function", true, 2] });
  });

  it("strips a TypeScript hashbang and types without opening a way out of the wrapper", async () => {
    const id = await main.session({}, "typescript");
    const outcome = await main.run(
      id,
      "#!/usr/bin/env ts-node\nconst s: string = '})(); globalThis.escaped = 1; (async () => {';\ntype T = { a: '})();' };\ns.length",
      { language: "typescript" },
    );
    expect(outcome).toMatchObject({ status: "ok", result: 44 });
    const broken = await main.run(id, "const x: number = 1; })(); (async () => {", {
      language: "typescript",
    });
    expect(broken.status).toBe("validation_error");
    expect(await main.run(id, "typeof escaped", { language: "typescript" })).toMatchObject({
      result: "undefined",
    });
  });

  it("stays usable after every kind of rejected or odd cell", async () => {
    const id = await main.session();
    for (const code of [
      ...BREAKOUTS,
      "(".repeat(3000) + "1" + ")".repeat(3000),
      "{".repeat(1e5) + "}".repeat(1e5),
    ]) {
      await main.run(id, code);
    }
    const first = await main.run(
      id,
      "let counter = 1; function bump() { return ++counter } class Box { constructor(v) { this.v = v } } bump()",
    );
    expect(first).toMatchObject({ status: "ok", result: 2 });
    const second = await main.run(id, "let counter2 = bump(); [counter, counter2, new Box(3).v]");
    expect(second).toMatchObject({ status: "ok", result: [3, 3, 3] });
  });
});
