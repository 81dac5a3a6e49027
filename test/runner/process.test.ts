/**
 * Seed 003's process types (the seed's four tests, as JSON round trips), RFC 3339 and Rust
 * `{:?}` as the seed's crates write them, and the server's ProcessRegistry. Expected JSON texts
 * are what serde_json 1.0.87 and time 0.3.9 wrote for the seed's own types.
 */
import { describe, expect, it } from "vitest";
import { isSandboxError } from "../../src/errors.ts";
import {
  commandSummary,
  createProcessDescriptor,
  isFinishedState,
  type ProcessDescriptor,
  type ProcessState,
  type ProcessStopResult,
  parseProcessDescriptor,
  parseProcessOutput,
  parseProcessState,
  parseProcessStopResult,
  processStateName,
} from "../../src/runner/process.ts";
import {
  type ProcessEvent,
  ProcessRegistry,
  type ProcessRegistryOptions,
} from "../../src/runner/process-registry.ts";
import { formatRfc3339, normalizeRfc3339, rfc3339ToEpochMs } from "../../src/runner/rfc3339.ts";
import { rustDebugString } from "../../src/runner/rust-debug.ts";

/** The seed's test fixture `descriptor()`. */
function descriptor(): ProcessDescriptor {
  return {
    processId: "process-1",
    origin: "command_exec",
    state: "running",
    command: ["curl", "Authorization=Bearer abc123", "https://example.test"],
    commandSummary: "curl Authorization=<redacted> https://example.test",
    cwd: "/repo",
    pid: 1234,
    taskId: "task-1",
    threadId: "thread-1",
    turnId: "turn-1",
    stoppable: true,
    startedAt: formatRfc3339(0),
    updatedAt: formatRfc3339(0),
    stdoutTail: "ready\n",
  };
}

const DESCRIPTOR_JSON =
  '{"processId":"process-1","origin":"command_exec","state":"running","command":["curl","Authorization=Bearer abc123","https://example.test"],"commandSummary":"curl Authorization=<redacted> https://example.test","cwd":"/repo","pid":1234,"taskId":"task-1","threadId":"thread-1","turnId":"turn-1","stoppable":true,"startedAt":"1970-01-01T00:00:00Z","updatedAt":"1970-01-01T00:00:00Z","stdoutTail":"ready\\n"}';

describe("seed 003 tests", () => {
  it("process_descriptor_uses_public_process_id_and_camel_case_fields", () => {
    const value = JSON.parse(JSON.stringify(descriptor()));
    expect(value.processId).toBe("process-1");
    expect(value.pid).toBe(1234);
    expect(value.process_id).toBeUndefined();
    expect(value.state).toBe("running");
    expect(value.commandSummary).toBe(descriptor().commandSummary);
    expect(JSON.stringify(value)).toBe(DESCRIPTOR_JSON);
    expect(parseProcessDescriptor(value)).toEqual(descriptor());
  });

  it("process_state_variants_round_trip_with_payloads", () => {
    const exited: ProcessState = { exited: { exitCode: 0 } };
    let value = JSON.parse(JSON.stringify(exited));
    expect(value.exited.exitCode).toBe(0);
    expect(parseProcessState(value)).toEqual(exited);

    const failed: ProcessState = { failed: { error: "spawn failed" } };
    value = JSON.parse(JSON.stringify(failed));
    expect(value.failed.error).toBe("spawn failed");
    expect(parseProcessState(value)).toEqual(failed);
  });

  it("command_summary_redacts_secret_like_arguments", () => {
    const command = [
      "curl",
      "API_KEY=abc123",
      "--header",
      "Authorization: Bearer abc123",
      "hello world",
    ];
    expect(commandSummary(command)).toBe(
      'curl API_KEY=<redacted> --header <redacted> "hello world"',
    );
  });

  it("process_stop_result_round_trips_descriptor", () => {
    const result: ProcessStopResult = {
      processId: "process-1",
      stopped: true,
      process: descriptor(),
    };
    const value = JSON.parse(JSON.stringify(result));
    expect(value.processId).toBe("process-1");
    expect(typeof value.process.pid).toBe("number");
    expect(parseProcessStopResult(value)).toEqual(result);
    expect(JSON.stringify(result)).toBe(
      `{"processId":"process-1","stopped":true,"process":${DESCRIPTOR_JSON}}`,
    );
    expect(JSON.stringify(parseProcessStopResult({ processId: "p", stopped: false }))).toBe(
      '{"processId":"p","stopped":false}',
    );
  });
});

