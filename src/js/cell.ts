/**
 * Compiles a JavaScript or TypeScript cell into a script any JavaScript engine can evaluate
 * with REPL semantics. Shared by the JavaScript backends.
 *
 * What the user writes, and what it means:
 * - TypeScript types are stripped first (amaro, the swc build Node itself uses, in
 *   "strip-only" mode, which keeps every position; enums, namespaces and parameter
 *   properties need "transform" mode, whose source map we follow back).
 * - Top-level `let`, `const`, `var`, `class` and `function` declarations, and `var`s anywhere
 *   outside functions, become globals of the session: later cells see them, and running a
 *   cell again may redeclare them (as in a notebook). `const` is not read-only across cells.
 * - The value of the last statement, when it is an expression statement, is the result.
 * - `await` works at the top level: the cell runs inside an async function.
 *
 * The script evaluates, as a global script, to a promise of the result. Positions in it map
 * back to the user's source with {@link CompiledCell.originalPosition}.
 *
 * Source: acorn (parser), magic-string (edits and source map), @jridgewell/trace-mapping
 * (reading maps), amaro (TypeScript stripping).
 * @module
 */

import { createRequire } from "node:module";
import { originalPositionFor, TraceMap } from "@jridgewell/trace-mapping";
import { type Node, parse } from "acorn";
import amaro from "amaro";
import MagicString from "magic-string";
import type { ErrorObject, Span } from "../contract/types.ts";
import { errorObject } from "../errors.ts";

/** The languages this compiler reads. */
export type JsLanguage = "javascript" | "typescript";

/** A compiled cell. */
export interface CompiledCell {
  /** Script to evaluate in the global scope; its completion value is a promise of the result. */
  readonly script: string;
  /** File name to give the engine, e.g. `cell-3.js`; stack frames carry it. */
  readonly filename: string;
  /** Whether the last statement is an expression statement (else the result is `null`). */
  readonly hasResult: boolean;
  /** Names the cell declares at its top level (they become globals of the session). */
  readonly globals: readonly string[];
  /**
   * Maps a 1-based line and column of {@link script} to the user's source, or `null` when
   * the position is in code the compiler added. `unit` says how the given column counts
   * (engines differ: V8 counts UTF-16 units, QuickJS code points); the answer always counts
   * code points, as every {@link Span} does.
   */
  originalPosition(
    line: number,
    column: number,
    unit?: ColumnUnit,
  ): { line: number; column: number } | null;
}

/** How a column number counts characters. */
export type ColumnUnit = "utf16" | "codepoint";

/** The outcome of {@link compileCell}: a cell, or a `SYNTAX_ERROR` with a span. */
export type CellCompileResult =
  | { ok: true; cell: CompiledCell }
  | { ok: false; error: ErrorObject };

// biome-ignore lint/suspicious/noExplicitAny: ESTree nodes are read by their `type` tag; acorn's unions would need a cast at every access.
type AnyNode = Node & Record<string, any>;

/**
 * Compiles one cell. Never throws for bad user code: syntax errors come back as
 * `{ok: false, error}` with code `SYNTAX_ERROR` and a span in the user's source.
 */
export function compileCell(
  code: string,
  language: JsLanguage,
  filename: string,
): CellCompileResult {
  let javascript = code;
  let typescriptMap: TraceMap | null = null;
  if (language === "typescript") {
    const stripped = stripTypes(code, filename);
    if (!stripped.ok) return stripped;
    javascript = stripped.code;
    typescriptMap = stripped.map;
  }
  // (line, 0-based UTF-16 column) in `javascript` → (line, 1-based code point column) in `code`.
  const userText = new LineIndex(code);
  const toUser = (line: number, column0: number): { line: number; column: number } | null => {
    if (!typescriptMap) return { line, column: userText.codePointColumn(line, column0) };
    const original = originalPositionFor(typescriptMap, { line, column: column0 });
    if (original.line === null || original.column === null) return null;
    return {
      line: original.line,
      column: userText.codePointColumn(original.line, original.column),
    };
  };

  let program: AnyNode;
  try {
    program = parse(javascript, {
      ecmaVersion: "latest",
      sourceType: "script",
      allowAwaitOutsideFunction: true,
      allowHashBang: true,
    }) as AnyNode;
  } catch (error) {
    const failure = error as SyntaxError & { loc?: { line: number; column: number } };
    const message = failure.message.replace(/ \(\d+:\d+\)$/, "");
    const at = failure.loc ? toUser(failure.loc.line, failure.loc.column) : null;
    return {
      ok: false,
      error: errorObject("SYNTAX_ERROR", `SyntaxError: ${message}`, {
        span: at ? span(at.line, at.column) : null,
      }),
    };
  }

  const edits = new MagicString(javascript);
  // TypeScript's transform mode appends `var S;` after a namespace: not the user's last statement.
  const transformed = transformProgram(program, javascript, edits, typescriptMap !== null);
  const script = edits.toString();
  let scriptMap: TraceMap | null = null;
  let scriptText: LineIndex | null = null;
  return {
    ok: true,
    cell: {
      script,
      filename,
      hasResult: transformed.hasResult,
      globals: transformed.globals,
      originalPosition(line, column, unit = "utf16") {
        scriptMap ??= new TraceMap(edits.generateMap({ hires: true, source: filename }).toString());
        let column0 = Math.max(0, column - 1);
        if (unit === "codepoint") {
          scriptText ??= new LineIndex(script);
          column0 = scriptText.utf16Column(line, column0);
        }
        const inJavascript = originalPositionFor(scriptMap, { line, column: column0 });
        if (inJavascript.line === null || inJavascript.column === null) return null;
        return toUser(inJavascript.line, inJavascript.column);
      },
    },
  };
}

