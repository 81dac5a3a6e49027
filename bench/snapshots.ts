/**
 * Snapshot figures: size and time to take a snapshot, time to restore it, per backend and
 * kind, for a small session (10 cells) and a large one (200 cells, a 1 MiB workspace file,
 * a cell that builds a 200,000-element list). Part of `npm run bench`; also runs alone:
 * `node bench/snapshots.ts [quickjs] [pyodide]` (default: both).
 *
 * Python sessions are snapshotted as a journal and an image; their restores are measured
 * from the image (same build) and from the journal (a Pyodide runtime with another preload
 * list: another base image, so `planRestore` replays the journal). A Pyodide restore takes a
 * ready process from the pool: before each one the bench waits, untimed, until the pool is
 * full again, so the figure is that of a restore that finds a process waiting.
 *
 * Targets (issue 5): a 10-cell JavaScript session's journal snapshot <= 64 KB and its restore
 * <= 20 ms; a Python image restore <= 300 ms and <= 8 MB.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createKvTools } from "../capabilities/kv/index.ts";
import {
  createPyodideRuntime,
  DEFAULT_PRELOAD_MODULES,
  type PyodideRuntime,
} from "../runtimes/pyodide/index.ts";
import { openSessionImage } from "../runtimes/pyodide/session-image.ts";
import { createQuickJsRuntime } from "../runtimes/quickjs/index.ts";
import {
  DEFAULT_SESSION_LIMITS,
  FsSnapshotStore,
  type Language,
  type LanguageRuntime,
  MemorySnapshotStore,
  RuntimeRegistry,
  SessionManager,
  type SnapshotStore,
  ToolRegistry,
} from "../src/index.ts";
import { bytes, int, nowMs, SUMMARY_HEADER, sample, summaryRow, table } from "./stats.ts";

/** A backend to measure, and the cells of its sessions. */
export interface SnapshotBenchTarget {
  label: string;
  language: Language;
  create(): LanguageRuntime | Promise<LanguageRuntime>;
  /**
   * A runtime of the same backend on another build, if there is one to have: restores into
   * it replay the journal even where the snapshot holds an image.
   */
  createOtherBuild?(): LanguageRuntime | Promise<LanguageRuntime>;
  /** Cell `i` of a session (0-based), calling kv tools, the clock and randomness. */
  cell(i: number): string;
  /** A cell that builds a large value in the session. */
  bigCell: string;
  /** Code whose result is 0 in a restored session (cell 0's value). */
  check: string;
  /** Waits, untimed, until `runtime` can restore at once (a pool refilled). */
  ready?(runtime: LanguageRuntime): Promise<void>;
  /** Timed iterations of snapshots and of restores (default 30 each). */
  iterations?: number;
}

/** JavaScript on QuickJS. */
export const QUICKJS_TARGET: SnapshotBenchTarget = {
  label: "quickjs (javascript)",
  language: "javascript",
  create: () => createQuickJsRuntime({ threads: 1 }),
  cell: (i) =>
    `var cell${i} = { n: ${i}, at: Date.now(), luck: Math.random(), tags: ["a", "b", "c"] };\nawait kv_set("k${i}", cell${i});\nconst echoed${i} = await kv_get("k${i}");\nechoed${i}.n + cell${i}.tags.length`,
  bigCell: "var big = Array.from({ length: 200000 }, (_, i) => ({ i, s: String(i) })); big.length",
  check: "cell0.n",
};

/** Python on Pyodide: journal and image. */
export const PYODIDE_TARGET: SnapshotBenchTarget = {
  label: "pyodide (python)",
  language: "python",
  create: () => createPyodideRuntime({ poolSize: 2 }),
  createOtherBuild: () =>
    createPyodideRuntime({
      poolSize: 2,
      preloadModules: DEFAULT_PRELOAD_MODULES.filter((name) => name !== "csv"),
    }),
  cell: (i) =>
    `import random, time\ncell${i} = {"n": ${i}, "at": time.time(), "luck": random.random(), "tags": ["a", "b", "c"]}\nkv_set("k${i}", cell${i})\nechoed${i} = kv_get("k${i}")\nechoed${i}["n"] + len(cell${i}["tags"])`,
  bigCell: 'big = [{"i": i, "s": str(i)} for i in range(200_000)]\nlen(big)',
  check: 'cell0["n"]',
  ready: (runtime) => (runtime as PyodideRuntime).warmUp(),
  iterations: 10,
};

