import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultConfig, type ServerConfig } from "../../src/config.ts";
import { digestJson } from "../../src/index.ts";
import { createServer, type SandboxServer } from "../../src/server.ts";

const servers: SandboxServer[] = [];
async function serve(overrides: Partial<ServerConfig> = {}): Promise<FastifyInstance> {
  const server = await createServer({
    ...defaultConfig(),
    logLevel: "silent",
    defaultLanguage: "javascript",
    dataDir: mkdtempSync(join(tmpdir(), "sandbox-api-")),
    ...overrides,
  });
  servers.push(server);
  await server.app.ready();
  return server.app;
}
afterAll(async () => {
  for (const server of servers) await server.close();
});

let app: FastifyInstance;
beforeAll(async () => {
  app = await serve({ maxQueuedRuns: 1 });
});

const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
  app.inject({ method: "POST", url, payload: payload as object, headers });

describe("POST /v1/runs", () => {
  it("answers a RunResult with every seed field", async () => {
    const response = await post("/v1/runs", {
      session_id: "http-1",
      language: "javascript",
      code: "await kv_set('a', inputs_n * 2); console.log('hi'); await kv_get('a')",
      inputs: { inputs_n: 21 },
      timeout_ms: null,
      limits: null,
      return_snapshot: false,
      validate_only: false,
    });
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(Object.keys(body)).toEqual(
      expect.arrayContaining([
        "status",
        "result",
        "stdout",
        "stderr",
        "diagnostics",
        "external_calls",
        "snapshot_id",
        "metrics",
        "error",
      ]),
    );
    expect(body).toMatchObject({
      status: "ok",
      result: 42,
      stdout: "hi\n",
      error: null,
      snapshot_id: null,
    });
    expect(body.metrics).toMatchObject({ external_calls_count: 2, instructions: 0 });
    expect(body.external_calls[0]).toMatchObject({
      name: "kv_set",
      status: "ok",
      side_effect: "write",
      error: null,
    });
  });

  it("answers 200 whatever the run's status", async () => {
    for (const [code, status] of [
      ["null.x", "runtime_error"],
      ["let = ;", "validation_error"],
    ] as const) {
      const response = await post("/v1/runs", {
        session_id: "http-2",
        language: "javascript",
        code,
      });
      expect(response.statusCode).toBe(200);
      expect(response.json().status).toBe(status);
    }
  });

  it("answers a bad session id or a limit above its ceiling as validation_error", async () => {
    const badId = await post("/v1/runs", { session_id: "../etc", code: "1" });
    expect(badId.statusCode).toBe(200);
    expect(badId.json()).toMatchObject({
      status: "validation_error",
      error: { code: "INVALID_SESSION_ID" },
    });
    const tooBig = await post("/v1/runs", {
      session_id: "http-3",
      code: "1",
      limits: { cpu_ms: 999_999_999 },
    });
    expect(tooBig.json()).toMatchObject({
      status: "validation_error",
      error: { code: "LIMIT_EXCEEDS_CEILING" },
    });
    expect(tooBig.json().error.message).toContain("cpu_ms");
  });

  it("refuses malformed and mistyped bodies with the error envelope", async () => {
    const cases: [string, string, Record<string, string>, number, string][] = [
      ["malformed JSON", '{"code": ', { "content-type": "application/json" }, 400, "invalid_json"],
      ["not an object", "[1, 2]", { "content-type": "application/json" }, 400, "invalid_request"],
      [
        "missing code",
        '{"session_id": "x"}',
        { "content-type": "application/json" },
        400,
        "invalid_request",
      ],
      [
        "unknown field",
        '{"code": "1", "sesion_id": "x"}',
        { "content-type": "application/json" },
        400,
        "invalid_request",
      ],
      ["wrong type", '{"code": 5}', { "content-type": "application/json" }, 400, "invalid_request"],
      [
        "bad language",
        '{"code": "1", "language": "cobol"}',
        { "content-type": "application/json" },
        400,
        "invalid_request",
      ],
      [
        "negative limit",
        '{"code": "1", "limits": {"memory_mb": -1}}',
        { "content-type": "application/json" },
        400,
        "invalid_request",
      ],
      [
        "unknown limit",
        '{"code": "1", "limits": {"gpu": 1}}',
        { "content-type": "application/json" },
        400,
        "invalid_request",
      ],
      [
        "prototype pollution",
        '{"code": "1", "__proto__": {"x": 1}}',
        { "content-type": "application/json" },
        400,
        "invalid_json",
      ],
      ["text body", "1 + 1", { "content-type": "text/plain" }, 415, "unsupported_media_type"],
    ];
    for (const [label, payload, headers, status, code] of cases) {
      const response = await app.inject({ method: "POST", url: "/v1/runs", payload, headers });
      expect(response.statusCode, label).toBe(status);
      const body = response.json();
      expect(body, label).toEqual({ error: { code, message: expect.any(String) } });
      expect(JSON.stringify(body), label).not.toMatch(/\n\s+at /);
    }
    const unknown = await post("/v1/runs", { code: "1", sesion_id: "x" });
    expect(unknown.json().error.message).toContain("sesion_id");
  });

  it("refuses bodies over the limit with 413", async () => {
    const small = await serve({ bodyLimitBytes: 2_048 });
    const response = await small.inject({
      method: "POST",
      url: "/v1/runs",
      payload: { code: "x".repeat(10_000) },
    });
    expect(response.statusCode).toBe(413);
    expect(response.json().error.code).toBe("payload_too_large");
  });

  it("answers 429 session_busy past the queue bound", async () => {
    await post("/v1/runs", { session_id: "http-busy", code: "1" });
    const long = post("/v1/runs", {
      session_id: "http-busy",
      code: "await new Promise((r) => setTimeout(r, 400))",
    });
    const queued = post("/v1/runs", { session_id: "http-busy", code: "2" });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const busy = await post("/v1/runs", { session_id: "http-busy", code: "3" });
    expect(busy.statusCode).toBe(429);
    expect(busy.headers["retry-after"]).toBe("1");
    expect(busy.json().error.code).toBe("session_busy");
    expect((await long).json().status).toBe("ok");
    expect((await queued).json().result).toBe(2);
  });
});

