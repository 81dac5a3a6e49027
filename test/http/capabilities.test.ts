import { spawnSync } from "node:child_process";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultConfig, type ServerConfig } from "../../src/config.ts";
import { createServer, type SandboxServer } from "../../src/server.ts";

const servers: SandboxServer[] = [];
async function serve(overrides: Partial<ServerConfig> = {}): Promise<FastifyInstance> {
  const server = await createServer({
    ...defaultConfig(),
    logLevel: "silent",
    defaultLanguage: "javascript",
    ...overrides,
  });
  servers.push(server);
  await server.app.ready();
  return server.app;
}

/** A remote tool endpoint: answers by the tool name it is called for. */
let endpoint: Server;
let endpointUrl: string;
const received: unknown[] = [];
beforeAll(async () => {
  endpoint = createHttpServer((request: IncomingMessage, response: ServerResponse) => {
    let body = "";
    request.on("data", (chunk) => {
      body += chunk;
    });
    request.on("end", () => {
      const call = JSON.parse(body) as {
        name: string;
        args: unknown[];
        kwargs: object;
        session_id: string;
      };
      received.push({ ...call, authorization: request.headers.authorization });
      const send = (status: number, payload: string, type = "application/json") => {
        response.writeHead(status, { "content-type": type });
        response.end(payload);
      };
      switch (call.name) {
        case "weather":
          return send(200, JSON.stringify({ city: call.args[0], celsius: 21.5 }));
        case "refuses":
          return send(
            422,
            JSON.stringify({ error: { code: "UNKNOWN_CITY", message: "No such city." } }),
          );
        case "broken":
          return send(500, "<html>oops</html>", "text/html");
        case "huge":
          return send(200, JSON.stringify("x".repeat(5_000)));
        case "slow":
          return setTimeout(() => send(200, "1"), 2_000);
        default:
          return send(404, "{}");
      }
    });
  });
  await new Promise<void>((resolve) => endpoint.listen(0, "127.0.0.1", resolve));
  endpointUrl = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/tools`;
});
afterAll(async () => {
  for (const server of servers) await server.close();
  endpoint.closeAllConnections();
  await new Promise((resolve) => endpoint.close(resolve));
});

const ADMIN = { authorization: "Bearer admin-secret" };
const register = (app: FastifyInstance, body: object, headers: Record<string, string> = ADMIN) =>
  app.inject({ method: "POST", url: "/v1/capabilities", payload: body, headers });
const run = async (app: FastifyInstance, body: object) =>
  (await app.inject({ method: "POST", url: "/v1/runs", payload: body })).json();

describe("remote tools", () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await serve({ adminToken: "admin-secret" });
  });

  it("registers a tool backed by an HTTP endpoint that guest code calls like any other", async () => {
    const registered = await register(app, {
      name: "weather",
      description: "Current weather of a city.",
      side_effect: "network",
      input_schema: {
        type: "array",
        prefixItems: [{ title: "city", type: "string" }],
        minItems: 1,
        maxItems: 1,
      },
      endpoint: { url: endpointUrl, headers: { authorization: "Bearer endpoint-credential" } },
    });
    expect(registered.statusCode).toBe(201);
    expect(registered.json()).toMatchObject({
      name: "weather",
      side_effect: "network",
      limits: { timeout_ms: 5_000 },
    });
    expect(JSON.stringify(registered.json())).not.toContain("endpoint-credential");
    const listed = (await app.inject({ method: "GET", url: "/v1/capabilities" })).json()
      .capabilities;
    expect(listed.map((c: { name: string }) => c.name)).toContain("weather");

    const result = await run(app, {
      session_id: "remote-1",
      code: "(await weather('Lisbon')).celsius",
    });
    expect(result).toMatchObject({ status: "ok", result: 21.5 });
    expect(result.external_calls[0]).toMatchObject({
      name: "weather",
      status: "ok",
      side_effect: "network",
    });
    expect(received.at(-1)).toMatchObject({
      name: "weather",
      args: ["Lisbon"],
      kwargs: {},
      session_id: "remote-1",
      authorization: "Bearer endpoint-credential",
    });
  });

  it("turns endpoint failures into codes the guest sees", async () => {
    for (const name of ["refuses", "broken", "huge", "slow"]) {
      const response = await register(app, {
        name,
        description: name,
        endpoint: { url: endpointUrl },
        limits: { timeout_ms: 300, max_response_bytes: 1_000 },
      });
      expect(response.statusCode, name).toBe(201);
    }
    const codes = await run(app, {
      session_id: "remote-2",
      code: "const out = []; for (const f of [refuses, broken, huge, slow]) { try { await f() } catch (e) { out.push(e.code) } } out",
    });
    expect(codes.result).toEqual([
      "UNKNOWN_CITY",
      "REMOTE_TOOL_FAILED",
      "RESPONSE_TOO_LARGE",
      "TOOL_TIMEOUT",
    ]);
  });

  it("unregisters remote tools, never configured ones, and only with the admin token", async () => {
    await register(app, { name: "temporary", description: "t", endpoint: { url: endpointUrl } });
    expect(
      (await app.inject({ method: "DELETE", url: "/v1/capabilities/temporary" })).statusCode,
    ).toBe(403);
    const removed = await app.inject({
      method: "DELETE",
      url: "/v1/capabilities/temporary",
      headers: ADMIN,
    });
    expect(removed.json()).toEqual({ name: "temporary", removed: true });
    const after = await run(app, { session_id: "remote-3", code: "typeof temporary" });
    expect(after.result).toBe("undefined");
    expect(
      (
        await app.inject({ method: "DELETE", url: "/v1/capabilities/temporary", headers: ADMIN })
      ).json().error.code,
    ).toBe("capability_not_found");
    const configured = await app.inject({
      method: "DELETE",
      url: "/v1/capabilities/kv_get",
      headers: ADMIN,
    });
    expect(configured.statusCode).toBe(409);
    expect(configured.json().error.code).toBe("capability_exists");
    const replace = await register(app, {
      name: "kv_get",
      description: "hijack",
      endpoint: { url: endpointUrl },
    });
    expect(replace.json().error.code).toBe("capability_exists");
  });

  it("refuses bad registrations and callers without the admin token", async () => {
    const cases: [object, Record<string, string>, number, string][] = [
      [{ name: "x", description: "", endpoint: { url: endpointUrl } }, {}, 403, "forbidden"],
      [
        { name: "x", description: "", endpoint: { url: endpointUrl } },
        { authorization: "Bearer wrong" },
        403,
        "forbidden",
      ],
      [
        { name: "bad-name", description: "", endpoint: { url: endpointUrl } },
        ADMIN,
        400,
        "invalid_tool_name",
      ],
      [
        { name: "x", description: "", endpoint: { url: "file:///etc/passwd" } },
        ADMIN,
        400,
        "invalid_request",
      ],
      [
        {
          name: "x",
          description: "",
          input_schema: { type: "nope" },
          endpoint: { url: endpointUrl },
        },
        ADMIN,
        400,
        "invalid_capability",
      ],
      [
        {
          name: "x",
          description: "",
          approval_policy: { auto: { rule: "name.matches('a')" } },
          endpoint: { url: endpointUrl },
        },
        ADMIN,
        400,
        "invalid_capability",
      ],
      [{ name: "x", description: "" }, ADMIN, 400, "invalid_request"],
    ];
    for (const [body, headers, status, code] of cases) {
      const response = await register(app, body, headers);
      expect(response.statusCode, JSON.stringify(body)).toBe(status);
      expect(response.json().error.code, JSON.stringify(body)).toBe(code);
    }
    const disabled = await serve();
    const response = await register(disabled, {
      name: "x",
      description: "",
      endpoint: { url: endpointUrl },
    });
    expect(response.statusCode).toBe(403);
    expect(response.json().error.message).toContain("SANDBOX_ADMIN_TOKEN");
  });

  it("accepts the admin token wherever the bearer token is required", async () => {
    const guarded = await serve({ token: "user-token", adminToken: "admin-secret" });
    expect(
      (await guarded.inject({ method: "GET", url: "/v1/sessions", headers: ADMIN })).statusCode,
    ).toBe(200);
    const asUser = await register(
      guarded,
      { name: "x", description: "", endpoint: { url: endpointUrl } },
      { authorization: "Bearer user-token" },
    );
    expect(asUser.statusCode).toBe(403);
  });
});

describe("approvals over HTTP", () => {
  it("pauses a run for a person, lists the approval, and resumes it on the decision", async () => {
    const app = await serve({ adminToken: "admin-secret" });
    await register(app, {
      name: "deploy",
      description: "Deploys a service.",
      side_effect: "external_system",
      approval_policy: "manual",
      endpoint: { url: endpointUrl.replace("/tools", "/deploy") },
    });
    // The endpoint answers 404 for unknown tools: approve, then see the endpoint's answer.
    const waiting = await run(app, {
      session_id: "approve-1",
      run_id: "deploy-run",
      code: "let out; try { await deploy('api') } catch (e) { out = e.code } out",
    });
    expect(waiting).toMatchObject({ status: "waiting_for_approval", run_id: "deploy-run" });
    const id = waiting.approvals[0].approval_id;
    const listed = (await app.inject({ method: "GET", url: "/v1/approvals" })).json().approvals;
    expect(listed).toEqual([
      expect.objectContaining({
        approval_id: id,
        name: "deploy",
        args: ["api"],
        status: "pending",
      }),
    ]);
    expect((await app.inject({ method: "GET", url: "/v1/runs/deploy-run" })).json().state).toBe(
      "waiting_for_approval",
    );

    const bad = await app.inject({
      method: "POST",
      url: `/v1/approvals/${id}`,
      payload: { decision: "maybe" },
    });
    expect(bad.statusCode).toBe(400);
    const decided = await app.inject({
      method: "POST",
      url: `/v1/approvals/${id}`,
      payload: { decision: "approve", reason: "ok" },
    });
    expect(decided.json()).toMatchObject({ approval_id: id, status: "approved", reason: "ok" });
    const final = (
      await app.inject({ method: "GET", url: "/v1/runs/deploy-run?wait_ms=5000" })
    ).json();
    expect(final).toMatchObject({
      state: "finished",
      result: { status: "ok", result: "REMOTE_TOOL_FAILED" },
    });
    expect(
      (
        await app.inject({
          method: "POST",
          url: `/v1/approvals/${id}`,
          payload: { decision: "deny" },
        })
      ).statusCode,
    ).toBe(409);
    expect((await app.inject({ method: "GET", url: "/v1/approvals/nope" })).statusCode).toBe(404);
    expect(
      (await app.inject({ method: "GET", url: "/v1/approvals?status=approved" })).json()
        .approvals[0].approval_id,
    ).toBe(id);
  });
});

describe("stubs and type-checking", () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await serve({ adminToken: "admin-secret" });
    await register(app, {
      name: "lookup_user",
      description: "Finds a user by email.",
      side_effect: "read",
      input_schema: {
        type: "array",
        prefixItems: [{ title: "email", type: "string" }],
        minItems: 1,
        maxItems: 1,
      },
      kwargs_schema: {
        type: "object",
        properties: { include_teams: { type: "boolean" } },
        additionalProperties: false,
      },
      output_schema: {
        type: "object",
        properties: {
          id: { type: "integer" },
          name: { type: "string" },
          teams: { type: "array", items: { type: "string" } },
        },
        required: ["id", "name"],
      },
      endpoint: { url: endpointUrl },
    });
  });

  it("serves TypeScript declarations that compile and type the tools", async () => {
    const stubs = (
      await app.inject({ method: "GET", url: "/v1/capabilities/stubs?language=typescript" })
    ).json();
    expect(stubs).toMatchObject({ language: "typescript", filename: "tools.d.ts" });
    expect(stubs.source).toContain(
      "declare function lookup_user(email: string): Promise<LookupUserResult>;",
    );
    expect(stubs.source).toContain(
      "declare function kv_set(key: string, value: unknown, ttl_s?: (number | null)): Promise<true>;",
    );
    const file = ts.createSourceFile("tools.d.ts", stubs.source, ts.ScriptTarget.Latest);
    const program = ts.createProgram({
      rootNames: ["tools.d.ts"],
      options: { noEmit: true, strict: true, lib: ["lib.es2023.d.ts"], types: [] },
      host: {
        ...ts.createCompilerHost({}),
        getSourceFile: (name, version) =>
          name === "tools.d.ts" ? file : ts.createCompilerHost({}).getSourceFile(name, version),
      },
    });
    expect(
      ts
        .getPreEmitDiagnostics(program)
        .map((d) => ts.flattenDiagnosticMessageText(d.messageText, " ")),
    ).toEqual([]);
  });

  it("serves Python stubs that parse, with keyword-only parameters", async () => {
    const stubs = (
      await app.inject({ method: "GET", url: "/v1/capabilities/stubs?language=python" })
    ).json();
    expect(stubs.filename).toBe("tools.pyi");
    expect(stubs.source).toContain(
      "def lookup_user(email: str, /, *, include_teams: bool = ...) -> LookupUserResult:",
    );
    expect(stubs.source).toContain("class LookupUserResult(TypedDict):");
    const parsed = spawnSync("python3", ["-c", "import ast, sys; ast.parse(sys.stdin.read())"], {
      input: stubs.source,
      encoding: "utf8",
    });
    expect(parsed.stderr).toBe("");
    expect(parsed.status).toBe(0);
    expect(
      (await app.inject({ method: "GET", url: "/v1/capabilities/stubs?language=cobol" }))
        .statusCode,
    ).toBe(400);
  });

  it("type-checks TypeScript in validate_only against the stubs, inputs and earlier cells", async () => {
    await run(app, {
      session_id: "types-1",
      language: "typescript",
      code: "const seen: string[] = []",
    });
    const clean = await run(app, {
      session_id: "types-1",
      language: "typescript",
      validate_only: true,
      code: "const user = await lookup_user(rows[0]!.email);\nseen.push(user.name);\nuser.id + rows.length",
      inputs: { rows: [{ email: "a@example.com" }] },
    });
    expect(clean).toMatchObject({ status: "ok", external_calls: [] });
    const wrong = await run(app, {
      session_id: "types-1",
      language: "typescript",
      validate_only: true,
      code: "const user = await lookup_user(42);\nconst n: number = user.name;",
    });
    expect(wrong.status).toBe("validation_error");
    expect(wrong.error.code).toBe("TYPE_ERROR");
    expect(
      wrong.diagnostics.map((d: { code: string; span: { line: number; column: number } }) => [
        d.code,
        d.span.line,
        d.span.column,
      ]),
    ).toEqual([
      ["TYPE_ERROR", 1, 32],
      ["TYPE_ERROR", 2, 7],
    ]);
    expect(wrong.diagnostics[1].message).toMatch(/TS2322/);
    expect(wrong.external_calls).toEqual([]);
    // The guest's web globals are declared too.
    const web = await run(app, {
      session_id: "types-1",
      language: "typescript",
      validate_only: true,
      code: "const bytes: Uint8Array = new TextEncoder().encode(btoa('x'));\nconst back: string = new TextDecoder().decode(bytes);\nstructuredClone({ back }).back.length",
    });
    expect(web).toMatchObject({ status: "ok", diagnostics: [] });
    const misused = await run(app, {
      session_id: "types-1",
      language: "typescript",
      validate_only: true,
      code: "const n: number = atob('eA==');",
    });
    expect(misused.error.code).toBe("TYPE_ERROR");
  });
});
