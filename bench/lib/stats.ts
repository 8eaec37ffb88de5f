export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!
}

export interface LatencySummary {
  readonly n: number
  readonly p50: number
  readonly p99: number
  readonly p999: number
  readonly max: number
}

export function summarize(values: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(values).sort()
  const list = Array.from(sorted)
  return {
    n: list.length,
    p50: percentile(list, 0.5),
    p99: percentile(list, 0.99),
    p999: percentile(list, 0.999),
    max: list.length === 0 ? Number.NaN : list[list.length - 1]!,
  }
}

export function median(values: readonly number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    0.5,
  )
}
