/**
 * The soak test's sampler: every interval, the broker's memory and CPU time from /proc, its
 * STATS counters, the CPU the rest of the machine used (to tell contention apart), and the
 * probe's latencies of the interval, as one Sample.
 *
 * Until retention first removes something the coordinator looks every 250 ms (`lookForFirstDrop`)
 * and takes a sample the moment it does: that sample ("fill") is the latency baseline without
 * dropping, and holds only the latencies recorded before the last look that saw nothing dropped.
 */
import { STORED_MESSAGE_OVERHEAD } from "../../src/broker/retention.ts"
import type { Client } from "../../src/client.ts"
import { cpuSecondsOf, loadAverage, machineBusySeconds, memoryOf } from "../lib/proc.ts"
import { summarize } from "../lib/stats.ts"
import { withTimeout } from "../lib/wait.ts"
import type { LoadTally } from "./load-process.ts"
import type { Probe, SeriesName } from "./probe.ts"
import type { CpuReading, Sample, ServerStatsSnapshot } from "./sample.ts"

const SERIES_NAMES: readonly SeriesName[] = ["deliver", "ack", "ping", "get"]
const STATS_TIMEOUT_MS = 30_000

const noMark = (): Record<SeriesName, number> => ({ deliver: 0, ack: 0, ping: 0, get: 0 })

/** The processes whose memory and CPU time are sampled. */
interface SampledPids {
  readonly server: number
  readonly load: number
}

export class Sampler {
  readonly samples: Sample[] = []
  readonly startedAt = performance.now()
  /** Whether the server's STATS count retention drops themselves (else puts − stored stands in). */
  readonly droppedExposed: boolean
  /** Retention has removed something: the fill sample is taken. */
  sawDrop = false
  readonly #stats: Client
  readonly #pids: SampledPids
  readonly #probe: Probe
  readonly #loadTally: () => LoadTally | null
  #previous: { at: number; stats: ServerStatsSnapshot }
  #previousCpu: CpuReading
  /** For the fill sample: how many of each series' values were recorded before the last look that saw no drop. */
  #quietMark = noMark()

  private constructor(stats: Client, pids: SampledPids, probe: Probe, loadTally: () => LoadTally | null, first: ServerStatsSnapshot) {
    this.#stats = stats
    this.#pids = pids
    this.#probe = probe
    this.#loadTally = loadTally
    this.#previous = { at: performance.now(), stats: first }
    this.droppedExposed = "droppedByRetention" in first
    this.#previousCpu = this.#readCpu()
  }

  static async open(stats: Client, pids: SampledPids, probe: Probe, loadTally: () => LoadTally | null): Promise<Sampler> {
    return new Sampler(stats, pids, probe, loadTally, await fetchStats(stats, STATS_TIMEOUT_MS))
  }

  /** Before the first drop: true when this look saw one (and took the fill sample). */
  async lookForFirstDrop(): Promise<boolean> {
    const stats = await fetchStats(this.#stats, STATS_TIMEOUT_MS)
    if (stats.puts > stats.storedMessages) {
      await this.takeSample()
      return true
    }
    const series = this.#probe.series
    this.#quietMark = {
      deliver: series.deliver.interval.length,
      ack: series.ack.interval.length,
      ping: series.ping.interval.length,
      get: series.get.interval.length,
    }
    return false
  }

  async takeSample(): Promise<Sample> {
    const t0 = performance.now()
    const memory = memoryOf(this.#pids.server)
    const loadMemory = memoryOf(this.#pids.load)
    const cpu = this.#readCpu()
    const previousCpu = this.#previousCpu
    const cpuSeconds = (cpu.at - previousCpu.at) / 1000
    const percent = (used: number): number => (used / cpuSeconds) * 100
    const serverUsed = cpu.server - previousCpu.server
    const loadUsed = cpu.load - previousCpu.load
    const selfUsed = cpu.self - previousCpu.self
    const otherUsed = cpu.machine - previousCpu.machine - serverUsed - (Number.isFinite(loadUsed) ? loadUsed : 0) - selfUsed
    this.#previousCpu = cpu
    const stats = await fetchStats(this.#stats, STATS_TIMEOUT_MS)
    const now = performance.now()
    const seconds = (now - this.#previous.at) / 1000
    const prev = this.#previous.stats
    const dropped = stats.puts - stats.storedMessages
    const droppedPerSecond = (dropped - (prev.puts - prev.storedMessages)) / seconds
    // The first sample to see a drop is the fill sample: only the latency values recorded before
    // the last look that saw none are in it; the rest carry over into the next interval.
    const phase = !this.sawDrop && dropped > 0 ? "fill" : "load"
    if (phase === "fill") this.sawDrop = true
    const dropping = phase === "load" && droppedPerSecond > 0
    const series = this.#probe.series
    const taken = (name: SeriesName): number[] =>
      phase === "load" ? series[name].interval : series[name].interval.slice(0, this.#quietMark[name])
    const sample: Sample = {
      t: (now - this.startedAt) / 1000,
      phase,
      dropping,
      rss: memory?.rss ?? Number.NaN,
      hwm: memory?.hwm ?? Number.NaN,
      loadRss: loadMemory?.rss ?? Number.NaN,
      storedMessages: stats.storedMessages,
      storedBytes: stats.storedBytes,
      countedBytes: stats.storedBytes + stats.storedMessages * STORED_MESSAGE_OVERHEAD,
      putsPerSecond: (stats.puts - prev.puts) / seconds,
      deliveriesPerSecond: (stats.deliveries - prev.deliveries) / seconds,
      dropped,
      droppedPerSecond,
      serverCpuPercent: ((stats.cpuMicros - prev.cpuMicros) / 1e6 / seconds) * 100,
      maxConnectionBufferedBytes: stats.maxConnectionBufferedBytes,
      queuedRequests: stats.queuedRequests,
      loadCpuPercent: percent(loadUsed),
      selfCpuPercent: percent(selfUsed),
      otherCpuPercent: Math.max(0, percent(otherUsed)),
      errors: Object.values(stats.errors).reduce((sum, count) => sum + count, 0),
      loadAverage: loadAverage(),
      statsRttMs: now - t0,
      deliver: summarize(taken("deliver")),
      ack: summarize(taken("ack")),
      ping: summarize(taken("ping")),
      get: summarize(taken("get")),
      probeLost: this.#probe.lost,
      load: this.#loadTally(),
    }
    for (const name of SERIES_NAMES) {
      const s = series[name]
      const values = taken(name)
      ;(dropping ? s.dropping : s.quiet).push(...values)
      s.interval = s.interval.slice(values.length)
    }
    this.samples.push(sample)
    this.#previous = { at: now, stats }
    this.#quietMark = noMark()
    return sample
  }

  #readCpu(): CpuReading {
    const self = process.cpuUsage()
    return {
      at: performance.now(),
      server: cpuSecondsOf(this.#pids.server),
      load: cpuSecondsOf(this.#pids.load),
      self: (self.user + self.system) / 1e6,
      machine: machineBusySeconds(),
    }
  }
}

export async function fetchStats(client: Client, timeoutMs: number): Promise<ServerStatsSnapshot> {
  return (await withTimeout(client.stats(), timeoutMs, "stats")) as unknown as ServerStatsSnapshot
}
