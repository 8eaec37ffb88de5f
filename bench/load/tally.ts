/**
 * What the receivers of one scenario saw: every measured message is checked against what its
 * writer sent (loss, duplicates, order) and its latency is kept for percentiles.
 */

export interface LatencySummary {
  readonly count: number
  /** Microseconds. */
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly p999: number
  readonly max: number
  readonly mean: number
}

/** Nearest-rank percentiles of `values` (milliseconds), in microseconds. */
export function summarize(values: Float64Array): LatencySummary | null {
  if (values.length === 0) return null
  const sorted = values.slice().sort()
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]! * 1000
  let sum = 0
  for (let i = 0; i < sorted.length; i++) sum += sorted[i]!
  return {
    count: sorted.length,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    p999: at(0.999),
    max: sorted[sorted.length - 1]! * 1000,
    mean: (sum / sorted.length) * 1000,
  }
}

/** A growable list of numbers. */
export class Samples {
  #values = new Float64Array(1024)
  length = 0

  push(value: number): void {
    if (this.length === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2)
      grown.set(this.#values)
      this.#values = grown
    }
    this.#values[this.length++] = value
  }

  values(): Float64Array {
    return this.#values.subarray(0, this.length)
  }
}

export class Tally {
  readonly readers: number
  readonly writers: number
  /** From the scheduled send time (open loop): what a client on that schedule experiences. */
  readonly latencies = new Samples()
  /** From the actual send time: what the server and the network added, without the writer's lateness. */
  readonly latenciesFromSend = new Samples()
  /** Measured messages received, duplicates included. */
  received = 0
  unique = 0
  duplicates = 0
  /** Messages that arrived after a later message of the same writer (for the same reader). */
  outOfOrder = 0
  /** Messages naming a writer this scenario does not have. */
  foreign = 0
  firstAt = Number.POSITIVE_INFINITY
  lastAt = 0
  readonly #seen: Uint8Array[]
  readonly #highest: Float64Array

  constructor(readers: number, writers: number, expectedPerWriter: number) {
    this.readers = readers
    this.writers = writers
    const capacity = Math.max(1024, Math.ceil(expectedPerWriter * 1.25))
    this.#seen = Array.from({ length: readers * writers }, () => new Uint8Array(capacity))
    this.#highest = new Float64Array(readers * writers).fill(-1)
  }

  record(reader: number, writer: number, index: number, scheduledAt: number, sentAt: number, now: number): void {
    if (writer >= this.writers || reader >= this.readers || !Number.isInteger(index) || index < 0) {
      this.foreign++
      return
    }
    const key = reader * this.writers + writer
    let seen = this.#seen[key]!
    if (index >= seen.length) {
      let capacity = seen.length * 2
      while (capacity <= index) capacity *= 2
      const grown = new Uint8Array(capacity)
      grown.set(seen)
      this.#seen[key] = seen = grown
    }
    this.received++
    if (now < this.firstAt) this.firstAt = now
    if (now > this.lastAt) this.lastAt = now
    if (seen[index] !== 0) {
      this.duplicates++
      return
    }
    seen[index] = 1
    this.unique++
    if (index < this.#highest[key]!) this.outOfOrder++
    else this.#highest[key] = index
    this.latencies.push(now - scheduledAt)
    this.latenciesFromSend.push(now - sentAt)
  }

  /** Whether `reader` has received message `index` of `writer`. */
  has(reader: number, writer: number, index: number): boolean {
    return this.#seen[reader * this.writers + writer]![index] === 1
  }
}