describe("runs by id", () => {
  it("cancels a running run and serves its result", async () => {
    const pending = post("/v1/runs", {
      session_id: "http-cancel",
      code: "await new Promise(() => {})",
      run_id: "cancel-me",
    });
    await new Promise((resolve) => setTimeout(resolve, 150));
    const active = await app.inject({ method: "GET", url: "/v1/runs" });
    expect(active.json().runs.map((run: { run_id: string }) => run.run_id)).toContain("cancel-me");
    const cancel = await app.inject({ method: "POST", url: "/v1/runs/cancel-me/cancel" });
    expect(cancel.statusCode).toBe(200);
    expect(cancel.json()).toEqual({ run_id: "cancel-me", cancelled: true });
    expect((await pending).json()).toMatchObject({ status: "cancelled", run_id: "cancel-me" });
    const fetched = await app.inject({ method: "GET", url: "/v1/runs/cancel-me?wait_ms=1000" });
    expect(fetched.json()).toMatchObject({ state: "finished", result: { status: "cancelled" } });
  });

  it("answers 404 run_not_found for unknown runs", async () => {
    for (const request of [
      { method: "POST" as const, url: "/v1/runs/nope/cancel" },
      { method: "GET" as const, url: "/v1/runs/nope" },
    ]) {
      const response = await app.inject(request);
      expect(response.statusCode).toBe(404);
      expect(response.json().error.code).toBe("run_not_found");
    }
    expect((await app.inject({ method: "GET", url: "/v1/runs/x?wait_ms=soon" })).statusCode).toBe(
      400,
    );
  });
});

