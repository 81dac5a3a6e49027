/**
 * Snapshot figures: size and time to take a snapshot, time to restore it, per backend and
 * kind, for a small session (10 cells) and a large one (200 cells, a 1 MiB workspace file,
 * a cell that builds a 200,000-element array). Part of `npm run bench`; also runs alone:
 * `node bench/snapshots.ts`.
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
import { bytes, int, SUMMARY_HEADER, sample, summaryRow, table } from "./stats.ts";

/** A backend to measure, and the cells of its sessions. */
export interface SnapshotBenchTarget {
  label: string;
  language: Language;
  create(): LanguageRuntime | Promise<LanguageRuntime>;
  /** Cell `i` of a session (0-based), calling kv tools, the clock and randomness. */
  cell(i: number): string;
  /** A cell that builds a large value in the session. */
  bigCell: string;
}

/** JavaScript on QuickJS. */
export const QUICKJS_TARGET: SnapshotBenchTarget = {
  label: "quickjs (javascript)",
  language: "javascript",
  create: () => createQuickJsRuntime({ threads: 1 }),
  cell: (i) =>
    `var cell${i} = { n: ${i}, at: Date.now(), luck: Math.random(), tags: ["a", "b", "c"] };\nawait kv_set("k${i}", cell${i});\nconst echoed${i} = await kv_get("k${i}");\nechoed${i}.n + cell${i}.tags.length`,
  bigCell: "var big = Array.from({ length: 200000 }, (_, i) => ({ i, s: String(i) })); big.length",
};

const SNAPSHOT_ITERATIONS = 30;
const RESTORE_ITERATIONS = 30;

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
    const runtimes = new RuntimeRegistry();
    runtimes.register(await target.create());
    const tools = new ToolRegistry();
    for (const tool of createKvTools()) tools.register(tool);
    const dataDir = mkdtempSync(join(tmpdir(), "bench-snapshots-"));
    const stores: [string, SnapshotStore][] = [
      ["memory store", new MemorySnapshotStore({ maxBytes: 8 * 1_073_741_824 })],
      ["filesystem store (fsync)", new FsSnapshotStore({ directory: dataDir })],
    ];
    const ceilings = { ...DEFAULT_SESSION_LIMITS, memory_mb: 512, wall_ms: 60_000, cpu_ms: 60_000 };
    try {
      for (const scenario of SCENARIOS) {
        for (const [storeLabel, store] of stores) {
          const manager = new SessionManager({
            runtimes,
            tools,
            defaults: {
              ...DEFAULT_SESSION_LIMITS,
              memory_mb: 256,
              wall_ms: 30_000,
              cpu_ms: 30_000,
            },
            ceilings,
            defaultLanguage: target.language,
            maxSessions: 10_000,
            snapshots: { store, key },
          });
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
          const snapshotTimes = await sample(2, SNAPSHOT_ITERATIONS, async () => {
            info = await manager.snapshotSession(id);
          });
          const snapshotBytes = await manager.getSnapshot(info.snapshot_id);
          let n = 0;
          let restoredFrom = "";
          // From bytes in memory with the memory store; by id (read from disk) with the filesystem's.
          const fromStore = storeLabel !== stores[0]![0];
          const restoreTimes = await sample(2, RESTORE_ITERATIONS, async () => {
            const restored = await manager.restoreSession({
              ...(fromStore ? { snapshot_id: info.snapshot_id } : { snapshot: snapshotBytes }),
              session_id: `restored-${++n}`,
            });
            restoredFrom = restored.restored_from;
            await manager.destroySession(restored.session.id);
          });
          const check = await manager.restoreSession({
            snapshot: snapshotBytes,
            session_id: "restored-check",
          });
          const seen = await manager.run({ session_id: "restored-check", code: "cell0.n" });
          if (seen.result !== 0)
            notes.push(
              `${target.label}: a restored session answered ${JSON.stringify(seen.result)} for cell0.n`,
            );
          await manager.destroySession(check.session.id);
          if (storeLabel === stores[0]![0]) {
            sizeRows.push([
              `${target.label}, ${scenario.name}`,
              info.kinds.join("+"),
              bytes(info.bytes),
              int(info.journal_runs),
              target.language === "javascript" && scenario.cells === 10 ? "target <= 64 KB" : "",
            ]);
          }
          const label = `${target.label}, ${scenario.name}, ${storeLabel}`;
          timeRows.push(summaryRow(`snapshot: ${label}`, snapshotTimes));
          timeRows.push(
            summaryRow(
              `restore (${restoredFrom}): ${label}`,
              restoreTimes,
              target.language !== "python" && scenario.cells === 10 ? "target <= 20 ms p50" : "",
            ),
          );
          await manager.close();
        }
      }
    } finally {
      await runtimes.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
  lines.push(table(["session", "kinds", "snapshot bytes", "journal runs", "target"], sizeRows));
  lines.push("");
  lines.push(table(SUMMARY_HEADER, timeRows));
  lines.push(
    "",
    "snapshot = capture + zstd + seal + store put (time to a durable id); restore = (store get +) verify + decode + replay (or image load), with the workspace — from bytes in memory with the memory store, by snapshot id from disk with the filesystem store; each restored session is destroyed after, untimed",
  );
  for (const note of notes) lines.push(`unexpected: ${note}`);
  return lines.join("\n");
}

if (import.meta.main) {
  process.stdout.write(`${await snapshotBench()}\n`);
}
