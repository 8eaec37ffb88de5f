import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Broker } from "../../src/broker/broker.ts"
import { BrokerError } from "../../src/broker/errors.ts"
import {
  DEFAULT_RETENTION,
  MAX_CACHED_TOPIC_LIMITS,
  type RetentionConfig,
  RetentionError,
  type RetentionLimits,
} from "../../src/broker/retention.ts"
import { preciseNow, Store, topicOverheadBytes } from "../../src/store/store.ts"

const bytes = (text: string) => new TextEncoder().encode(text)
const text = (payload: Uint8Array) => new TextDecoder().decode(payload)
const NO_LIMITS: RetentionLimits = { maxAgeMs: null, maxMessages: null, maxBytes: null, policy: "drop-oldest" }

function openBroker(config: Omit<Partial<RetentionConfig>, "defaults"> & { defaults?: Partial<RetentionLimits> }, store = new Store()) {
  const broker = new Broker(store, {
    maxStoreBytes: config.maxStoreBytes ?? null,
    rules: config.rules ?? [],
    defaults: { ...NO_LIMITS, ...config.defaults },
  })
  return Object.assign(broker, {
    [Symbol.dispose]: () => {
      broker.close()
      store.close()
    },
  })
}

function refusal(work: () => unknown): string {
  try {
    work()
  } catch (error) {
    if (error instanceof BrokerError) return error.code
    throw error
  }
  throw new Error("expected a refusal")
}

describe("per-topic limits", () => {
  test("max messages, drop-oldest: the topic keeps its newest, a reader learns how many it missed", () => {
    using broker = openBroker({ defaults: { maxMessages: 10 } })
    const reader = broker.openReader()
    for (let i = 1; i <= 25; i++) broker.put("t", bytes(`m${i}`))
    broker.put("other", bytes("untouched"))
    expect(broker.store.topic("t")!.count).toBe(10)
    const first = reader.get("t")!
    expect({ text: text(first.payload), missed: first.missed }).toEqual({ text: "m16", missed: 15 })
    expect(reader.get("t")!.missed).toBe(0)
    expect(text(reader.get("other")!.payload)).toBe("untouched")
    expect(broker.retention.droppedCount).toBe(15)
  })

  test("a reader part-way through a topic is told exactly what it missed after its last message", () => {
    using broker = openBroker({ defaults: { maxMessages: 5 } })
    const reader = broker.openReader()
    for (let i = 1; i <= 3; i++) broker.put("t", bytes(`m${i}`))
    expect(text(reader.get("t")!.payload)).toBe("m1")
    for (let i = 4; i <= 12; i++) broker.put("t", bytes(`m${i}`))
    const next = reader.get("t")!
    expect({ text: text(next.payload), missed: next.missed }).toEqual({ text: "m8", missed: 6 })
  })

  test("a reader that never read a topic misses only what was dropped after its start, even when one drop spans it", () => {
    using broker = openBroker({ defaults: { maxMessages: 4 } })
    // Another topic between them, so that the topic's seqs are not its ordinals.
    for (let i = 1; i <= 3; i++) {
      broker.put("t", bytes(`m${i}`))
      if (i < 3) broker.put("other", bytes("o"))
    }
    const late = broker.openReader()
    broker.put("t", bytes("m4"))
    broker.put("t", bytes("m5"))
    // One drop of m2, m3 (before the late reader's start) and m4 (after it).
    broker.putMany(["m6", "m7", "m8"].map((m) => ({ topic: "t", payload: bytes(m) })))
    expect(broker.store.topic("t")!.count).toBe(4)
    // It missed m4 alone: m1 to m3 were put before it opened.
    const first = late.get("t")!
    expect({ text: text(first.payload), missed: first.missed }).toEqual({ text: "m5", missed: 1 })
  })

  test("a large topic limit drops in batches, not one message per put", () => {
    using broker = openBroker({ defaults: { maxMessages: 6400 } })
    for (let i = 0; i < 6400; i++) broker.put("t", bytes("x"))
    broker.put("t", bytes("one more"))
    // 1/64 of the limit of slack: 100 dropped at once, so the next 99 puts drop nothing.
    expect(broker.store.topic("t")!.count).toBe(6400 - 100 + 1 - 1)
    const dropped = broker.retention.droppedCount
    for (let i = 0; i < 99; i++) broker.put("t", bytes("x"))
    expect(broker.retention.droppedCount).toBe(dropped)
  })

  test("max bytes, drop-oldest", () => {
    using broker = openBroker({ defaults: { maxBytes: 100 } })
    for (let i = 0; i < 30; i++) broker.put("t", bytes("0123456789"))
    expect(broker.store.topic("t")!.bytes).toBeLessThanOrEqual(100)
    expect(broker.store.topic("t")!.bytes).toBeGreaterThanOrEqual(80)
    expect(refusal(() => broker.put("t", bytes("x".repeat(101))))).toBe("topic_full")
  })

  test("policy reject refuses the put and keeps what the topic has", () => {
    using broker = openBroker({ defaults: { maxMessages: 3, policy: "reject" } })
    for (let i = 1; i <= 3; i++) broker.put("t", bytes(`m${i}`))
    expect(refusal(() => broker.put("t", bytes("m4")))).toBe("topic_full")
    expect(
      refusal(() =>
        broker.putMany([
          { topic: "u", payload: bytes("a") },
          { topic: "t", payload: bytes("b") },
        ]),
      ),
    ).toBe("topic_full")
    expect(broker.store.topic("t")!.count).toBe(3)
    expect(broker.store.topic("u")).toBeUndefined() // the batch was refused whole
    expect(broker.store.lastSeq).toBe(3)
  })

  test("rules by pattern override the defaults; the first match wins", () => {
    using broker = openBroker({
      defaults: { maxMessages: 100 },
      rules: [
        { pattern: "lab/+/temp", limits: { maxMessages: 2 } },
        { pattern: "lab/#", limits: { policy: "reject", maxMessages: 1 } },
      ],
    })
    for (let i = 0; i < 5; i++) broker.put("lab/a/temp", bytes("t"))
    expect(broker.store.topic("lab/a/temp")!.count).toBe(2)
    broker.put("lab/b", bytes("once"))
    expect(refusal(() => broker.put("lab/b", bytes("twice")))).toBe("topic_full")
    for (let i = 0; i < 5; i++) broker.put("office", bytes("o"))
    expect(broker.store.topic("office")!.count).toBe(5)
  })
})