describe("sessions", () => {
  it("creates, lists, reads and destroys sessions", async () => {
    const created = await post("/v1/sessions", {
      session_id: "http-s1",
      language: "typescript",
      limits: { memory_mb: 32 },
    });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({
      id: "http-s1",
      language: "typescript",
      runtime: "quickjs",
      snapshot_version: 1,
      limits: { memory_mb: 32, cpu_ms: 2_000 },
      state: "idle",
    });
    const generated = await app.inject({ method: "POST", url: "/v1/sessions" });
    expect(generated.statusCode).toBe(201);
    expect(generated.json().id).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    expect(generated.json().language).toBe("javascript");
    const list = await app.inject({ method: "GET", url: "/v1/sessions" });
    expect(list.json().sessions.map((s: { id: string }) => s.id)).toEqual(
      expect.arrayContaining(["http-s1", generated.json().id]),
    );
    expect((await app.inject({ method: "GET", url: "/v1/sessions/http-s1" })).json().id).toBe(
      "http-s1",
    );
    const destroyed = await app.inject({ method: "DELETE", url: "/v1/sessions/http-s1" });
    expect(destroyed.json()).toEqual({ session_id: "http-s1", destroyed: true });
    const gone = await app.inject({ method: "GET", url: "/v1/sessions/http-s1" });
    expect(gone.statusCode).toBe(404);
    expect(gone.json().error.code).toBe("session_not_found");
  });

  it("refuses duplicates, bad ids, bad limits and unknown runtimes", async () => {
    await post("/v1/sessions", { session_id: "http-dup" });
    const cases: [unknown, number, string][] = [
      [{ session_id: "http-dup" }, 409, "session_exists"],
      [{ session_id: "no spaces" }, 400, "invalid_session_id"],
      [{ limits: { memory_mb: 100_000 } }, 400, "limit_exceeds_ceiling"],
      [{ runtime: "gvisor" }, 400, "unknown_runtime"],
      [{ language: "python", runtime: "quickjs" }, 400, "unknown_runtime"],
      [{ colour: "red" }, 400, "invalid_request"],
    ];
    for (const [payload, status, code] of cases) {
      const response = await post("/v1/sessions", payload);
      expect(response.statusCode, JSON.stringify(payload)).toBe(status);
      expect(response.json().error.code, JSON.stringify(payload)).toBe(code);
    }
    expect(
      (await app.inject({ method: "GET", url: "/v1/sessions/bad%20id" })).json().error.code,
    ).toBe("invalid_session_id");
    expect((await app.inject({ method: "DELETE", url: "/v1/sessions/missing" })).statusCode).toBe(
      404,
    );
  });

  it("answers 429 at the session cap when hibernation is off", async () => {
    const capped = await serve({ maxSessions: 1, hibernateAfterMs: null });
    expect((await capped.inject({ method: "POST", url: "/v1/sessions" })).statusCode).toBe(201);
    const refused = await capped.inject({
      method: "POST",
      url: "/v1/runs",
      payload: { session_id: "another", code: "1" },
    });
    expect(refused.statusCode).toBe(429);
    expect(refused.json().error.code).toBe("session_limit_reached");
  });

  it("hibernates the least recently used idle session at the cap, and wakes it on its next run", async () => {
    const capped = await serve({ maxSessions: 2 });
    const run = (session_id: string, code: string) =>
      capped.inject({ method: "POST", url: "/v1/runs", payload: { session_id, code } });
    expect((await run("old", "var kept = 'from old'; 1")).json().status).toBe("ok");
    expect((await run("newer", "var kept = 'from newer'; 2")).json().status).toBe("ok");
    expect((await run("third", "3")).json().status).toBe("ok");
    const state = async (id: string) =>
      (await capped.inject({ method: "GET", url: `/v1/sessions/${id}` })).json().state;
    expect(await state("old")).toBe("hibernated");
    expect(await state("newer")).toBe("idle");
    const woken = (await run("old", "kept")).json();
    expect(woken.status).toBe("ok");
    expect(woken.result).toBe("from old");
    expect(await state("old")).toBe("idle");
    expect(await state("newer")).toBe("hibernated");
    const listed = (await capped.inject({ method: "GET", url: "/v1/sessions" })).json().sessions;
    expect(listed.map((session: { id: string }) => session.id).sort()).toEqual([
      "newer",
      "old",
      "third",
    ]);
  });
});

