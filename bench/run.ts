/**
 * The benchmark suite behind `bun run bench`: the micro-benchmarks (every bench/*.bench.ts file)
 * and the end-to-end load scenarios (bench/load.ts), each group in its own `bun run` child
 * process (so one group's heap, JIT state and stores do not skew the next), one after another,
 * with their output passed straight through. At the end it prints every group's summary tables
 * again, together, and writes a Markdown report with an SVG latency chart (and, with --json,
 * all results as JSON).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { basename, dirname, join, relative, resolve } from "node:path"
import type { GroupResults } from "./common.ts"
import { printTable } from "./common.ts"
import { type OptionSpec, parseOptionsOrExit } from "./lib/args.ts"
import {
  LOAD_PROTOCOLS,
  LOAD_TABLE_HEADER,
  LOAD_TABLE_NOTES,
  loadTableRows,
  PEER_TABLE_HEADER,
  PEER_TABLE_NOTES,
  parseLoopbackAddress,
  peerTableRows,
  SCENARIOS,
  scenarioLegend,
  TARGET_TABLE_HEADER,
  targetTableRows,
} from "./load/results.ts"
import { describeMachine, loadResultsOf, renderChart, renderMarkdown, type SuiteRun, withoutMachinePath } from "./report.ts"

const DEFAULT_TIMEOUT_SECONDS = 300
/** --peers adds about 15 load rows (two peers × rtt, khz, fanout, max; rtt twice). */
const PEERS_EXTRA_SECONDS = 150
const LOAD_NAMES = [...SCENARIOS, "floor"] as const

const USAGE = `Usage: bun run bench [options]
       bun run bench/run.ts [options]

Runs the micro-benchmarks (bench/*.bench.ts) and the load scenarios (bench/load.ts), one group
at a time, each in its own process; prints every group's results, then all summary tables
together; writes a Markdown report with an SVG latency chart.

Options:
  --quick             smaller sizes and shorter phases, for a smoke run (sets BENCH_QUICK=1)
  --only NAME         run only some groups (repeatable): a group whose file name contains NAME
                      (decoders, patterns, store, load), or a load scenario (${LOAD_NAMES.join(", ")}),
                      which runs the load group with just that scenario and its floor
  --protocol NAME     load scenarios over this protocol only (repeatable): json-stream,
                      binary-pull, binary-push, websocket-json, websocket-binary-push
  --filter REGEX      inside each micro-benchmark file, run only the benchmarks whose name
                      matches REGEX (sets BENCH_FILTER)
  --against HOST:PORT also run the json-stream load scenarios against another dsmq-compatible
                      server there (loopback addresses only)
  --peers             also run the load scenarios against nats-server and mosquitto (Debian's
                      packages, spawned on 127.0.0.1; skipped with a note when not installed)
                      and show every row beside NATS's
  --server-cpu-prof DIR
                      run each broker the load scenarios spawn under bun --cpu-prof, leaving a
                      profile and its Markdown summary per row in DIR
  --json FILE         write all results as JSON to FILE
  --report FILE       where to write the Markdown report (the chart goes next to it, as
                      NAME-latency.svg). Default: bench/RESULTS.md for a full run (no --quick,
                      --only, --protocol or --filter), bench/out/report.md otherwise
  --targets           also print (and report) the project's performance targets and whether
                      this run met them
  --timeout SECS      time budget for the whole suite (default ${DEFAULT_TIMEOUT_SECONDS}, with --peers
                      ${DEFAULT_TIMEOUT_SECONDS + PEERS_EXTRA_SECONDS}); a group still
                      running when it is used up is stopped and counts as failed
  -h, --help          show this help

A group also runs on its own: bun run bench/store.bench.ts, bun run bench/load.ts --help.
Exits with status 1 if a group fails or runs out of time, 2 on a usage error.
`

interface Options {
  readonly quick: boolean
  readonly only: readonly string[]
  readonly protocols: readonly string[]
  readonly filter: string | undefined
  readonly against: string | undefined
  readonly jsonFile: string | undefined
  readonly reportFile: string | undefined
  readonly timeoutSeconds: number
  readonly targets: boolean
  readonly peers: boolean
  readonly serverCpuProfileDir: string | undefined
}

const SPECS = {
  quick: { type: "boolean" },
  only: { type: "list" },
  protocol: { type: "list", choices: LOAD_PROTOCOLS },
  filter: {
    type: "string",
    check: (text: string) => {
      new RegExp(text)
    },
  },
  against: { type: "string", check: (text: string) => parseLoopbackAddress(text) },
  json: { type: "string" },
  report: { type: "string" },
  timeout: { type: "number", min: 1, max: 86_400 },
  targets: { type: "boolean" },
  peers: { type: "boolean" },
  "server-cpu-prof": { type: "string" },
} as const satisfies Record<string, OptionSpec>