/**
 * Joins stack frame lines (`    at f (cell-1.js:2:3)`), folding a run of one frame repeated
 * more than twice (deep recursion) into the frame and a line `    ... the frame above N more
 * times`. Shared by the JavaScript backends' stack rendering.
 */
export function foldRepeatedFrames(frames: readonly string[]): string {
  const folded: string[] = [];
  for (let i = 0; i < frames.length; ) {
    let j = i + 1;
    while (j < frames.length && frames[j] === frames[i]) j++;
    folded.push(frames[i]!);
    if (j - i > 2) folded.push(`    ... the frame above ${j - i - 1} more times`);
    else if (j - i === 2) folded.push(frames[i]!);
    i = j;
  }
  return folded.join("\n");
}

/** A span at one position (end unknown). */
export function span(line: number, column: number, endLine?: number, endColumn?: number): Span {
  return { line, column, end_line: endLine ?? null, end_column: endColumn ?? null };
}

type StripResult =
  | { ok: true; code: string; map: TraceMap | null }
  | { ok: false; error: ErrorObject };

interface AmaroError {
  code?: string;
  message: string;
  startLine?: number;
  startColumn?: number;
  endLine?: number;
  endColumn?: number;
}

function stripTypes(code: string, filename: string): StripResult {
  const text = new LineIndex(code);
  try {
    return { ok: true, code: amaro.transformSync(code, { mode: "strip-only" }).code, map: null };
  } catch (error) {
    const failure = error as AmaroError;
    if (failure.code !== "UnsupportedSyntax") {
      return { ok: false, error: locateWithTypeScript(code, text) ?? amaroError(failure, text) };
    }
  }
  // Enums, namespaces and parameter properties generate code: follow the map back.
  try {
    const output = amaro.transformSync(code, {
      mode: "transform",
      sourceMap: true,
      filename: filename.replace(/\.js$/, ".ts"),
    });
    return { ok: true, code: output.code, map: output.map ? new TraceMap(output.map) : null };
  } catch (error) {
    return { ok: false, error: amaroError(error as AmaroError, text) };
  }
}

// amaro's line numbers are right but its columns count non-ASCII characters inconsistently,
// so its column is used only when the TypeScript parser (below) finds nothing.
function amaroError(failure: AmaroError, text: LineIndex): ErrorObject {
  const line = failure.startLine;
  const where =
    line === undefined ? null : span(line, text.codePointColumn(line, failure.startColumn ?? 0));
  const code = failure.code === "UnsupportedSyntax" ? "UNSUPPORTED_SYNTAX" : "SYNTAX_ERROR";
  return errorObject(code, `SyntaxError: ${failure.message}`, { span: where });
}

const requireFromHere = createRequire(import.meta.url);
let typescript: typeof import("typescript") | undefined;

/**
 * Finds the first syntax error of TypeScript source with the TypeScript compiler's parser,
 * which reports exact offsets. Loaded on first use (about 200 ms), on this error path only.
 */