describe("Python over HTTP", () => {
  it("runs a Python RunRequest that calls the kv tools with keyword arguments", async () => {
    const first = await post("/v1/runs", {
      session_id: "http-py",
      language: "python",
      code: 'kv_set("total", sum(items), ttl_s=60)\nprint("stored")\nsum(items) / len(items)',
      inputs: { items: [1, 2, 3, 4] },
    });
    expect(first.statusCode).toBe(200);
    const body = first.json();
    expect(body).toMatchObject({ status: "ok", result: 2.5, stdout: "stored\n", error: null });
    expect(body.external_calls).toHaveLength(1);
    expect(body.external_calls[0]).toMatchObject({
      name: "kv_set",
      status: "ok",
      side_effect: "write",
      // Positional and keyword arguments arrive apart, as the tool's args and kwargs.
      request_digest: digestJson({ name: "kv_set", args: ["total", 10], kwargs: { ttl_s: 60 } }),
    });
    const second = await post("/v1/runs", {
      session_id: "http-py",
      language: "python",
      code: 'value = await kv_get("total")\n{"value": value, "items": len(items)}',
    });
    expect(second.json()).toMatchObject({ status: "ok", result: { value: 10, items: 4 } });
    const twice = await post("/v1/runs", {
      session_id: "http-py",
      language: "python",
      code: 'kv_set("t", 1, 60, ttl_s=60)',
    });
    expect(twice.json()).toMatchObject({
      status: "runtime_error",
      error: { code: "KV_BAD_TTL" },
      external_calls: [{ name: "kv_set", status: "error" }],
    });
  });

  it("lists the Pyodide backend with its pool figures", async () => {
    const runtimes = (await app.inject({ method: "GET", url: "/v1/runtimes" })).json();
    const pyodide = runtimes.runtimes.find((r: { id: string }) => r.id === "pyodide");
    expect(pyodide).toMatchObject({
      languages: ["python"],
      isolation: "child_process",
      default_for: ["python"],
      stats: { pool: { size: 2 } },
    });
    expect(pyodide.stats.containment).toMatch(/^namespaces/);
  });
});

