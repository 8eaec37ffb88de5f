import { describe, expect, test } from "bun:test"
import { encodeHeader } from "../../src/protocol/json-header.ts"
import { eventually, type Framing, pyJson, request, startTestServer, TestClient } from "../helpers.ts"

describe("the seed README's examples", () => {
  test("put then get, byte for byte as the upstream clients send them", async () => {
    using server = startTestServer()
    await using reader = await TestClient.connect(server.port)
    {
      // example_put_client.py: connect, sendall one object, close.
      await using writer = await TestClient.connect(server.port)
      writer.send('{"action": "put", "topic": "greetings", "message": "Hello!"}')
    }
    await eventually(() => server.stats().puts === 1, "the put")
    reader.send('{"action": "get", "topic": "greetings"}')
    await reader.waitForReplies(1)
    expect(reader.received.toString()).toBe('{"message":"Hello!","seq":1}')
    reader.send('{"action": "get", "topic": "greetings"}')
    await reader.waitForReplies(2)
    expect(reader.received.toString()).toBe('{"message":"Hello!","seq":1}{"message":""}')
  })
})

for (const framing of ["json-stream", "json-header"] as const satisfies Framing[]) {
  describe(`over ${framing}`, () => {
    test("one-to-many: every reader gets every message, in put order", async () => {
      using server = startTestServer()
      const readers = await Promise.all([1, 2, 3].map(() => TestClient.connect(server.port, framing)))
      await using writer = await TestClient.connect(server.port, framing)
      writer.sendRequests(
        ["a", "b", "c"].map((message) => ({ action: "put", topic: "t", message })),
        framing,
      )
      await writer.ask({ action: "get", topic: "sync" }, framing)
      for (const reader of readers) {
        reader.sendRequests(Array(4).fill({ action: "get", topic: "t" }), framing)
        const replies = await reader.waitForReplies(4)
        expect(replies.map((reply) => reply.message)).toEqual(["a", "b", "c", ""])
        expect(replies.map((reply) => reply.seq)).toEqual([1, 2, 3, undefined])
        await reader[Symbol.asyncDispose]()
      }
    })

    test("a reader does not see messages put before it connected", async () => {
      using server = startTestServer()
      await using writer = await TestClient.connect(server.port, framing)
      writer.send(request({ action: "put", topic: "t", message: "early" }, framing))
      await writer.ask({ action: "get", topic: "sync" }, framing)
      await using late = await TestClient.connect(server.port, framing)
      expect(await late.ask({ action: "get", topic: "t" }, framing)).toEqual({ message: "" })
      writer.send(request({ action: "put", topic: "t", message: "late" }, framing))
      await writer.ask({ action: "get", topic: "sync" }, framing)
      expect(await late.ask({ action: "get", topic: "t" }, framing)).toEqual({ message: "late", seq: 2 })
    })

    test("get_latest returns the newest message and skips the older ones", async () => {
      using server = startTestServer()
      await using client = await TestClient.connect(server.port, framing)
      client.sendRequests(
        [1, 2, 3].map((i) => ({ action: "put", topic: "t", message: `m${i}` })),
        framing,
      )
      expect(await client.ask({ action: "get_latest", topic: "t" }, framing)).toEqual({ message: "m3", seq: 3 })
      expect(await client.ask({ action: "get", topic: "t" }, framing)).toEqual({ message: "" })
      expect(await client.ask({ action: "get_latest", topic: "t" }, framing)).toEqual({ message: "" })
    })

    test("a put with ack is answered with its sequence number", async () => {
      using server = startTestServer()
      await using client = await TestClient.connect(server.port, framing)
      expect(await client.ask({ action: "put", topic: "t", message: "m", ack: true }, framing)).toEqual({
        message: "",
        seq: 1,
      })
    })

    test("get_wait is answered the moment another client puts", async () => {
      using server = startTestServer()
      await using waiter = await TestClient.connect(server.port, framing)
      await using writer = await TestClient.connect(server.port, framing)
      waiter.send(request({ action: "get_wait", topic: "t", timeout: 60 }, framing))
      waiter.send(request({ action: "get", topic: "t" }, framing))
      // The server has read the get_wait once it holds back the get behind it.
      await eventually(() => server.stats().queuedRequests === 1, "the get_wait to be pending")
      expect(waiter.replies).toEqual([])
      writer.send(request({ action: "put", topic: "t", message: "now" }, framing))
      expect(await waiter.waitForReplies(2)).toEqual([{ message: "now", seq: 1 }, { message: "" }])
    })

    test("get_wait answers an empty message when its timeout passes", async () => {
      using server = startTestServer()
      await using client = await TestClient.connect(server.port, framing)
      expect(await client.ask({ action: "get_wait", topic: "t", timeout: 0.02 }, framing)).toEqual({ message: "" })
      expect(await client.ask({ action: "put", topic: "t", message: "m", ack: true }, framing)).toMatchObject({ seq: 1 })
      expect(await client.ask({ action: "get_wait", topic: "t", timeout: 0 }, framing)).toEqual({ message: "m", seq: 1 })
    })

    test("binary-looking and non-ASCII messages arrive intact", async () => {
      using server = startTestServer()
      await using client = await TestClient.connect(server.port, framing)
      const messages = ["ünïcödé ✓ 🎉", '{"json": "inside"}', "tab\tnewline\nnul\u0000", '}{"\\', ""]
      client.sendRequests(
        messages.map((message) => ({ action: "put", topic: "t", message })),
        framing,
      )
      client.sendRequests(
        messages.map(() => ({ action: "get", topic: "t" })),
        framing,
      )
      const replies = await client.waitForReplies(messages.length)
      expect(replies.map((reply) => reply.message)).toEqual(messages)
      expect(replies.every((reply) => typeof reply.seq === "number")).toBe(true)
    })

    test("10,000 puts in one write, then 10,000 gets in one write, return every message in order", async () => {
      using server = startTestServer()
      await using writer = await TestClient.connect(server.port, framing)
      await using reader = await TestClient.connect(server.port, framing)
      const count = 10_000
      writer.sendRequests(
        Array.from({ length: count }, (_, i) => ({ action: "put", topic: "burst", message: `message ${i}` })),
        framing,
      )
      await writer.ask({ action: "get", topic: "sync" }, framing)
      reader.sendRequests(Array(count).fill({ action: "get", topic: "burst" }), framing)
      const replies = await reader.waitForReplies(count)
      expect(replies.length).toBe(count)
      expect(replies.map((reply) => reply.message)).toEqual(Array.from({ length: count }, (_, i) => `message ${i}`))
    })
  })
}

