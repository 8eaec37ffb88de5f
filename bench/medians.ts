/**
 * Medians over repeated runs: the targets are meant as medians, and one run on a shared
 * 2-core machine is noisy.
 *
 *   bun run bench --json a.json; bun run bench --json b.json; bun run bench --json c.json
 *   bun run bench/medians.ts a.json b.json c.json
 *
 * Prints the load table with every number the median of that row's numbers in the given runs
 * (loss, duplicates and reordering: the largest), and the targets checked against those medians.
 */
import { readFileSync } from "node:fs"
import { printTable } from "./common.ts"
import {
  checkTargets,
  LOAD_TABLE_HEADER,
  type LoadResults,
  loadTableRows,
  type ScenarioResult,
  type ServerCost,
  TARGET_TABLE_HEADER,
  targetTableRows,
} from "./load/results.ts"
import type { LatencySummary } from "./load/tally.ts"

interface RunFile {
  readonly startedAt: string
  readonly command: string
  readonly machine: { readonly revision?: string }
  readonly groups: readonly { readonly group: string; readonly load?: LoadResults }[]
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

function medianOf<T>(items: readonly T[], pick: (item: T) => number | null | undefined): number | null {
  const values = items.map(pick).filter((value): value is number => value !== null && value !== undefined && Number.isFinite(value))
  return values.length === 0 ? null : median(values)
}

function medianLatency(summaries: readonly (LatencySummary | null)[]): LatencySummary | null {
  const present = summaries.filter((summary): summary is LatencySummary => summary !== null)
  if (present.length === 0) return null
  const of = (key: keyof LatencySummary): number => median(present.map((summary) => summary[key]))
  return { count: of("count"), p50: of("p50"), p90: of("p90"), p99: of("p99"), p999: of("p999"), max: of("max"), mean: of("mean") }
}

function medianServer(costs: readonly (ServerCost | null)[]): ServerCost | null {
  const present = costs.filter((cost): cost is ServerCost => cost !== null)
  if (present.length === 0) return null
  const of = (key: keyof ServerCost): number | null => medianOf(present, (cost) => cost[key] as number | null)
  return {
    wallMs: of("wallMs") ?? 0,
    cpuMicros: of("cpuMicros") ?? 0,
    puts: of("puts") ?? 0,
    deliveries: of("deliveries") ?? 0,
    cpuPerPut: of("cpuPerPut"),
    cpuPerDelivery: of("cpuPerDelivery"),
    cpuPerOperation: of("cpuPerOperation"),
    cpuPercent: of("cpuPercent") ?? 0,
    systemShare: of("systemShare"),
  }
}

function combine(runs: readonly ScenarioResult[]): ScenarioResult {
  const ok = runs.filter((run) => run.error === null)
  const first = runs[0]!
  if (ok.length === 0) return first
  const max = (pick: (run: ScenarioResult) => number): number => Math.max(...ok.map(pick))
  const med = (pick: (run: ScenarioResult) => number): number => medianOf(ok, pick) ?? 0
  return {
    ...ok[0]!,
    sent: med((run) => run.sent),
    expected: med((run) => run.expected),
    received: med((run) => run.received),
    unique: med((run) => run.unique),
    loss: max((run) => run.loss),
    duplicates: max((run) => run.duplicates),
    outOfOrder: max((run) => run.outOfOrder),
    putRate: med((run) => run.putRate),
    deliveredRate: med((run) => run.deliveredRate),
    latency: medianLatency(ok.map((run) => run.latency)),
    latencyFromSend: medianLatency(ok.map((run) => run.latencyFromSend)),
    sendLag: medianLatency(ok.map((run) => run.sendLag)),
    drainMs: medianOf(ok, (run) => run.drainMs),
    server: medianServer(ok.map((run) => run.server)),
    loadCpuPercent: med((run) => run.loadCpuPercent),
    seconds: med((run) => run.seconds),
    notes: ok.length < runs.length ? [`failed in ${runs.length - ok.length} of ${runs.length} runs`] : [],
    error: null,
  }
}

const files = process.argv.slice(2)
if (files.length === 0) {
  console.error("usage: bun run bench/medians.ts RESULTS.json... (files written by bun run bench --json)")
  process.exit(2)
}
const loads = files.map((file) => {
  const run = JSON.parse(readFileSync(file, "utf8")) as RunFile
  const load = run.groups.find((group) => group.group === "load")?.load
  if (load === undefined) throw new Error(`${file} has no load results`)
  console.log(`${file}: ${run.startedAt}, ${run.command}, revision ${run.machine.revision ?? "unknown"}`)
  return load
})
const ids = [...new Set(loads.flatMap((load) => load.scenarios.map((result) => `${result.id}\u0000${result.target}`)))]
const combined = ids.map((key) =>
  combine(loads.flatMap((load) => load.scenarios.filter((result) => `${result.id}\u0000${result.target}` === key))),
)
printTable(
  `Load scenarios: medians over ${files.length} runs (loss, dup, ooo: the largest)`,
  [...LOAD_TABLE_HEADER],
  loadTableRows(combined),
)
printTable(
  `Targets of issue 4, against the medians of ${files.length} runs`,
  [...TARGET_TABLE_HEADER],
  targetTableRows(checkTargets(combined)),
)
for (const check of checkTargets(combined)) if (check.note !== "") console.log(`- ${check.target}: ${check.note}`)
