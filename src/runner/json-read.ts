/**
 * Small readers for decoded JSON that apply serde's rules field by field and throw one clear
 * `INVALID_REQUEST` naming the place (`RunnerDestination.default_manifest.mounts[0].path`).
 * Used by the runner modules' `parse*` functions; not part of the public surface.
 *
 * serde's rules mirrored: a missing `Option` field is `None` and `null` is `None`; a missing
 * `#[serde(default)]` field takes its default, but `null` there is refused unless the type is an
 * `Option` or a `serde_json::Value`; every other field is required and `null` is refused.
 *
 * @module
 */
import type { JsonValue } from "../contract/types.ts";
import { SandboxError } from "../errors.ts";

/** A decoded JSON object being read, with the path used in messages. */
export interface JsonFields {
  readonly path: string;
  readonly value: Readonly<Record<string, unknown>>;
}

/** `INVALID_REQUEST` with the path in front: `RunnerMount.path must be a string, not null.` */
export function invalid(path: string, message: string): SandboxError {
  return new SandboxError("INVALID_REQUEST", `${path} ${message}.`);
}

/** "null", "a number", "an array", ... for messages. */
export function describeJson(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return "a string";
  if (typeof value === "number") return Number.isInteger(value) ? "an integer" : "a number";
  return `a ${typeof value}`;
}

/**
 * Reads a JSON object. With `known` given, a field not in it is refused (the house rule for
 * request bodies); without, unknown fields are ignored as serde ignores them.
 * @throws SandboxError `INVALID_REQUEST` when `value` is not an object or has an unknown field.
 */
export function readObject(value: unknown, path: string, known?: readonly string[]): JsonFields {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(path, `must be an object, not ${describeJson(value)}`);
  }
  if (known) {
    for (const key of Object.keys(value)) {
      if (!known.includes(key)) throw invalid(path, `has an unknown field "${key}"`);
    }
  }
  return { path, value: value as Record<string, unknown> };
}

/** The raw value of a field, `undefined` when absent. */
export function fieldOf(fields: JsonFields, key: string): unknown {
  return Object.hasOwn(fields.value, key) ? fields.value[key] : undefined;
}

function expect(fields: JsonFields, key: string, what: string): unknown {
  const value = fieldOf(fields, key);
  if (value === undefined) throw invalid(`${fields.path}.${key}`, `is missing (${what})`);
  return value;
}

/** A required string field. */
export function requiredString(fields: JsonFields, key: string): string {
  const value = expect(fields, key, "a string");
  if (typeof value !== "string") {
    throw invalid(`${fields.path}.${key}`, `must be a string, not ${describeJson(value)}`);
  }
  return value;
}

/** An `Option<String>` field: absent or `null` is `null`. */
export function optionalString(fields: JsonFields, key: string): string | null {
  const value = fieldOf(fields, key);
  if (value === undefined || value === null) return null;
  if (typeof value !== "string") {
    throw invalid(`${fields.path}.${key}`, `must be a string or null, not ${describeJson(value)}`);
  }
  return value;
}

/** A `bool` field; `fallback` given means `#[serde(default)]` (absent → fallback). */
export function readBoolean(fields: JsonFields, key: string, fallback?: boolean): boolean {
  const value = fieldOf(fields, key);
  if (value === undefined && fallback !== undefined) return fallback;
  if (value === undefined) throw invalid(`${fields.path}.${key}`, "is missing (true or false)");
  if (typeof value !== "boolean") {
    throw invalid(`${fields.path}.${key}`, `must be true or false, not ${describeJson(value)}`);
  }
  return value;
}

/**
 * An integer in `[min, max]` (a Rust `u8`, `u16`, `i32`, `u32` or `u64` field). JSON `1.0` reads
 * as 1 here, where serde_json would refuse it as a float: JSON.parse keeps no difference.
 */
export function readInteger(value: unknown, path: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(path, `must be an integer from ${min} to ${max}, not ${describeJson(value)}`);
  }
  return value;
}

/** An array field; `optional` means `#[serde(default)]` (absent → `[]`, `null` refused). */
export function readArray(fields: JsonFields, key: string, optional: boolean): readonly unknown[] {
  const value = fieldOf(fields, key);
  if (value === undefined && optional) return [];
  if (value === undefined) throw invalid(`${fields.path}.${key}`, "is missing (an array)");
  if (!Array.isArray(value)) {
    throw invalid(`${fields.path}.${key}`, `must be an array, not ${describeJson(value)}`);
  }
  return value;
}

/**
 * A `serde_json::Value` field with `#[serde(default)]`: absent is `null`. The value is copied
 * deeply so the result shares nothing with the input.
 * @throws SandboxError `INVALID_REQUEST` when it holds something JSON cannot (a function, NaN, ...).
 */
export function readJsonValue(fields: JsonFields, key: string): JsonValue {
  const value = fieldOf(fields, key);
  return value === undefined ? null : copyJson(value, `${fields.path}.${key}`);
}

function copyJson(value: unknown, path: string): JsonValue {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw invalid(path, "must be a finite number");
    return value;
  }
  if (Array.isArray(value)) return value.map((item, index) => copyJson(item, `${path}[${index}]`));
  if (typeof value === "object") {
    const out: { [key: string]: JsonValue } = {};
    for (const [key, item] of Object.entries(value)) {
      // defineProperty, so a "__proto__" key stays a plain field as it is in JSON.
      Object.defineProperty(out, key, {
        value: copyJson(item, `${path}.${key}`),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  throw invalid(path, `must be JSON, not ${describeJson(value)}`);
}
