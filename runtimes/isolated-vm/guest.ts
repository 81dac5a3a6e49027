/**
 * The guest side of an isolated-vm session that is this backend's own: the bootstrap evaluated
 * once in every new context, which gives the shared guest prelude (`GUEST_PRELUDE` from src)
 * its four host bindings and hands the host one entry point, {@link GuestOp}-dispatched.
 *
 * What crosses between the host (the child process's Node isolate) and the session's isolate:
 * - host → guest: `apply` on the entry point with primitive arguments only (numbers, strings),
 *   copied by isolated-vm; no `Reference`, `ExternalCopy` or host object is ever given to the
 *   isolate.
 * - guest → host: six `ivm.Callback`s (print, start a tool call, arm a timer, clear a timer,
 *   report the cell's end, read the clock) whose arguments isolated-vm copies; the host checks their types
 *   again and never throws back into the isolate (a host exception would carry host stack
 *   frames), it answers `-1` where the guest shim must raise.
 *
 * Everything the bootstrap needs later (intrinsics, the callbacks, the prelude's internals) is
 * captured in its closure before any user code runs, in strict mode, so guest code can neither
 * reach the callbacks nor break the host's view by replacing globals. Guest code can still
 * poison intrinsics the prelude looks up at call time; that only harms its own run.
 *
 * @module
 */
import { WEB_GLOBALS_SOURCE } from "../../src/js/web-globals.ts";

/** Operations of the bootstrap's entry point (its first argument). */
export const GuestOp = {
  /**
   * Starts a run: `(op, token, inputsJson, toolNamesJson | "", script, outputCapUnits, seed)`.
   * Forgets what the previous run left pending, seeds `Math.random` with `seed` ("a,b,c,d"),
   * binds tools and inputs, evaluates the compiled
   * cell as global code (indirect eval) and watches its promise. Answers `""`, or JSON
   * `{kind: "input", message}` / `{kind: "compile", error}` (`error` a described error, see
   * `GuestInternals.describeError`).
   */
  run: 1,
  /** Delivers a tool call's reply: `(op, callId, replyJson)`. */
  settle: 2,
  /** Runs a fired timer's callback: `(op, timerId)`; answers `""` or the described error it threw. */
  fire: 3,
} as const;

/** What the cell's end reports through the `finish` callback (second argument). */
export const FinishKind = {
  /** Third argument: the encoded result (`GuestInternals.encodeResult`). */
  fulfilled: 1,
  /** Third argument: the described error. */
  rejected: 2,
  /** The encoded result is longer than {@link MAX_CROSSING_CHARS}; third argument: its length. */
  tooLarge: 3,
} as const;

/** Number a `startCall` or `setTimer` callback answers when the guest must raise instead. */
export const REFUSED = -1;

/** Timers one run may have pending at once (as the QuickJS backend). */
export const MAX_PENDING_TIMERS = 1_000;

/**
 * Longest string, in UTF-16 units, that crosses from an isolate to the host in one callback
 * (a result, a tool call's arguments, a described error). Larger ones are refused in the guest:
 * a copy of guest memory must not be able to exhaust the child process's own heap.
 */
export const MAX_CROSSING_CHARS = 16 * 1_048_576;

/** File name the bootstrap is compiled under (dropped from user-facing stacks). */
export const BOOTSTRAP_FILENAME = "sandbox-bootstrap.js";

/**
 * The bootstrap's source: a function expression
 * `(prelude, print, startCall, setTimer, clearTimer, finish, now) => entry`, where `prelude` is the
 * evaluated `GUEST_PRELUDE` and the rest are the host callbacks:
 * - `print(stream: 1 | 2, text, droppedBytes)`: stdout or stderr; output past the run's cap is
 *   not sent, only counted (UTF-8 bytes), so a flood never crosses;
 * - `startCall(id, name, argsJson, kwargsJson)` → 0, or {@link REFUSED} (the prelude numbers
 *   calls; the reply comes back through the entry's `settle`);
 * - `setTimer(delayMs)` → timer id, or {@link REFUSED}; `clearTimer(id)`;
 * - `finish(token, kind, text)`: the cell settled ({@link FinishKind});
 * - `now()` → the clock guest code reads, in epoch ms (recorded or replayed by the host).
 */
