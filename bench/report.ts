/**
 * The suite's report: a Markdown file (machine, command, every table) and an SVG chart of the
 * load scenarios' latency percentiles, both generated from the results of one run.
 */

import { readFileSync } from "node:fs"
import { availableParallelism, loadavg, release, totalmem } from "node:os"
import { basename, isAbsolute, relative, resolve } from "node:path"
import type { GroupResults, ResultTable } from "./common.ts"
import {
  floorOf,
  formatLatency,
  isFloor,
  LOAD_TABLE_HEADER,
  LOAD_TABLE_NOTES,
  type LoadResults,
  loadTableRows,
  PEER_TABLE_HEADER,
  PEER_TABLE_NOTES,
  peerTableRows,
  rowLabel,
  SCENARIO_DESCRIPTIONS,
  type ScenarioResult,
  TARGET_TABLE_HEADER,
  targetTableRows,
} from "./load/results.ts"

export interface Machine {
  readonly cpus: number
  readonly cpuModel: string
  readonly memoryGiB: number
  readonly kernel: string
  readonly bun: string
  /** 1-minute load average when the suite started (it includes a run that just ended). */
  readonly loadAverageAtStart: number
  /** How busy the CPUs were in the half second before the suite started, % of all of them (null: not Linux). */
  readonly busyAtStart: number | null
  /** The commit measured, and whether src/ differed from it. */
  readonly revision: string
}

function gitRevision(): string {
  const run = (args: string[]): string | null => {
    try {
      const result = Bun.spawnSync(["git", ...args], { cwd: import.meta.dir, stdout: "pipe", stderr: "ignore" })
      return result.exitCode === 0 ? result.stdout.toString().trim() : null
    } catch {
      return null
    }
  }
  const commit = run(["rev-parse", "--short", "HEAD"])
  if (commit === null) return "unknown (not a git checkout)"
  const changed = run(["status", "--porcelain", "--", "../src"])
  return changed === null || changed === "" ? commit : `${commit}, with uncommitted changes in src/`
}

/** Busy share of all CPUs over `ms`, from /proc/stat (everything but idle and iowait). */
async function cpuBusyPercent(ms: number): Promise<number | null> {
  const read = (): { busy: number; total: number } | null => {
    try {
      const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
      const total = fields.reduce((sum, value) => sum + value, 0)
      const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
      return { busy: total - idle, total }
    } catch {
      return null
    }
  }
  const before = read()
  await Bun.sleep(ms)
  const after = read()
  if (before === null || after === null || after.total === before.total) return null
  return ((after.busy - before.busy) / (after.total - before.total)) * 100
}

export async function describeMachine(): Promise<Machine> {
  let cpuModel = "unknown"
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? cpuModel
  } catch {
    // not Linux
  }
  return {
    cpus: availableParallelism(),
    cpuModel,
    memoryGiB: totalmem() / 1024 ** 3,
    kernel: release(),
    bun: `${Bun.version} (${Bun.revision.slice(0, 9)})`,
    loadAverageAtStart: loadavg()[0] ?? 0,
    busyAtStart: await cpuBusyPercent(500),
    revision: gitRevision(),
  }
}

export interface SuiteRun {
  readonly startedAt: Date
  readonly seconds: number
  readonly command: string
  readonly quick: boolean
  /** Whether the targets table goes in the report (--targets). */
  readonly targets: boolean
  readonly machine: Machine
  readonly outcomes: readonly { readonly group: string; readonly status: string; readonly seconds: number }[]
  readonly groups: readonly GroupResults[]
}

export function loadResultsOf(run: SuiteRun): LoadResults | null {
  const group = run.groups.find((candidate) => candidate.group === "load")
  return (group?.load as LoadResults | undefined) ?? null
}

// ---------------------------------------------------------------------------------------------
// Markdown

const escapeCell = (cell: string): string => cell.replaceAll("|", "\\|")

function markdownTable(header: readonly string[], rows: readonly (readonly string[])[], alignFirstLeft = true): string {
  const align = header.map((_, column) => (column === 0 && alignFirstLeft ? ":---" : "---:"))
  return [
    `| ${header.map(escapeCell).join(" | ")} |`,
    `| ${align.join(" | ")} |`,
    ...rows.map((row) => `| ${row.map(escapeCell).join(" | ")} |`),
  ].join("\n")
}

function tableSection(table: ResultTable): string {
  return `**${table.title}**\n\n${markdownTable(table.header, table.rows)}\n`
}

