/**
 * Topics that retention emptied are reclaimed once no reader keeps a place in them and no named
 * cursor does, in memory and in a --db file; what topics and named cursors take counts toward
 * the store's cap.
 */
import { Database } from "bun:sqlite"
import { afterEach, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Broker } from "../../src/broker/broker.ts"
import { BrokerError } from "../../src/broker/errors.ts"
import type { RetentionConfig } from "../../src/broker/retention.ts"
import { NAMED_CURSOR_OVERHEAD_BYTES, NAMED_READER_OVERHEAD_BYTES, Store, topicOverheadBytes } from "../../src/store/store.ts"

const bytes = (text: string) => new TextEncoder().encode(text)
const text = (payload: Uint8Array) => new TextDecoder().decode(payload)
const AGE_MS = 60_000

function openBroker(store = new Store(), maxStoreBytes: number | null = null) {
  const retention: RetentionConfig = {
    defaults: { maxAgeMs: AGE_MS, maxMessages: null, maxBytes: null, policy: "drop-oldest" },
    rules: [],
    maxStoreBytes,
  }
  const broker = new Broker(store, retention)
  return Object.assign(broker, {
    [Symbol.dispose]: () => {
      broker.close()
      if (store.isOpen) store.close()
    },
  })
}

/** Expires everything stored, in bounded sweep steps, then lets the reclaimer's microtask run. */
async function expireAll(broker: Broker): Promise<void> {
  const later = Date.now() + 10 * AGE_MS
  for (let step = 0; step < 10_000 && broker.retention.sweep(later); step++);
  expect(broker.store.messageCount).toBe(0)
  for (let turn = 0; turn < 100 && broker.reclaimer.pending; turn++) await new Promise((resolve) => setTimeout(resolve, 0))
  expect(broker.reclaimer.pending).toBe(false)
}

describe("an emptied topic", () => {
  test("is reclaimed when nobody keeps a place in it: 1,000 short-lived topics leave nothing behind", async () => {
    using broker = openBroker()
    for (let i = 0; i < 1000; i++) broker.put(`run/${i}`, bytes("x"))
    expect(broker.store.topicCount).toBe(1000)
    expect(broker.store.overheadBytes).toBeGreaterThan(1000 * topicOverheadBytes("run/0"))
    await expireAll(broker)
    expect(broker.store.topicCount).toBe(0)
    expect(broker.store.overheadBytes).toBe(0)
    expect(broker.reclaimer.reclaimedCount).toBe(1000)
  })

  test("stays while an open reader has read it, and goes when that reader closes", async () => {
    using broker = openBroker()
    const reader = broker.openReader()
    broker.put("t", bytes("read"))
    expect(text(reader.get("t")!.payload)).toBe("read")
    await expireAll(broker)
    expect(broker.store.topic("t")).toBeDefined()
    reader.close()
    await Promise.resolve()
    expect(broker.store.topic("t")).toBeUndefined()
  })

  test("stays while an open reader that lost messages in it is open, which is then told exactly what it missed", async () => {
    using broker = openBroker()
    const reader = broker.openReader()
    broker.put("t", bytes("lost 1"))
    broker.put("t", bytes("lost 2"))
    await expireAll(broker)
    expect(broker.store.topic("t")).toBeDefined()
    broker.put("t", bytes("kept"))
    const next = reader.get("t")!
    expect([text(next.payload), next.missed]).toEqual(["kept", 2])
  })

  test("stays for good while a named cursor keeps a place in it", async () => {
    using broker = openBroker()
    broker.put("t", bytes("x"))
    const named = broker.openNamedReader("worker")
    named.get("t")
    named.close()
    await expireAll(broker)
    expect(broker.store.topic("t")).toBeDefined()
  })

  test("starts a new life on the next put: same sequence, ordinals from 1, no missed for readers opened since", async () => {
    using broker = openBroker()
    broker.put("t", bytes("old"))
    await expireAll(broker)
    expect(broker.store.topic("t")).toBeUndefined()
    const reader = broker.openReader()
    const seq = broker.put("t", bytes("new"))
    expect(seq).toBe(2)
    expect(broker.store.topic("t")!.lastOrdinal).toBe(1)
    expect(reader.get("t")).toMatchObject({ seq: 2, missed: 0 })
  })

  test("a reader that was away while an earlier life was reclaimed is told its missed count is unknown", async () => {
    using broker = openBroker()
    broker.put("t", bytes("old life"))
    await expireAll(broker)
    broker.put("t", bytes("new life"))
    // An HTTP read after sequence 0: it never saw the first life, nor its removal.
    const away = broker.openReaderAt(0)
    expect(away.get("t")).toMatchObject({ seq: 2, missed: null })
    // A topic older than the reader's place cannot have had an earlier life behind it.
    const since = broker.openReaderAt(2)
    broker.put("t", bytes("third"))
    expect(since.get("t")).toMatchObject({ seq: 3, missed: 0 })
  })

  test("pattern reads see a topic created after another was reclaimed, though the count of topics is the same", async () => {
    using broker = openBroker()
    const reader = broker.openReader()
    broker.put("lab/a", bytes("a"))
    expect(reader.get("lab/#")).toMatchObject({ topic: "lab/a" })
    reader.close()
    await expireAll(broker)
    expect(broker.store.topicCount).toBe(0)
    const later = broker.openReader()
    broker.put("lab/b", bytes("b"))
    expect(later.get("lab/#")).toMatchObject({ topic: "lab/b" })
  })
})

