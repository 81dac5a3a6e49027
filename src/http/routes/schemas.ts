/**
 * JSON schemas that several route modules share: the error responses every route may answer,
 * and the path parameters that name a session.
 *
 * @module
 */

/** Error responses (seed 002's envelope) most routes document. */
export const ENVELOPE_RESPONSES = {
  400: { $ref: "ErrorEnvelope#" },
  401: { $ref: "ErrorEnvelope#" },
  404: { $ref: "ErrorEnvelope#" },
  429: { $ref: "ErrorEnvelope#" },
} as const;

/** Path parameters `{session_id}`. */
export const sessionParams = {
  type: "object",
  required: ["session_id"],
  properties: { session_id: { type: "string", maxLength: 256 } },
} as const;
