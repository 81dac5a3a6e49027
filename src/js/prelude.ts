/**
 * The guest-side prelude of the JavaScript backends: source text evaluated once in every new
 * JavaScript session, before any user code.
 *
 * It is a function expression taking the backend's host bindings ({@link GuestHostBindings})
 * and returning the internals the backend calls ({@link GuestInternals}). Everything it
 * captures (intrinsics, bindings) lives in its closure: guest code can replace globals such as
 * `JSON` or `console` afterwards without breaking the host's view, and can reach the host only
 * through the functions it is given, whose arguments the host checks again.
 *
 * What guest code gets: `console` (log/info/debug/dir → stdout; warn/error/trace → stderr),
 * `tools.<name>(...)` and a global `<name>(...)` per tool (both return promises), `ToolError`
 * (what a failed call rejects with: `code`, `status`, `tool`), and `setTimeout`/`setInterval`/
 * `clearTimeout`/`clearInterval`/`queueMicrotask`, and the web globals of ./web-globals.ts
 * (`atob`, `btoa`, `TextEncoder`, `TextDecoder`, `structuredClone`). Timers still pending when the cell's
 * promise settles are cancelled. `ArrayBuffer.prototype.resize` is removed (see docs/security.md).
 *
 * @module
 */
import { WEB_GLOBAL_NAMES } from "./web-globals.ts";

/** Functions a backend must give the prelude (all synchronous from the guest's view). */
export interface GuestHostBindings {
  /**
   * Writes text to stdout (`1`) or stderr (`2`); `3` and `4` are the same streams with the
   * text JSON-encoded (used when it holds NUL, which some engines' string passing cuts at).
   * A backend may answer `0` once the stream is past the run's `max_stdout_bytes`: the prelude
   * then stops sending that stream's text and only counts its UTF-8 bytes, which the backend
   * collects with {@link GuestInternals.takeDroppedOutput} (a flood then costs no crossing per
   * line). Any other answer keeps the stream open.
   */
  print(stream: 1 | 2 | 3 | 4, text: string): number | undefined;
  /**
   * Starts tool call `id`; the host later answers through {@link GuestInternals.settleCall}.
   * Throws (synchronously) when the call is refused outright: no run active, the run
   * stopping, or the run's call budget already spent.
   */
  call(id: number, name: string, argsJson: string, kwargsJson: string): void;
  /** Arms a timer for `delayMs`; answers its id. Throws when too many are pending. */
  setTimer(delayMs: number): number;
  /** Disarms a timer. */
  clearTimer(id: number): void;
  /** The clock guest code reads (`Date.now()`, `new Date()`), in epoch ms: recorded or replayed by the host. */
  now(): number;
  /**
   * {@link WEB_GLOBALS_SOURCE}, asked for the first time guest code reads one of the web
   * globals (so a session that never does pays nothing for them).
   */
  webSource(): string;
}

/** Functions the prelude returns to the backend. Arguments and answers are strings or numbers. */
export interface GuestInternals {
  /**
   * Starts a run: seeds `Math.random` with `seed` ("a,b,c,d", unsigned 32-bit integers) and,
   * when `inputsJson` is not empty, binds `{"name": value}` as globals. Answers `""` or an
   * error message naming the input that cannot be bound.
   */
  beginRun(seed: string, inputsJson: string): string;
  /** Makes `tools.<name>` and the global `<name>` exist for these names (JSON array text). */
  syncTools(namesJson: string): void;
  /**
   * Encodes a result: JSON text, then, if anything was not JSON, {@link RESULT_ISSUES_SEPARATOR}
   * and the list of what was converted (joined by {@link RESULT_ISSUE_SEPARATOR}).
   */
  encodeResult(value: unknown): string;
  /**
   * Describes a thrown value as JSON text `{name, message, stack, code?, status?}`. For an
   * object it reads own data properties only (never getters, `instanceof` or conversions), so
   * describing a compile error runs no guest code. Message and stack are cut at 4 KiB and
   * 16 KiB.
   */
  describeError(error: unknown): string;
  /**
   * Settles tool call `id` with the host's reply as JSON text: `{"ok":true,"value":...}` or
   * `{"ok":false,"code","message","status"}`. Unknown ids are ignored.
   */
  settleCall(id: number, replyJson: string): void;
  /** Runs the callback of a fired timer. */
  fireTimer(id: number): void;
  /**
   * Answers `"<stdout>,<stderr>"`: UTF-8 bytes printed since the host answered `0` from
   * {@link GuestHostBindings.print} (not sent, only counted), and reopens both streams for the
   * next run. Runs no guest-reachable code.
   */
  takeDroppedOutput(): string;
  /**
   * Forgets every pending timer and tool call (a run ended). Runs no guest-reachable code
   * (it replaces its maps instead of calling their methods).
   */
  resetRun(): void;
}

