/**
 * The values options take, each parsed with an error that names the option and shows the
 * accepted forms: sizes, ages, counts, ports, choices. Shared by the command line and by
 * what reads configuration files.
 */

/** A command line or configuration value the server cannot start with; the message says which and why. */
export class UsageError extends Error {
  override readonly name = "UsageError"
}

/** A command line that cannot be read (an unknown option, a missing or bad flag value): exit code 2, not 1. */
export class CommandLineError extends UsageError {}

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, kb: 1e3, mb: 1e6, gb: 1e9 }
const AGE_UNITS: Record<string, number> = { "": 1000, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** "256MiB", "1.5GiB", "4096"; "none" for no limit. */
export function parseSize(name: string, text: string): number | null {
  if (text === "none") return null
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  const unit = SIZE_UNITS[match?.[2]?.toLowerCase() ?? "?"]
  if (match === null || unit === undefined)
    throw new UsageError(`${name} must be a size like 4096, 64KiB or 256MiB, or none; got ${JSON.stringify(text)}`)
  return Math.round(Number(match[1]) * unit)
}

/** "600" (seconds), "10m", "1h", "250ms"; "none" for no limit. Returns milliseconds. */
export function parseAge(name: string, text: string): number | null {
  if (text === "none") return null
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  const unit = AGE_UNITS[match?.[2]?.toLowerCase() ?? "?"]
  if (match === null || unit === undefined || Number(match[1]) === 0) {
    throw new UsageError(`${name} must be an age like 600 (seconds), 10m or 1h, or none; got ${JSON.stringify(text)}`)
  }
  return Math.round(Number(match[1]) * unit)
}

/**
 * A duration in an option counted in seconds: "30" (seconds), "1.5", "500ms", "5m", "1h".
 * Returns milliseconds; 0 only when `allowZero` (the options where 0 turns the limit off).
 */
export function parseDuration(name: string, text: string, maxSeconds: number, allowZero: boolean): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  const unit = AGE_UNITS[match?.[2]?.toLowerCase() ?? "?"]
  const ms = match === null || unit === undefined ? Number.NaN : Math.round(Number(match[1]) * unit)
  if (!(ms >= (allowZero ? 0 : 1) && ms <= maxSeconds * 1000)) {
    const range = `${allowZero ? 0 : "1ms"} to ${formatDuration(maxSeconds * 1000)}`
    throw new UsageError(`${name} must be a duration like 30 (seconds), 500ms or 5m, from ${range}; got ${JSON.stringify(text)}`)
  }
  return ms
}

/** "500ms", "30s", "5m", "1h": the shortest exact form of a duration. */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}

export function parseCount(name: string, text: string): number | null {
  if (text === "none") return null
  return parseInteger(name, text, 1, Number.MAX_SAFE_INTEGER)
}

/**
 * A size with the unit it reads best in: "none", "256MiB", "64KiB", "1000". Exact, so what
 * `--print-config` shows parses back to the same number.
 */
export function formatSize(bytes: number | null): string {
  if (bytes === null) return "none"
  if (bytes === 0) return "0"
  if (bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3}GiB`
  if (bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2}MiB`
  if (bytes % 1024 === 0) return `${bytes / 1024}KiB`
  return String(bytes)
}

/** A size for people: "1.2 MB", "512 B". */
export function humanBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`
  const units = ["kB", "MB", "GB", "TB"]
  let value = bytes
  let unit = -1
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000
    unit++
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`
}

export function oneOf<T extends string>(name: string, text: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(text))
    throw new UsageError(`${name} must be one of ${choices.join(", ")}, got ${JSON.stringify(text)}`)
  return text as T
}

export function parseHost(text: string): string {
  if (text.trim() === "") throw new UsageError("host must not be empty")
  return text
}

export function parsePort(text: string): number {
  return parseInteger("port", text, 0, 65535)
}

export function parseInteger(name: string, text: string, min: number, max: number): number {
  const value = Number(text)
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new UsageError(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`)
  }
  return value
}