function parseOptions(argv: readonly string[]): Options {
  const given = parseOptionsOrExit("bench", USAGE, argv, SPECS)
  return {
    quick: given.quick,
    only: given.only ?? [],
    protocols: given.protocol ?? [],
    filter: given.filter,
    against: given.against,
    jsonFile: given.json,
    reportFile: given.report,
    timeoutSeconds: given.timeout ?? DEFAULT_TIMEOUT_SECONDS + (given.peers ? PEERS_EXTRA_SECONDS : 0),
    targets: given.targets,
    peers: given.peers,
    serverCpuProfileDir: given["server-cpu-prof"],
  }
}

interface Group {
  readonly name: string
  readonly path: string
  readonly args: readonly string[]
}

interface Outcome {
  readonly group: string
  readonly status: "ok" | "failed" | "timed out" | "not run"
  readonly seconds: number
}

const benchDir = import.meta.dir
const projectDir = dirname(benchDir)

function selectGroups(options: Options): Group[] {
  const micro = Array.from(new Bun.Glob("*.bench.ts").scanSync({ cwd: benchDir }))
    .sort()
    .map((file) => ({ name: basename(file, ".bench.ts"), file }))
  const all = [...micro, { name: "load", file: "load.ts" }]
  const scenarios = options.only.filter((name) => (LOAD_NAMES as readonly string[]).includes(name))
  const byName = options.only.filter((name) => !(LOAD_NAMES as readonly string[]).includes(name))
  const chosen =
    options.only.length === 0
      ? all
      : all.filter(({ name, file }) => byName.some((wanted) => file.includes(wanted)) || (name === "load" && scenarios.length > 0))
  return chosen.map(({ name, file }) => ({
    name,
    path: join(benchDir, file),
    args:
      name === "load"
        ? [
            ...(options.quick ? ["--quick"] : []),
            ...scenarios.flatMap((scenario) => ["--only", scenario]),
            ...options.protocols.flatMap((protocol) => ["--protocol", protocol]),
            ...(options.against === undefined ? [] : ["--against", options.against]),
            ...(options.targets ? ["--targets"] : []),
            ...(options.peers ? ["--peers"] : []),
            ...(options.serverCpuProfileDir === undefined ? [] : ["--server-cpu-prof", resolve(options.serverCpuProfileDir)]),
          ]
        : [],
  }))
}

/**
 * The command as the user typed it, for the report, without this machine's paths: a file
 * argument outside the project is shown by its name alone (the report is committed).
 */