/**
 * Separates an encoded result from the list of conversions. JSON text never holds a raw
 * U+0001 (it escapes control characters), and, unlike NUL, it survives engines that pass
 * strings as C strings.
 */
export const RESULT_ISSUES_SEPARATOR = "\u0001";
/** Separates conversions in the list. */
export const RESULT_ISSUE_SEPARATOR = "\u0002";

/**
 * The prelude's source: a parenthesized function expression `(host) => internals`.
 * Kept in plain ES2020 so every engine runs it unchanged.
 */
export const GUEST_PRELUDE = String.raw`(function (host) {
  "use strict";
  const G = globalThis;
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const isArray = Array.isArray;
  const objectKeys = Object.keys;
  const defineProperty = Object.defineProperty;
  const getPrototypeOf = Object.getPrototypeOf;
  const hasOwn = Object.prototype.hasOwnProperty;
  const isFiniteNumber = Number.isFinite;
  const arrayFrom = Array.from;
  const MapCtor = Map;
  const SetCtor = Set;
  const ErrorCtor = Error;
  const PromiseCtor = Promise;
  const isView = ArrayBuffer.isView;
  const DataViewCtor = DataView;
  const StringCtor = String;
  const apply = Reflect.apply;
  const getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const mapGetFn = Map.prototype.get;
  const mapSetFn = Map.prototype.set;
  const mapDeleteFn = Map.prototype.delete;
  const mapHasFn = Map.prototype.has;
  const mapGet = (map, key) => apply(mapGetFn, map, [key]);
  const mapSet = (map, key, value) => apply(mapSetFn, map, [key, value]);
  const mapDelete = (map, key) => apply(mapDeleteFn, map, [key]);
  const mapHas = (map, key) => apply(mapHasFn, map, [key]);
  const hostPrint = host.print;
  const hostNow = host.now;
  const construct = Reflect.construct;
  const codeUnitAt = Function.prototype.call.bind(String.prototype.charCodeAt);
  // UTF-8 length, counting a lone surrogate as U+FFFD (3 bytes), as the host does.
  const regExpExec = RegExp.prototype.exec;
  const nonAscii = /[^\u0000-\u007f]/;
  function utf8Length(text) {
    if (apply(regExpExec, nonAscii, [text]) === null) return text.length;
    let bytes = 0;
    for (let i = 0; i < text.length; i++) {
      const unit = codeUnitAt(text, i);
      if (unit < 0x80) bytes += 1;
      else if (unit < 0x800) bytes += 2;
      else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
        const next = codeUnitAt(text, i + 1);
        if (next >= 0xdc00 && next <= 0xdfff) { bytes += 4; i++; } else bytes += 3;
      } else bytes += 3;
    }
    return bytes;
  }
  // Per stream (index 1 stdout, 2 stderr): whether text still goes to the host, and the bytes
  // counted here once the host said the stream is full (see takeDroppedOutput).
  let outputOpen = [false, true, true];
  let outputDropped = [0, 0, 0];
  // A lone surrogate leaves as U+FFFD, as Node writes it (QuickJS's string passing would make
  // three of it).
  const toWellFormed = String.prototype.toWellFormed;
  function print(stream, text) {
    if (!outputOpen[stream]) { outputDropped[stream] += utf8Length(text); return; }
    if (typeof toWellFormed === "function") text = apply(toWellFormed, text, []);
    const open = text.indexOf("\u0000") >= 0 ? hostPrint(stream + 2, stringify(text)) : hostPrint(stream, text);
    if (open === 0) outputOpen[stream] = false;
  }
  function takeDroppedOutput() {
    const counts = outputDropped[1] + "," + outputDropped[2];
    outputOpen = [false, true, true];
    outputDropped = [0, 0, 0];
    return counts;
  }
  const hostCall = host.call;
  const setTimer = host.setTimer;
  const clearTimer = host.clearTimer;

  // QuickJS 2025-09-13 reads past a typed array whose resizable buffer shrinks during an
  // operation (bellard/quickjs#492, #478). Without resize() no buffer can shrink.
  if (typeof ArrayBuffer.prototype.resize === "function") delete ArrayBuffer.prototype.resize;

  function quote(text) { return stringify(text); }

  // The clock and randomness are the host's, so a journal can replay a run exactly: Date reads
  // the host's clock (recorded, or replayed); Math.random is sfc32 seeded by the host per run.
  const RealDate = Date;
  const realDateToString = RealDate.prototype.toString;
  function PinnedDate(a, b, c, d, e, f, g) {
    if (new.target === undefined) return apply(realDateToString, construct(RealDate, [hostNow()]), []);
    if (arguments.length === 0) return construct(RealDate, [hostNow()], new.target);
    return construct(RealDate, arrayFrom(arguments), new.target);
  }
  PinnedDate.prototype = RealDate.prototype;
  defineProperty(RealDate.prototype, "constructor", { value: PinnedDate, writable: true, configurable: true });
  defineProperty(PinnedDate, "name", { value: "Date" });
  PinnedDate.now = function now() { return hostNow(); };
  PinnedDate.parse = RealDate.parse;
  PinnedDate.UTC = RealDate.UTC;
  defineProperty(G, "Date", { value: PinnedDate, writable: true, configurable: true });

  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  function sfc32() {
    const t = (((s0 + s1) | 0) + s3) | 0;
    s3 = (s3 + 1) | 0;
    s0 = s1 ^ (s1 >>> 9);
    s1 = (s2 + (s2 << 3)) | 0;
    s2 = (s2 << 21) | (s2 >>> 11);
    s2 = (s2 + t) | 0;
    return t >>> 0;
  }
  defineProperty(Math, "random", {
    value: function random() { return ((sfc32() >>> 5) * 67108864 + (sfc32() >>> 6)) / 9007199254740992; },
    writable: true,
    configurable: true,
  });
  function seedRandom(text) {
    const parts = text.split(",");
    s0 = Number(parts[0]) | 0; s1 = Number(parts[1]) | 0; s2 = Number(parts[2]) | 0; s3 = Number(parts[3]) | 0;
    for (let i = 0; i < 12; i++) sfc32();
  }

  function inspect(value, depth, seen) {
    switch (typeof value) {
      case "string": return depth === 0 ? value : quote(value);
      case "number": return value === 0 && 1 / value < 0 ? "-0" : StringCtor(value);
      case "bigint": return StringCtor(value) + "n";
      case "symbol": return StringCtor(value);
      case "undefined": return "undefined";
      case "boolean": return value ? "true" : "false";
      case "function": {
        const name = value.name ? ": " + value.name : " (anonymous)";
        return /^class[\s{]/.test(Function.prototype.toString.call(value)) ? "[class" + name.slice(1) + "]" : "[Function" + name + "]";
      }
      default: break;
    }
    if (value === null) return "null";
    if (seen.indexOf(value) >= 0) return "[Circular]";
    if (value instanceof ErrorCtor) {
      const head = StringCtor(value.name) + ": " + StringCtor(value.message);
      const stack = typeof value.stack === "string" ? value.stack : "";
      return stack ? head + "\n" + stack.replace(/\s+$/, "") : head;
    }
    if (value instanceof Date) return isFiniteNumber(value.getTime()) ? value.toISOString() : "Invalid Date";
    if (value instanceof RegExp) return StringCtor(value);
    if (typeof value.then === "function") return "Promise { <pending> }";
    if (depth > 2) return isArray(value) ? "[Array]" : "[Object]";
    const next = seen.concat([value]);
    const items = [];
    const limit = 100;
    if (isArray(value) || (isView(value) && !(value instanceof DataViewCtor))) {
      const length = value.length;
      for (let i = 0; i < length && i < limit; i++) items.push(inspect(value[i], depth + 1, next));
      if (length > limit) items.push("... " + (length - limit) + " more items");
      return items.length ? "[ " + items.join(", ") + " ]" : "[]";
    }
    if (value instanceof MapCtor) {
      for (const [k, v] of value) { if (items.length >= limit) break; items.push(inspect(k, depth + 1, next) + " => " + inspect(v, depth + 1, next)); }
      return "Map(" + value.size + ") {" + (items.length ? " " + items.join(", ") + " " : "") + "}";
    }
    if (value instanceof SetCtor) {
      for (const v of value) { if (items.length >= limit) break; items.push(inspect(v, depth + 1, next)); }
      return "Set(" + value.size + ") {" + (items.length ? " " + items.join(", ") + " " : "") + "}";
    }
    const keys = objectKeys(value);
    for (let i = 0; i < keys.length && i < limit; i++) {
      const key = keys[i];
      const label = /^[A-Za-z_$][\w$]*$/.test(key) ? key : quote(key);
      items.push(label + ": " + inspect(value[key], depth + 1, next));
    }
    if (keys.length > limit) items.push("... " + (keys.length - limit) + " more keys");
    const proto = getPrototypeOf(value);
    const ctor = proto && proto !== Object.prototype && proto.constructor && proto.constructor.name;
    const prefix = ctor ? ctor + " " : proto === null ? "[Object: null prototype] " : "";
    return prefix + (items.length ? "{ " + items.join(", ") + " }" : "{}");
  }

  function format(args) {
    const parts = [];
    for (let i = 0; i < args.length; i++) {
      try { parts.push(inspect(args[i], 0, [])); } catch (e) { parts.push("[uninspectable]"); }
    }
    return parts.join(" ") + "\n";
  }

  const counts = new MapCtor();
  const timersByLabel = new MapCtor();
  const console = {
    log() { print(1, format(arguments)); },
    info() { print(1, format(arguments)); },
    debug() { print(1, format(arguments)); },
    dir(value) { print(1, format([value])); },
    warn() { print(2, format(arguments)); },
    error() { print(2, format(arguments)); },
    trace() { print(2, "Trace: " + format(arguments) + new ErrorCtor().stack); },
    assert(condition) {
      if (!condition) print(2, "Assertion failed" + (arguments.length > 1 ? ": " + format(Array.prototype.slice.call(arguments, 1)) : "\n"));
    },
    count(label) { const key = label === undefined ? "default" : StringCtor(label); const n = (counts.get(key) || 0) + 1; counts.set(key, n); print(1, key + ": " + n + "\n"); },
    countReset(label) { counts.delete(label === undefined ? "default" : StringCtor(label)); },
    time(label) { timersByLabel.set(label === undefined ? "default" : StringCtor(label), Date.now()); },
    timeEnd(label) { const key = label === undefined ? "default" : StringCtor(label); const t = timersByLabel.get(key); if (t !== undefined) { timersByLabel.delete(key); print(1, key + ": " + (Date.now() - t) + "ms\n"); } },
    table(value) { print(1, format([value])); },
  };
  defineProperty(G, "console", { value: console, writable: true, configurable: true, enumerable: false });
  // Web globals (./web-globals.ts), compiled on first use: each is an accessor until read,
  // then a plain writable global. Assigning one first replaces it without compiling.
  (function () {
    const evaluate = G.eval;
    const webSource = host.webSource;
    const names = ${JSON.stringify(WEB_GLOBAL_NAMES)};
    let made = null;
    const settle = (name, value) =>
      defineProperty(G, name, { value, writable: true, configurable: true, enumerable: false });
    for (let i = 0; i < names.length; i++) {
      const name = names[i];
      defineProperty(G, name, {
        get() {
          if (made === null) made = evaluate(webSource())();
          settle(name, made[name]);
          return made[name];
        },
        set(value) { settle(name, value); },
        configurable: true,
        enumerable: false,
      });
    }
  })();

  class ToolError extends ErrorCtor {
    constructor(code, message, status, tool) {
      super(message);
      // defineProperty, not assignment: a setter planted on Error.prototype must not run.
      defineProperty(this, "name", { value: "ToolError", writable: true, configurable: true });
      defineProperty(this, "code", { value: code, writable: true, configurable: true, enumerable: true });
      defineProperty(this, "status", { value: status, writable: true, configurable: true, enumerable: true });
      defineProperty(this, "tool", { value: tool, writable: true, configurable: true, enumerable: true });
    }
  }
  const ToolErrorProto = ToolError.prototype;
  // Built-in error prototypes as they are now: describing an error stops its prototype walk
  // at the first of these, so nothing a guest plants further up (a Proxy) is ever touched.
  const builtinErrorProtos = [ErrorCtor, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError,
    typeof AggregateError === "function" ? AggregateError : ErrorCtor,
    typeof InternalError === "function" ? InternalError : ErrorCtor]
    .map((ctor) => ctor.prototype);
  defineProperty(G, "ToolError", { value: ToolError, writable: true, configurable: true, enumerable: false });

  function strictReplacer(key, value) {
    switch (typeof value) {
      case "function": throw new TypeError("a function is not JSON");
      case "symbol": throw new TypeError("a symbol is not JSON");
      case "bigint": throw new TypeError("a BigInt is not JSON");
      case "number": if (!isFiniteNumber(value)) throw new TypeError(StringCtor(value) + " is not JSON"); return value;
      case "object":
        if (value instanceof MapCtor || value instanceof SetCtor) throw new TypeError("a Map or Set is not JSON");
        return value;
      default: return value;
    }
  }

  function callTool(name, args) {
    let argsJson;
    try { argsJson = stringify(args, strictReplacer); }
    catch (e) { return PromiseCtor.reject(new TypeError("arguments of " + name + " are not JSON: " + (e && e.message))); }
    // Taken now, so a failed call's stack (and span) points at the caller, not at a callback.
    const callSite = new ErrorCtor();
    const id = ++nextCallId;
    return new PromiseCtor(function (resolve, reject) {
      mapSet(pendingCalls, id, { resolve, reject, name, callSite });
      try {
        hostCall(id, name, argsJson, "{}");
      } catch (refusal) {
        mapDelete(pendingCalls, id);
        reject(refusal);
      }
    });
  }

  let nextCallId = 0;
  let pendingCalls = new MapCtor();

  function settleCall(id, replyText) {
    const pending = mapGet(pendingCalls, id);
    if (pending === undefined) return;
    mapDelete(pendingCalls, id);
    const reply = parse(replyText);
    if (reply.ok) { pending.resolve(reply.value); return; }
    const error = new ToolError(reply.code, reply.message, reply.status, pending.name);
    const site = getOwnPropertyDescriptor(pending.callSite, "stack");
    if (site && typeof site.value === "string") defineProperty(error, "stack", { value: site.value, writable: true, configurable: true });
    pending.reject(error);
  }

  const tools = {};
  defineProperty(G, "tools", { value: tools, writable: true, configurable: true, enumerable: false });
  const published = new MapCtor();

  function syncTools(namesJson) {
    const names = parse(namesJson);
    for (const [name, fn] of published) {
      if (names.indexOf(name) < 0) {
        if (tools[name] === fn) delete tools[name];
        if (G[name] === fn) delete G[name];
        published.delete(name);
      }
    }
    for (const name of names) {
      if (published.has(name)) continue;
      const fn = { [name]: function () { return callTool(name, arrayFrom(arguments)); } }[name];
      published.set(name, fn);
      tools[name] = fn;
      if (!(name in G)) defineProperty(G, name, { value: fn, writable: true, configurable: true, enumerable: false });
    }
  }

  let nextTimer = 0;
  let timers = new MapCtor(); // host timer id -> timer
  let hostIds = new MapCtor(); // guest timer id -> host timer id
  function armTimer(fn, delay, args, repeat) {
    if (typeof fn !== "function") throw new TypeError("timer callback must be a function");
    const ms = Math.max(0, Number(delay) || 0);
    const hostId = setTimer(ms);
    const id = ++nextTimer;
    mapSet(timers, hostId, { id, fn, args, repeat, ms });
    mapSet(hostIds, id, hostId);
    return id;
  }
  function disarm(id) {
    const hostId = mapGet(hostIds, id);
    if (hostId === undefined) return;
    mapDelete(hostIds, id);
    mapDelete(timers, hostId);
    clearTimer(hostId);
  }
  defineProperty(G, "setTimeout", { value: function setTimeout(fn, delay) { return armTimer(fn, delay, Array.prototype.slice.call(arguments, 2), false); }, writable: true, configurable: true });
  defineProperty(G, "setInterval", { value: function setInterval(fn, delay) { return armTimer(fn, delay, Array.prototype.slice.call(arguments, 2), true); }, writable: true, configurable: true });
  defineProperty(G, "clearTimeout", { value: function clearTimeout(id) { disarm(id); }, writable: true, configurable: true });
  defineProperty(G, "clearInterval", { value: function clearInterval(id) { disarm(id); }, writable: true, configurable: true });
  if (typeof G.queueMicrotask !== "function") {
    defineProperty(G, "queueMicrotask", { value: function queueMicrotask(fn) { PromiseCtor.resolve().then(function () { fn(); }); }, writable: true, configurable: true });
  }

  function fireTimer(hostId) {
    if (!mapHas(timers, hostId)) return;
    const timer = mapGet(timers, hostId);
    mapDelete(timers, hostId);
    mapDelete(hostIds, timer.id);
    if (timer.repeat) {
      const next = setTimer(timer.ms);
      mapSet(timers, next, timer);
      mapSet(hostIds, timer.id, next);
    }
    apply(timer.fn, undefined, timer.args);
  }

  function resetRun() {
    timers = new MapCtor();
    hostIds = new MapCtor();
    pendingCalls = new MapCtor();
  }

  function beginRun(seed, inputsJson) {
    seedRandom(seed);
    outputOpen = [false, true, true];
    outputDropped = [0, 0, 0];
    if (inputsJson === "") return "";
    const inputs = parse(inputsJson);
    const keys = objectKeys(inputs);
    for (let i = 0; i < keys.length; i++) {
      try {
        defineProperty(G, keys[i], { value: inputs[keys[i]], writable: true, configurable: true, enumerable: true });
      } catch (e) {
        return "input " + quote(keys[i]) + " cannot be bound as a global: " + (e && e.message);
      }
    }
    return "";
  }

  function lenientReplacer(issues) {
    function note(what) { if (issues.indexOf(what) < 0 && issues.length < 8) issues.push(what); }
    return function (key, value) {
      switch (typeof value) {
        case "undefined": return key === "" && this && hasOwn.call(this, "") ? null : value;
        case "function": note("a function"); return "[Function" + (value.name ? ": " + value.name : "") + "]";
        case "symbol": note("a symbol"); return StringCtor(value);
        case "bigint": note("a BigInt"); return StringCtor(value);
        case "number": if (!isFiniteNumber(value)) { note("a non-finite number"); return StringCtor(value); } return value;
        case "object":
          if (value === null) return null;
          if (value instanceof MapCtor) { note("a Map (as [key, value] pairs)"); return arrayFrom(value); }
          if (value instanceof SetCtor) { note("a Set (as an array)"); return arrayFrom(value); }
          if (isView(value) && !(value instanceof DataViewCtor)) { note("a typed array (as an array)"); return arrayFrom(value); }
          if (value instanceof ErrorCtor) { note("an Error (as its name and message)"); return { name: StringCtor(value.name), message: StringCtor(value.message) }; }
          return value;
        default: return value;
      }
    };
  }

  function decycle(value, ancestors, issues) {
    if (value === null || typeof value !== "object") return value;
    if (ancestors.indexOf(value) >= 0) { if (issues.indexOf("a circular reference") < 0) issues.push("a circular reference"); return "[Circular]"; }
    if (ancestors.length >= 200) { if (issues.indexOf("nesting deeper than 200") < 0) issues.push("nesting deeper than 200"); return "[Too deep]"; }
    if (typeof value.toJSON === "function") value = value.toJSON();
    if (value === null || typeof value !== "object") return value;
    const next = ancestors.concat([value]);
    if (value instanceof MapCtor || value instanceof SetCtor || isArray(value)) return arrayFrom(value, function (item) { return decycle(item, next, issues); });
    const copy = {};
    const keys = objectKeys(value);
    for (let i = 0; i < keys.length; i++) copy[keys[i]] = decycle(value[keys[i]], next, issues);
    return copy;
  }

  function encodeResult(value) {
    const issues = [];
    let text;
    try {
      text = stringify({ "": value }, lenientReplacer(issues));
      text = text.slice(4, -1);
    } catch (first) {
      issues.length = 0;
      try {
        text = stringify({ "": decycle(value, [], issues) }, lenientReplacer(issues)).slice(4, -1);
      } catch (second) {
        issues.length = 0;
        issues.push("a value that could not be converted (" + (second && second.message) + ")");
        let shown;
        try { shown = inspect(value, 0, []); } catch (e) { shown = "[unconvertible]"; }
        text = stringify(shown);
      }
    }
    if (text === undefined || text === "") text = "null";
    return issues.length ? text + "\u0001" + issues.join("\u0002") : text;
  }

  function ownData(object, key) {
    try {
      const descriptor = getOwnPropertyDescriptor(object, key);
      return descriptor && "value" in descriptor ? descriptor.value : undefined;
    } catch (e) {
      return undefined;
    }
  }

  // V8 keeps an error's stack behind an own accessor whose getter is the engine's own (the
  // same function for every error): that one getter is read, never one guest code defined.
  const engineStackGetter = (function () {
    try {
      const descriptor = getOwnPropertyDescriptor(new Error("probe"), "stack");
      return descriptor && typeof descriptor.get === "function" ? descriptor.get : undefined;
    } catch (e) {
      return undefined;
    }
  })();
  function ownStack(error) {
    try {
      const descriptor = getOwnPropertyDescriptor(error, "stack");
      if (!descriptor) return undefined;
      if ("value" in descriptor) return descriptor.value;
      if (engineStackGetter !== undefined && descriptor.get === engineStackGetter) {
        return apply(engineStackGetter, error, []);
      }
      return undefined;
    } catch (e) {
      return undefined;
    }
  }

  function clip(text, max) { return text.length > max ? text.slice(0, max) + "…" : text; }

  // Own data properties only, walking prototypes with captured functions: no getter, no
  // Symbol.hasInstance, no toString of the guest's runs here.
  function describeError(error) {
    try {
      if (error !== null && (typeof error === "object" || typeof error === "function")) {
        const message = ownData(error, "message");
        const stack = ownStack(error);
        if (typeof message === "string" || typeof stack === "string") {
          let name = ownData(error, "name");
          let isToolError = false;
          let proto = error;
          for (let depth = 0; depth < 16; depth++) {
            proto = getPrototypeOf(proto);
            if (proto === null) break;
            if (proto === ToolErrorProto) isToolError = true;
            if (typeof name !== "string") name = ownData(proto, "name");
            if (builtinErrorProtos.indexOf(proto) >= 0) break;
          }
          const out = {
            name: typeof name === "string" ? clip(name, 200) : "Error",
            message: typeof message === "string" ? clip(message, 4096) : "",
            stack: typeof stack === "string" ? clip(stack, 16384) : "",
          };
          const code = ownData(error, "code");
          const status = ownData(error, "status");
          if (isToolError && typeof code === "string") out.code = clip(code, 200);
          if (isToolError && typeof status === "string") out.status = clip(status, 200);
          return stringify(out);
        }
      }
      let shown;
      try { shown = inspect(error, 1, []); } catch (e) { shown = "(a value that could not be shown)"; }
      return stringify({ name: "Uncaught", message: clip(typeof shown === "string" ? shown : "(unshown)", 4096), stack: "" });
    } catch (e) {
      return stringify({ name: "Error", message: "(an error that could not be described)", stack: "" });
    }
  }

  return { beginRun, syncTools, encodeResult, describeError, settleCall, fireTimer, resetRun, takeDroppedOutput };
})`;