describe("rules", () => {
  test("the first matching rule wins, whichever is more specific", () => {
    using broker = openBroker({
      rules: [
        { pattern: "lab/#", limits: { maxMessages: 1 } },
        { pattern: "lab/+/temp", limits: { maxMessages: 3 } },
        { pattern: "lab/a/temp", limits: { maxMessages: 5 } },
        { pattern: "+/b/temp", limits: { maxMessages: 4 } },
      ],
    })
    expect(["lab/a/temp", "lab", "x/b/temp", "x/c/temp"].map((topic) => broker.retention.limitsFor(topic).maxMessages)).toEqual([
      1,
      1,
      4,
      null,
    ])
    for (let i = 0; i < 5; i++) broker.put("lab/a/temp", bytes("t"))
    expect(broker.store.topic("lab/a/temp")!.count).toBe(1)
  })

  test("a rule whose pattern is not a pattern is refused when the broker starts, naming it", () => {
    const store = new Store()
    try {
      const rules = [
        { pattern: "ok/#", limits: {} },
        { pattern: "lab/#/temp", limits: {} },
      ]
      expect(() => new Broker(store, { ...DEFAULT_RETENTION, rules })).toThrow(
        new RetentionError('retention rule 2: pattern "lab/#/temp": "#" must be the last level (it stands for everything below)'),
      )
    } finally {
      store.close()
    }
  })

  test("a topic's rule stays right after many more topics than the cache of resolved rules holds", () => {
    using broker = openBroker({ rules: [{ pattern: "keep/+", limits: { maxMessages: 2 } }] })
    expect(broker.retention.limitsFor("keep/first").maxMessages).toBe(2)
    expect(broker.retention.limitsFor("other").maxMessages).toBeNull()
    for (let i = 0; i <= MAX_CACHED_TOPIC_LIMITS; i++) broker.retention.limitsFor(`keep/${i}`)
    expect(broker.retention.limitsFor("keep/first").maxMessages).toBe(2)
    expect(broker.retention.limitsFor("other").maxMessages).toBeNull()
  })
})

describe("the store-wide cap", () => {
  test("drops the oldest messages of the store, across topics, to make room", () => {
    // 100 bytes of overhead a message: room for about 10 messages of 100 bytes.
    using broker = openBroker({ maxStoreBytes: 2000 })
    const reader = broker.openReader()
    for (let i = 0; i < 15; i++) broker.put(i % 2 === 0 ? "a" : "b", bytes("x".repeat(100)))
    expect(broker.store.messageCount).toBeLessThanOrEqual(10)
    expect(broker.store.payloadBytes + broker.store.messageCount * 100).toBeLessThanOrEqual(2000)
    const a = reader.get("a")!
    expect(a.seq).toBeGreaterThan(1)
    expect(a.missed).toBe((a.seq - 1) / 2)
  })

  test("a reject topic is refused with store_full; its messages are never dropped for others", () => {
    // Room for 1,000 bytes of messages, beside what the two topics themselves take.
    const maxStoreBytes = 1000 + topicOverheadBytes("keep") + topicOverheadBytes("drop")
    using broker = openBroker({ maxStoreBytes, rules: [{ pattern: "keep", limits: { policy: "reject" } }] })
    for (let i = 0; i < 4; i++) broker.put("keep", bytes("k".repeat(100)))
    expect(refusal(() => broker.put("keep", bytes("k".repeat(400))))).toBe("store_full")
    for (let i = 0; i < 20; i++) broker.put("drop", bytes("d"))
    expect(broker.store.topic("keep")!.count).toBe(4)
    expect(refusal(() => broker.put("drop", bytes("d".repeat(300))))).toBe("store_full")
  })
})

