import { describe, expect, test } from "bun:test"
import { Broker, type Delivery } from "../../src/broker/broker.ts"
import { BrokerError } from "../../src/broker/errors.ts"
import { Store, type StoredMessage } from "../../src/store/store.ts"

const bytes = (text: string) => new TextEncoder().encode(text)
const text = (message: StoredMessage | null) => (message === null ? null : new TextDecoder().decode(message.payload))

function openBroker(): Broker & Disposable {
  const broker = new Broker(new Store())
  return Object.assign(broker, {
    [Symbol.dispose]: () => {
      broker.releaseAllWaiters()
      broker.store.close()
    },
  })
}

describe("Broker", () => {
  test("a reader sees only messages put after it was opened", () => {
    using broker = openBroker()
    broker.put("t", bytes("before"))
    const reader = broker.openReader()
    expect(reader.get("t")).toBeNull()
    broker.put("t", bytes("after"))
    expect(text(reader.get("t"))).toBe("after")
    expect(reader.get("t")).toBeNull()
  })

  test("every reader gets every message, each at its own pace", () => {
    using broker = openBroker()
    const readers = [broker.openReader(), broker.openReader(), broker.openReader()]
    for (let i = 0; i < 3; i++) broker.put("t", bytes(`m${i}`))
    expect(text(readers[0]!.get("t"))).toBe("m0")
    expect(text(readers[1]!.getLatest("t"))).toBe("m2")
    for (const reader of readers) reader.get("t")
    expect(text(readers[0]!.get("t"))).toBe("m2")
    expect(readers[1]!.get("t")).toBeNull()
    expect(text(readers[2]!.get("t"))).toBe("m1")
  })

  test("delivers thousands of messages put in the same millisecond exactly once, in order", () => {
    using broker = openBroker()
    const reader = broker.openReader()
    const count = 20_000
    for (let i = 0; i < count; i++) broker.put(i % 2 === 0 ? "a" : "b", bytes(String(i)))
    const seen: Record<string, number[]> = { a: [], b: [] }
    for (const topic of ["a", "b"]) {
      for (let message = reader.get(topic); message !== null; message = reader.get(topic)) {
        seen[topic]!.push(Number(text(message)))
      }
    }
    expect(seen.a).toEqual(Array.from({ length: count / 2 }, (_, i) => 2 * i))
    expect(seen.b).toEqual(Array.from({ length: count / 2 }, (_, i) => 2 * i + 1))
  })

  test("getLatest skips to the newest message and marks older ones read", () => {
    using broker = openBroker()
    const reader = broker.openReader()
    for (let i = 0; i < 5; i++) broker.put("t", bytes(`m${i}`))
    expect(text(reader.getLatest("t"))).toBe("m4")
    expect(reader.get("t")).toBeNull()
    expect(reader.getLatest("t")).toBeNull()
    broker.put("t", bytes("m5"))
    expect(text(reader.get("t"))).toBe("m5")
  })

  test("cursors are per topic", () => {
    using broker = openBroker()
    const reader = broker.openReader()
    broker.put("a", bytes("a1"))
    broker.put("b", bytes("b1"))
    expect(text(reader.getLatest("b"))).toBe("b1")
    expect(text(reader.get("a"))).toBe("a1")
  })

  test("getWait returns an unread message at once, without waiting", () => {
    using broker = openBroker()
    const reader = broker.openReader()
    broker.put("t", bytes("ready"))
    let called = false
    expect(text(reader.getWait("t", 1000, () => (called = true)))).toBe("ready")
    expect(called).toBe(false)
    expect(reader.isWaiting("t")).toBe(false)
  })

  test("getWait is answered by the next put on its topic, and only that topic", async () => {
    using broker = openBroker()
    const reader = broker.openReader()
    const { promise, resolve } = Promise.withResolvers<StoredMessage | null>()
    expect(reader.getWait("t", 60_000, resolve)).toBeNull()
    broker.put("other", bytes("not this"))
    broker.put("t", bytes("this"))
    expect(text(await promise)).toBe("this")
    expect(reader.get("t")).toBeNull()
    expect(text(reader.get("other"))).toBe("not this")
  })

  test("getWait answers null when its timeout passes", async () => {
    using broker = openBroker()
    const reader = broker.openReader()
    const { promise, resolve } = Promise.withResolvers<StoredMessage | null>()
    expect(reader.getWait("t", 5, resolve)).toBeNull()
    expect(await promise).toBeNull()
    expect(reader.isWaiting("t")).toBe(false)
    broker.put("t", bytes("later"))
    expect(text(reader.get("t"))).toBe("later")
  })

  test("several readers waiting on one topic are all answered by one put", async () => {
    using broker = openBroker()
    const answers = Array.from({ length: 5 }, () => {
      const { promise, resolve } = Promise.withResolvers<StoredMessage | null>()
      broker.openReader().getWait("t", 60_000, resolve)
      return promise
    })
    broker.put("t", bytes("all"))
    expect((await Promise.all(answers)).map(text)).toEqual(["all", "all", "all", "all", "all"])
  })

  test("a reader woken by a put may wait again on the same topic at once", async () => {
    using broker = openBroker()
    const reader = broker.openReader()
    const received: (string | null)[] = []
    const { promise: done, resolve: finish } = Promise.withResolvers<void>()
    const onMessage = (message: StoredMessage | null): void => {
      received.push(text(message))
      if (received.length < 3) reader.getWait("t", 60_000, onMessage)
      else finish()
    }
    reader.getWait("t", 60_000, onMessage)
    broker.put("t", bytes("1"))
    broker.put("t", bytes("2"))
    broker.put("t", bytes("3"))
    await done
    expect(received).toEqual(["1", "2", "3"])
  })

  test("a wait is answered with the put itself: its seq, topic and put time, nothing missed", () => {
    using broker = openBroker()
    const reader = broker.openReader()
    let answer: Delivery | null = null
    reader.getWait("t", 60_000, (message) => (answer = message === null ? null : { ...message, payload: message.payload.slice() }))
    const seq = broker.put("t", bytes("now"))
    expect(answer).not.toBeNull()
    const { topic, missed, seq: answeredSeq, putAt } = answer!
    expect({ topic, missed, seq: answeredSeq, text: text(answer) }).toEqual({ topic: "t", missed: 0, seq, text: "now" })
    expect(putAt).toBeGreaterThan(0)
    expect(reader.get("t")).toBeNull()
  })

  test("a batch answers a wait with its first message on the topic, and the rest stay unread in order", () => {
    using broker = openBroker()
    const reader = broker.openReader()
    const answers: (string | null)[] = []
    reader.getWait("t", 60_000, (message) => answers.push(text(message)))
    broker.putMany([
      { topic: "other", payload: bytes("o") },
      { topic: "t", payload: bytes("1") },
      { topic: "t", payload: bytes("2") },
    ])
    expect(answers).toEqual(["1"])
    expect(text(reader.get("t"))).toBe("2")
    expect(reader.get("t")).toBeNull()
  })

  test("a waiter that read the put before its turn to be answered gets nothing again, and no message is skipped", () => {
    using broker = openBroker()
    const first = broker.openReader()
    const second = broker.openReader()
    const firstAnswers: (string | null)[] = []
    const secondAnswers: (string | null)[] = []
    first.getWait("t", 60_000, (message) => {
      firstAnswers.push(text(message))
      // Inside the first answer: the second reader reads the message itself, then a second put comes.
      secondAnswers.push(`read:${text(second.get("t"))}`)
      broker.put("t", bytes("2"))
    })
    second.getWait("t", 60_000, (message) => secondAnswers.push(text(message)))
    broker.put("t", bytes("1"))
    expect(firstAnswers).toEqual(["1"])
    // Its wait is answered from the store: the oldest message it has not read.
    expect(secondAnswers).toEqual(["read:1", "2"])
    expect(second.get("t")).toBeNull()
    expect(text(first.get("t"))).toBe("2")
  })

  test("closing the broker stops its wait timers: a pending wait is not answered afterwards", async () => {
    const broker = new Broker(new Store())
    let answered = false
    broker.openReader().getWait("t", 5, () => (answered = true))
    broker.close()
    // Another broker's wait with a later deadline expiring says the first one's has passed.
    using marker = openBroker()
    const { promise, resolve } = Promise.withResolvers<StoredMessage | null>()
    marker.openReader().getWait("t", 20, resolve)
    expect(await promise).toBeNull()
    expect(answered).toBe(false)
    broker.store.close()
  })

  test("one callback serves many waits: each answer comes with its wait's tag, on a put or a timeout", async () => {
    using broker = openBroker()
    const reader = broker.openReader()
    const answers: [string | null, number][] = []
    const { promise: timedOut, resolve } = Promise.withResolvers<void>()
    const answer = (message: StoredMessage | null, tag: number): void => {
      answers.push([text(message), tag])
      if (tag === 2) resolve()
    }
    reader.getWait("a", 60_000, answer, undefined, 1)
    reader.getWait("b", 5, answer, undefined, 2)
    broker.put("a", bytes("for 1"))
    await timedOut
    expect(answers).toEqual([
      ["for 1", 1],
      [null, 2],
    ])
  })

  test("closing a reader drops its wait without answering it", () => {
    using broker = openBroker()
    const reader = broker.openReader()
    let answered = false
    reader.getWait("t", 60_000, () => (answered = true))
    reader.close()
    broker.put("t", bytes("m"))
    expect(answered).toBe(false)
  })

  test("releaseAllWaiters answers every wait with null", async () => {
    using broker = openBroker()
    const { promise, resolve } = Promise.withResolvers<StoredMessage | null>()
    broker.openReader().getWait("t", 60_000, resolve)
    broker.releaseAllWaiters()
    expect(await promise).toBeNull()
  })
})

