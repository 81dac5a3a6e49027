import vm from "node:vm";
import { describe, expect, it } from "vitest";
import { type CompiledCell, compileCell, type JsLanguage } from "../src/index.ts";

/** A REPL over a V8 context: each cell compiled, then evaluated as a global script. */
function repl() {
  const context = vm.createContext({});
  let n = 0;
  return async (code: string, language: JsLanguage = "javascript") => {
    const compiled = compileCell(code, language, `cell-${++n}.js`);
    if (!compiled.ok) return { error: compiled.error };
    const value = await (vm.runInContext(compiled.cell.script, context, {
      filename: compiled.cell.filename,
    }) as Promise<unknown>);
    return { value, cell: compiled.cell };
  };
}

const compileOk = (code: string, language: JsLanguage = "javascript"): CompiledCell => {
  const compiled = compileCell(code, language, "cell.js");
  if (!compiled.ok) throw new Error(compiled.error.message);
  return compiled.cell;
};

describe("compileCell", () => {
  it("keeps top-level declarations as globals and lets later cells redeclare them", async () => {
    const run = repl();
    await run(
      "let a = 1; const { b, c: [d] } = { b: 2, c: [3] }; var e = 4; function f() { return a + b + d + e } class K {}",
    );
    expect((await run("f() + (new K() instanceof K ? 10 : 0)")).value).toBe(20);
    expect((await run("let a = 100; const b = 200; a + b")).value).toBe(300);
    expect((await run("f()")).value).toBe(307);
  });

  it("answers the last expression statement only", async () => {
    const run = repl();
    expect((await run("1; 2; 3")).value).toBe(3);
    expect((await run("let x = 5")).value).toBeUndefined();
    expect((await run("(1, 2)")).value).toBe(2);
    expect((await run("x // a trailing comment")).value).toBe(5);
    expect((await run("if (true) { 7 }")).value).toBeUndefined();
    expect(compileOk("").hasResult).toBe(false);
    expect(compileOk("// only a comment").hasResult).toBe(false);
  });

  it("keeps var declared in blocks and loops global, as a script would", async () => {
    const run = repl();
    await run(
      "if (true) { var inBlock = 1 } for (var i = 0; i < 3; i++) {} for (var key in { k: 1 }) {} try { var inTry = 2 } finally {}",
    );
    expect((await run("[inBlock, i, key, inTry]")).value).toEqual([1, 3, "k", 2]);
    expect((await run("if (1) var single = 9; single")).value).toBe(9);
  });

  it("does not let an edit join two statements", async () => {
    const run = repl();
    expect((await run("class Q {}\n(1)")).value).toBe(1);
    expect((await run("let t = 1\n;[t, 2]")).value).toEqual([1, 2]);
    expect((await run("const g = () => 3\ng()")).value).toBe(3);
  });

  it("runs top-level await and hoists functions within the cell", async () => {
    const run = repl();
    expect(
      (
        await run(
          "function early() { return 7 }\nconst v = await Promise.resolve(6); later() * v * early()\nfunction later() { return 1 }",
        )
      ).value,
    ).toBeUndefined();
    expect((await run("const w = await Promise.resolve(6); later() * w * early()")).value).toBe(42);
  });

  it("keeps 'use strict' meaningful", async () => {
    const run = repl();
    expect((await run('"use strict"; function who() { return this } who()')).value).toBeUndefined();
  });

  it("reports syntax errors with spans counted in code points", () => {
    const compiled = compileCell("let s = '😀';\nlet y = ;", "javascript", "c.js");
    expect(compiled).toMatchObject({
      ok: false,
      error: { code: "SYNTAX_ERROR", span: { line: 2, column: 9 } },
    });
    const typescript = compileCell("const s: string = '😀'; let y: = 2", "typescript", "c.js");
    expect(typescript).toMatchObject({
      ok: false,
      error: { code: "SYNTAX_ERROR", span: { line: 1, column: 31 } },
    });
  });

  it("strips TypeScript, transforming enums and namespaces when needed", async () => {
    const run = repl();
    expect(
      (
        await run(
          "type N = number;\nconst n: N = 2;\nfunction twice<T extends number>(v: T): number { return v * 2 }\ntwice(n) as number",
          "typescript",
        )
      ).value,
    ).toBe(4);
    expect(
      (
        await run(
          "enum E { A = 1, B }\nnamespace S { export const k = 3 }\nE.B + S.k",
          "typescript",
        )
      ).value,
    ).toBe(5);
  });

  it("maps engine positions back to the user's source", () => {
    const cell = compileOk("const a = 1;\nconst b = a.missing.deeper;");
    // Find where `.deeper` landed in the script, then map it back.
    const lines = cell.script.split("\n");
    const line = lines.findIndex((text) => text.includes(".deeper")) + 1;
    const column = lines[line - 1]!.indexOf(".deeper") + 1;
    expect(cell.originalPosition(line, column)).toEqual({ line: 2, column: 20 });
    const astral = compileOk("const s = '😀'; s.x.y");
    const scriptLine = astral.script.split("\n")[0]!;
    const utf16 = scriptLine.indexOf(".y") + 1;
    const codepoints = [...scriptLine.slice(0, utf16 - 1)].length + 1;
    // `.y` is the 19th character of the user's line (the emoji counts once).
    expect(astral.originalPosition(1, codepoints, "codepoint")).toEqual({ line: 1, column: 19 });
    expect(astral.originalPosition(1, utf16, "utf16")).toEqual({ line: 1, column: 19 });
  });

  it("never lets code close the wrapper early", async () => {
    const run = repl();
    const result = await run("'})(); globalThis.escaped = true; (() => {'");
    expect(result.value).toBe("})(); globalThis.escaped = true; (() => {");
    expect((await run("typeof escaped")).value).toBe("undefined");
    expect((await run("})(); (() => {")).error?.code).toBe("SYNTAX_ERROR");
    expect((await run("return 5")).error?.code).toBe("SYNTAX_ERROR");
  });
});
