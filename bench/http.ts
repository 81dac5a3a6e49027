/**
 * The HTTP part of the benchmark: `POST /v1/runs` of `1 + 1` on warm sessions, driven by
 * autocannon, one session per connection (a session runs one run at a time, so a shared
 * session would measure its queue, and past `maxQueuedRuns` answer 429).
 *
 * @module
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import autocannon, { type Result } from "autocannon";
import type { ServerConfig } from "../src/config.ts";

/** The server configuration the benchmark uses: a free port, quiet logs, room to spare. */
export function benchServerConfig(base: ServerConfig): ServerConfig {
  return {
    ...base,
    port: 0,
    logLevel: "warn",
    maxSessions: Math.max(base.maxSessions, 1_000),
    maxQueuedRuns: Math.max(base.maxQueuedRuns, 64),
    // The HTTP figures are QuickJS's: no Python pool or V8 children starting beside them.
    runtimes: base.runtimes.filter((entry) => entry.module.includes("quickjs")),
    hibernateAfterMs: null,
    dataDir: mkdtempSync(join(tmpdir(), "bench-data-")),
  };
}

/** The body of one run on session `sessionId`. */
export function runBody(sessionId: string): string {
  return JSON.stringify({ session_id: sessionId, language: "javascript", code: "1 + 1" });
}

export interface LoadOptions {
  connections: number;
  durationS: number;
  warmupS: number;
  /** Prefix of the session ids (one session per connection). */
  sessionPrefix: string;
  /** Called after the warm-up, right before the measured load. */
  beforeMeasure?: () => Promise<void>;
}

export interface LoadResult {
  result: Result;
  /** What the first run answered on the first session (to show the path works). */
  sample: unknown;
  /** CPU time of this process during the measured load (user + system), in seconds. */
  cpuS: number;
  /** Responses received during the measured load. */
  responses: number;
}

/** Creates the sessions by a first run each, warms up, then measures. */
export async function runLoad(baseUrl: string, options: LoadOptions): Promise<LoadResult> {
  const url = `${baseUrl}/v1/runs`;
  const headers = { "content-type": "application/json" };
  let sample: unknown = null;
  for (let k = 0; k < options.connections; k++) {
    const response = await fetch(url, {
      method: "POST",
      headers,
      body: runBody(`${options.sessionPrefix}-${k}`),
    });
    const body = await response.json();
    if (k === 0) sample = { http: response.status, status: body.status, result: body.result };
  }
  const load = (durationS: number) => {
    let next = 0;
    return autocannon({
      url,
      method: "POST",
      headers,
      body: runBody(`${options.sessionPrefix}-0`),
      connections: options.connections,
      pipelining: 1,
      duration: durationS,
      setupClient: (client) => {
        client.setBody(runBody(`${options.sessionPrefix}-${next++ % options.connections}`));
      },
    });
  };
  if (options.warmupS > 0) await load(options.warmupS);
  await options.beforeMeasure?.();
  const cpu = process.cpuUsage();
  const result = await load(options.durationS);
  const used = process.cpuUsage(cpu);
  const responses = Object.values(result.statusCodeStats ?? {}).reduce(
    (total, { count }) => total + Number(count),
    0,
  );
  return { result, sample, cpuS: (used.user + used.system) / 1e6, responses };
}
