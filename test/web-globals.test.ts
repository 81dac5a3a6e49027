/**
 * The web globals of the JavaScript guests (src/js/web-globals.ts): `atob`, `btoa`,
 * `TextEncoder`, `TextDecoder` and `structuredClone`, checked against Node's own
 * implementations on generated inputs (seeded, so a failure repeats), on QuickJS, with a
 * smaller pass on isolated-vm.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIsolatedVmRuntime } from "../runtimes/isolated-vm/index.ts";
import { createQuickJsRuntime } from "../runtimes/quickjs/index.ts";
import {
  DEFAULT_SESSION_LIMITS,
  type LanguageRuntime,
  type RuntimeRunOutcome,
  ToolGateway,
  ToolRegistry,
} from "../src/index.ts";

const limits = { ...DEFAULT_SESSION_LIMITS, cpu_ms: 10_000, wall_ms: 20_000, memory_mb: 128 };
const runtimes: LanguageRuntime[] = [];
let quickjs: LanguageRuntime;
let isolatedVm: LanguageRuntime;
let counter = 0;

beforeAll(async () => {
  quickjs = createQuickJsRuntime({ threads: 1 });
  isolatedVm = createIsolatedVmRuntime({ processes: 1 });
  runtimes.push(quickjs, isolatedVm);
  for (const runtime of runtimes) await runtime.createSession("web", limits, "javascript");
}, 60_000);
afterAll(async () => {
  for (const runtime of runtimes) await runtime.close();
});

async function run(
  runtime: LanguageRuntime,
  code: string,
  inputs: Record<string, unknown> = {},
  sessionId = "web",
): Promise<RuntimeRunOutcome> {
  const controller = new AbortController();
  const runId = `web-${++counter}`;
  const tools = new ToolGateway({
    registry: new ToolRegistry(),
    sessionId,
    runId,
    maxExternalCalls: 0,
    deadline: performance.now() + limits.wall_ms,
    signal: controller.signal,
  });
  const outcome = await runtime.run({
    runId,
    sessionId,
    language: "javascript",
    code,
    inputs: inputs as never,
    limits,
    validateOnly: false,
    tools,
    signal: controller.signal,
  });
  tools.settle();
  expect(outcome.error, code).toBeNull();
  return outcome;
}

/** A seeded generator (mulberry32), so that inputs repeat from run to run. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Byte arrays that are mostly UTF-8, with every kind of damage now and then. */
function byteArrays(count: number): number[][] {
  const next = random(7);
  const pick = <T>(items: T[]) => items[Math.floor(next() * items.length)]!;
  const arrays: number[][] = [];
  for (let n = 0; n < count; n++) {
    const text = Array.from({ length: Math.floor(next() * 12) }, () =>
      pick(["a", "é", "€", "😀", "\u0000", "\uffff", "\u{10ffff}", "z"]),
    ).join("");
    const bytes = [...new TextEncoder().encode(text)];
    const damage = Math.floor(next() * 4);
    for (let d = 0; d < damage && bytes.length > 0; d++) {
      const at = Math.floor(next() * bytes.length);
      if (next() < 0.5) bytes.splice(at, 1);
      else
        bytes[at] = pick([0x80, 0xbf, 0xc0, 0xc1, 0xc2, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff]);
    }
    if (next() < 0.1) bytes.unshift(0xef, 0xbb, 0xbf);
    arrays.push(bytes);
  }
  return arrays;
}

/** Strings with pairs, lone surrogates at either end, NUL and the edges of each UTF-8 length. */
function strings(count: number): string[] {
  const next = random(11);
  const pieces = [
    "a",
    "\u007f",
    "\u0080",
    "\u07ff",
    "\u0800",
    "\uffff",
    "😀",
    "\ud800",
    "\udfff",
    "\u0000",
    "é",
  ];
  return Array.from({ length: count }, () =>
    Array.from(
      { length: Math.floor(next() * 10) },
      () => pieces[Math.floor(next() * pieces.length)],
    ).join(""),
  );
}

describe("TextDecoder", () => {
  it("decodes like Node's, replacement and fatal alike", async () => {
    const inputs = byteArrays(300);
    const outcome = await run(
      quickjs,
      `inputs.map((bytes) => {
         const data = new Uint8Array(bytes);
         let fatal;
         try { fatal = new TextDecoder("utf-8", { fatal: true }).decode(data) } catch (e) { fatal = e.name }
         return [new TextDecoder().decode(data), fatal, new TextDecoder("utf8", { ignoreBOM: true }).decode(data.buffer)];
       })`,
      { inputs },
    );
    const expected = inputs.map((bytes) => {
      const data = new Uint8Array(bytes);
      let fatal: string;
      try {
        fatal = new TextDecoder("utf-8", { fatal: true }).decode(data);
      } catch (error) {
        fatal = (error as Error).name;
      }
      return [
        new TextDecoder().decode(data),
        fatal,
        new TextDecoder("utf8", { ignoreBOM: true }).decode(data.buffer),
      ];
    });
    expect(outcome.result).toEqual(expected);
  });

  it("refuses other encodings, streaming and what is not bytes", async () => {
    const outcome = await run(
      quickjs,
      `const errors = [];
       for (const attempt of [
         () => new TextDecoder("latin1"),
         () => new TextDecoder().decode(new Uint8Array([1]), { stream: true }),
         () => new TextDecoder().decode("text"),
       ]) { try { attempt(); errors.push("none") } catch (e) { errors.push(e.name) } }
       [errors, new TextDecoder().decode(), new TextDecoder(" UTF-8 ").encoding]`,
    );
    expect(outcome.result).toEqual([["RangeError", "TypeError", "TypeError"], "", "utf-8"]);
  });
});

