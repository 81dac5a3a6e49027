import { describe, expect, it } from "vitest";
import {
  createAsyncTool,
  createSyncTool,
  DEFAULT_CAPABILITY_LIMITS,
  defineCapability,
  digestJson,
  digestJsonText,
  isPythonIdentifier,
  type JsonValue,
  ToolError,
  ToolGateway,
  ToolRegistry,
} from "../src/index.ts";

const gatewayFor = (
  registry: ToolRegistry,
  options: { maxExternalCalls?: number; deadlineMs?: number } = {},
) => {
  const controller = new AbortController();
  const gateway = new ToolGateway({
    registry,
    sessionId: "s",
    runId: "r",
    maxExternalCalls: options.maxExternalCalls ?? 32,
    deadline: performance.now() + (options.deadlineMs ?? 5_000),
    signal: controller.signal,
  });
  return { gateway, controller };
};

describe("ToolRegistry", () => {
  it("accepts Python identifiers only", () => {
    expect(isPythonIdentifier("fetch_json")).toBe(true);
    expect(isPythonIdentifier("_private2")).toBe(true);
    for (const bad of ["1_fetch", "fetch-json", "", "ünicode", "a b", "a.b"]) {
      expect(isPythonIdentifier(bad)).toBe(false);
      const registry = new ToolRegistry();
      expect(() =>
        registry.register(createSyncTool({ name: bad, description: "" }, () => null)),
      ).toThrow(expect.objectContaining({ code: "INVALID_TOOL_NAME" }));
    }
  });

  it("fills capabilities with the seed's defaults", () => {
    expect(defineCapability({ name: "t", description: "d" })).toEqual({
      name: "t",
      description: "d",
      input_schema: { type: "array" },
      output_schema: {},
      side_effect: "none",
      limits: { ...DEFAULT_CAPABILITY_LIMITS },
      approval_policy: "none",
      idempotent: true,
    });
  });

  it("refuses schemas that do not compile and malformed limits", () => {
    const registry = new ToolRegistry();
    expect(() =>
      registry.register(
        createSyncTool({ name: "a", description: "", input_schema: { type: "nope" } }, () => null),
      ),
    ).toThrow(expect.objectContaining({ code: "INVALID_CAPABILITY" }));
    expect(() =>
      registry.register(
        createSyncTool({ name: "b", description: "", limits: { timeout_ms: 0 } }, () => null),
      ),
    ).toThrow(expect.objectContaining({ code: "INVALID_CAPABILITY" }));
    expect(registry.names()).toEqual([]);
  });

  it("lists tools by name, replaces on re-register, and counts versions", () => {
    const registry = new ToolRegistry();
    registry.register(createSyncTool({ name: "zeta", description: "1" }, () => 1));
    registry.register(createSyncTool({ name: "alpha", description: "" }, () => 1));
    const version = registry.version;
    registry.register(createSyncTool({ name: "zeta", description: "2" }, () => 2));
    expect(registry.names()).toEqual(["alpha", "zeta"]);
    expect(registry.get("zeta")?.capability.description).toBe("2");
    expect(registry.version).toBeGreaterThan(version);
    expect(registry.unregister("alpha")).toBe(true);
    expect(registry.unregister("alpha")).toBe(false);
    expect(registry.contains("alpha")).toBe(false);
  });
});

