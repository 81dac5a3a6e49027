/**
 * Type-checking a TypeScript cell (`validate_only` on a TypeScript run) against the tool
 * stubs, with the TypeScript compiler API.
 *
 * What the checker sees: the cell as a module (so top-level `await` is allowed), the tool
 * declarations (./../tools/stubs.ts), the guest prelude's globals (console, timers,
 * `tools`, `ToolError`), each input as a global of a type inferred from its value, and every
 * global an earlier cell of the session declared, typed `any` (its type is not known here).
 * Options: `strict`, except `useUnknownInCatchVariables` (so `catch (e) { e.code }` checks),
 * target ES2022 with the ES2023 library and no DOM.
 *
 * The compiler runs in a worker thread of its own, started on first use (loading TypeScript
 * takes about 200 ms), so checking never holds the server's event loop; library files are
 * parsed once and reused.
 *
 * Source: typescript (compiler API).
 * @module
 */
import { Worker } from "node:worker_threads";
import type { Diagnostic, JsonValue } from "../contract/types.ts";
import { WEB_GLOBALS_DECLARATIONS } from "./web-globals.ts";

/** What to check. */
export interface TypecheckRequest {
  /** The cell's TypeScript. */
  code: string;
  /** Tool declarations (`typescriptStubs`). */
  stubs: string;
  /** Globals beyond the prelude's: name → TypeScript type text. */
  globals: Record<string, string>;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** A TypeScript type describing a JSON value (for inputs), to `depth` levels. */
export function typeOfJson(value: JsonValue, depth = 0): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return "boolean";
    case "number":
      return "number";
    case "string":
      return "string";
    default:
      break;
  }
  if (depth >= 6) return "unknown";
  if (Array.isArray(value)) {
    const elements = [...new Set(value.slice(0, 50).map((item) => typeOfJson(item, depth + 1)))];
    if (elements.length === 0) return "unknown[]";
    return elements.length === 1 ? `${elements[0]}[]` : `(${elements.join(" | ")})[]`;
  }
  const fields = Object.entries(value)
    .slice(0, 200)
    .map(
      ([key, field]) =>
        `${IDENTIFIER.test(key) ? key : JSON.stringify(key)}: ${typeOfJson(field, depth + 1)}`,
    );
  return `{ ${fields.join("; ")} }`;
}

/** Declarations of the guest prelude's globals (src/js/prelude.ts) for the checker. */
export const PRELUDE_DECLARATIONS = `
interface Console {
  log(...data: unknown[]): void; info(...data: unknown[]): void; debug(...data: unknown[]): void;
  warn(...data: unknown[]): void; error(...data: unknown[]): void; trace(...data: unknown[]): void;
  dir(value: unknown): void; table(value: unknown): void; assert(condition?: unknown, ...data: unknown[]): void;
  count(label?: string): void; countReset(label?: string): void; time(label?: string): void; timeEnd(label?: string): void;
}
declare var console: Console;
declare function setTimeout<A extends unknown[]>(callback: (...args: A) => void, ms?: number, ...args: A): number;
declare function setInterval<A extends unknown[]>(callback: (...args: A) => void, ms?: number, ...args: A): number;
declare function clearTimeout(id: number | undefined): void;
declare function clearInterval(id: number | undefined): void;
declare function queueMicrotask(callback: () => void): void;
${WEB_GLOBALS_DECLARATIONS}`;

let worker: Worker | null = null;
let nextId = 0;
const pending = new Map<
  number,
  { resolve(value: Diagnostic[]): void; reject(error: Error): void }
>();

function checker(): Worker {
  if (worker) return worker;
  const started = new Worker(new URL("./typecheck-worker.ts", import.meta.url));
  started.on("message", (message: { id: number; diagnostics?: Diagnostic[]; error?: string }) => {
    const waiting = pending.get(message.id);
    pending.delete(message.id);
    if (!waiting) return;
    if (message.diagnostics) waiting.resolve(message.diagnostics);
    else waiting.reject(new Error(message.error ?? "type-check failed"));
  });
  const fail = (error: Error) => {
    worker = null;
    for (const waiting of pending.values()) waiting.reject(error);
    pending.clear();
  };
  started.on("error", fail);
  started.on("exit", (code) => fail(new Error(`the type-checker stopped (exit code ${code})`)));
  // After the listeners: attaching a "message" listener references the worker again.
  started.unref();
  worker = started;
  return started;
}

/**
 * Type-checks a cell; answers its type errors as diagnostics (code `TYPE_ERROR`, spans in the
 * user's source, columns in code points). Rejects after `timeoutMs` (default 20 s).
 */
export function typecheckCell(
  request: TypecheckRequest,
  timeoutMs = 20_000,
): Promise<Diagnostic[]> {
  const id = ++nextId;
  const target = checker();
  return new Promise<Diagnostic[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error(`the type-check took longer than ${timeoutMs} ms`));
    }, timeoutMs);
    pending.set(id, {
      resolve: (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      reject: (error) => {
        clearTimeout(timer);
        reject(error);
      },
    });
    target.postMessage({ id, request });
  });
}

/** Stops the checker's thread (tests, shutdown). */
export async function stopTypechecker(): Promise<void> {
  const running = worker;
  worker = null;
  await running?.terminate();
}
