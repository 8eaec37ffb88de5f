import { describe, expect, test } from "bun:test"
import { type Timed, WaitDeadlines } from "../../src/broker/wait-deadlines.ts"

interface Wait extends Timed {
  readonly name: string
}

const wait = (name: string, timeoutMs: number): Wait => ({ name, timeoutMs, deadline: performance.now() + timeoutMs, settled: false })

/** Deadlines whose expiries are recorded; `expired(n)` resolves once n have expired. */
function recording() {
  const names: string[] = []
  const watchers: { count: number; resolve: () => void }[] = []
  const deadlines = new WaitDeadlines<Wait>((item) => {
    names.push(item.name)
    for (const watcher of watchers) if (names.length >= watcher.count) watcher.resolve()
  })
  const expired = (count: number): Promise<void> => {
    if (names.length >= count) return Promise.resolve()
    const { promise, resolve } = Promise.withResolvers<void>()
    watchers.push({ count, resolve })
    return promise
  }
  return { deadlines, names, expired }
}

describe("WaitDeadlines", () => {
  test("waits expire once each, in deadline order, across different timeouts, none before its deadline", async () => {
    const { deadlines, names, expired } = recording()
    const waits = [wait("long", 40), wait("short-1", 10), wait("short-2", 10)]
    for (const item of waits) deadlines.add(item)
    const times: number[] = []
    await expired(1)
    times.push(performance.now())
    await expired(3)
    times.push(performance.now())
    expect(names).toEqual(["short-1", "short-2", "long"])
    expect(times[0]!).toBeGreaterThanOrEqual(waits[1]!.deadline - 1)
    expect(times[1]!).toBeGreaterThanOrEqual(waits[0]!.deadline - 1)
    expect(deadlines.pending).toBe(0)
  })

  test("a settled wait never expires; the rest of its queue does, also after the queue was compacted", async () => {
    const { deadlines, names, expired } = recording()
    const waits = Array.from({ length: 300 }, (_, i) => wait(`w${i}`, 15))
    for (const item of waits) deadlines.add(item)
    // Most of them are answered first (enough to compact the queue more than once).
    for (const item of waits) if (Number(item.name.slice(1)) % 5 !== 0) deadlines.settle(item)
    expect(deadlines.pending).toBe(60)
    await expired(60)
    expect(names).toEqual(waits.filter((_, i) => i % 5 === 0).map((item) => item.name))
    expect(deadlines.pending).toBe(0)
  })

  test("a wait added to a queue whose waits were all settled (kept, with its timer) still expires", async () => {
    const { deadlines, names, expired } = recording()
    const first = wait("first", 5)
    deadlines.add(first)
    deadlines.settle(first)
    deadlines.settle(first)
    expect(deadlines.pending).toBe(0)
    deadlines.add(wait("second", 5))
    await expired(1)
    expect(names).toEqual(["second"])
  })

  test("a few emptied queues are kept for the next wait; waits of many distinct timeouts leave no more behind", async () => {
    const { deadlines, names, expired } = recording()
    const waits = Array.from({ length: 100 }, (_, i) => wait(`w${i}`, 1000 + i))
    for (const item of waits) deadlines.add(item)
    expect(deadlines.queueCount).toBe(100)
    for (const item of waits) deadlines.settle(item)
    expect(deadlines.pending).toBe(0)
    expect(deadlines.queueCount).toBeLessThanOrEqual(8)
    expect(deadlines.queueCount).toBeGreaterThan(0)
    // Kept queues do not hold up a new one: a shorter wait still expires on time.
    deadlines.add(wait("fresh", 5))
    await expired(1)
    expect(names).toEqual(["fresh"])
    deadlines.clear()
    expect(deadlines.queueCount).toBe(0)
  })

  test("an expiry may start another wait (a reader waiting again), which expires in its turn", async () => {
    const names: string[] = []
    const { promise, resolve } = Promise.withResolvers<void>()
    const deadlines: WaitDeadlines<Wait> = new WaitDeadlines<Wait>((item) => {
      names.push(item.name)
      if (names.length < 3) deadlines.add(wait(`again-${names.length}`, 5))
      else resolve()
    })
    deadlines.add(wait("first", 5))
    await promise
    expect(names).toEqual(["first", "again-1", "again-2"])
    expect(deadlines.pending).toBe(0)
  })

  test("clear settles every pending wait: none of them expires", async () => {
    const { deadlines, names } = recording()
    for (let i = 0; i < 10; i++) deadlines.add(wait(`w${i}`, 5))
    deadlines.clear()
    expect(deadlines.pending).toBe(0)
    // A later wait's expiry is the signal that the cleared ones' deadlines have passed.
    const marker = recording()
    marker.deadlines.add(wait("marker", 20))
    await marker.expired(1)
    expect(names).toEqual([])
  })
})
