/** What a scenario cost the server: its CPU time per message, from STATS or /proc, and this process's own CPU. */
import { readFileSync } from "node:fs"
import { withTimeout } from "../lib/wait.ts"
import type { ServerCost } from "./results.ts"
import type { Target } from "./targets.ts"

export interface StatsSample {
  readonly at: number
  readonly cpuMicros: number
  readonly puts: number
  readonly deliveries: number
  /** True when the sample is the floor's CPU time from /proc only (10 ms resolution, no counters). */
  readonly fromProc: boolean
  /** From /proc/PID/stat (10 ms resolution): how the CPU time splits into user and system. */
  readonly userMicros: number | null
  readonly systemMicros: number | null
}

/** utime and stime of a process, in µs (Linux; null elsewhere). */
export function processTimes(pid: number | null): { user: number; system: number } | null {
  if (pid === null) return null
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // Fields 14 and 15 of the file, counted after "pid (comm)": indexes 11 and 12 here.
    const tick = 1_000_000 / CLOCK_TICKS_PER_SECOND
    return { user: Number(fields[11]) * tick, system: Number(fields[12]) * tick }
  } catch {
    return null
  }
}

/** USER_HZ: 100 on every Linux configuration Bun runs on. */
export const CLOCK_TICKS_PER_SECOND = 100

export async function sampleStats(target: Target): Promise<StatsSample | null> {
  if (target.control === null) {
    // A floor: its CPU time from /proc; it counts no puts or deliveries.
    const times = processTimes(target.pid)
    if (times === null) return null
    const cpuMicros = times.user + times.system
    return { at: performance.now(), cpuMicros, puts: 0, deliveries: 0, fromProc: true, userMicros: times.user, systemMicros: times.system }
  }
  const asked = performance.now()
  const stats = await withTimeout(target.control.stats(), 5000)
  // The server took its snapshot somewhere in the round trip.
  const at = (asked + performance.now()) / 2
  const times = processTimes(target.pid)
  return {
    at,
    cpuMicros: Number(stats.cpuMicros),
    puts: Number(stats.puts),
    deliveries: Number(stats.deliveries),
    fromProc: false,
    userMicros: times?.user ?? null,
    systemMicros: times?.system ?? null,
  }
}

/** /proc counts CPU time in 10 ms ticks: below this much, its numbers are mostly rounding. */
export const MIN_PROC_CPU_MICROS = 200_000

export function serverCost(before: StatsSample | null, after: StatsSample | null): ServerCost | null {
  if (before === null || after === null) return null
  const cpuMicros = after.cpuMicros - before.cpuMicros
  if (before.fromProc && (after.at - before.at < 1000 || cpuMicros < MIN_PROC_CPU_MICROS)) return null
  const userAndSystem =
    before.systemMicros === null || after.systemMicros === null || before.userMicros === null || after.userMicros === null
      ? null
      : { system: after.systemMicros - before.systemMicros, user: after.userMicros - before.userMicros }
  const puts = after.puts - before.puts
  const deliveries = after.deliveries - before.deliveries
  const wallMs = after.at - before.at
  const systemShare =
    userAndSystem === null || userAndSystem.system + userAndSystem.user < MIN_PROC_CPU_MICROS
      ? null
      : userAndSystem.system / (userAndSystem.system + userAndSystem.user)
  return costOf(wallMs, cpuMicros, puts, deliveries, systemShare)
}

/**
 * A peer's cost (CPU time from /proc, no counters of its own) per message the load generator
 * counted: `puts` it sent and `deliveries` it received in the measured phase.
 */
export function withClientCounts(cost: ServerCost | null, puts: number, deliveries: number): ServerCost | null {
  return cost === null ? null : costOf(cost.wallMs, cost.cpuMicros, puts, deliveries, cost.systemShare)
}

/** CPU time of this process (all threads), for the load generator's share of a core. */
export class CpuMeter {
  readonly #startCpu = process.cpuUsage()
  readonly #startWall = performance.now()

  percent(): number {
    const used = process.cpuUsage(this.#startCpu)
    const wall = performance.now() - this.#startWall
    return wall > 0 ? ((used.user + used.system) / (wall * 1000)) * 100 : 0
  }
}

/** A server's cost with the per-put, per-delivery and per-operation shares of its CPU time worked out. */
export function costOf(wallMs: number, cpuMicros: number, puts: number, deliveries: number, systemShare: number | null): ServerCost {
  return {
    wallMs,
    cpuMicros,
    puts,
    deliveries,
    cpuPerPut: puts > 0 ? cpuMicros / puts : null,
    cpuPerDelivery: deliveries > 0 ? cpuMicros / deliveries : null,
    cpuPerOperation: puts + deliveries > 0 ? cpuMicros / (puts + deliveries) : null,
    cpuPercent: wallMs > 0 ? (cpuMicros / (wallMs * 1000)) * 100 : 0,
    systemShare,
  }
}
