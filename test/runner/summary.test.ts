/**
 * Seed 001's runtime summary and identifier rules. Expected values were produced by the seed's
 * own functions (`validate_backend_identifier`, `bounded_backend_identifier`,
 * `sanitize_identifier_body`, `safe_display_hint`) and types, compiled with serde_json 1.0.87
 * and sha2 0.10 from Debian's crates.
 */
import { describe, expect, it } from "vitest";
import { isSandboxError } from "../../src/errors.ts";
import {
  boundDiagnostics,
  boundedIdentifier,
  isValidIdentifier,
  MAX_DIAGNOSTICS,
  RUNTIME_SOURCES,
  type RuntimeSummary,
  runtimeDiagnostic,
  safeDisplayHint,
  sanitizeIdentifierBody,
  validateIdentifier,
} from "../../src/runner/summary.ts";

describe("RuntimeSummary on the wire", () => {
  it("writes the seed's fixture runtime exactly as serde does", () => {
    // FixtureRuntime::runtime_summary from the seed's tests, with one diagnostic added.
    const summary: RuntimeSummary = {
      runtime_id: "runtime-a",
      label: "runtime-a",
      kind: "fixture",
      status: "available",
      source: { ...RUNTIME_SOURCES.embeddedWorkerRuntimeReserved },
      host_ids: ["host-a"],
      capabilities: {
        can_list_hosts: true,
        can_list_workers: true,
        can_get_worker: true,
        can_spawn_worker: false,
        can_stop_worker: false,
        can_accept_input: false,
        has_workspace_fs: false,
        has_shell: false,
        has_git: false,
        supports_worktrees: false,
        supports_backend_internal_tools: false,
        workspace_scope: "none",
        max_workers: 1,
        os: "test",
        arch: "test",
      },
      diagnostics: [runtimeDiagnostic("remote_runtime_backend_proxy", "info", "m")],
    };
    expect(JSON.stringify(summary)).toBe(
      '{"runtime_id":"runtime-a","label":"runtime-a","kind":"fixture","status":"available","source":{"kind":"embedded_worker_runtime","status":"reserved","identity_authority":"runtime_registry_projection","note":"reserved boundary for an embedded worker-runtime adapter; not connected by this fixture source"},"host_ids":["host-a"],"capabilities":{"can_list_hosts":true,"can_list_workers":true,"can_get_worker":true,"can_spawn_worker":false,"can_stop_worker":false,"can_accept_input":false,"has_workspace_fs":false,"has_shell":false,"has_git":false,"supports_worktrees":false,"supports_backend_internal_tools":false,"workspace_scope":"none","max_workers":1,"os":"test","arch":"test"},"diagnostics":[{"code":"remote_runtime_backend_proxy","severity":"info","message":"m"}]}',
    );
  });

  it("maps severities as RuntimeDiagnostic::new and bounds diagnostics to 16", () => {
    expect(runtimeDiagnostic("c", "error", "m").severity).toBe("error");
    expect(runtimeDiagnostic("c", "warning", "m").severity).toBe("warning");
    expect(runtimeDiagnostic("c", "fatal", "m").severity).toBe("info");
    const many = Array.from({ length: 20 }, (_, index) =>
      runtimeDiagnostic(`d${index}`, "info", ""),
    );
    expect(MAX_DIAGNOSTICS).toBe(16);
    expect(boundDiagnostics(many)).toHaveLength(16);
    expect(boundDiagnostics(many).at(-1)!.code).toBe("d15");
  });
});

describe("identifiers (validate_backend_identifier)", () => {
  it("accepts the seed's ids and 1-120 of [A-Za-z0-9_:-]", () => {
    for (const id of [
      "runtime-a",
      "remote:primary",
      "worker-remote-1",
      "embedded-worker-runtime",
      "local:test",
      "---",
      "A:Z_09-",
      "z".repeat(120),
    ]) {
      expect(isValidIdentifier(id), id).toBe(true);
      expect(validateIdentifier("runtime_id", id)).toBe(id);
    }
  });

  it("refuses empty, too long, and any other character", () => {
    for (const id of [
      "",
      "z".repeat(121),
      "a b",
      "a/b",
      "a.b",
      "a\u0000",
      "ü",
      "bundle/1?x",
      "日本語-id",
    ]) {
      expect(isValidIdentifier(id), JSON.stringify(id)).toBe(false);
    }
    expect(isValidIdentifier(42)).toBe(false);
  });

  it("throws INVALID_IDENTIFIER naming the kind and the value, cut to 120 characters", () => {
    const check = (value: unknown) => {
      try {
        validateIdentifier("worker_id", value);
      } catch (error) {
        if (isSandboxError(error, "INVALID_IDENTIFIER")) return error.message;
        throw error;
      }
      throw new Error("accepted");
    };
    expect(check("a/b")).toBe(
      `worker_id "a/b" is not a valid identifier: use 1 to 120 ASCII letters, digits, '-', '_' or ':'.`,
    );
    expect(check("x".repeat(500))).toContain(`"${"x".repeat(120)}"`);
    expect(check("x".repeat(500))).not.toContain("x".repeat(121));
    expect(check("line\nbreak")).toContain('"line\\nbreak"');
    expect(check(null)).toContain("worker_id (null)");
  });
});

