/** The TypeScript client against a real server. */
import { describe, expect, test } from "bun:test"
import { DEFAULT_RETENTION } from "../src/broker/retention.ts"
import { type Client, ConnectionClosedError, connect, DsmqError, type Message } from "../src/client.ts"
import { startServer } from "../src/start-server.ts"
import { eventually, startTestServer } from "./helpers.ts"

const text = (message: Message | null) => message?.text() ?? null

async function connected(port: number): Promise<Client & AsyncDisposable> {
  return connect({ port, retries: 0 }) as Promise<Client & AsyncDisposable>
}

/** Takes `count` messages from a subscription. */
async function take(iterator: AsyncIterator<Message>, count: number): Promise<Message[]> {
  const messages: Message[] = []
  while (messages.length < count) {
    const result = await iterator.next()
    if (result.done) break
    messages.push(result.value)
  }
  return messages
}

describe("client", () => {
  test("put, get and get_latest, with string and binary payloads", async () => {
    using server = startTestServer()
    await using client = await connected(server.port)
    expect(client.maxFrameBytes).toBe(1024 * 1024)
    client.put("t", "one")
    expect(await client.putAck("t", new Uint8Array([0, 1, 255]))).toBe(2)
    client.put("t", "three")
    const first = await client.get("t")
    expect({ seq: first?.seq, topic: first?.topic, text: text(first) }).toEqual({ seq: 1, topic: "t", text: "one" })
    expect(Array.from((await client.get("t"))!.payload)).toEqual([0, 1, 255])
    expect(text(await client.getLatest("t"))).toBe("three")
    expect(await client.get("t")).toBeNull()
  })

  test("putMany stores messages with consecutive sequence numbers", async () => {
    using server = startTestServer()
    await using client = await connected(server.port)
    const result = await client.putManyAck([
      { topic: "a", payload: "1" },
      { topic: "b", payload: "2" },
      { topic: "a", payload: new Uint8Array([51]) },
    ])
    expect(result).toEqual({ firstSeq: 1, count: 3 })
    client.putMany([{ topic: "a", payload: "4" }])
    await client.ping()
    const messages = [await client.get("a"), await client.get("a"), await client.get("a"), await client.get("b")]
    expect(messages.map((message) => [message?.seq, text(message)])).toEqual([
      [1, "1"],
      [3, "3"],
      [4, "4"],
      [2, "2"],
    ])
    expect(await client.putManyAck([])).toEqual({ firstSeq: 5, count: 0 })
  })

  test("getWait is answered by another client's put, and by its timeout", async () => {
    using server = startTestServer()
    await using waiter = await connected(server.port)
    await using writer = await connected(server.port)
    const waiting = waiter.getWait("t", 60_000)
    await waiter.ping() // the server has the GET_WAIT once the PING behind it is answered
    writer.put("t", "now")
    expect(text(await waiting)).toBe("now")
    expect(await waiter.getWait("t", 1)).toBeNull()
  })

  test("a second getWait on the same topic is refused with a typed error; the connection goes on", async () => {
    using server = startTestServer()
    await using client = await connected(server.port)
    const first = client.getWait("t", 60_000)
    const second = client.getWait("t", 60_000)
    const error = await second.then(
      () => null,
      (error: unknown) => error,
    )
    expect(error).toBeInstanceOf(DsmqError)
    expect(error).toMatchObject({ code: 6, codeName: "bad_field", fatal: false })
    await using writer = await connected(server.port)
    writer.put("t", "m")
    expect(text(await first)).toBe("m")
  })

  test("requests the server would refuse are refused locally, and nothing is sent", async () => {
    using server = startTestServer({ maxMessageBytes: 1024 })
    await using client = await connected(server.port)
    expect(() => client.put("t", "x".repeat(2000))).toThrow(DsmqError)
    expect(() => client.put("t".repeat(1025), "x")).toThrow("topic is longer than 1024 bytes")
    expect(await client.putAck("t", "fits")).toBe(1)
    expect(server.stats().puts).toBe(1)
  })

  test("errors for requests nobody awaits go to onError; a fatal one closes the client", async () => {
    // A stand-in server: WELCOME, then an ERROR for an unacknowledged put, then a fatal one.
    using fake = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(socket, chunk) {
          if (chunk[4] === 0x01) socket.write(new Uint8Array([0, 0, 0, 11, 0x81, 0, 0, 0, 0, 1, 1, 0, 16, 0, 0]))
          if (chunk[4] === 0x02) {
            const id = chunk.subarray(6, 10)
            socket.write(new Uint8Array([0, 0, 0, 10, 0xff, 0, ...id, 0, 6, 0x68, 0x69])) // bad_field "hi"
            socket.write(new Uint8Array([0, 0, 0, 9, 0xff, 1, 0, 0, 0, 0, 0, 1, 0x21])) // fatal malformed_frame "!"
          }
        },
      },
    })
    const errors: DsmqError[] = []
    const client = await connect({ port: fake.port, retries: 0, onError: (error) => errors.push(error) })
    client.put("t", "m")
    await client.closed
    expect(errors.map((error) => ({ code: error.code, name: error.codeName, text: error.message, fatal: error.fatal }))).toEqual([
      { code: 6, name: "bad_field", text: "hi", fatal: false },
      { code: 1, name: "malformed_frame", text: "!", fatal: true },
    ])
  })

  test("subscribe delivers unread messages, then new ones, in order; unsubscribe stops it", async () => {
    using server = startTestServer()
    await using subscriber = await connected(server.port)
    await using publisher = await connected(server.port)
    await publisher.putAck("t", "before subscribe")
    const subscription = await subscriber.subscribe("t")
    publisher.put("t", "after 1")
    publisher.put("other", "not mine")
    publisher.put("t", "after 2")
    expect((await take(subscription, 3)).map((message) => message.text())).toEqual(["before subscribe", "after 1", "after 2"])
    await subscription.unsubscribe()
    expect(await subscription.next()).toEqual({ value: undefined, done: true })
    await publisher.putAck("t", "after unsubscribe")
    expect(text(await subscriber.get("t"))).toBe("after unsubscribe")
    expect(text(await subscriber.get("other"))).toBe("not mine")
  })

  test("several subscribers each get every message exactly once", async () => {
    using server = startTestServer()
    const subscribers = await Promise.all([1, 2, 3].map(() => connected(server.port)))
    const subscriptions = await Promise.all(subscribers.map((client) => client.subscribe("t")))
    await using publisher = await connected(server.port)
    const count = 2000
    for (let i = 0; i < count; i++) publisher.put("t", String(i))
    for (const subscription of subscriptions) {
      const messages = await take(subscription, count)
      expect(messages.map((message) => Number(message.text()))).toEqual(Array.from({ length: count }, (_, i) => i))
    }
    await Promise.all(subscribers.map((client) => client.close()))
  })

  test("a subscription ends cleanly when the client closes", async () => {
    using server = startTestServer()
    const client = await connected(server.port)
    const subscription = await client.subscribe("t")
    const ended = (async () => {
      const seen: string[] = []
      for await (const message of subscription) seen.push(message.text())
      return seen
    })()
    await client.putAck("t", "last")
    await eventually(() => subscription.buffered === 0, "the message to be taken")
    await client.close()
    expect(await ended).toEqual(["last"])
    expect(() => client.put("t", "after close")).toThrow(ConnectionClosedError)
    await expect(client.get("t")).rejects.toThrow(ConnectionClosedError)
  })

  test("pending requests fail with ConnectionClosedError when the server goes away", async () => {
    const server = startTestServer()
    const client = await connected(server.port)
    const waiting = client.getWait("t", 60_000)
    await client.ping()
    server.stop()
    // The server answers pending waits with "nothing" as it stops.
    expect(await waiting).toBeNull()
    await client.closed
    await expect(client.ping()).rejects.toThrow(ConnectionClosedError)
  })

  test("a subscriber that does not keep up is held back and still gets everything in order", async () => {
    using server = startTestServer()
    const subscriber = await connect({ port: server.port, subscriptionBuffer: 100 })
    const subscription = await subscriber.subscribe("t")
    await using publisher = await connected(server.port)
    const count = 20_000
    const payload = "p".repeat(1000) // 20 MB in all: more than the server's outbound cap
    for (let i = 0; i < count; i += 500) {
      publisher.putMany(Array.from({ length: 500 }, (_, j) => ({ topic: "t", payload: `${i + j}:${payload}` })))
    }
    await publisher.ping()
    // The subscriber has read little; the server holds the rest in its store, not in memory.
    await eventually(() => subscription.buffered >= 100, "the subscriber's buffer to fill")
    expect(server.stats().maxConnectionBufferedBytes).toBeLessThan(8 * 1024 * 1024)
    const messages = await take(subscription, count)
    expect(messages.length).toBe(count)
    const wrong = messages.filter((message, i) => message.seq !== i + 1 || !message.text().startsWith(`${i}:`))
    expect(wrong).toEqual([])
    await subscriber.close()
  }, 60_000)

  test("one client puts 1,000,000 small messages pipelined; a subscriber gets them all in order", async () => {
    // Room for all of them: the default per-topic limit would drop the oldest.
    using server = startTestServer({
      retention: { ...DEFAULT_RETENTION, defaults: { ...DEFAULT_RETENTION.defaults, maxMessages: null } },
    })
    await using subscriber = await connected(server.port)
    await using publisher = await connected(server.port)
    const subscription = await subscriber.subscribe("load")
    const count = 1_000_000
    let received = 0
    let outOfOrder = 0
    const reading = (async () => {
      for await (const message of subscription) {
        if (message.seq !== ++received) outOfOrder++
        if (received === count) return
      }
    })()
    const payload = new Uint8Array(16)
    for (let i = 0; i < count; i++) {
      publisher.put("load", payload)
      // Let the socket drain now and then, as a real producer's event loop would.
      if (i % 50_000 === 49_999) await publisher.ping()
    }
    await publisher.ping()
    await reading
    expect({ received, outOfOrder }).toEqual({ received: count, outOfOrder: 0 })
    expect(server.stats().puts).toBe(count)
  }, 60_000)

  test("writes issued in the same tick go out in one socket write", async () => {
    // A stand-in server that answers HELLO and counts the chunks it receives.
    const chunks: number[] = []
    using fake = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(socket, chunk) {
          chunks.push(chunk.length)
          if (chunks.length === 1) {
            const welcome = new Uint8Array([0, 0, 0, 11, 0x81, 0, 0, 0, 0, 1, 1, 0, 16, 0, 0])
            socket.write(welcome)
          }
        },
      },
    })
    const client = await connect({ port: fake.port, retries: 0 })
    for (let i = 0; i < 100; i++) client.put("t", `message ${i}`)
    await eventually(() => chunks.length >= 2, "the puts to arrive")
    expect(chunks.length).toBe(2)
    expect(chunks[1]).toBe(100 * (10 + 2 + 1 + "message 0".length) + 90)
    await client.close()
  })

  test("connect retries until the server is there", async () => {
    const probe = startTestServer()
    const port = probe.port
    probe.stop()
    const connecting = connect({ port, retries: 50, retryDelayMs: 5, maxRetryDelayMs: 20 })
    const server = startServer({ host: "127.0.0.1", port, httpPort: null, maxMessageBytes: 1 << 20, allowShutdown: false })
    const client = await connecting
    expect(await client.putAck("t", "hello")).toBe(1)
    await client.close()
    server.stop()
  })

  test("connect gives up with the connection error when retries run out", async () => {
    const probe = startTestServer()
    const port = probe.port
    probe.stop()
    await expect(connect({ port, retries: 2, retryDelayMs: 1 })).rejects.toMatchObject({ code: "ECONNREFUSED" })
  })
})