describe("ages", () => {
  test("a sweep removes expired messages in bounded steps; readers are told what they missed", () => {
    using broker = openBroker({ defaults: { maxAgeMs: 60_000 } })
    const reader = broker.openReader()
    for (let i = 0; i < 2500; i++) broker.put("old", bytes("o"))
    broker.put("fresh", bytes("f"))
    const later = preciseNow() + 120_000
    // 1000 per topic per step: three steps for 2500 expired messages.
    expect(broker.retention.sweep(later)).toBe(true)
    expect(broker.store.topic("old")!.count).toBe(1500)
    expect(broker.retention.sweep(later)).toBe(true)
    expect(broker.retention.sweep(later)).toBe(false)
    expect(broker.store.messageCount).toBe(0)
    broker.put("old", bytes("new"))
    expect(reader.get("old")).toMatchObject({ missed: 2500 })
  })

  test("a step removes at most 1,000 messages over all topics, and the next goes on where it stopped", () => {
    using broker = openBroker({ defaults: { maxAgeMs: 60_000 } })
    for (let i = 0; i < 3000; i++) broker.put(`t${i % 10}`, bytes("o"))
    const later = preciseNow() + 120_000
    const remaining: number[] = []
    for (let step = 0; step < 10 && broker.retention.sweep(later); step++) remaining.push(broker.store.messageCount)
    remaining.push(broker.store.messageCount)
    expect(remaining).toEqual([2000, 1000, 0, 0])
  })

  test("messages younger than the limit stay", () => {
    using broker = openBroker({ defaults: { maxAgeMs: 60_000 } })
    broker.put("t", bytes("young"))
    expect(broker.retention.sweep(preciseNow())).toBe(false)
    expect(broker.store.messageCount).toBe(1)
  })
})

describe("missed counts that cannot be known", () => {
  test("a reader opened after an old sequence, once retention passed it, gets null", () => {
    using broker = openBroker({ defaults: { maxMessages: 3 } })
    for (let i = 0; i < 10; i++) broker.put("t", bytes(`m${i}`))
    const late = broker.openReaderAt(2)
    expect(late.get("t")).toMatchObject({ missed: null })
    late.close()
  })
})

describe("named cursors", () => {
  test("resume where they stopped, one user at a time", () => {
    using broker = openBroker({})
    const reader = broker.openNamedReader("lab")
    for (let i = 1; i <= 4; i++) broker.put("t", bytes(`m${i}`))
    expect(text(reader.get("t")!.payload)).toBe("m1")
    expect(refusal(() => broker.openNamedReader("lab"))).toBe("cursor_busy")
    reader.close()
    const again = broker.openNamedReader("lab")
    expect(text(again.get("t")!.payload)).toBe("m2")
    again.close()
  })

  test("survive a restart of a file store, and the sequence continues", () => {
    const directory = mkdtempSync(join(tmpdir(), "dsmq-named-"))
    const path = join(directory, "db.sqlite")
    try {
      {
        using broker = openBroker({}, new Store({ path }))
        const reader = broker.openNamedReader("lab")
        for (let i = 1; i <= 3; i++) broker.put("t", bytes(`m${i}`))
        reader.get("t")
        reader.close()
      }
      using broker = openBroker({}, new Store({ path }))
      expect(broker.store.lastSeq).toBe(3)
      expect(broker.put("t", bytes("m4"))).toBe(4)
      const reader = broker.openNamedReader("lab")
      expect([reader.get("t"), reader.get("t"), reader.get("t"), reader.get("t")].map((m) => m && text(m.payload))).toEqual([
        "m2",
        "m3",
        "m4",
        null,
      ])
      reader.close()
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })

  test("sequence numbers are not reused after retention removed the newest messages and the store reopened", () => {
    const directory = mkdtempSync(join(tmpdir(), "dsmq-seq-"))
    const path = join(directory, "db.sqlite")
    try {
      {
        using broker = openBroker({ defaults: { maxAgeMs: 1000 } }, new Store({ path }))
        for (let i = 0; i < 5; i++) broker.put("t", bytes("x"))
        broker.retention.sweep(preciseNow() + 10_000)
        expect(broker.store.messageCount).toBe(0)
      }
      using broker = openBroker({}, new Store({ path }))
      expect(broker.put("t", bytes("after restart"))).toBe(6)
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })
})

test("the defaults protect a small machine", () => {
  expect(DEFAULT_RETENTION).toEqual({
    defaults: { maxAgeMs: null, maxMessages: 100_000, maxBytes: null, policy: "drop-oldest" },
    rules: [],
    maxStoreBytes: 256 * 1024 * 1024,
  })
})
