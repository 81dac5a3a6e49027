/**
 * Merging requested limits under the server's ceilings.
 *
 * @module
 */
import { SESSION_LIMIT_NAMES, type SessionLimits } from "../contract/types.ts";
import { SandboxError } from "../errors.ts";

/**
 * Limits for a session or a run: `requested` fields over `base`, then `timeoutMs` (the
 * RunRequest's `timeout_ms`) over `wall_ms`.
 * @throws SandboxError `LIMIT_EXCEEDS_CEILING` naming the first limit above its ceiling.
 */
export function mergeLimits(
  base: SessionLimits,
  requested: Partial<SessionLimits> | null | undefined,
  ceilings: SessionLimits,
  timeoutMs?: number | null,
): SessionLimits {
  const merged: SessionLimits = { ...base };
  for (const name of SESSION_LIMIT_NAMES) {
    const value = requested?.[name];
    if (value === undefined || value === null) continue;
    if (value > ceilings[name]) {
      throw new SandboxError(
        "LIMIT_EXCEEDS_CEILING",
        `${name} ${value} is above this server's ceiling of ${ceilings[name]}.`,
        { hint: `Ask for ${name} <= ${ceilings[name]}.` },
      );
    }
    merged[name] = value;
  }
  if (timeoutMs !== undefined && timeoutMs !== null) {
    if (timeoutMs > ceilings.wall_ms) {
      throw new SandboxError(
        "LIMIT_EXCEEDS_CEILING",
        `timeout_ms ${timeoutMs} is above this server's wall_ms ceiling of ${ceilings.wall_ms}.`,
        { hint: `Ask for timeout_ms <= ${ceilings.wall_ms}.` },
      );
    }
    merged.wall_ms = timeoutMs;
  }
  return merged;
}

/**
 * Checks that `defaults` are within `ceilings` (server start-up).
 * @throws SandboxError `LIMIT_EXCEEDS_CEILING`.
 */
export function assertWithinCeilings(defaults: SessionLimits, ceilings: SessionLimits): void {
  mergeLimits(defaults, defaults, ceilings);
}