describe("process states on the wire", () => {
  it("writes unit variants as strings and payload variants externally tagged", () => {
    const states = ["starting", "running", "stopping", "stopped"].map((name) =>
      parseProcessState(name),
    );
    expect(JSON.stringify(states)).toBe('["starting","running","stopping","stopped"]');
    expect(JSON.stringify(parseProcessState({ exited: { exitCode: null } }))).toBe(
      '{"exited":{"exitCode":null}}',
    );
    expect(states.map(isFinishedState)).toEqual([false, false, false, true]);
    expect(isFinishedState({ exited: { exitCode: 1 } })).toBe(true);
    expect(isFinishedState({ failed: { error: "x" } })).toBe(true);
    expect(processStateName({ failed: { error: "x" } })).toBe("failed");
    expect(processStateName({ exited: { exitCode: 0 } })).toBe("exited");
    expect(processStateName("stopping")).toBe("stopping");
  });

  it("reads what serde_json reads and refuses the rest", () => {
    expect(parseProcessState({ running: null })).toBe("running");
    expect(parseProcessState({ exited: {} })).toEqual({ exited: { exitCode: null } });
    // serde ignores the unknown snake_case field, so the exit code is None.
    expect(parseProcessState({ exited: { exit_code: 3 } })).toEqual({ exited: { exitCode: null } });
    for (const bad of [
      "exited",
      "done",
      { running: {} },
      { exited: {}, failed: { error: "x" } },
      3,
    ]) {
      expect(() => parseProcessState(bad), JSON.stringify(bad)).toThrow();
    }
  });

  it("reads a descriptor's times and writes them back as time does", () => {
    const json = JSON.parse(DESCRIPTOR_JSON);
    json.startedAt = "1970-01-01t00:00:00.500+00:00";
    expect(parseProcessDescriptor(json).startedAt).toBe("1970-01-01T00:00:00.5Z");
    json.startedAt = "yesterday";
    expect(() => parseProcessDescriptor(json)).toThrow(
      'ProcessDescriptor.startedAt must be an RFC 3339 date-time, not "yesterday".',
    );
  });

  it("defaults an output's droppedBytes to 0 and leaves absent ids out", () => {
    const output = parseProcessOutput({
      processId: "p",
      stream: "stdout",
      chunk: "hi",
      timestamp: "1970-01-01T00:00:00Z",
    });
    expect(JSON.stringify(output)).toBe(
      '{"processId":"p","stream":"stdout","chunk":"hi","droppedBytes":0,"timestamp":"1970-01-01T00:00:00Z"}',
    );
    expect(() =>
      parseProcessOutput({
        processId: "p",
        stream: "tty",
        chunk: "",
        timestamp: "1970-01-01T00:00:00Z",
      }),
    ).toThrow('ProcessOutput.stream must be one of stdout, stderr, log, not "tty".');
  });
});