describe("service routes", () => {
  it("lists capabilities and runtimes, and answers health", async () => {
    const capabilities = (await app.inject({ method: "GET", url: "/v1/capabilities" })).json()
      .capabilities;
    expect(capabilities.map((c: { name: string }) => c.name)).toEqual([
      "kv_delete",
      "kv_get",
      "kv_list",
      "kv_set",
    ]);
    expect(capabilities[1]).toMatchObject({
      side_effect: "read",
      approval_policy: "none",
      limits: { timeout_ms: 5_000, rate_per_min: null },
    });
    const runtimes = (await app.inject({ method: "GET", url: "/v1/runtimes" })).json();
    expect(runtimes.runtimes[0]).toMatchObject({
      id: "quickjs",
      languages: ["javascript", "typescript"],
      isolation: "worker_thread",
    });
    expect(runtimes.runtimes[0].limits.memory_mb.support).toBe("exact");
    expect(runtimes.limits.defaults).toMatchObject({ memory_mb: 64 });
    expect((await app.inject({ method: "GET", url: "/v1/health" })).json()).toMatchObject({
      status: "ok",
      runtimes: ["quickjs", "isolated-vm", "pyodide"],
    });
  });

  it("lists every backend, QuickJS the JavaScript default, and runs a session on isolated-vm", async () => {
    const listed = (await app.inject({ method: "GET", url: "/v1/runtimes" })).json();
    expect(listed.runtimes.map((r: { id: string }) => r.id)).toEqual([
      "quickjs",
      "isolated-vm",
      "pyodide",
    ]);
    expect(listed.runtimes[0].default_for).toEqual(["javascript", "typescript"]);
    expect(listed.runtimes[1]).toMatchObject({
      id: "isolated-vm",
      languages: ["javascript", "typescript"],
      isolation: "child_process",
      default_for: [],
      snapshotKinds: ["journal"],
    });
    expect(listed.runtimes[2].default_for).toEqual(["python"]);
    expect(listed.runtimes[1].engine).toMatch(/^isolated-vm 7\.0\.1 \(V8 /);
    expect(listed.runtimes[1].limits.wall_ms.support).toBe("exact");

    const created = await post("/v1/sessions", {
      session_id: "http-ivm",
      language: "typescript",
      runtime: "isolated-vm",
    });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({ id: "http-ivm", runtime: "isolated-vm" });
    const first = await post("/v1/runs", {
      session_id: "http-ivm",
      language: "typescript",
      code: "const n: number = 20;\nawait kv_set('n', n);\nconsole.log('in V8');\nn + 1",
    });
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({
      status: "ok",
      result: 21,
      stdout: "in V8\n",
      external_calls: [{ name: "kv_set", status: "ok" }],
    });
    const second = await post("/v1/runs", {
      session_id: "http-ivm",
      language: "typescript",
      code: "(await kv_get('n')) + n",
    });
    expect(second.json()).toMatchObject({ status: "ok", result: 40 });
    // Without `runtime`, a new session still gets the default backend.
    await post("/v1/sessions", { session_id: "http-default", language: "javascript" });
    expect(
      (await app.inject({ method: "GET", url: "/v1/sessions/http-default" })).json().runtime,
    ).toBe("quickjs");
  });

  it("serves an OpenAPI document built from the same schemas", async () => {
    const document = (await app.inject({ method: "GET", url: "/v1/openapi.json" })).json();
    expect(document.openapi).toBe("3.1.0");
    expect(Object.keys(document.paths)).toEqual(
      expect.arrayContaining([
        "/v1/runs",
        "/v1/sessions",
        "/v1/runs/{run_id}/cancel",
        "/v1/sessions/{session_id}",
      ]),
    );
    expect(document.components.schemas.RunRequest.properties).toHaveProperty("validate_only");
    expect(document.components.schemas.RunRequest.additionalProperties).toBe(false);
    expect(document.components.schemas.RunResult.required).toContain("external_calls");
  });

  it("answers unknown routes with 404 not_found", async () => {
    const response = await app.inject({ method: "GET", url: "/v2/whatever" });
    expect(response.statusCode).toBe(404);
    expect(response.json()).toEqual({
      error: { code: "not_found", message: "No route GET /v2/whatever." },
    });
  });
});

describe("bearer token", () => {
  it("guards every route but health", async () => {
    const guarded = await serve({ token: "s3cret-token" });
    expect((await guarded.inject({ method: "GET", url: "/v1/health" })).statusCode).toBe(200);
    for (const headers of [
      {},
      { authorization: "Bearer wrong" },
      { authorization: "s3cret-token" },
      { authorization: "Bearer s3cret-token-longer" },
    ]) {
      const response = await guarded.inject({ method: "GET", url: "/v1/sessions", headers });
      expect(response.statusCode).toBe(401);
      expect(response.headers["www-authenticate"]).toContain("Bearer");
      expect(response.json().error.code).toBe("unauthorized");
    }
    const refusedRun = await guarded.inject({
      method: "POST",
      url: "/v1/runs",
      payload: { code: "1" },
    });
    expect(refusedRun.statusCode).toBe(401);
    const ok = await guarded.inject({
      method: "GET",
      url: "/v1/sessions",
      headers: { authorization: "Bearer s3cret-token" },
    });
    expect(ok.statusCode).toBe(200);
    expect((await guarded.inject({ method: "GET", url: "/v1/openapi.json" })).statusCode).toBe(401);
  });
});
