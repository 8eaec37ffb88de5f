/**
 * The benchmark suite runner behind `bun run bench`: runs every bench/*.bench.ts file in its own
 * `bun run` child process (so one file's heap, JIT state and stores do not skew the next),
 * one after another, with their output passed straight through.
 */
import { basename, dirname, join, relative } from "node:path"

const USAGE = `Usage: bun run bench [options]
       bun run bench/run.ts [options]

Runs every bench/*.bench.ts file, one at a time, each in its own process.

Options:
  --quick           smaller sizes (at most 10,000 stored messages) and shorter runs
                    (sets BENCH_QUICK=1 for the bench files)
  --only NAME       run only the files whose name contains NAME (may be repeated)
  --filter REGEX    inside each file, run only the benchmarks whose name matches REGEX
                    (sets BENCH_FILTER)
  --timeout SECS    time budget for the whole suite (default ${300}); a file still running
                    when it is used up is stopped and counts as failed
  -h, --help        show this help

A single file also runs on its own: bun run bench/store.bench.ts (BENCH_QUICK=1 for quick).
Exits with status 1 if a bench file fails or runs out of time, 2 on a usage error.
`

interface Options {
  readonly quick: boolean
  readonly only: readonly string[]
  readonly filter: string | undefined
  readonly timeoutSeconds: number
}

class UsageError extends Error {}

function parseOptions(argv: readonly string[]): Options | "help" {
  let quick = false
  const only: string[] = []
  let filter: string | undefined
  let timeoutSeconds = 300
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!
    const value = (): string => {
      const next = argv[++i]
      if (next === undefined || next.startsWith("--")) throw new UsageError(`${argument} needs a value`)
      return next
    }
    switch (argument) {
      case "-h":
      case "--help":
        return "help"
      case "--quick":
        quick = true
        break
      case "--only":
        only.push(value())
        break
      case "--filter": {
        filter = value()
        try {
          new RegExp(filter)
        } catch (error) {
          throw new UsageError(`--filter: ${(error as Error).message}`)
        }
        break
      }
      case "--timeout": {
        const text = value()
        timeoutSeconds = Number(text)
        if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) {
          throw new UsageError(`--timeout needs a positive number of seconds, got ${text}`)
        }
        break
      }
      default:
        throw new UsageError(`unknown argument ${argument}`)
    }
  }
  return { quick, only, filter, timeoutSeconds }
}

interface Outcome {
  readonly file: string
  readonly status: "ok" | "failed" | "timed out" | "not run"
  readonly seconds: number
}

const benchDir = import.meta.dir
const projectDir = dirname(benchDir)

async function main(): Promise<number> {
  let options: Options | "help"
  try {
    options = parseOptions(process.argv.slice(2))
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    console.error(`bench: ${error.message}\n\n${USAGE}`)
    return 2
  }
  if (options === "help") {
    console.log(USAGE)
    return 0
  }

  const all = Array.from(new Bun.Glob("*.bench.ts").scanSync({ cwd: benchDir })).sort()
  const files = options.only.length === 0 ? all : all.filter((file) => options.only.some((name) => file.includes(name)))
  if (files.length === 0) {
    console.error(`bench: no bench file matches ${options.only.map((name) => `"${name}"`).join(", ")} (have: ${all.join(", ")})`)
    return 2
  }

  const env: Record<string, string | undefined> = { ...process.env }
  if (options.quick) env.BENCH_QUICK = "1"
  else delete env.BENCH_QUICK
  if (options.filter !== undefined) env.BENCH_FILTER = options.filter

  const started = performance.now()
  const deadline = started + options.timeoutSeconds * 1000
  const outcomes: Outcome[] = []
  let current: Bun.Subprocess | null = null
  let interrupted = false
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted = true
    current?.kill(signal)
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)

  console.log(
    `bench: ${files.length} file${files.length === 1 ? "" : "s"}${options.quick ? ", quick" : ""}` +
      `${options.filter === undefined ? "" : `, filter /${options.filter}/`}, budget ${options.timeoutSeconds} s`,
  )
  for (const file of files) {
    const path = join(benchDir, file)
    if (interrupted || performance.now() >= deadline) {
      outcomes.push({ file, status: "not run", seconds: 0 })
      continue
    }
    console.log(`\n━━━ ${relative(projectDir, path)} ━━━`)
    const fileStarted = performance.now()
    const child = Bun.spawn([process.execPath, "run", path], {
      cwd: projectDir,
      env,
      stdin: "ignore",
      stdout: "inherit",
      stderr: "inherit",
    })
    current = child
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      console.error(`\nbench: ${file} is still running when the ${options.timeoutSeconds} s budget is used up; stopping it`)
      child.kill("SIGTERM")
      setTimeout(() => child.kill("SIGKILL"), 5000).unref()
    }, Math.max(0, deadline - performance.now()))
    const exitCode = await child.exited
    clearTimeout(timer)
    current = null
    const seconds = (performance.now() - fileStarted) / 1000
    const status = timedOut ? "timed out" : exitCode === 0 && !interrupted ? "ok" : "failed"
    outcomes.push({ file, status, seconds })
    if (status === "failed") console.error(`\nbench: ${file} failed (exit ${exitCode ?? child.signalCode})`)
  }

  const totalSeconds = (performance.now() - started) / 1000
  console.log("\nbench: summary")
  for (const { file, status, seconds } of outcomes) {
    console.log(`  ${basename(file).padEnd(24)} ${status.padEnd(9)} ${status === "not run" ? "" : `${seconds.toFixed(1)} s`}`)
  }
  console.log(`  total ${totalSeconds.toFixed(1)} s`)
  if (interrupted) return 130
  return outcomes.every((outcome) => outcome.status === "ok") ? 0 : 1
}

process.exit(await main())
