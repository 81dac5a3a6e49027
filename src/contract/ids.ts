/**
 * Identifier rules of seed 004: session ids and tool (capability) names.
 *
 * @module
 */
import { SandboxError } from "../errors.ts";
import type { SessionId } from "./types.ts";

const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const PYTHON_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Pattern of session and run ids, for JSON Schemas. */
export const ID_PATTERN_SOURCE = "^[a-zA-Z0-9_\\-]{1,64}$";

/**
 * Whether `id` is a valid session id: 1–64 ASCII letters, digits, `_` or `-`
 * (seed: `is_valid_session_id`).
 */
export function isValidSessionId(id: unknown): id is SessionId {
  return typeof id === "string" && ID_PATTERN.test(id);
}

/**
 * Returns `id` when it is a valid session id (seed: `SessionId::new`).
 * @throws SandboxError `INVALID_SESSION_ID` otherwise.
 */
export function assertSessionId(id: unknown): SessionId {
  if (!isValidSessionId(id)) {
    throw new SandboxError("INVALID_SESSION_ID", "Session id must match ^[a-zA-Z0-9_\\-]{1,64}$.");
  }
  return id;
}

/**
 * Returns `id` when it is a valid run id (same rule as session ids).
 * @throws SandboxError `INVALID_RUN_ID` otherwise.
 */
export function assertRunId(id: unknown): string {
  if (!isValidSessionId(id)) {
    throw new SandboxError("INVALID_RUN_ID", "Run id must match ^[a-zA-Z0-9_\\-]{1,64}$.");
  }
  return id;
}

/**
 * Whether `name` is an ASCII Python identifier: a letter or `_`, then letters, digits or `_`
 * (seed: `is_python_identifier`). Tool names must be, so Python guests can call them.
 */
export function isPythonIdentifier(name: unknown): name is string {
  return typeof name === "string" && PYTHON_IDENTIFIER.test(name);
}