describe("RFC 3339 as time::serde::rfc3339", () => {
  it("writes UTC with the fraction trimmed of trailing zeros, or none", () => {
    const base = 1_700_000_000_000;
    expect(formatRfc3339(0)).toBe("1970-01-01T00:00:00Z");
    expect(formatRfc3339(base)).toBe("2023-11-14T22:13:20Z");
    expect(formatRfc3339(base + 500)).toBe("2023-11-14T22:13:20.5Z");
    expect(formatRfc3339(base + 120)).toBe("2023-11-14T22:13:20.12Z");
    expect(formatRfc3339(base + 123)).toBe("2023-11-14T22:13:20.123Z");
    expect(formatRfc3339(base + 1)).toBe("2023-11-14T22:13:20.001Z");
    expect(formatRfc3339(-1_000)).toBe("1969-12-31T23:59:59Z");
    expect(() => formatRfc3339(Date.UTC(10_000, 0, 1))).toThrow(RangeError);
    expect(() => formatRfc3339(Number.NaN)).toThrow(RangeError);
  });

  it("reads what time reads and writes it back the same way", () => {
    const cases: [string, string | null][] = [
      ["2024-01-01T12:34:56.789+02:00", "2024-01-01T12:34:56.789+02:00"],
      ["2024-01-01t12:34:56z", "2024-01-01T12:34:56Z"],
      ["2024-01-01T12:34:56.500-00:00", "2024-01-01T12:34:56.5Z"],
      ["2024-01-01T00:00:00.1234567891Z", "2024-01-01T00:00:00.123456789Z"],
      ["2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999999Z"],
      ["2024-01-01T12:34:56-05:30", "2024-01-01T12:34:56-05:30"],
      ["2024-01-01 12:34:56Z", null],
      ["2023-02-30T00:00:00Z", null],
      ["2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z"],
      ["2023-02-01T24:00:00Z", null],
      ["2016-12-30T23:59:60Z", null],
      ["2024-01-01T12:34:56+24:00", null],
      ["2024-01-01T12:34:56", null],
      ["2024-01-01T12:34:56.Z", null],
    ];
    for (const [input, expected] of cases) expect(normalizeRfc3339(input), input).toBe(expected);
  });

  it("reads the instant, offsets applied", () => {
    expect(rfc3339ToEpochMs("1970-01-01T00:00:00Z")).toBe(0);
    expect(rfc3339ToEpochMs("1970-01-01T02:00:00.250+02:00")).toBe(250);
    expect(rfc3339ToEpochMs("0000-01-01T00:00:00Z")).toBe(-62_167_219_200_000);
    expect(rfc3339ToEpochMs("2024-02-29T23:59:59.999999999-01:00")).toBe(
      Date.parse("2024-03-01T00:59:59.999Z"),
    );
    expect(rfc3339ToEpochMs("nope")).toBeNull();
  });
});

describe("Rust's {:?} of a string", () => {
  it("matches rustc 1.95 on a sample of every kind of escape", () => {
    // Printed by `println!("{:?}", "tab\there ...")` with rustc 1.95.
    expect(
      rustDebugString(
        'tab\there "q" back\\slash\r\n\0 \u{7f} \u{1b}[0m é 日本 \u{200b} \u{feff} \u{a0}',
      ),
    ).toBe(
      '"tab\\there \\"q\\" back\\\\slash\\r\\n\\0 \\u{7f} \\u{1b}[0m é 日本 \\u{200b} \\u{feff} \\u{a0}"',
    );
    expect(rustDebugString("a\u{301}b")).toBe('"a\\u{301}b"');
    expect(rustDebugString("emoji 🎉 ok")).toBe('"emoji 🎉 ok"');
  });

  it("quotes only parts with whitespace and redacts secret-like parts in command summaries", () => {
    expect(commandSummary(["echo", "a\tb", "no_space", "line\nbreak"])).toBe(
      'echo "a\\tb" no_space "line\\nbreak"',
    );
    expect(commandSummary(["--password=x=y", "TOKEN", "my secret", "x\u{a0}y"])).toBe(
      '--password=<redacted> <redacted> <redacted> "x\\u{a0}y"',
    );
    // Only ASCII letters are lower-cased, as Rust's to_ascii_lowercase: the Kelvin sign (which
    // JavaScript's toLowerCase turns into "k") stays, so "TO\u{212a}EN" is no token.
    expect(commandSummary(["TOKEN=1", "TO\u{212a}EN"])).toBe("TOKEN=<redacted> TO\u{212a}EN");
    expect(commandSummary([])).toBe("");
  });
});

/** A registry on a clock the test moves by hand. */
function registryAt(options: ProcessRegistryOptions = {}) {
  const clock = { ms: 1_700_000_000_000 };
  const registry = new ProcessRegistry({ now: () => clock.ms, ...options });
  const events: ProcessEvent[] = [];
  registry.subscribeAll((event) => events.push(event));
  const start = (
    processId: string,
    extra: Partial<Parameters<typeof createProcessDescriptor>[0]> = {},
    stopper: Parameters<ProcessRegistry["register"]>[1] = null,
  ) =>
    registry.register(
      createProcessDescriptor(
        { processId, command: ["python", "-c", "print(1)"], ...extra },
        clock.ms,
      ),
      stopper,
    );
  return { registry, clock, events, start };
}

