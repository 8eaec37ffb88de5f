/**
 * What Linux's /proc says about a process and the machine: memory (VmRSS, VmHWM), CPU seconds,
 * the machine's busy time and load average. Readings are NaN where /proc has no answer.
 */
import { readFileSync } from "node:fs"
import os from "node:os"

/** VmRSS and VmHWM of a process, in bytes; null once it is gone. */
export function memoryOf(pid: number): { rss: number; hwm: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN) * 1024
    return { rss: field("VmRSS"), hwm: field("VmHWM") }
  } catch {
    return null
  }
}

export const CLOCK_TICKS_PER_SECOND = 100 // USER_HZ on Linux

/** CPU seconds (user + system) a process has used; NaN once it is gone. */
export function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND
  } catch {
    return Number.NaN
  }
}

/** CPU seconds the whole machine has been busy (all cores, everything but idle and iowait). */
export function machineBusySeconds(): number {
  try {
    const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
    const total = fields.reduce((sum, value) => sum + value, 0)
    return (total - fields[3]! - fields[4]!) / CLOCK_TICKS_PER_SECOND
  } catch {
    return Number.NaN
  }
}

export function loadAverage(): number {
  return os.loadavg()[0] ?? Number.NaN
}