/** Every target, by name. */
export const SNAPSHOT_TARGETS: Readonly<Record<string, SnapshotBenchTarget>> = {
  quickjs: QUICKJS_TARGET,
  pyodide: PYODIDE_TARGET,
};

const ITERATIONS = 30;

/** Like `sample`, with `before` and `after` run untimed around each iteration. */
async function sampleBetween(
  warmup: number,
  iterations: number,
  before: () => Promise<unknown>,
  body: () => Promise<unknown>,
  after: () => Promise<unknown>,
): Promise<number[]> {
  const durations: number[] = [];
  for (let i = 0; i < warmup + iterations; i++) {
    await before();
    const start = nowMs();
    await body();
    const elapsed = nowMs() - start;
    await after();
    if (i >= warmup) durations.push(elapsed);
  }
  return durations;
}

interface Scenario {
  name: string;
  cells: number;
  big: boolean;
  fileBytes: number;
}

const SCENARIOS: Scenario[] = [
  { name: "small: 10 cells", cells: 10, big: false, fileBytes: 0 },
  {
    name: "large: 200 cells + 200k-element array + 1 MiB file",
    cells: 200,
    big: true,
    fileBytes: 1_048_576,
  },
];

/** Measures every target; answers the text to print. */
export async function snapshotBench(
  targets: SnapshotBenchTarget[] = [QUICKJS_TARGET],
): Promise<string> {
  const lines: string[] = [];
  const sizeRows: string[][] = [];
  const timeRows: string[][] = [];
  const key = new Uint8Array(randomBytes(32));
  const notes: string[] = [];
  for (const target of targets) {
    const runtime = await target.create();
    const runtimes = new RuntimeRegistry();
    runtimes.register(runtime);
    const other = target.createOtherBuild ? await target.createOtherBuild() : null;
    const otherRuntimes = new RuntimeRegistry();
    if (other) otherRuntimes.register(other);
    const ready = async (on: LanguageRuntime) => {
      await target.ready?.(on);
    };
    await ready(runtime);
    if (other) await ready(other);
    const iterations = target.iterations ?? ITERATIONS;
    const tools = new ToolRegistry();
    for (const tool of createKvTools()) tools.register(tool);
    const dataDir = mkdtempSync(join(tmpdir(), "bench-snapshots-"));
    const stores: [string, SnapshotStore][] = [
      ["memory store", new MemorySnapshotStore({ maxBytes: 8 * 1_073_741_824 })],
      ["filesystem store (fsync)", new FsSnapshotStore({ directory: dataDir })],
    ];
    const ceilings = { ...DEFAULT_SESSION_LIMITS, memory_mb: 512, wall_ms: 60_000, cpu_ms: 60_000 };
    const managerOn = (registry: RuntimeRegistry, store: SnapshotStore) =>
      new SessionManager({
        runtimes: registry,
        tools,
        defaults: { ...DEFAULT_SESSION_LIMITS, memory_mb: 256, wall_ms: 30_000, cpu_ms: 30_000 },
        ceilings,
        defaultLanguage: target.language,
        maxSessions: 10_000,
        snapshots: { store, key },
      });
    try {
      for (const scenario of SCENARIOS) {
        for (const [storeLabel, store] of stores) {
          const manager = managerOn(runtimes, store);
          const id = "bench-snapshot";
          for (let i = 0; i < scenario.cells; i++) {
            const result = await manager.run({ session_id: id, code: target.cell(i) });
            if (result.status !== "ok")
              notes.push(`${target.label} cell ${i}: ${result.status} ${result.error?.message}`);
          }
          if (scenario.big) {
            const result = await manager.run({ session_id: id, code: target.bigCell });
            if (result.status !== "ok")
              notes.push(`${target.label} big cell: ${result.status} ${result.error?.message}`);
          }
          if (scenario.fileBytes > 0) {
            manager.workspaces
              .get(id)
              .write("data/blob.bin", new Uint8Array(randomBytes(scenario.fileBytes)));
          }
          let info = await manager.snapshotSession(id);
          const snapshotTimes = await sample(2, iterations, async () => {
            info = await manager.snapshotSession(id);
          });
          const snapshotBytes = await manager.getSnapshot(info.snapshot_id);
          const imageNote =
            runtime.info.snapshotKinds.includes("image") && info.kinds.includes("image")
              ? await describeImage(runtime, id)
              : "";
          if (storeLabel === stores[0]![0]) {
            sizeRows.push([
              `${target.label}, ${scenario.name}`,
              info.kinds.join("+"),
              bytes(info.bytes),
              int(info.journal_runs),
              imageNote,
              target.language === "javascript" && scenario.cells === 10
                ? "target <= 64 KB"
                : target.language === "python"
                  ? "image target <= 8 MB"
                  : "",
            ]);
          }
          // Restores into this build (the image where there is one), then into another (the journal).
          const into: [RuntimeRegistry, LanguageRuntime][] = [[runtimes, runtime]];
          if (other) into.push([otherRuntimes, other]);
          for (const [registry, restoringRuntime] of into) {
            const restoring = registry === runtimes ? manager : managerOn(registry, store);
            let n = 0;
            let restoredFrom = "";
            let restoredId = "";
            // From bytes in memory with the memory store; by id (read from disk) with the filesystem's.
            const fromStore = storeLabel !== stores[0]![0];
            const restoreTimes = await sampleBetween(
              2,
              iterations,
              () => ready(restoringRuntime),
              async () => {
                const restored = await restoring.restoreSession({
                  ...(fromStore ? { snapshot_id: info.snapshot_id } : { snapshot: snapshotBytes }),
                  session_id: `restored-${++n}`,
                });
                restoredFrom = restored.restored_from;
                restoredId = restored.session.id;
              },
              () => restoring.destroySession(restoredId),
            );
            await ready(restoringRuntime);
            const check = await restoring.restoreSession({
              snapshot: snapshotBytes,
              session_id: "restored-check",
            });
            const seen = await restoring.run({ session_id: "restored-check", code: target.check });
            if (seen.result !== 0)
              notes.push(
                `${target.label}: a restored session answered ${JSON.stringify(seen.result)} for ${target.check}`,
              );
            await restoring.destroySession(check.session.id);
            const where = registry === runtimes ? "" : ", into another build";
            const label = `${target.label}, ${scenario.name}, ${storeLabel}${where}`;
            if (registry === runtimes)
              timeRows.push(summaryRow(`snapshot: ${label}`, snapshotTimes));
            timeRows.push(
              summaryRow(
                `restore (${restoredFrom}): ${label}`,
                restoreTimes,
                target.language !== "python" && scenario.cells === 10
                  ? "target <= 20 ms p50"
                  : restoredFrom === "image"
                    ? "target <= 300 ms"
                    : "",
              ),
            );
            if (restoring !== manager) await restoring.close();
          }
          await manager.close();
        }
      }
    } finally {
      await runtimes.close();
      await otherRuntimes.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
  lines.push(
    table(["session", "kinds", "snapshot bytes", "journal runs", "image", "target"], sizeRows),
  );
  lines.push("");
  lines.push(table(SUMMARY_HEADER, timeRows));
  lines.push(
    "",
    "snapshot = capture (journal, and the backend's image where it makes one) + zstd + seal + store put (time to a durable id); restore = (store get +) verify + decode + replay (or image load), with the workspace — from bytes in memory with the memory store, by snapshot id from disk with the filesystem store; each restored session is destroyed after, untimed; a Pyodide restore finds a ready process (the bench waits, untimed, for the pool to refill before each)",
  );
  for (const note of notes) lines.push(`unexpected: ${note}`);
  return lines.join("\n");
}

/** An image's size against the memory it describes (Pyodide: a delta against the base image). */
async function describeImage(runtime: LanguageRuntime, sessionId: string): Promise<string> {
  if (runtime.info.id !== "pyodide") return "";
  const { header, image } = openSessionImage(await runtime.snapshotSession(sessionId));
  const pages = Math.ceil(header.heap_bytes / 4_096);
  return `${bytes(image.byteLength)} for ${bytes(header.heap_bytes)} of memory (${int(header.changed_pages)} of ${int(pages)} pages differ from the base image)`;
}

if (import.meta.main) {
  const names = process.argv.slice(2);
  const chosen = (names.length > 0 ? names : Object.keys(SNAPSHOT_TARGETS)).map((name) => {
    const target = SNAPSHOT_TARGETS[name];
    if (!target)
      throw new Error(`unknown target ${name}: ${Object.keys(SNAPSHOT_TARGETS).join(", ")}`);
    return target;
  });
  process.stdout.write(`${await snapshotBench(chosen)}\n`);
}