function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (isSandboxError(error)) return error.code;
    throw error;
  }
  return "no error";
}

describe("ProcessRegistry lifecycle", () => {
  it("registers as running, exits once, and bumps updatedAt", () => {
    const { registry, clock, events, start } = registryAt();
    const registered = start("cmd-1", { runnerSessionId: "rs-1" }, { stop: async () => {} });
    expect(registered.state).toBe("running");
    expect(registered.origin).toBe("remote_runner");
    expect(registered.commandSummary).toBe("python -c print(1)");
    expect(registered.startedAt).toBe("2023-11-14T22:13:20Z");
    expect(registered.stoppable).toBe(true);
    expect(events.map((event) => event.type)).toEqual(["started"]);

    clock.ms += 1_500;
    const exited = registry.markExited("cmd-1", 0);
    expect(exited.state).toEqual({ exited: { exitCode: 0 } });
    expect(exited.stoppable).toBe(false);
    expect(exited.updatedAt).toBe("2023-11-14T22:13:21.5Z");
    expect(events.at(-1)).toMatchObject({ type: "exited", data: { exitCode: 0 } });

    // The first ending reported wins.
    clock.ms += 1_000;
    expect(registry.markStopped("cmd-1", "late").state).toEqual({ exited: { exitCode: 0 } });
    expect(registry.markFailed("cmd-1", "late").updatedAt).toBe("2023-11-14T22:13:21.5Z");
    expect(events).toHaveLength(2);
  });

  it("writes lifecycle events in the seed's shapes", () => {
    const { registry, events, start } = registryAt();
    start("a");
    registry.markExited("a", null);
    start("b");
    registry.markFailed("b", "spawn failed");
    const [started, exited, , failed] = events;
    expect(Object.keys(started!.data)).toEqual(["process", "timestamp"]);
    // exitCode is left out when there is none (skip_serializing_if).
    expect(Object.keys(exited!.data)).toEqual(["process", "timestamp"]);
    expect(JSON.stringify((exited!.data as { process: ProcessDescriptor }).process.state)).toBe(
      '{"exited":{"exitCode":null}}',
    );
    expect(failed).toMatchObject({ type: "failed", data: { error: "spawn failed" } });
  });

  it("refuses unknown ids, live duplicates and bad states; replaces finished duplicates", () => {
    const { registry, start } = registryAt();
    expect(codeOf(() => registry.markExited("nope", 0))).toBe("PROCESS_NOT_FOUND");
    expect(codeOf(() => registry.require("nope"))).toBe("PROCESS_NOT_FOUND");
    expect(registry.get("nope")).toBeUndefined();
    start("cmd-1");
    expect(codeOf(() => start("cmd-1"))).toBe("PROCESS_EXISTS");
    registry.appendText("cmd-1", "stdout", "old output");
    registry.markExited("cmd-1", 1);
    expect(start("cmd-1").state).toBe("running");
    expect(registry.readOutput("cmd-1")).toEqual([]);
    const finished = {
      ...createProcessDescriptor({ processId: "x", command: [] }),
      state: "stopped" as const,
    };
    expect(codeOf(() => registry.register(finished))).toBe("INVALID_REQUEST");
    expect(codeOf(() => registry.markExited("cmd-1", 2 ** 31))).toBe("INVALID_REQUEST");
  });

  it("checks startedAt and clamps one in the future to now", () => {
    const { registry, clock } = registryAt();
    const later = createProcessDescriptor({ processId: "p", command: ["x"] }, clock.ms + 60_000);
    expect(registry.register(later).startedAt).toBe(formatRfc3339(clock.ms));
    registry.markExited("p", 0);
    const bad = {
      ...createProcessDescriptor({ processId: "p", command: ["y"] }),
      startedAt: "soon",
    };
    expect(codeOf(() => registry.register(bad))).toBe("INVALID_REQUEST");
    // The refused registration replaced nothing.
    expect(registry.get("p")).toMatchObject({ command: ["x"], state: { exited: { exitCode: 0 } } });
  });

  it("lists by runner session and finished state", () => {
    const { registry, start } = registryAt();
    start("a", { runnerSessionId: "s1" });
    start("b", { runnerSessionId: "s2" });
    start("c", { runnerSessionId: "s1" });
    registry.markExited("a", 0);
    expect(registry.list().map((process) => process.processId)).toEqual(["a", "b", "c"]);
    expect(registry.list({ runnerSessionId: "s1" }).map((process) => process.processId)).toEqual([
      "a",
      "c",
    ]);
    expect(
      registry
        .list({ runnerSessionId: "s1", includeFinished: false })
        .map((process) => process.processId),
    ).toEqual(["c"]);
  });

  it("forgets the processes that finished longest ago, never running ones", () => {
    const { registry, clock, start } = registryAt({ maxProcesses: 2 });
    start("a");
    start("b");
    clock.ms += 1;
    registry.markExited("b", 0);
    clock.ms += 1;
    registry.markExited("a", 0);
    start("c");
    expect(registry.list().map((process) => process.processId)).toEqual(["a", "c"]);
    start("d");
    expect(registry.list().map((process) => process.processId)).toEqual(["c", "d"]);
    start("e");
    // Three running processes: none can be dropped.
    expect(registry.list().map((process) => process.processId)).toEqual(["c", "d", "e"]);
  });

  it("returns copies, never its own state", () => {
    const { registry, start } = registryAt();
    const registered = start("a");
    registered.command.push("changed");
    registry.get("a")!.command.push("changed");
    expect(registry.get("a")!.command).toEqual(["python", "-c", "print(1)"]);
  });

  it("answers the seed's ProcessRegistrySink methods", async () => {
    const { registry } = registryAt();
    const process = createProcessDescriptor({ processId: "p", command: ["node", "x.js"] });
    await expect(registry.registerProcess(process, null)).resolves.toMatchObject({
      state: "running",
    });
    await registry.appendProcessOutput({
      processId: "p",
      stream: "stderr",
      chunk: "oops\n",
      droppedBytes: 0,
      timestamp: "2024-01-01T00:00:00Z",
    });
    await registry.markProcessFailed("p", "runner lost");
    expect(registry.get("p")).toMatchObject({
      state: { failed: { error: "runner lost" } },
      stderrTail: "oops\n",
    });
    await expect(registry.markProcessExited("nope", 0)).rejects.toMatchObject({
      code: "PROCESS_NOT_FOUND",
    });
  });
});

