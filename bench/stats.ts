/**
 * Timing and reporting helpers of the benchmark: sample collection, percentiles and a
 * plain-text table. Figures only; nothing here judges a number.
 *
 * @module
 */

/** Milliseconds since an arbitrary origin, from the monotonic high-resolution clock. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Summary of a sample of durations in ms. */
export interface Summary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const sum = sorted.reduce((total, value) => total + value, 0);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    mean: sorted.length === 0 ? Number.NaN : sum / sorted.length,
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

/**
 * Runs `body` `warmup` times untimed, then `iterations` times timed one by one; answers the
 * durations in ms.
 */
export async function sample(
  warmup: number,
  iterations: number,
  body: (index: number) => Promise<unknown> | unknown,
): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await body(i);
  const durations: number[] = new Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const start = process.hrtime.bigint();
    await body(warmup + i);
    durations[i] = Number(process.hrtime.bigint() - start) / 1e6;
  }
  return durations;
}

/** A duration in ms, with precision that suits its size. */
export function ms(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  if (value < 1) return `${value.toFixed(3)} ms`;
  if (value < 100) return `${value.toFixed(2)} ms`;
  return `${value.toFixed(0)} ms`;
}

/** An integer with thousands separators. */
export function int(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

/** Bytes as MiB / KiB. */
export function bytes(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 1_048_576) return `${(value / 1_048_576).toFixed(2)} MiB`;
  if (abs >= 1_024) return `${(value / 1_024).toFixed(1)} KiB`;
  return `${Math.round(value)} B`;
}

/** A plain-text table with a header row; the first column is left-aligned, the rest right. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) =>
        column === 0 || column === cells.length - 1
          ? cell.padEnd(widths[column]!)
          : cell.padStart(widths[column]!),
      )
      .join("  ")
      .trimEnd();
  const rule = widths.map((width) => "-".repeat(width)).join("  ");
  return [line(header), rule, ...rows.map(line)].join("\n");
}

/** A table row for a timed sample. */
export function summaryRow(label: string, values: readonly number[], target = ""): string[] {
  const s = summarize(values);
  return [label, int(s.n), ms(s.p50), ms(s.p90), ms(s.p99), ms(s.mean), target];
}

export const SUMMARY_HEADER = ["measurement", "n", "p50", "p90", "p99", "mean", "target"] as const;
