/**
 * V8 stack traces as a user should read them: frames of the cell compiler's wrapper, the guest
 * prelude and the bootstrap dropped, positions mapped back to the user's lines (V8 counts
 * columns in UTF-16 units), runs of identical frames folded.
 *
 * @module
 */
import { type CompiledCell, foldRepeatedFrames, type Span, span } from "../../src/index.ts";
import { BOOTSTRAP_FILENAME } from "./guest.ts";

/** File name of the guest prelude in this backend's isolates. */
export const PRELUDE_FILENAME = "prelude.js";

/** `    at name (file:line:column)` or `    at file:line:column`. */
const FRAME = /^(\s*at\s+)(?:(.*?)\s+\()?([^\s()]+):(\d+):(\d+)\)?\s*$/;

/** The indirect `eval` the bootstrap runs every cell through. */
const EVAL_FRAME = /^\s*at eval \(<anonymous>\)\s*$/;

/** What V8 names a function that has no name of its own inside eval'd code. */
const ANONYMOUS_IN_EVAL = new Set(["eval", "async eval"]);

/**
 * Rewrites a V8 stack (`error.stack`, headline excluded) to the user's lines. `cells` holds
 * the session's recent cells, for frames of functions defined by earlier runs.
 */
export function mapStack(
  stack: string,
  cell: CompiledCell,
  cells: ReadonlyMap<string, CompiledCell>,
): string {
  const frames: string[] = [];
  for (const line of stack.split("\n")) {
    if (line.trim() === "" || EVAL_FRAME.test(line)) continue;
    const match = FRAME.exec(line);
    if (!match) {
      if (/^\s*at\s/.test(line)) frames.push(line);
      continue;
    }
    const [, prefix = "    at ", name, file = "", lineText = "0", columnText = "0"] = match;
    if (file === PRELUDE_FILENAME || file === BOOTSTRAP_FILENAME) continue;
    const owner = file === cell.filename ? cell : cells.get(file);
    if (!owner) {
      frames.push(line);
      continue;
    }
    const position = owner.originalPosition(Number(lineText), Number(columnText), "utf16");
    // Code the cell compiler added (the wrapper's call) is not the user's.
    if (!position) continue;
    const where = `${file}:${position.line}:${position.column}`;
    if (name === undefined || ANONYMOUS_IN_EVAL.has(name)) {
      const asyncMark = name?.startsWith("async ") ? "async " : "";
      frames.push(`${prefix}${asyncMark}${where}`);
    } else {
      frames.push(`${prefix}${name} (${where})`);
    }
  }
  return foldRepeatedFrames(frames);
}

/** Span of the innermost frame in the current cell, in the user's source; null when none. */
export function firstUserSpan(stack: string, cell: CompiledCell): Span | null {
  for (const line of stack.split("\n")) {
    const match = FRAME.exec(line);
    if (!match || match[3] !== cell.filename) continue;
    const position = cell.originalPosition(Number(match[4]), Number(match[5]), "utf16");
    if (position) return span(position.line, position.column);
  }
  return null;
}

/**
 * Span of a syntax error isolated-vm reports from `compileScript`, whose message ends with
 * `[file:line:column]`; null when the message has no position in this cell.
 */
export function compileErrorSpan(message: string, cell: CompiledCell): Span | null {
  const match = /\[([^\s[\]]+):(\d+):(\d+)\]\s*$/.exec(message);
  if (!match || match[1] !== cell.filename) return null;
  const position = cell.originalPosition(Number(match[2]), Number(match[3]), "utf16");
  return position ? span(position.line, position.column) : null;
}

/** The message of a `compileScript` error without its `[file:line:column]` suffix. */
export function compileErrorMessage(message: string): string {
  return message.replace(/\s*\[[^\s[\]]+:\d+:\d+\]\s*$/, "");
}