/** A command-line argument as the committed report shows it: a path outside `projectDir` by its file name alone. */
export function withoutMachinePath(arg: string, projectDir: string): string {
  const equals = arg.startsWith("--") ? arg.indexOf("=") : -1
  if (equals > 0) return `${arg.slice(0, equals + 1)}${withoutMachinePath(arg.slice(equals + 1), projectDir)}`
  if (!arg.includes("/")) return arg
  const path = resolve(arg)
  const inside = relative(projectDir, path)
  return inside.startsWith("..") || isAbsolute(inside) ? basename(path) : inside
}

export function renderMarkdown(run: SuiteRun, chartFile: string | null): string {
  const { machine } = run
  const load = loadResultsOf(run)
  const lines: string[] = []
  lines.push("# Benchmark results")
  lines.push("")
  lines.push(
    `Generated by \`${run.command}\` on ${run.startedAt
      .toISOString()
      .replace("T", " ")
      .replace(/\.\d+Z$/, " UTC")}` +
      ` (took ${run.seconds.toFixed(0)} s). Do not edit: the suite rewrites this file` +
      ` (see [README.md](README.md) for what is measured and how to read it).`,
  )
  lines.push("")
  lines.push(
    markdownTable(
      ["machine", ""],
      [
        ["CPUs (nproc)", String(machine.cpus)],
        ["CPU model", machine.cpuModel],
        ["memory", `${machine.memoryGiB.toFixed(1)} GiB`],
        ["kernel", machine.kernel],
        ["Bun", machine.bun],
        ["revision", machine.revision],
        [
          "CPUs busy just before the start",
          machine.busyAtStart === null
            ? "unknown"
            : `${machine.busyAtStart.toFixed(0)} % (0.5 s sample; load average ${machine.loadAverageAtStart.toFixed(2)})`,
        ],
        ["command", `\`${run.command}\``],
        ["groups", run.outcomes.map((outcome) => `${outcome.group}: ${outcome.status}, ${outcome.seconds.toFixed(0)} s`).join("; ")],
      ],
    ),
  )
  lines.push("")
  if (run.quick) lines.push("> A `--quick` run: shorter phases and fewer sizes; compare it only with other quick runs.\n")
  if (machine.busyAtStart !== null && machine.busyAtStart > 10) {
    lines.push(
      `> The machine was not idle when the suite started (${machine.busyAtStart.toFixed(0)} % of its CPUs busy): other work competed for the ${machine.cpus} CPUs.\n`,
    )
  }

  if (load !== null) {
    lines.push("## Load scenarios")
    lines.push("")
    lines.push(
      "Every row is a fresh server process on 127.0.0.1 and the load generator in another (bench/load.ts); the floors are bare Bun.listen servers that only move bytes, measured by the same code.",
    )
    lines.push("")
    if (chartFile !== null) lines.push(`![Latency percentiles per scenario](${chartFile})\n`)
    lines.push("What each scenario measures:")
    lines.push("")
    for (const [name, text] of Object.entries(SCENARIO_DESCRIPTIONS)) lines.push(`- **${name}**: ${text}`)
    lines.push("")
    lines.push(markdownTable(LOAD_TABLE_HEADER, loadTableRows(load.scenarios)))
    lines.push("")
    for (const { cell, reason } of load.unavailable) lines.push(`- **${cell}**: ${reason}.`)
    if (load.unavailable.length > 0) lines.push("")
    lines.push(LOAD_TABLE_NOTES.join(" "))
    lines.push("")
    const failed = load.scenarios.filter((result) => result.error !== null)
    for (const result of failed) lines.push(`- **${rowLabel(result)} failed**: ${result.error}`)
    const noted = load.scenarios.filter((result) => result.notes.length > 0)
    for (const result of noted) lines.push(`- ${rowLabel(result)}: ${result.notes.join("; ")}`)
    if (failed.length + noted.length > 0) lines.push("")

    const besideNats = peerTableRows(load.scenarios)
    if (besideNats.length > 0) {
      lines.push("## Beside NATS")
      lines.push("")
      lines.push("Every row of each scenario as a ratio to the NATS row of the same scenario, same run (`--peers`).")
      lines.push("")
      lines.push(markdownTable(PEER_TABLE_HEADER, besideNats))
      lines.push("")
      lines.push(PEER_TABLE_NOTES.join(" "))
      lines.push("")
    }

    if (run.targets) {
      lines.push("## Targets (issue 4)")
      lines.push("")
      lines.push(
        "This run only; the issue's targets are meant as medians over repeated runs, and this machine is noisy. `met` is this run's verdict.",
      )
      lines.push("")
      lines.push(markdownTable(TARGET_TABLE_HEADER, targetTableRows(load.targets)))
      lines.push("")
      for (const check of load.targets) if (check.note !== "") lines.push(`- ${check.target}: ${check.note}`)
      lines.push("")
    }
    lines.push("### Scenario details")
    lines.push("")
    for (const result of load.scenarios) {
      if (result.error !== null) continue
      const config = Object.entries(result.config)
        .map(([key, value]) => `${key} ${value}`)
        .join(", ")
      const lag =
        result.sendLag === null || result.latencyFromSend === null
          ? ""
          : ` Writers' lag against their schedule: p50 ${formatLatency(result.sendLag.p50)} µs, p99 ${formatLatency(result.sendLag.p99)} µs;` +
            ` latency from the actual send time: p50 ${formatLatency(result.latencyFromSend.p50)} µs, p99 ${formatLatency(result.latencyFromSend.p99)} µs.`
      const cpu =
        result.server === null
          ? ""
          : ` Server: ${(result.server.cpuMicros / 1000).toFixed(0)} ms CPU over ${(result.server.wallMs / 1000).toFixed(2)} s, ${result.server.puts.toLocaleString("en-US")} puts, ${result.server.deliveries.toLocaleString("en-US")} deliveries.`
      lines.push(`- **${rowLabel(result)}**: ${result.description}. ${config}.${lag}${cpu}`)
    }
    lines.push("")
  }

  const micro = run.groups.filter((group) => group.group !== "load")
  if (micro.length > 0) {
    lines.push("## Micro-benchmarks")
    lines.push("")
    lines.push("Medians (p50) from mitata, in-process, no network (bench/decoders.bench.ts, bench/store.bench.ts).")
    lines.push("")
    for (const group of micro) {
      lines.push(`### ${group.group}`)
      lines.push("")
      for (const table of group.tables) lines.push(tableSection(table))
    }
  }
  return `${lines.join("\n").trimEnd()}\n`
}