function commandLine(): string {
  const args = process.argv
    .slice(2)
    .map((arg) => withoutMachinePath(arg, projectDir))
    .map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`))
  const base =
    process.env.npm_lifecycle_event === "bench"
      ? "bun run bench"
      : `bun run ${relative(process.cwd(), process.argv[1] ?? "bench/run.ts") || "bench/run.ts"}`
  return [base, ...args].join(" ")
}

function printSummary(groups: readonly GroupResults[], showTargets: boolean): void {
  console.log("\n━━━ summary: all results of this run ━━━")
  for (const group of groups) {
    if (group.group === "load") {
      const load = loadResultsOf({ groups } as unknown as SuiteRun)
      if (load === null) continue
      console.log("\nLoad scenarios: what each measures")
      for (const line of scenarioLegend()) console.log(line)
      printTable("Load scenarios (loopback; one fresh server process per row)", [...LOAD_TABLE_HEADER], loadTableRows(load.scenarios))
      for (const { cell, reason } of load.unavailable) console.log(`${cell}: ${reason}`)
      console.log()
      for (const line of LOAD_TABLE_NOTES) console.log(line)
      const besideNats = peerTableRows(load.scenarios)
      if (besideNats.length > 0) {
        printTable("Beside NATS (ratios to the NATS row of the same scenario)", [...PEER_TABLE_HEADER], besideNats)
        console.log()
        for (const line of PEER_TABLE_NOTES) console.log(line)
      }
      if (showTargets) printTable("Targets of issue 4 (this run)", [...TARGET_TABLE_HEADER], targetTableRows(load.targets))
      continue
    }
    for (const table of group.tables) printTable(`[${group.group}] ${table.title}`, table.header, table.rows)
  }
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2))
  const groups = selectGroups(options)
  if (groups.length === 0) {
    console.error(
      `bench: nothing matches ${options.only.map((name) => `"${name}"`).join(", ")} (groups: decoders, patterns, store, load; scenarios: ${LOAD_NAMES.join(", ")})`,
    )
    return 2
  }
  const machine = await describeMachine()
  const startedAt = new Date()
  const command = commandLine()
  const full = !options.quick && options.only.length === 0 && options.protocols.length === 0 && options.filter === undefined
  const reportFile = resolve(options.reportFile ?? (full ? join(benchDir, "RESULTS.md") : join(benchDir, "out", "report.md")))

  const env: Record<string, string | undefined> = { ...process.env }
  if (options.quick) env.BENCH_QUICK = "1"
  else delete env.BENCH_QUICK
  if (options.filter !== undefined) env.BENCH_FILTER = options.filter
  else delete env.BENCH_FILTER
  const resultsDir = mkdtempSync(join(tmpdir(), "dsmq-bench-"))

  const started = performance.now()
  const deadline = started + options.timeoutSeconds * 1000
  const outcomes: Outcome[] = []
  const collected: GroupResults[] = []
  let current: Bun.Subprocess | null = null
  let interrupted = false
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted = true
    current?.kill(signal)
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)

  console.log(
    `bench: ${groups.map((group) => group.name).join(", ")}${options.quick ? ", quick" : ""}` +
      `${options.filter === undefined ? "" : `, filter /${options.filter}/`}, budget ${options.timeoutSeconds} s` +
      ` (${machine.cpus} CPUs, ${machine.cpuModel}, Bun ${machine.bun}, ${machine.revision})`,
  )
  if (machine.busyAtStart !== null && machine.busyAtStart > 10) {
    console.log(`bench: note: ${machine.busyAtStart.toFixed(0)} % of the CPUs were busy just before the start; expect noisier numbers`)
  }
  try {
    for (const group of groups) {
      if (interrupted || performance.now() >= deadline) {
        outcomes.push({ group: group.name, status: "not run", seconds: 0 })
        continue
      }
      console.log(`\n━━━ ${relative(projectDir, group.path)}${group.args.length === 0 ? "" : ` ${group.args.join(" ")}`} ━━━`)
      const resultsFile = join(resultsDir, `${group.name}.json`)
      const groupStarted = performance.now()
      const child = Bun.spawn([process.execPath, "run", group.path, ...group.args], {
        cwd: projectDir,
        env: { ...env, BENCH_RESULTS: resultsFile },
        stdin: "ignore",
        stdout: "inherit",
        stderr: "inherit",
      })
      current = child
      let timedOut = false
      const timer = setTimeout(
        () => {
          timedOut = true
          console.error(`\nbench: ${group.name} is still running when the ${options.timeoutSeconds} s budget is used up; stopping it`)
          child.kill("SIGTERM")
          setTimeout(() => child.kill("SIGKILL"), 5000).unref()
        },
        Math.max(0, deadline - performance.now()),
      )
      const exitCode = await child.exited
      clearTimeout(timer)
      current = null
      const seconds = (performance.now() - groupStarted) / 1000
      const status = timedOut ? "timed out" : exitCode === 0 && !interrupted ? "ok" : "failed"
      outcomes.push({ group: group.name, status, seconds })
      if (status === "failed") console.error(`\nbench: ${group.name} failed (exit ${exitCode ?? child.signalCode})`)
      try {
        collected.push(JSON.parse(readFileSync(resultsFile, "utf8")) as GroupResults)
      } catch {
        // The group wrote no results (it failed before the end).
      }
    }
  } finally {
    rmSync(resultsDir, { recursive: true, force: true })
  }
  const totalSeconds = (performance.now() - started) / 1000

  printSummary(collected, options.targets)
  console.log("\nbench: groups")
  for (const { group, status, seconds } of outcomes) {
    console.log(`  ${group.padEnd(24)} ${status.padEnd(9)} ${status === "not run" ? "" : `${seconds.toFixed(1)} s`}`)
  }
  console.log(`  total ${totalSeconds.toFixed(1)} s`)

  const run: SuiteRun = {
    startedAt,
    seconds: totalSeconds,
    command,
    quick: options.quick,
    targets: options.targets,
    machine,
    outcomes,
    groups: collected,
  }
  if (!interrupted && collected.length > 0) {
    mkdirSync(dirname(reportFile), { recursive: true })
    const chartName = `${basename(reportFile, ".md")}-latency.svg`
    const load = loadResultsOf(run)
    const chart =
      load === null
        ? null
        : renderChart(
            load.scenarios,
            `${machine.cpus} CPUs, ${machine.cpuModel}, Bun ${Bun.version}; ${startedAt.toISOString().slice(0, 16).replace("T", " ")} UTC; ${command}`,
          )
    if (chart !== null) writeFileSync(join(dirname(reportFile), chartName), chart)
    writeFileSync(reportFile, renderMarkdown(run, chart === null ? null : chartName))
    console.log(`bench: report written to ${relative(process.cwd(), reportFile)}${chart === null ? "" : ` (chart: ${chartName})`}`)
  }
  if (options.jsonFile !== undefined) {
    const path = resolve(options.jsonFile)
    mkdirSync(dirname(path), { recursive: true })
    writeFileSync(path, `${JSON.stringify({ ...run, startedAt: startedAt.toISOString() }, null, 2)}\n`)
    console.log(`bench: results written to ${relative(process.cwd(), path)}`)
  }
  if (interrupted) return 130
  return outcomes.every((outcome) => outcome.status === "ok") ? 0 : 1
}

process.exit(await main())