describe("TextEncoder", () => {
  it("encodes like Node's, lone surrogates as U+FFFD; encodeInto never splits a character", async () => {
    const inputs = strings(300);
    const next = random(3);
    const rooms = inputs.map(() => Math.floor(next() * 12));
    const outcome = await run(
      quickjs,
      `const encoder = new TextEncoder();
       inputs.map((text, i) => {
         const into = new Uint8Array(rooms[i]);
         const { read, written } = encoder.encodeInto(text, into);
         return [Array.from(encoder.encode(text)), read, written, Array.from(into)];
       })`,
      { inputs, rooms },
    );
    const encoder = new TextEncoder();
    expect(outcome.result).toEqual(
      inputs.map((text, i) => {
        const into = new Uint8Array(rooms[i]!);
        const { read, written } = encoder.encodeInto(text, into);
        return [[...encoder.encode(text)], read, written, [...into]];
      }),
    );
  });
});

describe("atob and btoa", () => {
  it("match Node's on Latin-1 text, padding and whitespace; refuse the rest alike", async () => {
    const next = random(5);
    const texts = Array.from({ length: 200 }, () =>
      String.fromCharCode(
        ...Array.from({ length: Math.floor(next() * 10) }, () => Math.floor(next() * 256)),
      ),
    );
    const encoded = [
      "",
      "YQ",
      "YQ=",
      "YQ==",
      "YWI",
      " Y W\tI=\n",
      "YQ===",
      "Y",
      "a*b=",
      "€€€€",
      "ab=c",
    ];
    const outcome = await run(
      quickjs,
      `const attempt = (f) => { try { return f() } catch (e) { return e.name } };
       [texts.map((t) => { const b = btoa(t); return [b, atob(b)] }),
        encoded.map((e) => attempt(() => atob(e))),
        attempt(() => btoa("€")), attempt(() => atob())]`,
      { texts, encoded },
    );
    const attempt = (f: () => string) => {
      try {
        return f();
      } catch (error) {
        return (error as Error).name;
      }
    };
    expect(outcome.result).toEqual([
      texts.map((text) => [btoa(text), atob(btoa(text))]),
      encoded.map((text) => attempt(() => atob(text))),
      "InvalidCharacterError",
      "TypeError",
    ]);
  });
});

describe("structuredClone", () => {
  it("copies values deeply, keeping cycles and shared references; refuses functions and symbols", async () => {
    const outcome = await run(
      quickjs,
      `const shared = { n: 1 };
       const buffer = new ArrayBuffer(8);
       const source = {
         list: [shared, shared, , 3], date: new Date(86400000), re: /x+/gi,
         map: new Map([[shared, "v"]]), set: new Set([shared]),
         view: new Uint8Array(buffer, 2, 4), same: new DataView(buffer),
         error: new RangeError("far"), boxed: new String("s"), big: 10n ** 20n,
         instance: new (class Point { constructor() { this.x = 1 } })(),
       };
       source.self = source;
       source.view[0] = 9;
       const copy = structuredClone(source);
       const attempt = (value) => { try { structuredClone(value); return "none" } catch (e) { return e.name } };
       [
         copy !== source, copy.self === copy, copy.list[0] === copy.list[1], copy.list[0] !== shared,
         2 in copy.list, copy.list.length, copy.date.getTime(), String(copy.re),
         copy.map.keys().next().value === copy.list[0], copy.set.has(copy.list[0]),
         copy.view.buffer === copy.same.buffer, copy.view.buffer !== buffer, copy.view[0], copy.view.byteOffset,
         copy.error instanceof RangeError, copy.error.message, typeof copy.boxed, String(copy.boxed),
         String(copy.big), Object.getPrototypeOf(copy.instance) === Object.prototype, copy.instance.x,
         attempt(() => 1), attempt(Symbol("s")), attempt({ p: Promise.resolve() }), attempt(new WeakMap()),
         structuredClone(undefined) === undefined,
       ]`,
    );
    expect(outcome.result).toEqual([
      true,
      true,
      true,
      true,
      false,
      4,
      86_400_000,
      "/x+/gi",
      true,
      true,
      true,
      true,
      9,
      2,
      true,
      "far",
      "object",
      "s",
      "100000000000000000000",
      true,
      1,
      "DataCloneError",
      "DataCloneError",
      "DataCloneError",
      "DataCloneError",
      true,
    ]);
  });
});

describe("as globals", () => {
  it("are replaceable before and after first use, and compiled only when read", async () => {
    await quickjs.createSession("fresh", limits, "javascript");
    const outcome = await run(
      quickjs,
      `const before = Object.getOwnPropertyDescriptor(globalThis, "btoa");
       var atob = (text) => "mine:" + text;
       const mine = atob("x");
       const real = btoa("x");
       const after = Object.getOwnPropertyDescriptor(globalThis, "btoa");
       btoa = () => "replaced";
       [typeof before.get, mine, real, typeof after.value, after.enumerable, btoa()]`,
      {},
      "fresh",
    );
    expect(outcome.result).toEqual(["function", "mine:x", "eA==", "function", false, "replaced"]);
  });
});

describe("on isolated-vm", () => {
  it("the same globals, with the same answers", async () => {
    const code = `[btoa("hi"), atob("aGk="), Array.from(new TextEncoder().encode("é")),
       new TextDecoder().decode(new Uint8Array([0xe2, 0x82, 0xac, 0xff])),
       structuredClone(new Map([[1, [2]]])).get(1)[0]]`;
    const expected = ["aGk=", "hi", [195, 169], "€\ufffd", 2];
    expect((await run(isolatedVm, code)).result).toEqual(expected);
    expect((await run(quickjs, code)).result).toEqual(expected);
  });
});
