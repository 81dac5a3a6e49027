/**
 * The ajv instance used for capability schemas (tool arguments, kwargs and outputs).
 * Draft 2020-12 keywords, every error collected, `ajv-formats` formats; unknown keywords are
 * allowed because capability authors annotate schemas freely.
 *
 * Source: ajv 8 (`ajv/dist/2020`), ajv-formats 3.
 * @module
 */
import { Ajv2020, type ErrorObject as AjvError, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";

// ajv-formats is CommonJS; its default export arrives wrapped under ESM interop.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

let shared: Ajv2020 | undefined;

/** The shared ajv instance for capability schemas (created on first use). */
export function capabilityAjv(): Ajv2020 {
  if (!shared) {
    shared = new Ajv2020({ allErrors: true, strict: false, validateFormats: true });
    addFormats(shared);
  }
  return shared;
}

/**
 * Compiles a JSON Schema.
 * @throws Error with ajv's message when the schema is invalid.
 */
export function compileSchema(schema: unknown): ValidateFunction {
  if (typeof schema !== "boolean" && (typeof schema !== "object" || schema === null)) {
    throw new Error("a JSON Schema must be an object or a boolean");
  }
  return capabilityAjv().compile(schema as object);
}

/** One readable line for ajv errors, e.g. `/0 must be string; must NOT have more than 2 items`. */
export function describeSchemaErrors(errors: readonly AjvError[] | null | undefined): string {
  if (!errors || errors.length === 0) return "does not match the schema";
  return errors
    .slice(0, 5)
    .map((error) => {
      const extra = (error.params as { additionalProperty?: string }).additionalProperty;
      return `${error.instancePath || "(root)"} ${error.message ?? "is invalid"}${extra ? ` ('${extra}')` : ""}`;
    })
    .join("; ");
}