describe("in a --db file", () => {
  const directories: string[] = []
  afterEach(() => {
    for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true })
  })

  test("reclaimed topics leave no row; the sequence and what was reclaimed survive a restart", async () => {
    const directory = mkdtempSync(join(tmpdir(), "dsmq-reclaim-"))
    directories.push(directory)
    const path = join(directory, "broker.db")
    {
      using broker = openBroker(new Store({ path }))
      for (let i = 0; i < 100; i++) broker.put(`run/${i}`, bytes("x"))
      broker.put("kept", bytes("y"))
      const later = Date.now() + 10 * AGE_MS
      // Everything expires; "kept" is put again before the reclaimer's pass, so it stays.
      for (let step = 0; step < 100 && broker.retention.sweep(later); step++);
      broker.put("kept", bytes("z"))
      await Promise.resolve()
      expect(broker.store.topicCount).toBe(1)
    }
    const db = new Database(path, { readonly: true })
    expect(db.query("SELECT name FROM topics").all()).toEqual([{ name: "kept" }])
    db.close()
    using reopened = openBroker(new Store({ path }))
    expect(reopened.store.topicCount).toBe(1)
    expect(reopened.store.reclaimedThroughSeq).toBe(100)
    expect(reopened.put("run/0", bytes("again"))).toBe(103)
    expect(reopened.openReaderAt(0).get("run/0")).toMatchObject({ seq: 103, missed: null })
  })
})

describe("the store's cap counts topics and named cursors", () => {
  test("topics, named readers and their cursor rows add to overheadBytes", () => {
    using broker = openBroker()
    broker.put("a", bytes("1"))
    expect(broker.store.overheadBytes).toBe(topicOverheadBytes("a"))
    const named = broker.openNamedReader("w")
    expect(broker.store.overheadBytes).toBe(topicOverheadBytes("a") + NAMED_READER_OVERHEAD_BYTES + 1)
    named.get("a")
    named.get("a")
    expect(broker.store.overheadBytes).toBe(topicOverheadBytes("a") + NAMED_READER_OVERHEAD_BYTES + 1 + NAMED_CURSOR_OVERHEAD_BYTES)
  })

  test("a put of a new topic that does not fit beside the topics already there is refused with store_full", () => {
    const cap = 50 * topicOverheadBytes("t/00") + 50 * 101
    using broker = openBroker(new Store(), cap)
    for (let i = 0; i < 50; i++) broker.put(`t/${String(i).padStart(2, "0")}`, bytes("x"))
    // Dropping every message frees 5,050 bytes; the 50 topics stay, so 6,000 more do not fit.
    expect(() => broker.put("t/50", bytes("x".repeat(6000)))).toThrow(BrokerError)
    expect(() => broker.put("t/50", bytes("x".repeat(6000)))).toThrow(/store is at its cap/)
  })

  test("a new named cursor is refused with store_full when the store is at its cap; known ones still open", () => {
    using broker = openBroker(new Store(), topicOverheadBytes("t") + 1000 + 100)
    broker.openNamedReader("known").close()
    broker.put("t", bytes("x".repeat(800)))
    expect(() => broker.openNamedReader("new")).toThrow(/no room for a new named cursor "new"/)
    broker.openNamedReader("known").close()
  })
})
