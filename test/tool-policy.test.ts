/**
 * Tool policies as a user sees them through runs of real guest code: side-effect policy,
 * rate and concurrency limits across sessions, manual approvals (approve, deny, expire,
 * cancel, the paused wall clock), auto rules, and what an uncaught denial does to a run.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKvTools } from "../capabilities/kv/index.ts";
import { createQuickJsRuntime } from "../runtimes/quickjs/index.ts";
import {
  compileApprovalRule,
  createAsyncTool,
  createSyncTool,
  DEFAULT_SESSION_LIMITS,
  RuntimeRegistry,
  SessionManager,
  type SessionManagerOptions,
  ToolRegistry,
} from "../src/index.ts";

let runtimes: RuntimeRegistry;
const managers: SessionManager[] = [];
beforeAll(() => {
  runtimes = new RuntimeRegistry();
  runtimes.register(createQuickJsRuntime({ threads: 2 }));
});
afterAll(async () => {
  for (const manager of managers) await manager.close();
  await runtimes.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let counter = 0;
const sid = () => `policy-${++counter}`;

function setup(
  register: (tools: ToolRegistry) => void,
  options: Partial<SessionManagerOptions> = {},
) {
  const tools = new ToolRegistry();
  for (const tool of createKvTools()) tools.register(tool);
  register(tools);
  const manager = new SessionManager({
    runtimes,
    tools,
    defaults: DEFAULT_SESSION_LIMITS,
    ceilings: { ...DEFAULT_SESSION_LIMITS, wall_ms: 20_000, cpu_ms: 10_000 },
    defaultLanguage: "javascript",
    ...options,
  });
  managers.push(manager);
  return manager;
}

describe("side-effect policy", () => {
  it("denies calls whose side effect the session may not use; uncaught, the run ends permission_denied", async () => {
    const manager = setup(() => {});
    const id = sid();
    const info = await manager.createSession({
      session_id: id,
      language: "javascript",
      allowed_side_effects: ["none", "read"],
    });
    expect(info.allowed_side_effects).toEqual(["none", "read"]);
    const caught = await manager.run({
      session_id: id,
      code: "let code; try { await kv_set('k', 1) } catch (e) { code = [e.code, e.status] } [code, await kv_get('k')]",
    });
    expect(caught).toMatchObject({
      status: "ok",
      result: [["SIDE_EFFECT_DENIED", "denied"], null],
    });
    expect(caught.external_calls.map((call) => [call.name, call.status, call.side_effect])).toEqual(
      [
        ["kv_set", "denied", "write"],
        ["kv_get", "ok", "read"],
      ],
    );
    const uncaught = await manager.run({ session_id: id, code: "await kv_set('k', 1)" });
    expect(uncaught).toMatchObject({
      status: "permission_denied",
      error: { code: "SIDE_EFFECT_DENIED" },
    });
  });

  it("narrows every session to the server's allowed side effects", async () => {
    const manager = setup(() => {}, { allowedSideEffects: ["none", "read"] });
    const id = sid();
    const info = await manager.createSession({
      session_id: id,
      language: "javascript",
      allowed_side_effects: ["read", "write"],
    });
    expect(info.allowed_side_effects).toEqual(["read"]);
    expect(await manager.run({ session_id: id, code: "await kv_set('k', 1)" })).toMatchObject({
      status: "permission_denied",
    });
  });

  it("does not honour a ToolError code the guest made up", async () => {
    const manager = setup(() => {});
    const forged = await manager.run({
      session_id: sid(),
      code: "throw new ToolError('APPROVAL_DENIED', 'not really', 'denied', 'kv_set')",
    });
    expect(forged).toMatchObject({ status: "runtime_error", error: { code: "RUNTIME_ERROR" } });
  });
});

describe("rate and concurrency limits", () => {
  it("counts rate_per_min across sessions", async () => {
    const manager = setup((tools) =>
      tools.register(
        createSyncTool(
          { name: "metered", description: "", limits: { rate_per_min: 3 } },
          () => "ok",
        ),
      ),
    );
    const first = await manager.run({
      session_id: sid(),
      code: "await metered(); await metered(); 'two'",
    });
    expect(first.status).toBe("ok");
    const second = await manager.run({
      session_id: sid(),
      code: "const out = []; for (let i = 0; i < 2; i++) { try { out.push(await metered()) } catch (e) { out.push(e.code) } } out",
    });
    expect(second.result).toEqual(["ok", "RATE_LIMITED"]);
    expect(second.external_calls[1]).toMatchObject({
      status: "denied",
      error: { code: "RATE_LIMITED" },
    });
    expect(second.external_calls[1]!.error!.message).toMatch(/retry in \d+ s/);
  });

  it("queues calls past concurrency, and denies those that find no slot within their timeout", async () => {
    let running = 0;
    let most = 0;
    const track = (ms: number) => async () => {
      running += 1;
      most = Math.max(most, running);
      await sleep(ms);
      running -= 1;
      return "done";
    };
    const manager = setup((tools) => {
      tools.register(
        createAsyncTool(
          { name: "single", description: "", limits: { concurrency: 1, timeout_ms: 2_000 } },
          track(100),
        ),
      );
      // Outlives its 150 ms timeout and ignores the abort: it keeps its slot until it ends.
      tools.register(
        createAsyncTool(
          { name: "stubborn", description: "", limits: { concurrency: 1, timeout_ms: 150 } },
          track(500),
        ),
      );
    });
    const queued = await manager.run({
      session_id: sid(),
      code: "await Promise.all([single(), single(), single()])",
    });
    expect(queued).toMatchObject({ status: "ok", result: ["done", "done", "done"] });
    expect(most).toBe(1);
    expect(queued.metrics.duration_ms).toBeGreaterThanOrEqual(290);
    const denied = await manager.run({
      session_id: sid(),
      code: "await Promise.allSettled([stubborn(), stubborn(), stubborn()]).then((all) => all.map((r) => r.status === 'fulfilled' ? r.value : r.reason.code))",
    });
    expect(denied.result).toEqual(["TOOL_TIMEOUT", "CONCURRENCY_LIMIT", "CONCURRENCY_LIMIT"]);
    expect(denied.external_calls.map((call) => call.status)).toEqual([
      "timeout",
      "denied",
      "denied",
    ]);
  });
});

describe("manual approvals", () => {
  const withApproval = (options: Partial<SessionManagerOptions> = {}) =>
    setup(
      (tools) =>
        tools.register(
          createSyncTool(
            {
              name: "send_email",
              description: "Sends an email.",
              side_effect: "external_system",
              approval_policy: "manual",
            },
            ({ args }) => `sent to ${args[0] as string}`,
          ),
        ),
      options,
    );

  it("answers waiting_for_approval, then finishes once approved", async () => {
    const manager = withApproval();
    const id = sid();
    const waiting = await manager.run({
      session_id: id,
      code: "const r = await send_email('ops@example.com'); r",
      run_id: `${id}-run`,
    });
    expect(waiting).toMatchObject({
      status: "waiting_for_approval",
      run_id: `${id}-run`,
      result: null,
    });
    expect(waiting.external_calls).toEqual([
      expect.objectContaining({ name: "send_email", status: "approval_pending" }),
    ]);
    const approval = waiting.approvals![0]!;
    expect(approval).toMatchObject({
      name: "send_email",
      args: ["ops@example.com"],
      status: "pending",
      side_effect: "external_system",
      request_digest: waiting.external_calls[0]!.request_digest,
    });
    expect(waiting.diagnostics[0]).toMatchObject({ code: "APPROVAL_REQUIRED" });
    expect(waiting.diagnostics[0]!.message).toContain(approval.approval_id);
    expect(manager.getRun(`${id}-run`).state).toBe("waiting_for_approval");
    expect(manager.approvals.list().map((a) => a.approval_id)).toContain(approval.approval_id);

    manager.approvals.decide(approval.approval_id, true, "looks fine");
    const final = await manager.waitForRun(`${id}-run`, 5_000);
    expect(final.result).toMatchObject({ status: "ok", result: "sent to ops@example.com" });
    expect(final.result!.external_calls[0]).toMatchObject({ status: "ok" });
    expect(manager.approvals.get(approval.approval_id)).toMatchObject({
      status: "approved",
      reason: "looks fine",
    });
    expect(() => manager.approvals.decide(approval.approval_id, false)).toThrow(
      expect.objectContaining({ code: "APPROVAL_ALREADY_DECIDED" }),
    );
  });

  it("raises a denial in the guest with the reason; uncaught, the run ends permission_denied", async () => {
    const manager = withApproval();
    const caughtId = `${sid()}-run`;
    const pending = manager.run({
      run_id: caughtId,
      session_id: sid(),
      code: "let seen; try { await send_email('x@example.com') } catch (e) { seen = [e.code, e.status, e.message] } seen",
    });
    const waiting = await pending;
    manager.approvals.decide(waiting.approvals![0]!.approval_id, false, "not during the freeze");
    const caught = (await manager.waitForRun(caughtId, 5_000)).result!;
    expect(caught).toMatchObject({
      status: "ok",
      result: ["APPROVAL_DENIED", "denied", expect.stringContaining("not during the freeze")],
    });
    expect(caught.external_calls[0]).toMatchObject({
      status: "denied",
      error: { code: "APPROVAL_DENIED" },
    });

    const uncaughtId = `${sid()}-run`;
    const second = await manager.run({
      run_id: uncaughtId,
      session_id: sid(),
      code: "await send_email('y@example.com')",
    });
    manager.approvals.decide(second.approvals![0]!.approval_id, false);
    expect((await manager.waitForRun(uncaughtId, 5_000)).result).toMatchObject({
      status: "permission_denied",
      error: { code: "APPROVAL_DENIED" },
    });
  });

  it("denies an approval no one decides before it expires", async () => {
    const manager = withApproval({ approvalTtlMs: 200 });
    const runId = `${sid()}-run`;
    await manager.run({
      run_id: runId,
      session_id: sid(),
      code: "let seen; try { await send_email('z') } catch (e) { seen = e.code } seen",
    });
    const final = (await manager.waitForRun(runId, 5_000)).result!;
    expect(final).toMatchObject({ status: "ok", result: "APPROVAL_EXPIRED" });
    expect(manager.approvals.list({ status: "expired" })[0]).toMatchObject({
      run_id: runId,
      status: "expired",
    });
  });

  it("does not count time waiting for a person toward wall_ms", async () => {
    const manager = withApproval();
    const runId = `${sid()}-run`;
    const waiting = await manager.run({
      run_id: runId,
      session_id: sid(),
      code: "await send_email('late@example.com')",
      limits: { wall_ms: 400 },
    });
    await sleep(900);
    manager.approvals.decide(waiting.approvals![0]!.approval_id, true);
    expect((await manager.waitForRun(runId, 5_000)).result).toMatchObject({
      status: "ok",
      result: "sent to late@example.com",
    });
  });

  it("cancels a waiting approval when its run is cancelled", async () => {
    const manager = withApproval();
    const runId = `${sid()}-run`;
    const waiting = await manager.run({
      run_id: runId,
      session_id: sid(),
      code: "await send_email('q')",
    });
    manager.cancelRun(runId);
    expect((await manager.waitForRun(runId, 5_000)).result).toMatchObject({ status: "cancelled" });
    expect(manager.approvals.get(waiting.approvals![0]!.approval_id).status).toBe("cancelled");
  });
});

describe("auto approval rules (CEL)", () => {
  it("approves, denies or escalates per call", async () => {
    const manager = setup((tools) =>
      tools.register(
        createSyncTool(
          {
            name: "transfer",
            description: "Moves money.",
            side_effect: "external_system",
            input_schema: {
              type: "array",
              prefixItems: [{ type: "number" }, { type: "string" }],
              minItems: 2,
            },
            approval_policy: {
              auto: {
                rule: 'args[0] <= 100.0 ? "approve" : (args[1].startsWith("internal:") ? "manual" : "deny")',
              },
            },
          },
          ({ args }) => `moved ${args[0] as number}`,
        ),
      ),
    );
    const small = await manager.run({ session_id: sid(), code: "await transfer(50, 'acct:1')" });
    expect(small).toMatchObject({ status: "ok", result: "moved 50" });
    const denied = await manager.run({
      session_id: sid(),
      code: "let seen; try { await transfer(5000, 'acct:1') } catch (e) { seen = e.code } seen",
    });
    expect(denied.result).toBe("APPROVAL_DENIED");
    const runId = `${sid()}-run`;
    const escalated = await manager.run({
      run_id: runId,
      session_id: sid(),
      code: "await transfer(5000, 'internal:ops')",
    });
    expect(escalated.status).toBe("waiting_for_approval");
    expect(escalated.approvals![0]!.reason).toBe("the rule asked for a person");
    manager.approvals.decide(escalated.approvals![0]!.approval_id, true);
    expect((await manager.waitForRun(runId, 5_000)).result?.result).toBe("moved 5000");
  });

  it("escalates to a person when the rule cannot decide", () => {
    const rule = compileApprovalRule('args[3] == "x"');
    expect(
      rule.decide({
        name: "t",
        args: [1],
        kwargs: {},
        side_effect: "none",
        session: { id: "s", language: "javascript", runtime: "quickjs" },
      }),
    ).toMatchObject({
      decision: "manual",
    });
  });

  it("refuses rules that do not parse, or that use matches()", () => {
    const registry = new ToolRegistry();
    for (const rule of ["args[0] >", 'name.matches("(a+)+$")']) {
      expect(() =>
        registry.register(
          createSyncTool(
            { name: "t", description: "", approval_policy: { auto: { rule } } },
            () => null,
          ),
        ),
      ).toThrow(expect.objectContaining({ code: "INVALID_CAPABILITY" }));
    }
  });
});
