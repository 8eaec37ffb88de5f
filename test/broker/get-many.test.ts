/** Reader.getMany: what repeated gets would give, with one look-up per topic instead of per message. */
import { describe, expect, test } from "bun:test"
import { seededRandom } from "../../bench/common.ts"
import { Broker, type Delivery } from "../../src/broker/broker.ts"
import type { RetentionLimits } from "../../src/broker/retention.ts"
import { Store } from "../../src/store/store.ts"

const bytes = (text: string) => new TextEncoder().encode(text)
const NO_LIMITS: RetentionLimits = { maxAgeMs: null, maxMessages: null, maxBytes: null, policy: "drop-oldest" }

function openBroker(maxMessages: number | null = null) {
  const store = new Store()
  const broker = new Broker(store, { maxStoreBytes: null, rules: [], defaults: { ...NO_LIMITS, maxMessages } })
  return Object.assign(broker, {
    [Symbol.dispose]: () => {
      broker.close()
      store.close()
    },
  })
}

const shape = (delivery: Delivery) => [delivery.topic, delivery.seq, delivery.missed, new TextDecoder().decode(delivery.payload)]

describe("Reader.getMany", () => {
  test.each(["lab/#", "lab/a", "+/+"])("gives %p's messages exactly as repeated gets do, missed counts included", (name) => {
    // Two brokers fed the same puts (with retention dropping some): one read by get, one by getMany.
    using one = openBroker(5)
    using many = openBroker(5)
    const random = seededRandom(3)
    const [byGet, byMany] = [one.openReader(), many.openReader()]
    const got: unknown[] = []
    const gotMany: unknown[] = []
    for (let round = 0; round < 40; round++) {
      const puts = Math.floor(random() * 12)
      for (let i = 0; i < puts; i++) {
        const topic = ["lab/a", "lab/b", "lab", "other/x"][Math.floor(random() * 4)]!
        one.put(topic, bytes(`${round}.${i}`))
        many.put(topic, bytes(`${round}.${i}`))
      }
      const batch = 1 + Math.floor(random() * 6)
      for (let i = 0; i < batch; i++) {
        const message = byGet.get(name)
        if (message === null) break
        got.push(shape(message))
      }
      gotMany.push(...byMany.getMany(name, batch, Number.MAX_SAFE_INTEGER).map(shape))
      expect(gotMany).toEqual(got)
    }
    expect(got.length).toBeGreaterThan(20)
  })

  test("stops once maxBytes of payload are given, but always gives one", () => {
    using broker = openBroker()
    const reader = broker.openReader()
    for (let i = 0; i < 5; i++) broker.put("t", bytes("x".repeat(100)))
    expect(reader.getMany("t", 10, 250).length).toBe(3)
    expect(reader.getMany("t", 10, 1).length).toBe(1)
    expect(reader.getMany("t", 10, 1000).length).toBe(1)
    expect(reader.getMany("t", 10, 1000)).toEqual([])
  })

  test.each(["big", "+"])("with messages of very different sizes and small budgets, %p gives what repeated gets do", (name) => {
    using one = openBroker()
    using many = openBroker()
    const random = seededRandom(7)
    const [byGet, byMany] = [one.openReader(), many.openReader()]
    for (let i = 0; i < 300; i++) {
      // Mostly large (a topic whose average fills a batch), some tiny.
      const size = random() < 0.7 ? 2000 + Math.floor(random() * 4000) : 1 + Math.floor(random() * 10)
      const payload = bytes(`${i}:`.padEnd(size, "y"))
      one.put("big", payload)
      many.put("big", payload)
    }
    const got: unknown[] = []
    const gotMany: unknown[] = []
    for (let round = 0; round < 400 && got.length < 300; round++) {
      const [batch, budget] = [1 + Math.floor(random() * 20), 1 + Math.floor(random() * 12_000)]
      let given = 0
      for (let bytesGiven = 0; given < batch && (given === 0 || bytesGiven < budget); given++) {
        const message = byGet.get(name)
        if (message === null) break
        got.push(shape(message))
        bytesGiven += message.payload.length
      }
      gotMany.push(...byMany.getMany(name, batch, budget).map(shape))
      expect(gotMany).toEqual(got)
    }
    expect(got).toHaveLength(300)
  })

  test("with a pattern, topics past their batch do not let later messages of others jump ahead", () => {
    using broker = openBroker()
    const reader = broker.openReader()
    for (let i = 0; i < 6; i++) broker.put("a", bytes(`a${i}`))
    broker.put("b", bytes("b0"))
    const first = reader.getMany("+", 3, Number.MAX_SAFE_INTEGER).map((message) => message.topic)
    const second = reader.getMany("+", 10, Number.MAX_SAFE_INTEGER).map((message) => message.topic)
    expect([...first, ...second]).toEqual(["a", "a", "a", "a", "a", "a", "b"])
  })
})