function locateWithTypeScript(code: string, text: LineIndex): ErrorObject | null {
  typescript ??= requireFromHere("typescript") as typeof import("typescript");
  const ts = typescript;
  const file = ts.createSourceFile("cell.ts", code, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const diagnostics = (file as unknown as { parseDiagnostics?: import("typescript").Diagnostic[] })
    .parseDiagnostics;
  const first = diagnostics?.[0];
  if (!first || first.start === undefined) return null;
  const start = file.getLineAndCharacterOfPosition(first.start);
  // Spans end inclusively: the column of the last character, found from the exclusive end.
  const end = file.getLineAndCharacterOfPosition(first.start + Math.max(1, first.length ?? 1));
  const message = ts.flattenDiagnosticMessageText(first.messageText, " ");
  return errorObject("SYNTAX_ERROR", `SyntaxError: ${message}`, {
    span: span(
      start.line + 1,
      text.codePointColumn(start.line + 1, start.character),
      end.line + 1,
      Math.max(1, text.codePointColumn(end.line + 1, end.character) - 1),
    ),
  });
}

const WRAPPER_START = "(async () => {";

/**
 * Rewrites the program in place (see the module comment) and answers whether the last
 * statement yields the result.
 */
function transformProgram(
  program: AnyNode,
  source: string,
  edits: MagicString,
  skipTrailingBareVars: boolean,
): { hasResult: boolean; globals: string[] } {
  const globals = new Set<string>();
  const functionExports: string[] = [];
  const body = program.body as AnyNode[];

  if (source.startsWith("#!")) edits.overwrite(0, 2, "//");

  let lastDirective = -1;
  for (let i = 0; i < body.length; i++) {
    const statement = body[i]!;
    if (statement.type === "ExpressionStatement" && typeof statement.directive === "string") {
      if (i === lastDirective + 1) lastDirective = i;
    }
    switch (statement.type) {
      case "VariableDeclaration":
        rewriteDeclaration(statement, source, edits, globals, true);
        break;
      case "FunctionDeclaration":
        globals.add(statement.id.name);
        functionExports.push(`globalThis.${statement.id.name} = ${statement.id.name};`);
        break;
      case "ClassDeclaration":
        globals.add(statement.id.name);
        edits.prependRight(statement.start, `;${statement.id.name} = `);
        edits.appendLeft(statement.end, ";");
        break;
      default:
        hoistVars(statement, source, edits, globals, true);
    }
  }

  let lastIndex = body.length - 1;
  while (skipTrailingBareVars && lastIndex >= 0 && isBareVar(body[lastIndex]!)) lastIndex--;
  const last = body[lastIndex];
  const hasResult = last?.type === "ExpressionStatement";
  if (hasResult) {
    // Wrap the statement's own text: the expression node excludes enclosing parentheses.
    const end = source[last.end - 1] === ";" ? last.end - 1 : last.end;
    edits.prependRight(last.start, "return (");
    edits.appendLeft(end, ")");
  }

  // Function exports go after the directive prologue so "use strict" keeps its meaning.
  const exportsAt = lastDirective >= 0 ? body[lastDirective]!.end : 0;
  if (functionExports.length > 0) edits.appendLeft(exportsAt, functionExports.join(""));
  edits.prepend(WRAPPER_START);
  const hoisted = globals.size > 0 ? `var ${[...globals].join(", ")};` : "";
  edits.append(`\n})();${hoisted}`);
  return { hasResult, globals: [...globals] };
}

function isBareVar(statement: AnyNode): boolean {
  return (
    statement.type === "VariableDeclaration" &&
    statement.kind === "var" &&
    (statement.declarations as AnyNode[]).every((declarator) => declarator.init === null)
  );
}

/**
 * Turns `let a = 1, {b} = o;` into `;( a = 1, {b} = o);` (keeping every initializer's
 * position) and records the declared names as globals. `inList` says whether the statement
 * sits in a statement list, where a leading `;` guards against the previous line running on.
 */
function rewriteDeclaration(
  declaration: AnyNode,
  source: string,
  edits: MagicString,
  globals: Set<string>,
  inList: boolean,
): void {
  const declarators = declaration.declarations as AnyNode[];
  for (const declarator of declarators) collectPatternNames(declarator.id, globals);
  const keywordEnd = declaration.start + declaration.kind.length;
  edits.overwrite(declaration.start, keywordEnd, inList ? ";(" : "(");
  for (const declarator of declarators) {
    if (declarator.init === null && declaration.kind !== "var") {
      edits.appendLeft(declarator.id.end, " = void 0");
    }
  }
  const lastDeclarator = declarators.at(-1)!;
  edits.appendLeft(lastDeclarator.end, ")");
  if (source[declaration.end - 1] !== ";") edits.appendLeft(declaration.end, ";");
}

/** Rewrites `var` declarations inside `statement` that are not inside a nested function. */
function hoistVars(
  statement: AnyNode | null | undefined,
  source: string,
  edits: MagicString,
  globals: Set<string>,
  inList: boolean,
): void {
  if (!statement) return;
  const visit = (node: AnyNode | null | undefined, nodeInList: boolean) =>
    hoistVars(node, source, edits, globals, nodeInList);
  switch (statement.type) {
    case "VariableDeclaration":
      if (statement.kind === "var") rewriteDeclaration(statement, source, edits, globals, inList);
      return;
    case "BlockStatement":
      for (const child of statement.body) visit(child, true);
      return;
    case "IfStatement":
      visit(statement.consequent, false);
      visit(statement.alternate, false);
      return;
    case "ForStatement":
      if (statement.init?.type === "VariableDeclaration" && statement.init.kind === "var") {
        rewriteLoopHead(statement.init, edits, globals);
      }
      visit(statement.body, false);
      return;
    case "ForInStatement":
    case "ForOfStatement":
      if (statement.left.type === "VariableDeclaration" && statement.left.kind === "var") {
        rewriteLoopHead(statement.left, edits, globals);
      }
      visit(statement.body, false);
      return;
    case "WhileStatement":
    case "DoWhileStatement":
    case "LabeledStatement":
    case "WithStatement":
      visit(statement.body, false);
      return;
    case "TryStatement":
      visit(statement.block, false);
      visit(statement.handler?.body, false);
      visit(statement.finalizer, false);
      return;
    case "SwitchStatement":
      for (const switchCase of statement.cases) {
        for (const child of switchCase.consequent) visit(child, true);
      }
      return;
    default:
      return;
  }
}

/** `for (var i = 0, j; …)` → `for ( i = 0, j; …)`: the loop assigns the globals. */
function rewriteLoopHead(declaration: AnyNode, edits: MagicString, globals: Set<string>): void {
  for (const declarator of declaration.declarations as AnyNode[]) {
    collectPatternNames(declarator.id, globals);
  }
  edits.overwrite(declaration.start, declaration.start + 3, "");
}

function collectPatternNames(pattern: AnyNode | null, names: Set<string>): void {
  if (!pattern) return;
  switch (pattern.type) {
    case "Identifier":
      names.add(pattern.name);
      return;
    case "ObjectPattern":
      for (const property of pattern.properties) {
        collectPatternNames(
          property.type === "RestElement" ? property.argument : property.value,
          names,
        );
      }
      return;
    case "ArrayPattern":
      for (const element of pattern.elements) collectPatternNames(element, names);
      return;
    case "AssignmentPattern":
      collectPatternNames(pattern.left, names);
      return;
    case "RestElement":
      collectPatternNames(pattern.argument, names);
      return;
    default:
      return;
  }
}

/**
 * Line starts of a text, to convert a column between UTF-16 units (what JavaScript strings,
 * acorn and source maps count) and code points (what spans count, and QuickJS reports).
 */
class LineIndex {
  readonly #text: string;
  readonly #starts: number[] = [0];

  constructor(text: string) {
    this.#text = text;
    for (let i = 0; i < text.length; i++) {
      if (text.charCodeAt(i) === 10) this.#starts.push(i + 1);
    }
  }

  /** 1-based code point column of a 0-based UTF-16 column on a 1-based line. */
  codePointColumn(line: number, utf16Column0: number): number {
    const start = this.#starts[line - 1];
    if (start === undefined) return utf16Column0 + 1;
    let column = 1;
    for (let i = start; i < start + utf16Column0 && i < this.#text.length; i++) {
      const unit = this.#text.charCodeAt(i);
      if (unit >= 0xdc00 && unit <= 0xdfff && i > start) {
        const previous = this.#text.charCodeAt(i - 1);
        if (previous >= 0xd800 && previous <= 0xdbff) continue;
      }
      column += 1;
    }
    return column;
  }

  /** 0-based UTF-16 column of a 0-based code point column on a 1-based line. */
  utf16Column(line: number, codePointColumn0: number): number {
    const start = this.#starts[line - 1];
    if (start === undefined) return codePointColumn0;
    let i = start;
    for (let n = 0; n < codePointColumn0 && i < this.#text.length; n++) {
      const unit = this.#text.charCodeAt(i);
      i += unit >= 0xd800 && unit <= 0xdbff ? 2 : 1;
    }
    return i - start;
  }
}

/** Names a cell declares at its top level; empty when it does not compile. */
export function declaredGlobals(code: string, language: JsLanguage): string[] {
  const compiled = compileCell(code, language, "cell.js");
  return compiled.ok ? [...compiled.cell.globals] : [];
}