describe("bounded identifiers (bounded_backend_identifier)", () => {
  const p110 = "p".repeat(110);
  const cases: [prefix: string, value: string, expected: string][] = [
    ["embedded-", "local:test", "embedded-local-test-a2fa388634a6e2ed"],
    ["remote-", "remote:primary", "remote-remote-primary-3e64aea0035e79af"],
    ["", "remote:primary", "remote-primary-3e64aea0035e79af"],
    ["embedded-", "", "embedded-id-e3b0c44298fc1c14"],
    ["remote-", "---", "remote-id-cb3f91d54eee30e5"],
    ["embedded-", "Hello World/..x", "embedded-hello-world---x-811c132c7a17c4ae"],
    ["remote-", "日本語-id", "remote-id-c7bb40177a128566"],
    ["embedded-", "MiXeD_case-ID:1", "embedded-mixed_case-id-1-6dc5abe61697ffcb"],
    ["embedded-", "a".repeat(200), `embedded-${"a".repeat(94)}-c2a908d98f5df987`],
    ["remote-", "a".repeat(200), `remote-${"a".repeat(96)}-c2a908d98f5df987`],
    ["", "x".repeat(103), `${"x".repeat(103)}-ec92de5ced8448c1`],
    [
      "embedded-",
      `${"-".repeat(90)}${"b".repeat(30)}`,
      `embedded-${"b".repeat(30)}-366a445661c7fa75`,
    ],
    ["embedded-", "é".repeat(70), "embedded-id-78dcf717205d89b7"],
    // Cut to the 94-byte budget, the cut ends on "-", which is trimmed.
    [
      "embedded-",
      `${"a".repeat(93)}-${"b".repeat(50)}`,
      `embedded-${"a".repeat(93)}-5ec348ce6b1ae7b0`,
    ],
    // A prefix too long for any body: cut to 103 characters, then the digest.
    [p110, "local:test", `${"p".repeat(103)}-a2fa388634a6e2ed`],
    // The seed cuts the prefix by characters, so a multi-byte prefix can stay over 120 bytes.
    ["é".repeat(60), "local:test", `${"é".repeat(60)}-a2fa388634a6e2ed`],
  ];

  it("matches the seed's function", () => {
    for (const [prefix, value, expected] of cases) {
      expect(boundedIdentifier(prefix, value), `${prefix} + ${value}`).toBe(expected);
    }
  });

  it("gives valid identifiers for ASCII prefixes, whatever the value", () => {
    for (const [prefix, value] of cases) {
      if (!/^[\x20-\x7e]*$/.test(prefix)) continue;
      const id = boundedIdentifier(prefix, value);
      expect(id.length).toBeLessThanOrEqual(120);
      expect(isValidIdentifier(id), id).toBe(true);
    }
  });

  it("sanitizes bodies as sanitize_identifier_body", () => {
    expect(sanitizeIdentifierBody("Hello World/..x")).toBe("hello-world---x");
    expect(sanitizeIdentifierBody("MiXeD_case-ID:1")).toBe("mixed_case-id-1");
    expect(sanitizeIdentifierBody("日本語-id")).toBe("id");
    expect(sanitizeIdentifierBody("---")).toBe("");
  });
});

describe("safe display hints (safe_display_hint)", () => {
  it("drops control characters and slashes and keeps 80 characters", () => {
    expect(safeDisplayHint("a/b\\c")).toBe("abc");
    expect(safeDisplayHint("line\nbreak\ttab\u{7f}\u{85}")).toBe("linebreaktab");
    expect(safeDisplayHint("€".repeat(100))).toBe("€".repeat(80));
    expect(safeDisplayHint("builtin:coder")).toBe("builtin:coder");
  });
});
