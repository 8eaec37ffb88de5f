/**
 * Shared by the bench files (not a bench file itself: bench/run.ts only runs `*.bench.ts`).
 *
 * Environment, set by bench/run.ts or by hand:
 *   BENCH_QUICK=1       smaller sizes (at most 10,000 stored messages, fewer message sizes) and
 *                       gc "once" instead of "inner", for a quick smoke run; the numbers are rougher.
 *   BENCH_FILTER=RE     run only the benchmarks whose name matches this regular expression.
 *   BENCH_RESULTS=FILE  where a bench file writes its results as JSON (`writeResults`), for the
 *                       runner's summary, its --json output and the Markdown report.
 */
import { run } from "mitata"

export const QUICK = process.env.BENCH_QUICK === "1"

/**
 * mitata's gc mode for benchmarks that allocate. "inner" collects before every sample, so the
 * garbage one sample leaves is not paid for by the next; it also doubles mitata's minimum run
 * time per benchmark (642 ms -> ~1.3 s), which quick runs skip.
 */
export const ALLOCATING_GC: "inner" | "once" = QUICK ? "once" : "inner"

/** The stats of one finished benchmark run, as mitata reports them (times in nanoseconds). */
export interface RunStats {
  readonly avg: number
  readonly p50: number
  readonly p75: number
  readonly p99: number
  readonly min: number
  readonly max: number
}

/** A table as printed, kept for the results file. */
export interface ResultTable {
  readonly title: string
  readonly header: readonly string[]
  readonly rows: readonly (readonly string[])[]
}

/** What a bench file hands to the runner (see `writeResults`). */
export interface GroupResults {
  readonly group: string
  readonly tables: readonly ResultTable[]
  /** mitata's stats per benchmark name, in nanoseconds (micro-benchmarks only). */
  readonly benchmarks?: Readonly<Record<string, RunStats>>
  /** Anything else the group measures (the load scenarios). */
  readonly [key: string]: unknown
}

const printedTables: ResultTable[] = []
const measured: Record<string, RunStats> = {}

/**
 * mitata's `run`, with colours only on a terminal, the BENCH_FILTER filter, and a non-zero exit
 * status when any benchmark threw (mitata itself only prints the error and carries on).
 * Returns each benchmark's stats by name.
 */
export async function runBenchmarks(): Promise<Map<string, RunStats>> {
  const filterText = process.env.BENCH_FILTER
  const result = await run({
    colors: process.stdout.isTTY === true && process.env.NO_COLOR === undefined,
    ...(filterText !== undefined && filterText !== "" ? { filter: new RegExp(filterText) } : {}),
  })
  const stats = new Map<string, RunStats>()
  let failed = 0
  for (const trial of result.benchmarks) {
    for (const benchRun of trial.runs) {
      if (benchRun.stats !== undefined) {
        const { avg, p50, p75, p99, min, max } = benchRun.stats
        const kept = { avg, p50, p75, p99, min, max }
        stats.set(benchRun.name, kept)
        measured[benchRun.name] = kept
      } else {
        failed++
        console.error(`\nbenchmark "${benchRun.name}" failed:`, benchRun.error)
      }
    }
  }
  if (failed > 0) process.exitCode = 1
  return stats
}

/**
 * A benchmark body with a computed parameter: `param` runs before each call, outside the timed
 * region (mitata's "computed parameters"), and its result is passed to `fn`. mitata accepts this
 * object as a generator's yield; its type declarations only describe plain functions, hence the cast.
 */
export function withParam<P>(param: () => P, fn: (value: P) => unknown): () => unknown {
  return { 0: param, bench: fn } as unknown as () => unknown
}

/** A small seeded PRNG (mulberry32), so every run seeks the same places. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function formatCount(n: number): string {
  if (n >= 1_000_000 && n % 1_000_000 === 0) return `${n / 1_000_000}M`
  if (n >= 1_000 && n % 1_000 === 0) return `${n / 1_000}k`
  return String(n)
}

export function formatBytes(n: number): string {
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`
  return `${n} B`
}

/** Nanoseconds as microseconds with 3 significant-ish digits. */
export function formatMicros(ns: number): string {
  const us = ns / 1000
  return us >= 100 ? us.toFixed(0) : us >= 10 ? us.toFixed(1) : us >= 1 ? us.toFixed(2) : us.toFixed(3)
}

/** A plain text table: first column left-aligned, the others right-aligned. */
export function printTable(title: string, header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => (row[column] ?? "").length)))
  const line = (cells: readonly string[]): string =>
    cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join("  ")
  console.log(`\n${title}`)
  console.log(line(header))
  console.log(widths.map((width) => "-".repeat(width)).join("  "))
  for (const row of rows) console.log(line(row))
  printedTables.push({ title, header, rows })
}

/**
 * Writes this file's results (every table printed with `printTable`, mitata's stats, and
 * `extra`) to $BENCH_RESULTS, when the runner asked for them.
 */
export async function writeResults(group: string, extra: Record<string, unknown> = {}): Promise<void> {
  const path = process.env.BENCH_RESULTS
  if (path === undefined || path === "") return
  const results: GroupResults = { group, tables: printedTables, benchmarks: measured, ...extra }
  await Bun.write(path, JSON.stringify(results))
}
