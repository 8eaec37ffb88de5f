/**
 * Recent rates: the broker's counters sampled once a second into a bounded ring, so /stats and
 * every open dashboard read the same per-second figures, and nothing is counted per message
 * beyond the counters the broker keeps anyway.
 */
import { quantile } from "../broker/histogram.ts"

export interface CounterSample {
  /** When it was taken (ms since the epoch). */
  readonly atMs: number
  readonly puts: number
  readonly deliveries: number
  /** The delivery-latency histogram's cumulative counts (the last is +Inf). */
  readonly latency: readonly number[]
}

/** Per-second rates over the second that ended at `atMs`. */
export interface RatePoint {
  readonly atMs: number
  readonly putsPerSecond: number
  readonly deliveriesPerSecond: number
}

export interface LatencySummary {
  /** The window the figures cover, in seconds (shorter just after the server started). */
  readonly windowSeconds: number
  readonly count: number
  /** Seconds from put to delivery; null when nothing was delivered in the window. */
  readonly p50: number | null
  readonly p90: number | null
  readonly p99: number | null
}

/** How often the server samples, and how much history it keeps (five minutes). */
export const SAMPLE_INTERVAL_MS = 1000
export const HISTORY_POINTS = 300

export class RateMeter {
  readonly #samples: CounterSample[] = []
  readonly #latencyBounds: readonly number[]

  constructor(latencyBounds: readonly number[], first: CounterSample) {
    this.#latencyBounds = latencyBounds
    this.#samples.push(first)
  }

  record(sample: CounterSample): void {
    this.#samples.push(sample)
    // One sample more than points: each point is the difference of two.
    if (this.#samples.length > HISTORY_POINTS + 1) this.#samples.shift()
  }

  /** The rate points kept, oldest first. */
  points(): RatePoint[] {
    const points: RatePoint[] = []
    for (let i = 1; i < this.#samples.length; i++) points.push(pointOf(this.#samples[i - 1]!, this.#samples[i]!))
    return points
  }

  /** The latest second's rates; zeros before the first second has passed. */
  latest(): RatePoint {
    const n = this.#samples.length
    const last = this.#samples[n - 1]!
    return n < 2 ? { atMs: last.atMs, putsPerSecond: 0, deliveriesPerSecond: 0 } : pointOf(this.#samples[n - 2]!, last)
  }

  /** Delivery-latency percentiles over the last `windowMs` of samples. */
  latency(windowMs: number): LatencySummary {
    const last = this.#samples[this.#samples.length - 1]!
    // From the newest sample at least `windowMs` old (or the oldest kept), so the window is never empty.
    const first = this.#samples.findLast((sample) => sample.atMs <= last.atMs - windowMs) ?? this.#samples[0]!
    const counts = last.latency.map((count, i) => count - (first.latency[i] ?? 0))
    const q = (fraction: number) => quantile(this.#latencyBounds, counts, fraction)
    return {
      windowSeconds: (last.atMs - first.atMs) / 1000,
      count: counts[counts.length - 1] ?? 0,
      p50: q(0.5),
      p90: q(0.9),
      p99: q(0.99),
    }
  }
}

function pointOf(before: CounterSample, after: CounterSample): RatePoint {
  const seconds = Math.max(0.001, (after.atMs - before.atMs) / 1000)
  return {
    atMs: after.atMs,
    putsPerSecond: (after.puts - before.puts) / seconds,
    deliveriesPerSecond: (after.deliveries - before.deliveries) / seconds,
  }
}