describe("ProcessRegistry output", () => {
  it("keeps the last tailBytes of stdout and stderr at character boundaries", () => {
    const { registry, start } = registryAt({ tailBytes: 8 });
    start("p");
    registry.appendText("p", "stdout", "hello ");
    registry.appendText("p", "stdout", "world\n");
    registry.appendText("p", "stderr", "é€€"); // 2 + 3 + 3 bytes
    registry.appendText("p", "stderr", "!");
    registry.appendText("p", "log", "not a tail");
    const process = registry.get("p")!;
    expect(process.stdoutTail).toBe("o world\n");
    // 9 bytes: the 2-byte é cannot be cut in half, so it goes.
    expect(process.stderrTail).toBe("€€!");
  });

  it("drops the oldest chunks past maxOutputBytes and counts them for a reader", () => {
    const { registry, start } = registryAt({ maxOutputBytes: 10 });
    start("p");
    expect(registry.appendText("p", "stdout", "aaaa")?.cursor).toBe(4);
    expect(registry.appendText("p", "stdout", "bbbb")?.cursor).toBe(8);
    expect(registry.appendText("p", "stderr", "cccc")?.cursor).toBe(12);
    const chunks = registry.readOutput("p", 0);
    expect(
      chunks.map((chunk) => [chunk.cursor, chunk.output.chunk, chunk.output.droppedBytes]),
    ).toEqual([
      [8, "bbbb", 4],
      [12, "cccc", 0],
    ]);
    // A reader that had seen "aaaa" lost nothing.
    expect(registry.readOutput("p", 4)[0]!.output.droppedBytes).toBe(0);
  });

  it("cuts a chunk larger than the ring to its end and says how much went", () => {
    const { registry, start } = registryAt({ maxOutputBytes: 10 });
    start("p");
    const stored = registry.appendText("p", "stdout", "0123456789AB");
    expect(stored).toMatchObject({ cursor: 12, output: { chunk: "23456789AB", droppedBytes: 2 } });
    expect(registry.readOutput("p", 0)[0]!.output.droppedBytes).toBe(2);
    // Bytes the producer lost count too, and move the cursor.
    expect(registry.appendText("p", "stdout", "x", 5)).toMatchObject({
      cursor: 18,
      output: { droppedBytes: 5 },
    });
    expect(registry.readOutput("p", 12)[0]!.output.droppedBytes).toBe(5);
    // Nothing at all is not a chunk.
    expect(registry.appendText("p", "stdout", "")).toBeNull();
  });

  it("refuses cursors it never gave", () => {
    const { registry, start } = registryAt();
    start("p");
    registry.appendText("p", "stdout", "hello");
    for (const cursor of [-1, 6, 2, 1.5]) {
      expect(
        codeOf(() => registry.readOutput("p", cursor)),
        String(cursor),
      ).toBe("INVALID_REQUEST");
    }
    expect(registry.readOutput("p", 5)).toEqual([]);
  });
});