describe("ToolGateway", () => {
  it("records calls in the order they reached the host, with digests", async () => {
    const registry = new ToolRegistry();
    registry.register(
      createAsyncTool({ name: "wait", description: "" }, async ({ args }) => {
        await new Promise((resolve) => setTimeout(resolve, args[0] as number));
        return args[0] as number;
      }),
    );
    const { gateway } = gatewayFor(registry);
    const [slow, fast] = await Promise.all([
      gateway.call("wait", "[40]", "{}"),
      gateway.call("wait", "[1]", "{}"),
    ]);
    expect(slow).toEqual({ ok: true, valueJson: "40" });
    expect(fast).toEqual({ ok: true, valueJson: "1" });
    expect(gateway.records.map((record) => record.response_digest)).toEqual([
      digestJson(40),
      digestJson(1),
    ]);
    expect(gateway.records[0]!.request_digest).toBe(
      digestJson({ name: "wait", args: [40], kwargs: {} }),
    );
    expect(gateway.records[0]!.duration_ms).toBeGreaterThanOrEqual(35);
  });

  it("digests the request as the guest wrote its numbers", async () => {
    const registry = new ToolRegistry();
    registry.register(createSyncTool({ name: "f", description: "" }, () => null));
    const { gateway } = gatewayFor(registry);
    await gateway.call("f", "[1.0]", "{}");
    expect(gateway.records[0]!.request_digest).toBe(
      digestJsonText('{"name":"f","args":[1.0],"kwargs":{}}'),
    );
    expect(gateway.records[0]!.request_digest).not.toBe(
      digestJson({ name: "f", args: [1], kwargs: {} }),
    );
  });

  it("denies unknown tools and calls past the budget, ending the run on the latter", async () => {
    const registry = new ToolRegistry();
    registry.register(createSyncTool({ name: "f", description: "" }, () => true));
    const { gateway } = gatewayFor(registry, { maxExternalCalls: 2 });
    expect(await gateway.call("nope", "[]", "{}")).toMatchObject({
      ok: false,
      status: "denied",
      code: "UNKNOWN_TOOL",
      fatal: false,
    });
    expect(await gateway.call("f", "[]", "{}")).toMatchObject({ ok: true });
    expect(await gateway.call("f", "[]", "{}")).toMatchObject({
      ok: false,
      status: "denied",
      code: "EXTERNAL_CALL_LIMIT",
      fatal: true,
    });
    expect(gateway.fatal).toMatchObject({
      status: "resource_exhausted",
      error: { code: "EXTERNAL_CALL_LIMIT" },
    });
    expect(gateway.records.map((record) => record.status)).toEqual(["denied", "ok", "denied"]);
  });

  it("checks arguments, keyword arguments and sizes before the handler runs", async () => {
    let calls = 0;
    const registry = new ToolRegistry();
    registry.register(
      createSyncTool(
        {
          name: "f",
          description: "",
          input_schema: { type: "array", prefixItems: [{ type: "string" }], minItems: 1 },
          limits: { max_request_bytes: 100 },
        },
        () => {
          calls++;
          return null;
        },
      ),
    );
    const { gateway } = gatewayFor(registry);
    expect(await gateway.call("f", "[1]", "{}")).toMatchObject({
      ok: false,
      status: "error",
      code: "INVALID_ARGUMENTS",
    });
    expect(await gateway.call("f", '["a"]', '{"x":1}')).toMatchObject({
      code: "INVALID_ARGUMENTS",
    });
    expect(await gateway.call("f", `["${"a".repeat(200)}"]`, "{}")).toMatchObject({
      status: "denied",
      code: "REQUEST_TOO_LARGE",
    });
    expect(await gateway.call("f", "not json", "{}")).toMatchObject({ code: "INVALID_ARGUMENTS" });
    expect(await gateway.call("f", "{}", "{}")).toMatchObject({ code: "INVALID_ARGUMENTS" });
    expect(calls).toBe(0);
    expect(gateway.records).toHaveLength(5);
  });

  it("turns handler failures into codes, and checks what handlers return", async () => {
    const registry = new ToolRegistry();
    registry.register(
      createSyncTool({ name: "coded", description: "" }, () => {
        throw new ToolError("QUOTA", "over quota");
      }),
    );
    registry.register(
      createSyncTool({ name: "plain", description: "" }, () => {
        throw new Error("disk on fire");
      }),
    );
    registry.register(createSyncTool({ name: "nothing", description: "" }, () => undefined));
    registry.register(
      createSyncTool({ name: "fn", description: "" }, () => (() => 1) as unknown as JsonValue),
    );
    registry.register(
      createSyncTool(
        { name: "typed", description: "", output_schema: { type: "string" } },
        () => 5,
      ),
    );
    registry.register(
      createSyncTool({ name: "big", description: "", limits: { max_response_bytes: 10 } }, () =>
        "x".repeat(50),
      ),
    );
    const { gateway } = gatewayFor(registry);
    expect(await gateway.call("coded", "[]", "{}")).toMatchObject({
      code: "QUOTA",
      message: "over quota",
      status: "error",
    });
    expect(await gateway.call("plain", "[]", "{}")).toMatchObject({
      code: "TOOL_ERROR",
      message: "'plain' failed: disk on fire",
    });
    expect(await gateway.call("nothing", "[]", "{}")).toEqual({ ok: true, valueJson: "null" });
    expect(await gateway.call("fn", "[]", "{}")).toMatchObject({ code: "INVALID_TOOL_OUTPUT" });
    expect(await gateway.call("typed", "[]", "{}")).toMatchObject({ code: "INVALID_TOOL_OUTPUT" });
    expect(await gateway.call("big", "[]", "{}")).toMatchObject({ code: "RESPONSE_TOO_LARGE" });
    expect(gateway.records.map((record) => record.response_digest === null)).toEqual([
      true,
      true,
      false,
      true,
      true,
      true,
    ]);
  });

  it("cuts off a call at its timeout and tells the handler", async () => {
    let aborted = false;
    const registry = new ToolRegistry();
    registry.register(
      createAsyncTool(
        { name: "hang", description: "", limits: { timeout_ms: 50 } },
        ({ signal }) => {
          signal?.addEventListener("abort", () => {
            aborted = true;
          });
          return new Promise(() => {});
        },
      ),
    );
    const { gateway } = gatewayFor(registry);
    expect(await gateway.call("hang", "[]", "{}")).toMatchObject({
      status: "timeout",
      code: "TOOL_TIMEOUT",
    });
    expect(aborted).toBe(true);
  });

  it("never lets a call outlive the run's deadline", async () => {
    const registry = new ToolRegistry();
    registry.register(
      createAsyncTool({ name: "hang", description: "" }, () => new Promise(() => {})),
    );
    const { gateway } = gatewayFor(registry, { deadlineMs: 60 });
    const started = performance.now();
    expect(await gateway.call("hang", "[]", "{}")).toMatchObject({ status: "timeout" });
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it("settles calls still in flight when the run ends, and denies later ones", async () => {
    const registry = new ToolRegistry();
    registry.register(
      createAsyncTool({ name: "hang", description: "" }, () => new Promise(() => {})),
    );
    const { gateway } = gatewayFor(registry);
    const pending = gateway.call("hang", "[]", "{}");
    gateway.settle();
    expect(await pending).toMatchObject({ code: "RUN_CANCELLED" });
    expect(gateway.records[0]).toMatchObject({ status: "error", error: { code: "RUN_CANCELLED" } });
    expect(await gateway.call("hang", "[]", "{}")).toMatchObject({
      status: "denied",
      code: "RUN_CANCELLED",
    });
  });
});
