/**
 * JSON Schemas of what a snapshot declares about itself — its header and its payload's
 * manifest — checked on every restore, so a snapshot that verifies (or an unsigned one a
 * server was told to accept) but declares nonsense is refused as `SNAPSHOT_INVALID` before
 * anything acts on it.
 *
 * Source: ajv 8 (through ../json-schema.ts).
 * @module
 */
import type { ValidateFunction } from "ajv/dist/2020.js";
import { sessionLimitsSchema } from "../contract/schemas.ts";
import { LANGUAGES, RUN_STATUSES, SIDE_EFFECTS } from "../contract/types.ts";
import { SandboxError } from "../errors.ts";
import { compileSchema, describeSchemaErrors } from "../json-schema.ts";

const u32 = { type: "integer", minimum: 0, maximum: 4_294_967_295 } as const;
const limits = {
  type: "object",
  required: sessionLimitsSchema.required,
  properties: sessionLimitsSchema.properties,
} as const;
const language = { type: "string", enum: [...LANGUAGES] } as const;
const epochMs = { type: "integer", minimum: 0 } as const;
const digest = { type: "string", pattern: "^[0-9a-f]{64}$" } as const;

/** Schema of {@link SnapshotHeader} (./envelope.ts). */
export const snapshotHeaderSchema = {
  type: "object",
  required: [
    "format",
    "backend",
    "engine",
    "language",
    "session",
    "limits",
    "kinds",
    "created_at",
    "compression",
    "payload_bytes",
  ],
  properties: {
    format: u32,
    backend: { type: "string", maxLength: 200 },
    engine: { type: "string", maxLength: 500 },
    language,
    session: {
      type: "object",
      required: ["id", "created_at", "last_used_at", "language", "limits", "snapshot_version"],
      properties: {
        id: { type: "string", maxLength: 128 },
        created_at: epochMs,
        last_used_at: epochMs,
        language,
        limits,
        snapshot_version: u32,
      },
    },
    limits,
    kinds: {
      type: "array",
      minItems: 1,
      uniqueItems: true,
      items: { type: "string", enum: ["journal", "image"] },
    },
    created_at: epochMs,
    compression: { const: "zstd" },
    payload_bytes: u32,
  },
} as const;

const reply = {
  oneOf: [
    {
      type: "object",
      required: ["ok", "valueJson"],
      properties: { ok: { const: true }, valueJson: { type: "string" } },
    },
    {
      type: "object",
      required: ["ok", "status", "code", "message", "fatal"],
      properties: {
        ok: { const: false },
        status: { type: "string" },
        code: { type: "string" },
        message: { type: "string" },
        fatal: { type: "boolean" },
      },
    },
    { type: "null" },
  ],
} as const;

/** Schema of a journal (./journal.ts). */
export const journalSchema = {
  type: "object",
  required: ["runs"],
  properties: {
    runs: {
      type: "array",
      items: {
        type: "object",
        required: [
          "code",
          "language",
          "inputs",
          "limits",
          "seed",
          "clock",
          "calls",
          "status",
          "result_digest",
        ],
        properties: {
          code: { type: "string" },
          language,
          inputs: { type: "object" },
          limits,
          seed: { type: "array", minItems: 4, maxItems: 4, items: u32 },
          clock: { type: "array", items: { type: "number" } },
          calls: {
            type: "array",
            items: {
              type: "object",
              required: ["name", "request_digest", "reply"],
              properties: { name: { type: "string" }, request_digest: digest, reply },
            },
          },
          status: { type: "string", enum: [...RUN_STATUSES] },
          result_digest: { anyOf: [digest, { type: "null" }] },
        },
      },
    },
  },
} as const;

/** Schema of the payload's manifest (./payload.ts), blobs as `[offset, length]`. */
export const manifestSchema = {
  type: "object",
  required: ["session", "journal", "image", "workspace"],
  properties: {
    session: {
      type: "object",
      required: ["runtime", "allowed_side_effects"],
      properties: {
        runtime: { type: "string", maxLength: 200 },
        allowed_side_effects: {
          type: "array",
          uniqueItems: true,
          items: { type: "string", enum: [...SIDE_EFFECTS] },
        },
      },
    },
    journal: { anyOf: [journalSchema, { type: "null" }] },
    image: {
      anyOf: [
        {
          type: "object",
          required: ["blob"],
          properties: { blob: { type: "array", minItems: 2, maxItems: 2, items: u32 } },
        },
        { type: "null" },
      ],
    },
    workspace: {
      type: "array",
      items: {
        type: "object",
        required: ["path", "read_only", "modified_at", "blob"],
        properties: {
          path: { type: "string", maxLength: 4096 },
          read_only: { type: "boolean" },
          modified_at: epochMs,
          blob: { type: "array", minItems: 2, maxItems: 2, items: u32 },
        },
      },
    },
  },
} as const;

const compiled = new Map<object, ValidateFunction>();

/**
 * Checks `value` against one of this module's schemas.
 * @throws SandboxError `SNAPSHOT_INVALID` naming `what` and the first mismatches.
 */
export function assertSnapshotShape(schema: object, value: unknown, what: string): void {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = compileSchema(schema);
    compiled.set(schema, validate);
  }
  if (!validate(value)) {
    throw new SandboxError(
      "SNAPSHOT_INVALID",
      `The snapshot's ${what} is malformed: ${describeSchemaErrors(validate.errors)}.`,
    );
  }
}