// ---------------------------------------------------------------------------------------------
// SVG chart: one row per scenario × protocol, markers for p50 … max on a log time axis.

const MARKERS = [
  { key: "p50", label: "p50", color: "#1f77b4" },
  { key: "p90", label: "p90", color: "#2ca02c" },
  { key: "p99", label: "p99", color: "#ff7f0e" },
  { key: "p999", label: "p99.9", color: "#d62728" },
  { key: "max", label: "max", color: "#555555" },
] as const

const escapeXml = (text: string): string =>
  text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;")

function marker(shape: number, x: number, y: number, color: string): string {
  const r = 4.5
  switch (shape) {
    case 0:
      return `<circle cx="${x.toFixed(1)}" cy="${y}" r="${r}" fill="${color}"/>`
    case 1:
      return `<path d="M${x.toFixed(1)},${y - r} L${(x + r).toFixed(1)},${y + r * 0.8} L${(x - r).toFixed(1)},${y + r * 0.8} Z" fill="${color}"/>`
    case 2:
      return `<rect x="${(x - r * 0.85).toFixed(1)}" y="${y - r * 0.85}" width="${r * 1.7}" height="${r * 1.7}" fill="${color}"/>`
    case 3:
      return `<path d="M${x.toFixed(1)},${y - r * 1.1} L${(x + r).toFixed(1)},${y} L${x.toFixed(1)},${y + r * 1.1} L${(x - r).toFixed(1)},${y} Z" fill="${color}"/>`
    default:
      return `<path d="M${(x - r).toFixed(1)},${y - r} L${(x + r).toFixed(1)},${y + r} M${(x + r).toFixed(1)},${y - r} L${(x - r).toFixed(1)},${y + r}" stroke="${color}" stroke-width="2"/>`
  }
}

