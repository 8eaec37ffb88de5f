/**
 * The soak test's coordinator: starts the broker and the load process, probes latency, samples the
 * broker every interval, stops everything within its deadline, and hands the samples to the verdict
 * and the report.
 */
import { DEFAULT_RETENTION } from "../../src/broker/retention.ts"
import { type Client, connect } from "../../src/client.ts"
import { parseSize } from "../../src/config/values.ts"
import { memoryOf } from "../lib/proc.ts"
import { withTimeout } from "../lib/wait.ts"
import { fmt } from "./format.ts"
import type { SoakOptions } from "./options.ts"
import { Probe } from "./probe.ts"
import { type BrokerProcess, killAll, LoadProcess, startBroker } from "./processes.ts"
import { liveHeader, printLive, printReport, printStart, printSummary, writeJsonReport } from "./report.ts"
import type { ServerStatsSnapshot } from "./sample.ts"
import { fetchStats, Sampler } from "./sampler.ts"
import { judge } from "./verdict.ts"

/** How long past the load's end the whole run may take before it kills what it started. */
const OVERRUN_MS = 120_000

export async function coordinatorMain(options: SoakOptions): Promise<number> {
  const cap = options.maxMemory === null ? DEFAULT_RETENTION.maxStoreBytes : parseSize("--max-memory", options.maxMemory)
  const brokerArgs = brokerArguments(options)
  const durationMs = options.minutes * 60_000
  const hardTimer = setTimeout(() => {
    console.error("soak: overran its deadline by 2 minutes; killing what it started")
    killAll()
    process.exit(1)
  }, durationMs + OVERRUN_MS)
  hardTimer.unref()
  printStart(options, brokerArgs, cap)

  const broker = await startBroker(brokerArgs)
  await Bun.sleep(500)
  const idle = memoryOf(broker.process.pid)
  console.log(`soak: broker pid ${broker.process.pid} on port ${broker.port}, idle RSS ${fmt.mib(idle?.rss ?? Number.NaN)} MiB`)

  const clientErrors: string[] = []
  const onError = (error: { message: string }): void => {
    if (clientErrors.length < 50) clientErrors.push(error.message)
  }
  const statsClient = await connect({ port: broker.port, onError })
  const probe = await Probe.open(broker.port, onError)
  const loadDeadline = Date.now() + durationMs
  const load = new LoadProcess(loadArguments(options, broker.port, loadDeadline))
  if (!(await load.untilReady(30_000))) {
    console.error("soak: the load process did not get ready")
    killAll()
    return 1
  }
  probe.start(options.probeRate, options.topics, loadDeadline)
  const sampler = await Sampler.open(statsClient, { server: broker.process.pid, load: load.process.pid }, probe, () => load.tally)

  console.log("")
  console.log(liveHeader())
  let failure = await sampleUntil(loadDeadline, options.intervalSeconds * 1000, sampler, broker, load, cap)
  if (failure === null) {
    try {
      printLive(await sampler.takeSample(), cap) // the end, load still running
    } catch (error) {
      failure = `sampling failed: ${(error as Error).message}`
    }
  }

  // Stop: the load first, then the probe; the broker's memory once it is quiet; then the broker.
  await load.stop()
  await probe.stop()
  await Bun.sleep(2000)
  const afterLoad = broker.process.exitCode === null ? memoryOf(broker.process.pid) : null
  let finalStats: ServerStatsSnapshot | null = null
  try {
    finalStats = await fetchStats(statsClient, 10_000)
  } catch (error) {
    failure ??= `final stats failed: ${(error as Error).message}`
  }
  const closeOne = (client: Client) => withTimeout(client.close(), 5000, "close").catch(() => {})
  await closeOne(statsClient)
  await probe.close(closeOne)
  failure ??= await stopBroker(broker)
  killAll()
  clearTimeout(hardTimer)

  const idleRss = idle?.rss ?? Number.NaN
  const verdict = judge(sampler.samples, probe.series, options, cap, idleRss)
  printReport(sampler.samples, probe.series, verdict, options, cap, idleRss, afterLoad?.rss ?? Number.NaN)
  const outcome = { probe, load: load.tally, finalStats, sampler, clientErrors, brokerLog: broker.log, failure }
  printSummary(outcome)
  if (options.json !== null) writeJsonReport(options.json, { options, cap, idle, afterLoad, verdict, ...outcome })
  return failure === null && verdict.ok ? 0 : 1
}

