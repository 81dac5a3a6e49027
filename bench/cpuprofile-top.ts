/**
 * Prints the top frames of a `.cpuprofile` (from `node --cpu-prof`) by self time, and by
 * inclusive time for frames of this repository: `node bench/cpuprofile-top.ts FILE [N]`.
 *
 * @module
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount: number;
  children?: number[];
}

const [file, countText] = process.argv.slice(2);
if (!file) {
  process.stderr.write("usage: node bench/cpuprofile-top.ts FILE [N]\n");
  process.exit(2);
}
const top = Number(countText ?? 25);
const profile = JSON.parse(readFileSync(file, "utf8")) as {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
};
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map<number, number>();
for (const node of profile.nodes)
  for (const child of node.children ?? []) parent.set(child, node.id);
const self = new Map<number, number>();
profile.samples.forEach((id, index) => {
  self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0));
});
const total = [...self.values()].reduce((a, b) => a + b, 0);

const label = (node: ProfileNode) => {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url.replace(/^file:\/\/.*?\/(node_modules|src|runtimes|bench)\//, "$1/");
  return `${functionName || "(anonymous)"} ${where ? `${where}:${lineNumber + 1}` : ""}`.trim();
};

const selfByLabel = new Map<string, number>();
const inclusiveByLabel = new Map<string, number>();
for (const [id, time] of self) {
  const node = byId.get(id)!;
  selfByLabel.set(label(node), (selfByLabel.get(label(node)) ?? 0) + time);
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const name = label(byId.get(at)!);
    if (seen.has(name)) continue;
    seen.add(name);
    inclusiveByLabel.set(name, (inclusiveByLabel.get(name) ?? 0) + time);
  }
}
const print = (title: string, entries: Map<string, number>, filter: (name: string) => boolean) => {
  process.stdout.write(`\n${title}\n`);
  for (const [name, time] of [...entries]
    .filter(([n]) => filter(n))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)) {
    process.stdout.write(
      `${((time / total) * 100).toFixed(1).padStart(5)}%  ${(time / 1000).toFixed(0).padStart(6)} ms  ${name}\n`,
    );
  }
};
process.stdout.write(`profile ${file}: ${(total / 1000).toFixed(0)} ms sampled\n`);
print("self time", selfByLabel, () => true);
print("inclusive time, frames of this repository", inclusiveByLabel, (name) =>
  / (src|runtimes)\//.test(name),
);