test("a request stream split at every byte is understood the same", async () => {
  using server = startTestServer()
  const stream =
    pyJson({ action: "put", topic: "s", message: 'ü {split} "here"' }) +
    "\n" +
    pyJson({ action: "get", topic: "s" }) +
    pyJson({ action: "get", topic: "s" })
  await using client = await TestClient.connect(server.port)
  for (const byte of Buffer.from(stream)) client.send(new Uint8Array([byte]))
  expect(await client.waitForReplies(2)).toEqual([{ message: 'ü {split} "here"', seq: 1 }, { message: "" }])
})

test("the header-framed protocol replies with upstream's 23-byte header", async () => {
  using server = startTestServer()
  await using client = await TestClient.connect(server.port, "json-header")
  await client.ask({ action: "put", topic: "t", message: "Hello!", ack: true }, "json-header")
  client.clearReceived()
  await client.ask({ action: "get", topic: "t" }, "json-header")
  const body = '{"message":"Hello!","seq":1}'
  expect(client.received.toString()).toBe(encodeHeader(body.length) + body)
  expect(client.received.subarray(0, 23).toString()).toBe('{"msg_length": 1000028}')
})

test("both protocol generations share one set of topics", async () => {
  using server = startTestServer()
  await using stream = await TestClient.connect(server.port, "json-stream")
  await using header = await TestClient.connect(server.port, "json-header")
  stream.send(request({ action: "put", topic: "t", message: "from gen 1" }))
  await stream.ask({ action: "get", topic: "sync" })
  expect(await header.ask({ action: "get", topic: "t" }, "json-header")).toEqual({ message: "from gen 1", seq: 1 })
  header.send(request({ action: "put", topic: "t", message: "from gen 2" }, "json-header"))
  await header.ask({ action: "get", topic: "sync" }, "json-header")
  stream.sendRequests([
    { action: "get", topic: "t" },
    { action: "get", topic: "t" },
  ])
  expect((await stream.waitForReplies(3)).slice(1)).toEqual([
    { message: "from gen 1", seq: 1 },
    { message: "from gen 2", seq: 2 },
  ])
})

test("stop() answers pending waits and requests already received, then closes every connection", async () => {
  const server = startTestServer()
  const waiter = await TestClient.connect(server.port)
  const idle = await TestClient.connect(server.port)
  waiter.send(request({ action: "get_wait", topic: "t", timeout: 60 }))
  waiter.send(request({ action: "get", topic: "t" }))
  await eventually(() => server.stats().queuedRequests === 1, "the get_wait to be pending")
  server.stop()
  await server.stopped
  await Promise.all([waiter.closed, idle.closed])
  expect(waiter.replies).toEqual([{ message: "" }, { message: "" }])
  await expect(Bun.connect({ hostname: "127.0.0.1", port: server.port, socket: { data() {} } })).rejects.toThrow()
})

test("stopping answers every get_wait a connection has queued, not only the one it is holding", async () => {
  // A shutdown timeout far beyond the test's: waiting out the queued waits would fail the test.
  const server = startTestServer({ shutdownTimeoutMs: 60_000 })
  const client = await TestClient.connect(server.port)
  client.sendRequests([1, 2, 3].map((i) => ({ action: "get_wait", topic: `t${i}`, timeout: 60 })))
  await eventually(() => server.stats().queuedRequests === 2, "two waits queued behind the first")
  server.stop()
  await server.stopped
  await client.closed
  expect(client.replies).toEqual([{ message: "" }, { message: "" }, { message: "" }])
})