describe("ProcessRegistry subscriptions", () => {
  it("resumes from the last cursor seen: the rest, no duplicates", () => {
    const { registry, start } = registryAt();
    start("p");
    const texts = ["one ", "two ", "three ", "four ", "five"];
    registry.appendText("p", "stdout", texts[0]!);

    const first: ProcessEvent[] = [];
    const subscription = registry.subscribe("p", 0, (event) => first.push(event));
    registry.appendText("p", "stdout", texts[1]!);
    subscription.unsubscribe();
    registry.appendText("p", "stdout", texts[2]!);
    registry.appendText("p", "stderr", texts[3]!);

    const seen = first.filter((event) => event.type === "output");
    const lastCursor =
      seen.at(-1)!.type === "output" ? (seen.at(-1) as { cursor: number }).cursor : -1;
    const second: ProcessEvent[] = [];
    const resumed = registry.subscribe("p", lastCursor, (event) => second.push(event));
    registry.appendText("p", "stdout", texts[4]!);

    const chunks = (events: ProcessEvent[]) =>
      events.flatMap((event) => (event.type === "output" ? [event.data.chunk] : []));
    expect(chunks(first)).toEqual(["one ", "two "]);
    expect(chunks(second)).toEqual(["three ", "four ", "five"]);
    expect(chunks(first).join("") + chunks(second).join("")).toBe(texts.join(""));
    expect(second.every((event) => event.type !== "output" || event.data.droppedBytes === 0)).toBe(
      true,
    );
    expect(resumed.cursor).toBe(8 + 6 + 5);
    resumed.unsubscribe();
  });

  it("tells a returning reader how much the ring dropped while it was away", () => {
    const { registry, start } = registryAt({ maxOutputBytes: 8 });
    start("p");
    registry.appendText("p", "stdout", "abcd");
    registry.appendText("p", "stdout", "efgh");
    registry.appendText("p", "stdout", "ijkl");
    registry.appendText("p", "stdout", "mnop");
    const events: ProcessEvent[] = [];
    registry.subscribe("p", 4, (event) => events.push(event));
    expect(
      events.map((event) => event.type === "output" && [event.data.chunk, event.data.droppedBytes]),
    ).toEqual([
      ["ijkl", 4],
      ["mnop", 0],
    ]);
  });

  it("starts live at the end with a null cursor, and replays the ending to late watchers", () => {
    const { registry, start } = registryAt();
    start("p");
    registry.appendText("p", "stdout", "before");
    const live: ProcessEvent[] = [];
    const subscription = registry.subscribe("p", null, (event) => live.push(event));
    expect(subscription.cursor).toBe(6);
    expect(live).toEqual([]);
    registry.markExited("p", 3);
    expect(live.map((event) => event.type)).toEqual(["exited"]);

    const late: ProcessEvent[] = [];
    const lateSubscription = registry.subscribe("p", 0, (event) => late.push(event));
    expect(late.map((event) => event.type)).toEqual(["output", "exited"]);
    expect(lateSubscription.process.state).toEqual({ exited: { exitCode: 3 } });
  });

  it("keeps order when a listener causes events while its backlog is delivered", () => {
    const { registry, start } = registryAt();
    start("p");
    registry.appendText("p", "stdout", "a");
    registry.appendText("p", "stdout", "b");
    const order: string[] = [];
    registry.subscribe("p", 0, (event) => {
      if (event.type !== "output") return;
      order.push(event.data.chunk);
      if (event.data.chunk === "a") registry.appendText("p", "stdout", "c");
    });
    expect(order).toEqual(["a", "b", "c"]);
  });

  it("stops telling a watcher of every process once it unsubscribes", () => {
    const { registry, events, start } = registryAt();
    const seen: ProcessEvent[] = [];
    const unsubscribe = registry.subscribeAll((event) => seen.push(event));
    start("p");
    unsubscribe();
    registry.appendText("p", "stdout", "x");
    expect(seen.map((event) => event.type)).toEqual(["started"]);
    expect(events.map((event) => event.type)).toEqual(["started", "output"]);
  });

  it("drops a listener that throws, tells onListenerError, and keeps the others", () => {
    const errors: unknown[] = [];
    const { registry, start } = registryAt({ onListenerError: (error) => errors.push(error) });
    start("p");
    let calls = 0;
    registry.subscribe("p", null, () => {
      calls++;
      throw new Error("broken listener");
    });
    const good: ProcessEvent[] = [];
    registry.subscribe("p", null, (event) => good.push(event));
    registry.appendText("p", "stdout", "1");
    registry.appendText("p", "stdout", "2");
    expect(calls).toBe(1);
    expect(errors).toHaveLength(1);
    expect(good).toHaveLength(2);
  });
});

