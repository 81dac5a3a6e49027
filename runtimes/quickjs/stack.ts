/**
 * Reading QuickJS stack traces: frames mapped to the user's cells and lines, prelude and
 * wrapper frames dropped, repeated frames folded. The stack text is guest-controlled
 * (`error.stack` is writable), so parsing is linear — no backtracking regular expression —
 * and bounded: at most {@link MAX_FRAMES} lines of at most {@link MAX_FRAME_CHARS} characters.
 *
 * @module
 */
import { type CompiledCell, foldRepeatedFrames, type Span, span } from "../../src/index.ts";

/** Stack lines read at most. */
export const MAX_FRAMES = 100;
/** Longer lines are kept as text but not parsed. */
export const MAX_FRAME_CHARS = 1_000;

/** One parsed frame: `    at name (file:line:column)`. */
export interface Frame {
  name: string;
  file: string;
  line: number | null;
  column: number | null;
}

/** Parses one QuickJS frame line, or answers null when it is not one. Linear time. */
export function parseFrame(text: string): Frame | null {
  if (text.length > MAX_FRAME_CHARS) return null;
  const trimmed = text.trim();
  if (!trimmed.startsWith("at ")) return null;
  let body = trimmed.slice(3).trim();
  let name = "";
  if (body.endsWith(")")) {
    const open = body.lastIndexOf("(");
    if (open >= 0) {
      name = body.slice(0, open).trim();
      body = body.slice(open + 1, -1);
    }
  }
  const lastColon = body.lastIndexOf(":");
  const firstColon = lastColon > 0 ? body.lastIndexOf(":", lastColon - 1) : -1;
  if (firstColon > 0) {
    const line = Number(body.slice(firstColon + 1, lastColon));
    const column = Number(body.slice(lastColon + 1));
    if (Number.isInteger(line) && Number.isInteger(column)) {
      return { name, file: body.slice(0, firstColon), line, column };
    }
  }
  return { name, file: body, line: null, column: null };
}

function stackLines(stack: string): string[] {
  return stack.split("\n", MAX_FRAMES + 1).slice(0, MAX_FRAMES);
}

/**
 * Rewrites stack frames to the user's lines (`at f (cell-3.js:4:10)`), drops frames of the
 * prelude and of the cell wrapper, and folds runs of identical frames (deep recursion).
 */
export function mapStack(
  stack: string,
  cell: CompiledCell,
  cells: ReadonlyMap<string, CompiledCell>,
): string {
  const frames: string[] = [];
  for (const line of stackLines(stack)) {
    if (line.trim() === "") continue;
    const frame = parseFrame(line);
    if (!frame) {
      frames.push(line.length > MAX_FRAME_CHARS ? `${line.slice(0, MAX_FRAME_CHARS)}…` : line);
      continue;
    }
    if (frame.file === "prelude.js" || frame.name === "<eval>") continue;
    const owner = frame.file === cell.filename ? cell : cells.get(frame.file);
    const position =
      owner && frame.line !== null && frame.column !== null
        ? owner.originalPosition(frame.line, frame.column, "codepoint")
        : null;
    const where = position ? `${frame.file}:${position.line}:${position.column}` : frame.file;
    const label =
      frame.name === "" ? "" : `${frame.name === "<anonymous>" ? "<cell>" : frame.name} `;
    frames.push(`    at ${label}(${where})`);
  }
  return foldRepeatedFrames(frames);
}

/** Span of the innermost frame in the current cell, in the user's source, or null. */
export function firstUserSpan(stack: string, cell: CompiledCell): Span | null {
  for (const line of stackLines(stack)) {
    const frame = parseFrame(line);
    if (!frame || frame.file !== cell.filename || frame.line === null || frame.column === null)
      continue;
    const position = cell.originalPosition(frame.line, frame.column, "codepoint");
    if (position) return span(position.line, position.column);
  }
  return null;
}
