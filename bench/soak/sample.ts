import type { LatencySummary } from "../lib/stats.ts"
import type { LoadTally } from "./load-process.ts"

export interface CpuReading {
  readonly at: number
  readonly server: number
  readonly load: number
  readonly self: number
  readonly machine: number
}

export interface ServerStatsSnapshot {
  puts: number
  deliveries: number
  storedMessages: number
  storedBytes: number
  cpuMicros: number
  topics: number
  subscribers: number
  connections: number
  maxConnectionBufferedBytes: number
  queuedRequests: number
  errors: Record<string, number>
  /** Not in the server's stats: see the note in the report. */
  retentionDropped?: number
}

export interface Sample {
  /** Seconds since the load started. */
  t: number
  /** "fill": the extra sample taken when retention first removed something (within 250 ms). */
  phase: "fill" | "load"
  /** Retention removed messages during this interval (never for the fill sample). */
  dropping: boolean
  rss: number
  hwm: number
  loadRss: number
  storedMessages: number
  storedBytes: number
  /** Bytes the cap counts: payload + STORED_MESSAGE_OVERHEAD per message. */
  countedBytes: number
  putsPerSecond: number
  deliveriesPerSecond: number
  /** puts − stored (the in-memory store removes messages only through retention). */
  dropped: number
  droppedPerSecond: number
  serverCpuPercent: number
  /** From STATS: the most bytes one connection holds, and requests queued behind flow control. */
  maxConnectionBufferedBytes: number
  queuedRequests: number
  /** Percent of one core over the interval, from /proc: the load process, this process, and everything else on the machine. */
  loadCpuPercent: number
  selfCpuPercent: number
  otherCpuPercent: number
  errors: number
  loadAverage: number
  statsRttMs: number
  deliver: LatencySummary
  ack: LatencySummary
  ping: LatencySummary
  get: LatencySummary
  probeLost: number
  load: LoadTally | null
}

export interface Series {
  interval: number[]
  all: number[]
  /** Samples taken while retention was dropping (decided per interval, after the fact). */
  dropping: number[]
  quiet: number[]
}

export const newSeries = (): Series => ({ interval: [], all: [], dropping: [], quiet: [] })
