/**
 * `digest_json` of seed 004, byte for byte: SHA3-256 (lowercase hex) of serde_json's compact
 * serialization of a `serde_json::Value`.
 *
 * What serde_json does, and this module matches:
 * - Object keys are written in `BTreeMap<String, _>` order: by UTF-8 bytes, which is code point
 *   order. (JavaScript's default sort compares UTF-16 units and differs for keys mixing
 *   U+E000–U+FFFF with astral characters.) A repeated key keeps its last value.
 * - Strings escape `"` `\` and U+0000–U+001F only (`\b \t \n \f \r`, else `\u00xx`), like
 *   `JSON.stringify`; everything else is raw UTF-8.
 * - A number parsed from an integer literal that fits `u64` (or `i64` when negative) is written
 *   as that integer. Every other number is an `f64` written by ryu: shortest round-trip
 *   digits, plain notation while the decimal exponent is in [-5, 16) — integral floats get
 *   `.0` (`1.0`, `1e15` → `1000000000000000.0`) — scientific otherwise (`1e16`, `1.5e-7`).
 *   `-0` read as a literal is `-0.0`.
 *
 * Two entry points: {@link digestJson} takes a JavaScript value and reads it as the text
 * `JSON.stringify` would give (so integral numbers below 1e21 are integers, `-0` is `0`);
 * {@link digestJsonText} takes JSON text and keeps the integer/float distinction of its
 * literals (a Python guest's `1.0` stays a float). Both give the seed's digest for the
 * document the seed would have parsed.
 *
 * serde_json's default float parser is not always correctly rounded; we reproduce its
 * arithmetic (see `parseSerdeNumber`), so even those digests match.
 * test/fixtures/serde-digest-vectors.jsonl holds ~1,000 reference values from the real crate.
 *
 * Source: seed 004 `digest_json`, `digest_bytes`; hashing is `node:crypto`'s `sha3-256`.
 * @module
 */
import { createHash } from "node:crypto";
import type { JsonValue } from "./contract/types.ts";

const U64_MAX = 18_446_744_073_709_551_615n;
const I64_MIN = -9_223_372_036_854_775_808n;

/** SHA3-256 of `bytes` as lowercase hex (seed: `digest_bytes`). */
export function digestBytes(bytes: Uint8Array | string): string {
  return createHash("sha3-256").update(bytes).digest("hex");
}

/**
 * `digest_json` of a JavaScript value (seed: `digest_json`), read as `JSON.stringify` would
 * write it: `undefined`, functions and symbols in objects are dropped, in arrays become
 * `null`; non-finite numbers are `null`; `toJSON` is honoured.
 * @throws TypeError for a BigInt or a cyclic value, as `JSON.stringify` does.
 */
export function digestJson(value: unknown): string {
  return digestBytes(canonicalJson(value));
}

/**
 * `digest_json` of the value serde_json would parse from `text`.
 * @throws SyntaxError when `text` is not JSON.
 */
export function digestJsonText(text: string): string {
  return digestBytes(canonicalJsonText(text));
}

/** serde_json's compact serialization of a JavaScript value (see the module comment). */
export function canonicalJson(value: unknown): string {
  // JSON.stringify applies toJSON, drops what JSON cannot hold and rejects cycles/BigInt;
  // re-reading its output gives a plain tree we can write in the seed's order.
  const text = JSON.stringify(value);
  if (text === undefined) return "null";
  return canonicalJsonText(text);
}

/**
 * serde_json's compact serialization of the document `text`, keeping how each number
 * literal was written.
 * @throws SyntaxError when `text` is not JSON.
 */
export function canonicalJsonText(text: string): string {
  // JSON.parse validates the document; the reviver's `context.source` (ES2025, Node 21+)
  // gives each number's literal text, which decides integer versus float as in serde_json.
  const tree = JSON.parse(text, numberLiteralReviver) as Tree;
  return writeTree(tree);
}

/** A parsed number that remembers its literal. */
class NumberLiteral {
  readonly literal: string;
  constructor(literal: string) {
    this.literal = literal;
  }
}

type Tree = null | boolean | string | NumberLiteral | Tree[] | { [key: string]: Tree };

function numberLiteralReviver(
  this: unknown,
  _key: string,
  value: unknown,
  context?: { source?: string },
): unknown {
  if (typeof value === "number") return new NumberLiteral(context?.source ?? String(value));
  return value;
}

function writeTree(node: Tree): string {
  if (node === null) return "null";
  switch (typeof node) {
    case "boolean":
      return node ? "true" : "false";
    case "string":
      return JSON.stringify(node);
    default:
      break;
  }
  if (node instanceof NumberLiteral) return writeNumberLiteral(node.literal);
  if (Array.isArray(node)) return `[${node.map(writeTree).join(",")}]`;
  const keys = Object.keys(node).sort(compareCodePoints);
  const parts = keys.map((key) => `${JSON.stringify(key)}:${writeTree(node[key] as Tree)}`);
  return `{${parts.join(",")}}`;
}

/** Orders strings by Unicode code point, as Rust's `String` ordering (UTF-8 bytes) does. */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codeUnitRank(x) - codeUnitRank(y);
  }
  return a.length - b.length;
}