describe("pattern characters are reserved in names", () => {
  /** The refusal's code and text; fails the test when nothing is refused. */
  function refusal(work: () => unknown): { code: string; text: string } {
    try {
      work()
    } catch (error) {
      if (error instanceof BrokerError) return { code: error.code, text: error.message }
      throw error
    }
    throw new Error("expected a refusal")
  }

  test("a put or put_many on a topic with + or # anywhere is refused (invalid_argument: bad_field on the wire), and stores nothing", () => {
    using broker = openBroker()
    for (const topic of ["lab/#", "lab/+/x", "a#b", "#", "+"]) {
      expect(refusal(() => broker.put(topic, bytes("m")))).toEqual({
        code: "invalid_argument",
        text: `topic ${JSON.stringify(topic)} contains "${topic.includes("#") ? "#" : "+"}": "+" and "#" are pattern characters and cannot be part of a topic name`,
      })
    }
    expect(
      refusal(() =>
        broker.putMany([
          { topic: "fine", payload: bytes("a") },
          { topic: "lab/+/x", payload: bytes("b") },
        ]),
      ).code,
    ).toBe("invalid_argument")
    expect([broker.store.lastSeq, broker.store.topicCount, broker.counters.puts]).toEqual([0, 0, 0])
    expect(broker.put("lab/x", bytes("fine"))).toBe(1)
  })

  test("a named cursor whose name has + or # is refused (invalid_argument: bad_field on the wire)", () => {
    using broker = openBroker()
    expect(refusal(() => broker.openNamedReader("worker#1"))).toEqual({
      code: "invalid_argument",
      text: 'cursor name "worker#1" contains "#": "+" and "#" are pattern characters and cannot be part of a cursor name',
    })
    expect(refusal(() => broker.openNamedReader("a+b")).code).toBe("invalid_argument")
    broker.openNamedReader("worker-1").close()
  })

  test("reads of such topics go on as before: get, get_latest, get_wait and subscriptions", async () => {
    using broker = openBroker()
    const reader = broker.openReader()
    expect(reader.get("lab/#")).toBeNull()
    expect(reader.getLatest("lab/+")).toBeNull()
    const { promise, resolve } = Promise.withResolvers<StoredMessage | null>()
    expect(reader.getWait("lab/#", 0, resolve)).toBeNull()
    expect(await promise).toBeNull()
    const subscriber = { onPut: () => {} }
    broker.subscribe("lab/#", subscriber)
    expect(broker.subscriberCount).toBe(1)
    broker.unsubscribe("lab/#", subscriber)
  })
})
