/** Percentiles from cumulative histogram buckets, and the rate meter built on them. */
import { describe, expect, test } from "bun:test"
import { quantile } from "../../src/broker/histogram.ts"
import { HISTORY_POINTS, RateMeter } from "../../src/server/rate-meter.ts"

const BOUNDS = [0.001, 0.01, 0.1]

describe("quantile", () => {
  test("interpolates inside the bucket the rank falls in", () => {
    // 10 observations <= 1 ms, 10 more <= 10 ms: the median is the first bucket's top.
    expect(quantile(BOUNDS, [10, 20, 20, 20], 0.5)).toBeCloseTo(0.001)
    expect(quantile(BOUNDS, [10, 20, 20, 20], 0.75)).toBeCloseTo(0.0055)
    expect(quantile(BOUNDS, [0, 0, 4, 4], 0.5)).toBeCloseTo(0.055)
  })

  test("null without observations; the highest bound for the +Inf bucket", () => {
    expect(quantile(BOUNDS, [0, 0, 0, 0], 0.5)).toBeNull()
    expect(quantile(BOUNDS, [0, 0, 0, 5], 0.99)).toBe(0.1)
  })
})

describe("RateMeter", () => {
  const sample = (second: number, puts: number, latency = [0, 0, 0, 0]) => ({ atMs: second * 1000, puts, deliveries: puts * 2, latency })

  test("per-second rates between samples, and the latest", () => {
    const meter = new RateMeter(BOUNDS, sample(0, 0))
    expect(meter.latest()).toEqual({ atMs: 0, putsPerSecond: 0, deliveriesPerSecond: 0 })
    meter.record(sample(1, 100))
    meter.record(sample(3, 300))
    expect(meter.points()).toEqual([
      { atMs: 1000, putsPerSecond: 100, deliveriesPerSecond: 200 },
      { atMs: 3000, putsPerSecond: 100, deliveriesPerSecond: 200 },
    ])
    expect(meter.latest().putsPerSecond).toBe(100)
  })

  test("keeps a bounded history", () => {
    const meter = new RateMeter(BOUNDS, sample(0, 0))
    for (let second = 1; second <= HISTORY_POINTS + 50; second++) meter.record(sample(second, second))
    const points = meter.points()
    expect(points.length).toBe(HISTORY_POINTS)
    expect(points.at(-1)!.atMs).toBe((HISTORY_POINTS + 50) * 1000)
  })

  test("latency percentiles cover only the window asked for", () => {
    const meter = new RateMeter(BOUNDS, sample(0, 0))
    // Slow deliveries long ago, fast ones in the last seconds.
    meter.record(sample(10, 0, [0, 0, 100, 100]))
    meter.record(sample(100, 0, [50, 50, 150, 150]))
    const recent = meter.latency(60_000)
    expect(recent.count).toBe(50)
    expect(recent.p99!).toBeLessThanOrEqual(0.001)
    expect(meter.latency(1_000_000).count).toBe(150)
  })
})
