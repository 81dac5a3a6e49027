/**
 * The type-checker's worker thread (see ./typecheck.ts): receives `{id, request}`, answers
 * `{id, diagnostics}` or `{id, error}`. Library `.d.ts` files are parsed once and reused by
 * every program.
 *
 * Source: typescript (compiler API).
 * @module
 */
import { createRequire } from "node:module";
import { parentPort } from "node:worker_threads";
import type { Diagnostic } from "../contract/types.ts";
import { PRELUDE_DECLARATIONS, type TypecheckRequest } from "./typecheck.ts";

const ts = createRequire(import.meta.url)("typescript") as typeof import("typescript");

const options: import("typescript").CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleDetection: ts.ModuleDetectionKind.Force,
  lib: ["lib.es2023.d.ts"],
  strict: true,
  useUnknownInCatchVariables: false,
  noEmit: true,
  skipLibCheck: true,
  types: [],
};

const libraryFiles = new Map<string, import("typescript").SourceFile>();
const baseHost = ts.createCompilerHost(options);

function check(request: TypecheckRequest): Diagnostic[] {
  const globals = Object.entries(request.globals)
    .map(([name, type]) => `declare var ${name}: ${type};`)
    .join("\n");
  const files = new Map<string, string>([
    ["/cell.ts", request.code],
    ["/tools.d.ts", request.stubs],
    ["/env.d.ts", `${PRELUDE_DECLARATIONS}\n${globals}\n`],
  ]);
  const host: import("typescript").CompilerHost = {
    ...baseHost,
    fileExists: (name) => files.has(name) || baseHost.fileExists(name),
    readFile: (name) => files.get(name) ?? baseHost.readFile(name),
    getSourceFile(name, languageVersion) {
      const text = files.get(name);
      if (text !== undefined) return ts.createSourceFile(name, text, languageVersion, true);
      let library = libraryFiles.get(name);
      if (!library) {
        library = baseHost.getSourceFile(name, languageVersion);
        if (library) libraryFiles.set(name, library);
      }
      return library;
    },
    writeFile: () => {},
  };
  const program = ts.createProgram(["/cell.ts", "/tools.d.ts", "/env.d.ts"], options, host);
  const cell = program.getSourceFile("/cell.ts")!;
  const found = [...program.getSyntacticDiagnostics(cell), ...program.getSemanticDiagnostics(cell)];
  return found.slice(0, 50).map((diagnostic) => toDiagnostic(diagnostic, cell, request.code));
}

function toDiagnostic(
  diagnostic: import("typescript").Diagnostic,
  file: import("typescript").SourceFile,
  code: string,
): Diagnostic {
  const message = `TS${diagnostic.code}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, " ")}`;
  if (diagnostic.start === undefined) {
    return { severity: "error", code: "TYPE_ERROR", message, hint: null, span: null };
  }
  const start = file.getLineAndCharacterOfPosition(diagnostic.start);
  const end = file.getLineAndCharacterOfPosition(
    diagnostic.start + Math.max(1, diagnostic.length ?? 1),
  );
  const lines = code.split("\n");
  // Spans count code points; TypeScript counts UTF-16 units.
  const column = (line: number, character: number) =>
    [...(lines[line] ?? "").slice(0, character)].length + 1;
  return {
    severity: "error",
    code: "TYPE_ERROR",
    message,
    hint: null,
    span: {
      line: start.line + 1,
      column: column(start.line, start.character),
      end_line: end.line + 1,
      end_column: Math.max(1, column(end.line, end.character) - 1),
    },
  };
}

parentPort!.on("message", (message: { id: number; request: TypecheckRequest }) => {
  try {
    parentPort!.postMessage({ id: message.id, diagnostics: check(message.request) });
  } catch (error) {
    parentPort!.postMessage({
      id: message.id,
      error: error instanceof Error ? error.message : String(error),
    });
  }
});
