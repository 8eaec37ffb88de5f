/**
 * A cumulative histogram with fixed bucket bounds, as Prometheus exposes them. Observing a
 * value is a short linear scan over a dozen bounds: cheap enough for every delivery.
 */
export class Histogram {
  readonly bounds: readonly number[]
  /** counts[i]: observations <= bounds[i] and > bounds[i - 1]; the last slot is +Inf. */
  readonly #counts: number[]
  #sum = 0
  #count = 0

  constructor(bounds: readonly number[]) {
    this.bounds = bounds
    this.#counts = new Array<number>(bounds.length + 1).fill(0)
  }

  observe(value: number): void {
    let i = 0
    while (i < this.bounds.length && value > this.bounds[i]!) i++
    this.#counts[i]!++
    this.#sum += value
    this.#count++
  }

  get count(): number {
    return this.#count
  }

  get sum(): number {
    return this.#sum
  }

  /** Cumulative counts per bound, then +Inf (= count), as Prometheus `_bucket` lines want. */
  cumulative(): number[] {
    let running = 0
    return this.#counts.map((count) => (running += count))
  }
}

/** Put-to-delivery latency bounds, in seconds: 50 µs to 10 s. */
export const LATENCY_BUCKETS_SECONDS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
]

/**
 * The value below which a fraction `q` of the observations fall, estimated from cumulative
 * bucket counts (the last is +Inf) by linear interpolation inside the bucket, as Prometheus's
 * histogram_quantile does; null when there are no observations. An estimate in the +Inf
 * bucket is reported as the highest finite bound.
 */
export function quantile(bounds: readonly number[], cumulative: readonly number[], q: number): number | null {
  const total = cumulative[cumulative.length - 1] ?? 0
  if (total === 0) return null
  const rank = q * total
  let i = 0
  while (i < cumulative.length - 1 && cumulative[i]! < rank) i++
  if (i >= bounds.length) return bounds[bounds.length - 1] ?? null
  const lower = i === 0 ? 0 : bounds[i - 1]!
  const below = i === 0 ? 0 : cumulative[i - 1]!
  const inBucket = cumulative[i]! - below
  return inBucket === 0 ? bounds[i]! : lower + (bounds[i]! - lower) * ((rank - below) / inBucket)
}