export function renderChart(results: readonly ScenarioResult[], subtitle: string): string | null {
  const rows = results.filter((result) => result.error === null && result.latency !== null)
  if (rows.length === 0) return null
  const values = rows.flatMap((result) => [result.latency!.p50, result.latency!.max]).filter((value) => value > 0)
  const low = 10 ** Math.floor(Math.log10(Math.max(1, Math.min(...values))))
  const high = 10 ** Math.ceil(Math.log10(Math.max(...values) * 1.01))

  const labelWidth = 330
  const plotWidth = 560
  const rightPad = 64
  const width = labelWidth + plotWidth + rightPad
  const rowHeight = 22
  const groupGap = 14
  const top = 78
  const x = (micros: number): number =>
    labelWidth + (Math.log10(Math.max(low, Math.min(high, micros)) / low) / Math.log10(high / low)) * plotWidth

  const body: string[] = []
  const shades: string[] = []
  let y = top
  let previousScenario: string | null = null
  const rowYs: number[] = []
  for (const result of rows) {
    if (previousScenario !== null && result.scenario !== previousScenario) y += groupGap
    previousScenario = result.scenario
    rowYs.push(y + rowHeight / 2)
    y += rowHeight
  }
  const plotBottom = y + 6
  const height = plotBottom + 62

  // Grid: decades, with 2× and 5× minor lines.
  for (let decade = low; decade <= high; decade *= 10) {
    const gx = x(decade)
    body.push(`<line x1="${gx.toFixed(1)}" y1="${top - 6}" x2="${gx.toFixed(1)}" y2="${plotBottom}" stroke="#bbbbbb" stroke-width="1"/>`)
    const label = decade >= 1_000_000 ? `${decade / 1_000_000} s` : decade >= 1000 ? `${decade / 1000} ms` : `${decade} µs`
    body.push(`<text x="${gx.toFixed(1)}" y="${plotBottom + 16}" text-anchor="middle" class="axis">${label}</text>`)
    for (const minor of [2, 5]) {
      if (decade * minor < high) {
        const mx = x(decade * minor)
        body.push(
          `<line x1="${mx.toFixed(1)}" y1="${top - 6}" x2="${mx.toFixed(1)}" y2="${plotBottom}" stroke="#e6e6e6" stroke-width="1"/>`,
        )
      }
    }
  }

  rows.forEach((result, i) => {
    const cy = rowYs[i]!
    const latency = result.latency!
    const floorRow = isFloor(result)
    if (floorRow) shades.push(`<rect x="0" y="${cy - rowHeight / 2}" width="${width}" height="${rowHeight}" fill="#f0f0f0"/>`)
    body.push(
      `<text x="${labelWidth - 10}" y="${cy + 4}" text-anchor="end" class="${floorRow ? "floor" : "label"}">${escapeXml(rowLabel(result))}</text>`,
    )
    body.push(
      `<line x1="${x(latency.p50).toFixed(1)}" y1="${cy}" x2="${x(latency.max).toFixed(1)}" y2="${cy}" stroke="#999999" stroke-width="1.5"/>`,
    )
    MARKERS.forEach(({ key, color }, shape) => {
      body.push(marker(shape, x(latency[key]), cy, color))
    })
    const floor = floorOf(results, result.scenario)?.latency?.p50
    if (floor !== undefined && !floorRow) {
      body.push(`<text x="${width - 4}" y="${cy + 4}" text-anchor="end" class="ratio">${(latency.p50 / floor).toFixed(1)}×</text>`)
    }
  })

  const legend = MARKERS.map(
    ({ label, color }, shape) =>
      `${marker(shape, labelWidth + 8 + shape * 78, 50, color)}<text x="${labelWidth + 18 + shape * 78}" y="54" class="axis">${label}</text>`,
  ).join("")

  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">
<style>
  .title { font-size: 16px; font-weight: bold; fill: #222222; }
  .sub { font-size: 11px; fill: #555555; }
  .label { font-size: 12px; fill: #222222; }
  .floor { font-size: 12px; fill: #555555; font-style: italic; }
  .axis { font-size: 11px; fill: #444444; }
  .ratio { font-size: 10px; fill: #666666; }
</style>
<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>
<text x="12" y="22" class="title">Latency percentiles per scenario (log scale)</text>
<text x="12" y="40" class="sub">${escapeXml(subtitle)}</text>
<text x="${width - 4}" y="54" text-anchor="end" class="sub">p50 ÷ floor</text>
${legend}
${shades.join("\n")}
${body.join("\n")}
<text x="12" y="${plotBottom + 38}" class="sub">Latency from the scheduled (khz, fanout: open loop) or actual (rtt, max) send time to the reader's handler.</text>
<text x="12" y="${plotBottom + 54}" class="sub">Shaded rows are the floors: bare Bun.listen servers that only move bytes (rtt: echo; khz, fanout: relay to every reader).</text>
</svg>
`
}