describe("client subscriptions on patterns", () => {
  test('subscribe("lab/#") yields every matching message in put order, each with its topic; an exact subscription beside it keeps its own', async () => {
    using server = startTestServer()
    await using reader = await connect({ port: server.port })
    await using writer = await connect({ port: server.port })
    const everything = await reader.subscribe("lab/#")
    const exact = await reader.subscribe("lab/a")
    for (const [topic, text] of [
      ["lab/b/c", "1"],
      ["labx/a", "no"],
      ["lab/a", "2"],
      ["lab", "3"],
    ] as const)
      await writer.putAck(topic, text)
    const fromPattern: string[] = []
    for await (const message of everything) {
      fromPattern.push(`${message.topic}=${message.text()}`)
      if (fromPattern.length === 2) break
    }
    expect(fromPattern).toEqual(["lab/b/c=1", "lab=3"])
    const fromExact = await exact[Symbol.asyncIterator]().next()
    expect([fromExact.value?.topic, fromExact.value?.text()]).toEqual(["lab/a", "2"])
  })
})

test("topics() lists the catalogue, matching a pattern, a page at a time", async () => {
  using server = startTestServer()
  await using client = await connect({ port: server.port })
  for (const topic of ["cat/b", "cat/a", "other", "cat/c"]) await client.putAck(topic, "x")
  const first = await client.topics("cat/#", { limit: 2 })
  expect(first.topics.map((entry) => entry.topic)).toEqual(["cat/a", "cat/b"])
  expect(first.topics[0]).toMatchObject({ messages: 1, bytes: 1, subscribers: 0 })
  const rest = await client.topics("cat/#", { limit: 2, after: first.next! })
  expect([rest.topics.map((entry) => entry.topic), rest.next]).toEqual([["cat/c"], undefined])
  expect((await client.topics()).topics).toHaveLength(4)
  await expect(client.topics("cat/#/x")).rejects.toMatchObject({ codeName: "bad_field" })
})