/**
 * Samples every `intervalMs` until `deadline` (Date.now()), looking for retention's first drop
 * every 250 ms before it happens; the reason to stop early, or null.
 */
async function sampleUntil(
  deadline: number,
  intervalMs: number,
  sampler: Sampler,
  broker: BrokerProcess,
  load: LoadProcess,
  cap: number | null,
): Promise<string | null> {
  let nextSampleAt = sampler.startedAt + intervalMs
  while (Date.now() < deadline) {
    const wait = Math.min(nextSampleAt - performance.now(), deadline - Date.now())
    if (wait > 0) await Bun.sleep(Math.min(wait, sampler.sawDrop ? 1000 : 250))
    try {
      if (!sampler.sawDrop && broker.process.exitCode === null && (await sampler.lookForFirstDrop())) {
        printLive(sampler.samples.at(-1)!, cap)
        nextSampleAt = performance.now() + intervalMs
        continue
      }
    } catch (error) {
      return `sampling failed: ${(error as Error).message}`
    }
    if (broker.process.exitCode !== null || broker.process.signalCode !== null) {
      return `the broker exited (code ${broker.process.exitCode}, signal ${broker.process.signalCode})`
    }
    if (load.process.exitCode !== null && Date.now() < deadline - 2000) {
      const tally = load.tally
      const lost =
        tally === null || tally.closedConnections === 0
          ? ""
          : `; ${tally.closedConnections} of its connections were lost, last error: ${tally.lastError}`
      return `the load process exited early (code ${load.process.exitCode}${lost})`
    }
    if (performance.now() >= nextSampleAt && Date.now() < deadline - 1000) {
      try {
        printLive(await sampler.takeSample(), cap)
      } catch (error) {
        return `sampling failed: ${(error as Error).message}`
      }
      nextSampleAt += intervalMs
      if (performance.now() > nextSampleAt) nextSampleAt = performance.now() + intervalMs
    }
  }
  return null
}

/** SIGTERM, and what went wrong if the broker did not exit 0 within 15 s. */
async function stopBroker(broker: BrokerProcess): Promise<string | null> {
  broker.process.kill("SIGTERM")
  const exit = await Promise.race([broker.process.exited, Bun.sleep(15_000).then(() => null)])
  if (exit === null) {
    broker.process.kill("SIGKILL")
    return "the broker did not stop within 15 s of SIGTERM"
  }
  return exit === 0 ? null : `the broker exited with code ${exit} on SIGTERM`
}

function brokerArguments(options: SoakOptions): string[] {
  const args = ["run", "src/server.ts", "--port", "0", "--no-http"]
  if (options.maxMemory !== null) args.push("--max-memory", options.maxMemory)
  if (options.maxAge !== null) args.push("--max-age", options.maxAge)
  if (options.maxMessages !== null) args.push("--max-messages", options.maxMessages)
  if (options.idleTimeout !== null) args.push("--idle-timeout", options.idleTimeout)
  return args
}

function loadArguments(options: SoakOptions, port: number, deadline: number): string[] {
  const { topics, payload, writers, batch, window, pollBatch, rate } = options
  return Object.entries({ port, topics, payload, writers, batch, window, "poll-batch": pollBatch, rate, deadline }).flatMap(
    ([name, value]) => [`--${name}`, String(value)],
  )
}