// Surrogates (U+D800–U+DFFF) start astral code points, which sort after U+E000–U+FFFF;
// shifting the two ranges makes UTF-16 unit order agree with code point order.
function codeUnitRank(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000;
  if (unit >= 0xe000) return unit - 0x800;
  return unit;
}

/** Writes a JSON number literal the way serde_json parses and re-serializes it. */
function writeNumberLiteral(literal: string): string {
  const number = parseSerdeNumber(literal);
  if (typeof number === "bigint") return number.toString();
  if (!Number.isFinite(number)) throw new SyntaxError(`number out of range: ${literal}`);
  return formatF64(number);
}

// serde_json's f64 table: POW10[i] is the double nearest 10^i.
const POW10: readonly number[] = Array.from({ length: 309 }, (_, i) => Number(`1e${i}`));

/**
 * Parses a JSON number literal as serde_json does without its `float_roundtrip` feature
 * (`de.rs`: `parse_integer`, `parse_decimal`, `parse_exponent`, `f64_from_parts`):
 * integers that fit `u64`/`i64` stay integers (returned as bigint); everything else becomes
 * `significand as f64` multiplied or divided once by a power of ten. That is not always the
 * correctly rounded double (`198.18663597106934` reads as `198.18663597106936`), and the seed
 * digests what it read, so we compute the same double.
 */
function parseSerdeNumber(literal: string): bigint | number {
  const positive = !literal.startsWith("-");
  const body = positive ? literal : literal.slice(1);
  const match = /^(\d+)(?:\.(\d+))?(?:[eE]([+-]?)(\d+))?$/.exec(body);
  if (!match) throw new SyntaxError(`invalid number: ${literal}`);
  const [, intDigits = "", fracDigits, expSign, expDigits] = match;
  let significand = 0n;
  let exponent = 0;
  let overflowed = false;
  for (const digit of intDigits) {
    if (overflowed) exponent += 1;
    else if (significand * 10n + BigInt(digit) > U64_MAX) {
      overflowed = true;
      exponent += 1;
    } else significand = significand * 10n + BigInt(digit);
  }
  if (fracDigits === undefined && expDigits === undefined && !overflowed) {
    if (positive) return significand;
    if (significand === 0n) return -0;
    if (significand <= -I64_MIN) return -significand;
    return -Number(significand);
  }
  // serde_json keeps appending fraction digits while they fit in u64 (even after the
  // integer part overflowed) and ignores the rest from the first one that does not.
  for (const digit of fracDigits ?? "") {
    if (significand * 10n + BigInt(digit) > U64_MAX) break;
    significand = significand * 10n + BigInt(digit);
    exponent -= 1;
  }
  if (expDigits !== undefined) {
    const exp = Number(expDigits);
    if (exp > 2_147_483_647) {
      if (significand !== 0n && expSign !== "-") return Number.POSITIVE_INFINITY;
      return positive ? 0 : -0;
    }
    exponent = expSign === "-" ? exponent - exp : exponent + exp;
  }
  let value = Number(significand);
  for (;;) {
    const pow = POW10[Math.abs(exponent)];
    if (pow !== undefined) {
      value = exponent >= 0 ? value * pow : value / pow;
      break;
    }
    if (value === 0) break;
    if (exponent >= 0) return Number.POSITIVE_INFINITY;
    value /= 1e308;
    exponent += 308;
  }
  return positive ? value : -value;
}

/**
 * Formats a finite double as ryu's `format64` does (what serde_json writes for an `f64`).
 * The digits are the shortest that round-trip, which `Number.prototype.toExponential()`
 * also yields; only the layout differs from JavaScript's.
 */
export function formatF64(value: number): string {
  if (value === 0) return Object.is(value, -0) ? "-0.0" : "0.0";
  const sign = value < 0 ? "-" : "";
  const [mantissa = "0", exponentText = "0"] = Math.abs(value).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const length = digits.length;
  // value = 0.DIGITS × 10^kk, i.e. 10^(kk-1) <= |value| < 10^kk
  const kk = Number(exponentText) + 1;
  const k = kk - length;
  let body: string;
  if (k >= 0 && kk <= 16) {
    body = `${digits}${"0".repeat(k)}.0`;
  } else if (kk > 0 && kk <= 16) {
    body = `${digits.slice(0, kk)}.${digits.slice(kk)}`;
  } else if (kk > -5 && kk <= 0) {
    body = `0.${"0".repeat(-kk)}${digits}`;
  } else if (length === 1) {
    body = `${digits}e${kk - 1}`;
  } else {
    body = `${digits[0]}.${digits.slice(1)}e${kk - 1}`;
  }
  return sign + body;
}

/** Whether `value` is a JSON value as {@link JsonValue} describes (plain, acyclic, finite). */
export function isJsonValue(value: unknown, seen: Set<object> = new Set()): value is JsonValue {
  if (value === null) return true;
  switch (typeof value) {
    case "boolean":
    case "string":
      return true;
    case "number":
      return Number.isFinite(value);
    case "object":
      break;
    default:
      return false;
  }
  if (seen.has(value)) return false;
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.every((item) => isJsonValue(item, seen));
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) return false;
    return Object.values(value).every((item) => isJsonValue(item, seen));
  } finally {
    seen.delete(value);
  }
}
