import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  canonicalJson,
  canonicalJsonText,
  compareCodePoints,
  digestBytes,
  digestJson,
  digestJsonText,
  formatF64,
} from "../src/index.ts";

const lines = (path: string) =>
  readFileSync(new URL(path, import.meta.url), "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "");

describe("digestJson", () => {
  it("matches every reference digest the seed's own code produced", () => {
    const vectors = lines("../../shared/contract/digest-vectors.jsonl");
    expect(vectors.length).toBeGreaterThan(20);
    for (const line of vectors) {
      const { value, digest } = JSON.parse(line) as { value: unknown; digest: string };
      expect(digestJson(value), line).toBe(digest);
      // The same document read as text gives the same digest.
      const text = line.slice(line.indexOf(":") + 1, line.lastIndexOf(',"digest"'));
      expect(digestJsonText(text), line).toBe(digest);
    }
  });

  it("matches serde_json 1.0.87 on ~1,000 numbers, keys and strings (test/fixtures/serde-oracle)", () => {
    let compared = 0;
    for (const line of lines("fixtures/serde-digest-vectors.jsonl")) {
      const entry = JSON.parse(line) as { input: string; canonical?: string; digest?: string };
      if (entry.canonical === undefined) continue; // serde_json itself refused the document
      expect(canonicalJsonText(entry.input), entry.input).toBe(entry.canonical);
      expect(digestJsonText(entry.input), entry.input).toBe(entry.digest);
      compared++;
    }
    expect(compared).toBeGreaterThan(900);
  });

  it("writes numbers as serde_json does", () => {
    expect(
      canonicalJsonText("[1.0, 1e2, -0, 0.000001, 0.00001, 1e15, 1e16, 18446744073709551616]"),
    ).toBe("[1.0,100.0,-0.0,1e-6,0.00001,1000000000000000.0,1e16,1.8446744073709552e19]");
    // JavaScript values are read as JSON.stringify writes them: integral numbers are integers.
    expect(canonicalJson([1, -0, 1.5, 2 ** 64, 1e21])).toBe("[1,0,1.5,1.8446744073709552e19,1e21]");
    expect(formatF64(123.456)).toBe("123.456");
    expect(formatF64(-2.5e-7)).toBe("-2.5e-7");
  });

  it("reproduces serde_json's not-correctly-rounded float reading", () => {
    // serde_json (without float_roundtrip) reads 198.18663597106934 as the next double up.
    expect(canonicalJsonText("198.18663597106934")).toBe("198.18663597106936");
  });

  it("orders keys by code point, as Rust's BTreeMap<String, _> does", () => {
    expect(canonicalJson({ "😀": 1, "\uffff": 2, é: 3, a: 4, B: 5 })).toBe(
      '{"B":5,"a":4,"é":3,"￿":2,"😀":1}',
    );
    expect(["😀", "\uffff"].sort(compareCodePoints)).toEqual(["\uffff", "😀"]);
    // JavaScript's default sort (UTF-16 units) would put the astral key first.
    expect(["😀", "\uffff"].sort()).toEqual(["😀", "\uffff"]);
  });

  it("escapes strings as serde_json does", () => {
    expect(canonicalJson('\u0000\u001f\b\t\n\f\r\u007f"\\/é')).toBe(
      '"\\u0000\\u001f\\b\\t\\n\\f\\r\u007f\\"\\\\/é"',
    );
  });

  it("does not depend on key order or whitespace", () => {
    expect(digestJson({ name: "kv_set", args: ["k", 1], kwargs: {} })).toBe(
      digestJsonText('{ "kwargs": {}, "args": [ "k", 1 ], "name": "kv_set" }'),
    );
  });

  it("refuses what is not JSON", () => {
    expect(() => digestJsonText("{")).toThrow(SyntaxError);
    expect(() => digestJsonText("1e400")).toThrow(/out of range/);
    expect(() => digestJson(10n)).toThrow(TypeError);
  });

  it("hashes bytes with SHA3-256", () => {
    expect(digestBytes("")).toBe(
      "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a",
    );
  });
});
