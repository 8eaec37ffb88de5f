import { Database } from "bun:sqlite"
import { afterEach, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Store } from "../../src/store/store.ts"

const bytes = (text: string) => new TextEncoder().encode(text)
const text = (payload: Uint8Array) => new TextDecoder().decode(payload)

const directories: string[] = []
afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true })
})
function tempDbPath(): string {
  const directory = mkdtempSync(join(tmpdir(), "dsmq-store-"))
  directories.push(directory)
  return join(directory, "messages.db")
}

// The same contract for the in-memory store and a file store.
for (const [kind, open] of [
  ["in memory", () => new Store()],
  ["in a file", () => new Store({ path: tempDbPath() })],
] as const) {
  describe(`Store ${kind}`, () => {
    test("numbers messages with one increasing sequence across topics", () => {
      using store = disposable(open())
      expect(store.lastSeq).toBe(0)
      expect([store.put("a", bytes("1")), store.put("b", bytes("2")), store.put("a", bytes("3"))]).toEqual([1, 2, 3])
      expect(store.lastSeq).toBe(3)
      expect(store.messageCount).toBe(3)
      expect(store.topicCount).toBe(2)
    })

    test("finds the oldest and newest message of a topic after a sequence", () => {
      using store = disposable(open())
      for (let i = 0; i < 5; i++) {
        store.put("even", bytes(`e${i}`))
        store.put("odd", bytes(`o${i}`))
      }
      expect(store.oldestAfter("even", 0)).toMatchObject({ seq: 1 })
      expect(text(store.oldestAfter("even", 1)!.payload)).toBe("e1")
      expect(store.oldestAfter("odd", 2)).toMatchObject({ seq: 4 })
      expect(text(store.newestAfter("odd", 0)!.payload)).toBe("o4")
      expect(store.oldestAfter("even", 9)).toBeNull()
      expect(store.newestAfter("odd", 10)).toBeNull()
      expect(store.oldestAfter("missing", 0)).toBeNull()
    })

    test("keeps payloads as bytes, including ones that are not text", () => {
      using store = disposable(open())
      const payload = new Uint8Array([0, 255, 1, 254, 0])
      store.put("raw", payload)
      expect(Array.from(store.oldestAfter("raw", 0)!.payload)).toEqual([0, 255, 1, 254, 0])
      store.put("empty", new Uint8Array(0))
      expect(store.oldestAfter("empty", 0)!.payload.length).toBe(0)
    })

    test("copies the payload: changing the caller's buffer later changes nothing", () => {
      using store = disposable(open())
      const payload = bytes("abc")
      store.put("t", payload)
      payload.fill(0)
      expect(text(store.oldestAfter("t", 0)!.payload)).toBe("abc")
    })
  })
}

test("a file store reopens with its messages and continues the sequence", () => {
  const path = tempDbPath()
  {
    using store = disposable(new Store({ path }))
    store.put("t", bytes("first"))
    store.put("t", bytes("second"))
  }
  using reopened = disposable(new Store({ path }))
  expect(reopened.lastSeq).toBe(2)
  expect(text(reopened.oldestAfter("t", 1)!.payload)).toBe("second")
  expect(reopened.put("t", bytes("third"))).toBe(3)
})

function disposable(store: Store): Store & Disposable {
  return Object.assign(store, { [Symbol.dispose]: () => store.close() })
}

test("putMany stores all messages in one transaction with consecutive sequence numbers", () => {
  using store = disposable(new Store())
  store.put("a", bytes("before"))
  const first = store.putMany([
    { topic: "a", payload: bytes("1") },
    { topic: "new", payload: bytes("2") },
    { topic: "a", payload: bytes("3") },
  ])
  expect(first).toBe(2)
  expect(store.lastSeq).toBe(4)
  expect(store.messageCount).toBe(4)
  expect(text(store.oldestAfter("new", 0)!.payload)).toBe("2")
  expect(text(store.newestAfter("a", 0)!.payload)).toBe("3")
})

test("a putMany that fails stores nothing and forgets topics it created", () => {
  using store = disposable(new Store())
  const notBytes = { topic: "b", payload: Symbol("not bindable") as unknown as Uint8Array }
  expect(() => store.putMany([{ topic: "fresh", payload: bytes("1") }, notBytes])).toThrow()
  expect(store.lastSeq).toBe(0)
  expect(store.messageCount).toBe(0)
  expect(store.topicCount).toBe(0)
  expect(store.put("fresh", bytes("again"))).toBe(1)
  expect(text(store.oldestAfter("fresh", 0)!.payload)).toBe("again")
})