describe("ProcessRegistry stop", () => {
  it("stops through the stopper: stopping, then stopped with the reason", async () => {
    const { registry, events, start } = registryAt();
    const reasons: (string | null)[] = [];
    let release = () => {};
    start(
      "p",
      {},
      {
        stop: (reason) => {
          reasons.push(reason);
          return new Promise<void>((resolve) => {
            release = resolve;
          });
        },
      },
    );
    const stopping = registry.stop("p", "user asked");
    expect(registry.get("p")!.state).toBe("stopping");
    expect(registry.stop("p")).toBe(stopping);
    release();
    const result = await stopping;
    expect(reasons).toEqual(["user asked"]);
    expect(result).toMatchObject({
      processId: "p",
      stopped: true,
      process: { state: "stopped", stoppable: false },
    });
    expect(events.map((event) => event.type)).toEqual(["started", "stopping", "stopped"]);
    expect(events[1]!.data).toMatchObject({ processId: "p", reason: "user asked" });
    expect(events[2]!.data).toMatchObject({ reason: "user asked" });
    expect(await registry.stop("p")).toMatchObject({
      stopped: false,
      process: { state: "stopped" },
    });
  });

  it("keeps the ending the owner reports during the stop", async () => {
    const { registry, start } = registryAt();
    start(
      "p",
      {},
      {
        stop: async () => {
          registry.appendText("p", "stdout", "bye\n");
          registry.markExited("p", 137);
        },
      },
    );
    const result = await registry.stop("p");
    expect(result.process!.state).toEqual({ exited: { exitCode: 137 } });
    expect(result.process!.stdoutTail).toBe("bye\n");
  });

  it("goes back to running when the stopper fails", async () => {
    const { registry, start } = registryAt();
    start(
      "p",
      {},
      {
        stop: async () => {
          throw new Error("cannot stop");
        },
      },
    );
    await expect(registry.stop("p")).rejects.toThrow("cannot stop");
    expect(registry.get("p")!.state).toBe("running");
  });

  it("leaves alone what has no stopper or is unknown", async () => {
    const { registry, start } = registryAt();
    expect(start("p").stoppable).toBe(false);
    expect(await registry.stop("p")).toMatchObject({
      stopped: false,
      process: { state: "running" },
    });
    await expect(registry.stop("nope")).rejects.toMatchObject({ code: "PROCESS_NOT_FOUND" });
  });

  it("stops every running process", async () => {
    const { registry, start } = registryAt();
    start("a", {}, { stop: async () => {} });
    start(
      "b",
      {},
      {
        stop: async () => {
          throw new Error("stuck");
        },
      },
    );
    const results = await registry.stopAll("shutdown");
    expect(results).toEqual([
      expect.objectContaining({ processId: "a", stopped: true }),
      { processId: "b", stopped: false },
    ]);
  });
});