export const GUEST_BOOTSTRAP = `(function (prelude, print, startCall, setTimer, clearTimer, finish, now) {
  "use strict";
  const G = globalThis;
  // A WebAssembly.Memory lives outside the isolate's heap, where memoryLimit cannot see it
  // (measured: 1.9 GB grown under a 32 MB limit). Guest code has no use for WebAssembly here.
  delete G.WebAssembly;
  // V8 runs FinalizationRegistry callbacks (and Atomics.waitAsync continuations) as tasks of
  // its own, outside any call the host makes, so no timeout covers them: measured, a callback
  // looping forever burned a core while the session sat idle. Neither is reachable afterwards.
  delete G.FinalizationRegistry;
  delete G.Atomics.waitAsync;
  const indirectEval = G.eval;
  const apply = Reflect.apply;
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const promiseThen = Promise.prototype.then;
  const ErrorCtor = Error;
  const RangeErrorCtor = RangeError;
  const StringCtor = String;
  const charCodeAt = String.prototype.charCodeAt;
  const stringSlice = String.prototype.slice;
  const MAX_CROSSING = ${MAX_CROSSING_CHARS};
  const WEB_GLOBALS_SOURCE = ${JSON.stringify(WEB_GLOBALS_SOURCE)};

  function utf8Length(text) {
    let bytes = 0;
    for (let i = 0; i < text.length; i++) {
      const unit = apply(charCodeAt, text, [i]);
      if (unit < 0x80) bytes += 1;
      else if (unit < 0x800) bytes += 2;
      else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
        const next = apply(charCodeAt, text, [i + 1]);
        if (next >= 0xdc00 && next <= 0xdfff) { bytes += 4; i++; } else bytes += 3;
      } else bytes += 3;
    }
    return bytes;
  }

  // Output the run may still send, per stream, in UTF-16 units (a unit is at least one UTF-8
  // byte, so this never holds back what the host would keep).
  const outputLeft = [0, 0, 0];
  const host = {
    print: function (stream, text) {
      let target = stream;
      let value = text;
      // The prelude JSON-encodes text holding NUL (for engines that cut strings at NUL);
      // isolated-vm copies such strings whole.
      if (stream === 3 || stream === 4) {
        target = stream - 2;
        try { value = StringCtor(parse(text)); } catch (e) { return; }
      }
      const left = outputLeft[target];
      if (value.length <= left) {
        outputLeft[target] = left - value.length;
        print(target, value, 0);
        return;
      }
      const head = left > 0 ? apply(stringSlice, value, [0, left]) : "";
      outputLeft[target] = 0;
      print(target, head, utf8Length(value) - utf8Length(head));
    },
    call: function (id, name, argsJson, kwargsJson) {
      if (argsJson.length + kwargsJson.length > MAX_CROSSING) {
        throw new RangeErrorCtor("arguments of " + name + " are longer than " + MAX_CROSSING + " characters of JSON");
      }
      if (startCall(id, name, argsJson, kwargsJson) === ${REFUSED}) throw new ErrorCtor("the run is stopping");
    },
    setTimer: function (delayMs) {
      const id = setTimer(delayMs);
      if (id === ${REFUSED}) throw new RangeErrorCtor("at most ${MAX_PENDING_TIMERS} timers may be pending");
      return id;
    },
    clearTimer: function (id) { clearTimer(id); },
    now: function () { return now(); },
    webSource: function () { return WEB_GLOBALS_SOURCE; },
  };
  function messageOf(error) {
    try { return StringCtor(error && error.message); } catch (e) { return "an error that could not be described"; }
  }

  const internals = prelude(host);
  const encodeResult = internals.encodeResult;

  // A described error small enough to cross.
  function describeError(error) {
    const text = internals.describeError(error);
    if (text.length <= MAX_CROSSING) return text;
    const described = parse(text);
    return stringify({
      name: apply(stringSlice, described.name, [0, 200]),
      message: apply(stringSlice, described.message, [0, 65536]) + " ... (cut)",
      stack: apply(stringSlice, described.stack, [0, 65536]),
    });
  }

  function watch(promise, token) {
    try {
      apply(promiseThen, promise, [
        function (value) {
          const text = encodeResult(value);
          if (text.length > MAX_CROSSING) finish(token, ${FinishKind.tooLarge}, StringCtor(text.length));
          else finish(token, ${FinishKind.fulfilled}, text);
        },
        function (error) { finish(token, ${FinishKind.rejected}, describeError(error)); },
      ]);
    } catch (error) {
      finish(token, ${FinishKind.rejected}, describeError(error));
    }
  }

  return function entry(op, a, b, c, d, e, f) {
    switch (op) {
      case ${GuestOp.run}: {
        try {
          // What the previous run left pending is dropped (its host timers are already gone).
          internals.resetRun();
          outputLeft[1] = e;
          outputLeft[2] = e;
          if (c !== "") internals.syncTools(c);
          const inputError = internals.beginRun(f, b === "{}" ? "" : b);
          if (inputError !== "") return stringify({ kind: "input", message: inputError });
        } catch (error) {
          return stringify({ kind: "input", message: "inputs could not be bound: " + messageOf(error) });
        }
        let promise;
        try {
          promise = indirectEval(d);
        } catch (error) {
          return stringify({ kind: "compile", error: describeError(error) });
        }
        watch(promise, a);
        return "";
      }
      case ${GuestOp.settle}:
        internals.settleCall(a, b);
        return "";
      case ${GuestOp.fire}:
        // A timer callback that throws is reported (answered as a described error), not fatal.
        try {
          internals.fireTimer(a);
        } catch (error) {
          return describeError(error);
        }
        return "";
      default:
        return "";
    }
  };
})`;