test("a putMany larger than one multi-row insert keeps every message's topic, order, sequence number and ordinal", () => {
  using store = disposable(new Store())
  store.put("x", bytes("x-before"))
  // 37 entries: two statements of 16 rows and 5 single ones, over three topics, one of them new.
  const topics = ["x", "y", "new"]
  const entries = Array.from({ length: 37 }, (_, i) => ({ topic: topics[i % 3]!, payload: bytes(`m${i}`) }))
  expect(store.putMany(entries)).toBe(2)
  expect(store.lastSeq).toBe(38)
  for (const [t, topic] of topics.entries()) {
    const expected = entries.flatMap((_, i) => (i % 3 === t ? [{ seq: i + 2, payload: `m${i}` }] : []))
    const read: { seq: number; ordinal: number; payload: string }[] = []
    // After x-before, the one message not in the batch.
    let after = 1
    for (let message = store.oldestAfter(topic, after); message !== null && read.length < 50; message = store.oldestAfter(topic, after)) {
      read.push({ seq: message.seq, ordinal: message.ordinal, payload: text(message.payload) })
      after = message.seq
    }
    const firstOrdinal = topic === "x" ? 2 : 1
    expect(read).toEqual(expected.map((message, k) => ({ ...message, ordinal: firstOrdinal + k })))
  }
})

test("a putMany that fails inside a multi-row insert stores nothing of it", () => {
  using store = disposable(new Store())
  const entries = Array.from({ length: 20 }, (_, i) => ({ topic: "t", payload: bytes(`m${i}`) }))
  entries[9] = { topic: "t", payload: Symbol("not bindable") as unknown as (typeof entries)[number]["payload"] }
  expect(() => store.putMany(entries)).toThrow()
  expect(store.messageCount).toBe(0)
  expect(store.put("t", bytes("after"))).toBe(1)
  expect(store.oldestAfter("t", 0)!.ordinal).toBe(1)
})

describe("group commit", () => {
  /** What another connection to the same file sees: only committed writes. */
  const committedCount = (path: string): number => {
    const db = new Database(path, { readonly: true })
    try {
      return (db.query("SELECT count(*) AS n FROM messages").get() as { n: number }).n
    } finally {
      db.close()
    }
  }

  test("writes join one open group until commit(); another reader sees them only then", () => {
    const path = tempDbPath()
    using store = disposable(new Store({ path }))
    store.put("a", bytes("1"))
    store.putMany([
      { topic: "a", payload: bytes("2") },
      { topic: "b", payload: bytes("3") },
    ])
    expect(store.hasUncommittedWrites).toBe(true)
    expect(committedCount(path)).toBe(0)
    store.commit()
    expect(store.hasUncommittedWrites).toBe(false)
    expect(committedCount(path)).toBe(3)
    // Cheap and harmless with nothing open.
    store.commit()
  })

  test("a memory store keeps its group open past commit() until the end of the turn, and reads see the writes", async () => {
    using store = disposable(new Store())
    store.put("a", bytes("1"))
    store.commit()
    expect(store.hasUncommittedWrites).toBe(true)
    store.put("a", bytes("2"))
    expect(store.messagesAfter("a", 0, 10).map((message) => new TextDecoder().decode(message.payload))).toEqual(["1", "2"])
    await new Promise<void>((resolve) => setImmediate(resolve))
    expect(store.hasUncommittedWrites).toBe(false)
    expect(store.messageCount).toBe(2)
  })

  test("the end of the event-loop turn commits what nobody committed", async () => {
    const path = tempDbPath()
    using store = disposable(new Store({ path }))
    store.put("a", bytes("unacknowledged"))
    await new Promise<void>((resolve) => setImmediate(resolve))
    expect(store.hasUncommittedWrites).toBe(false)
    expect(committedCount(path)).toBe(1)
  })

  test("a failed batch inside a group rolls back alone; the group's other writes commit", () => {
    const path = tempDbPath()
    using store = disposable(new Store({ path }))
    store.put("a", bytes("kept"))
    expect(() =>
      store.putMany([
        { topic: "a", payload: bytes("x") },
        { topic: "a", payload: null as unknown as Uint8Array },
      ]),
    ).toThrow()
    store.put("a", bytes("kept too"))
    store.commit()
    expect(committedCount(path)).toBe(2)
    expect([store.lastSeq, store.messageCount]).toEqual([2, 2])
  })

  test("close() commits the open group", () => {
    const path = tempDbPath()
    const store = new Store({ path })
    store.put("a", bytes("1"))
    store.close()
    expect(committedCount(path)).toBe(1)
  })
})

test("messagesWithin: how many of a topic's messages a byte budget takes, the one reaching it included", () => {
  using store = disposable(new Store())
  for (let i = 0; i < 10; i++) store.put("big", new Uint8Array(1000))
  for (let i = 0; i < 10; i++) store.put("small", new Uint8Array(10))
  expect(store.messagesWithin("big", 0, 64, 2500)).toBe(3)
  expect(store.messagesWithin("big", 0, 64, 3000)).toBe(3)
  expect(store.messagesWithin("big", 8, 64, 2500)).toBe(2) // only two left after seq 8
  expect(store.messagesWithin("big", 0, 64, 1)).toBe(1)
  // Nothing after the cursor: a batch finds nothing anyway.
  expect(store.messagesWithin("big", 10, 64, 2500)).toBe(1)
  // Small enough on average for the whole batch to fit: the limit, without looking.
  expect(store.messagesWithin("small", 10, 5, 2500)).toBe(5)
  expect(store.messagesWithin("absent", 0, 64, 2500)).toBe(64)
})
