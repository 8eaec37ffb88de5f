/** The HTTP port's WebSocket endpoint: upstream dsmq 1.x clients, and binary frames. */
import { describe, expect, test } from "bun:test"
import { MAGIC, Op } from "../../src/protocol/binary/constants.ts"
import { BinaryDecoder } from "../../src/protocol/binary/decoder.ts"
import { FrameWriter } from "../../src/protocol/binary/frame-writer.ts"
import { type BinaryReply, readReply } from "../../src/protocol/binary/reply.ts"
import { MAX_OUTBOUND_BYTES } from "../../src/start-server.ts"
import { DOORS, eventually, request, startTestServer, TestClient } from "../helpers.ts"
import { RawWsClient, WsClient } from "../ws-helpers.ts"

for (const door of DOORS) {
  describe(door.name, () => {
    const wsUrl = (server: { httpPort: number | null; port: number }) => `ws://127.0.0.1:${door.portOf(server)}/`

    describe("upstream dsmq 1.x over WebSocket", () => {
      test("put, get and get_latest, with replies byte for byte as upstream writes them", async () => {
        using server = startTestServer()
        await using reader = await WsClient.connect(wsUrl(server))
        await using writer = await WsClient.connect(wsUrl(server))
        writer.send(JSON.stringify({ action: "put", topic: "greetings", message: "Hello!" }))
        writer.send(JSON.stringify({ action: "put", topic: "greetings", message: "ünï 🎉" }))
        writer.send(JSON.stringify({ action: "put", topic: "greetings", message: "third" }))
        await writer.ask({ action: "get", topic: "sync" })
        expect(await reader.ask({ action: "get", topic: "greetings" })).toBe('{"message": "Hello!"}')
        // Non-ASCII escaped as Python's json.dumps does (the emoji as a surrogate pair).
        expect(await reader.ask({ action: "get", topic: "greetings" })).toBe('{"message": "\\u00fcn\\u00ef \\ud83c\\udf89"}')
        expect(await reader.ask({ action: "get_latest", topic: "greetings" })).toBe('{"message": "third"}')
        expect(await reader.ask({ action: "get", topic: "greetings" })).toBe('{"message": ""}')
        expect(JSON.parse(reader.messages[1] as string)).toEqual({ message: "ünï 🎉" })
      })

      test("the connect-time cursor, several topics and several clients", async () => {
        using server = startTestServer()
        await using writer = await WsClient.connect(wsUrl(server))
        writer.send(JSON.stringify({ action: "put", topic: "a", message: "before" }))
        await writer.ask({ action: "get", topic: "sync" })
        const readers = await Promise.all([1, 2].map(() => WsClient.connect(wsUrl(server))))
        for (const topic of ["a", "b"]) writer.send(JSON.stringify({ action: "put", topic, message: `on ${topic}` }))
        await writer.ask({ action: "get", topic: "sync" })
        for (const reader of readers) {
          expect(await reader.ask({ action: "get", topic: "b" })).toBe('{"message": "on b"}')
          expect(await reader.ask({ action: "get", topic: "a" })).toBe('{"message": "on a"}')
          expect(await reader.ask({ action: "get", topic: "a" })).toBe('{"message": ""}')
          await reader[Symbol.asyncDispose]()
        }
      })

      test("upstream's client-side get_wait (polling get) and the server-side get_wait", async () => {
        using server = startTestServer()
        await using reader = await WsClient.connect(wsUrl(server))
        await using writer = await WsClient.connect(wsUrl(server))
        // Upstream's get_wait: get until non-empty, a bounded number of times.
        expect(await reader.ask({ action: "get", topic: "t" })).toBe('{"message": ""}')
        writer.send(JSON.stringify({ action: "put", topic: "t", message: "polled" }))
        let reply = ""
        for (let tries = 0; tries < 1000 && reply !== '{"message": "polled"}'; tries++) {
          reply = await reader.ask({ action: "get", topic: "t" })
        }
        expect(reply).toBe('{"message": "polled"}')
        // This server's get_wait answers the moment a message is put.
        const waiting = reader.ask({ action: "get_wait", topic: "t", timeout: 60 })
        await eventually(() => server.stats().connections === 2, "both connections")
        writer.send(JSON.stringify({ action: "put", topic: "t", message: "pushed" }))
        expect(await waiting).toBe('{"message": "pushed"}')
      })

      test("shutdown is refused unless allowed: an error, then a close with the reason", async () => {
        using server = startTestServer()
        await using client = await WsClient.connect(wsUrl(server))
        client.send(JSON.stringify({ action: "shutdown", topic: "" }))
        const closed = await client.closed
        expect(closed.code).toBe(1008)
        expect(closed.reason).toStartWith("shutdown_refused: shutdown is disabled")
        expect(JSON.parse(client.messages[0] as string)).toMatchObject({ message: "", error: { code: "shutdown_refused" } })
        await using other = await WsClient.connect(wsUrl(server))
        expect(await other.ask({ action: "get", topic: "t" })).toBe('{"message": ""}')
      })

      test("an allowed shutdown stops the server", async () => {
        const server = startTestServer({ allowShutdown: true })
        await using client = await WsClient.connect(wsUrl(server))
        client.send(JSON.stringify({ action: "shutdown", topic: "" }))
        await server.stopped
        await client.closed
      })

      test.each([
        ["an unknown action", JSON.stringify({ action: "publish", topic: "t" }), "unknown_action"],
        ["malformed JSON", '{"action": "get", "topic": ', "bad_json"],
        ["a put without a message", JSON.stringify({ action: "put", topic: "t" }), "bad_field"],
      ])("%s closes the connection with a 1008 and the reason, as upstream 1.x closes it", async (_name, text, code) => {
        using server = startTestServer()
        await using client = await WsClient.connect(wsUrl(server))
        client.send(text)
        const closed = await client.closed
        expect({ code: closed.code, reason: closed.reason.split(":")[0] }).toEqual({ code: 1008, reason: code })
        expect(server.stats().errors[code as "bad_field"]).toBe(1)
      })

      test("a get with a bad topic is answered in place", async () => {
        using server = startTestServer()
        await using client = await WsClient.connect(wsUrl(server))
        expect(JSON.parse(await client.ask({ action: "get", topic: 5 }))).toMatchObject({ error: { code: "bad_field" } })
        expect(await client.ask({ action: "get", topic: "t" })).toBe('{"message": ""}')
      })

      test("a message over --max-message-bytes closes the connection", async () => {
        using server = startTestServer({ maxMessageBytes: 1024 })
        await using client = await WsClient.connect(wsUrl(server))
        client.send(JSON.stringify({ action: "put", topic: "t", message: "x".repeat(2000) }))
        expect((await client.closed).code).toBe(1009) // Bun: message too big
        await using other = await WsClient.connect(wsUrl(server))
        expect(await other.ask({ action: "get", topic: "t" })).toBe('{"message": ""}')
      })

      test("text messages behind a held get_wait are held back, bounded, and all run after it", async () => {
        using server = startTestServer()
        await using client = await RawWsClient.connect(door.portOf(server))
        await using other = await TestClient.connect(server.port)
        const count = 20_000 // about 4.5 MiB of puts, each its own message
        client.sendTexts([
          JSON.stringify({ action: "get_wait", topic: "held", timeout: 600 }),
          ...Array.from({ length: count }, (_, i) => JSON.stringify({ action: "put", topic: "behind", message: `${i}`.padEnd(200, ".") })),
        ])
        let maxBuffered = 0
        const sample = (): number => (maxBuffered = Math.max(maxBuffered, server.stats().maxConnectionBufferedBytes))
        await eventually(() => sample() > 0 && server.stats().queuedRequests >= 256, "the server to hold PAUSE_AT_QUEUED requests")
        for (let turn = 0; turn < 2_000; turn++) {
          sample()
          await new Promise((resolve) => setImmediate(resolve))
        }
        // 256 requests (PAUSE_AT_QUEUED) or 1 MiB, then reading pauses; what Bun had read by then still arrives.
        expect(maxBuffered).toBeLessThan(2 * 1024 * 1024)
        expect(server.stats().puts).toBe(0)

        other.send(request({ action: "put", topic: "held", message: "go" }))
        expect(await client.waitForTexts(1)).toEqual(['{"message": "go"}'])
        await eventually(() => server.stats().puts === 1 + count, "every put behind the get_wait to run")
      }, 60_000)

      test("a client that stops reading is held back, bounded, and loses nothing", async () => {
        using server = startTestServer()
        await using slow = await RawWsClient.connect(door.portOf(server))
        await using writer = await TestClient.connect(server.port)
        // About 24 MiB of replies: more than the server's cap plus what the kernel buffers.
        const count = 1500
        const message = (i: number) => `${i}:`.padEnd(16 * 1024, "x")
        writer.sendRequests(Array.from({ length: count }, (_, i) => ({ action: "put", topic: "big", message: message(i) })))
        await writer.ask({ action: "get", topic: "sync" })

        slow.pauseReading()
        slow.sendTexts(Array.from({ length: count }, () => JSON.stringify({ action: "get", topic: "big" })))
        await eventually(() => server.stats().queuedRequests > 0, "the server to hold back the slow client")
        const bound = MAX_OUTBOUND_BYTES + 2 * (16 * 1024 + 100)
        expect(server.stats().maxConnectionBufferedBytes).toBeLessThanOrEqual(bound)
        // Others are served meanwhile.
        writer.send(request({ action: "put", topic: "other", message: "fine" }))
        expect(await writer.ask({ action: "get", topic: "other" })).toMatchObject({ message: "fine" })
        expect(server.stats().maxConnectionBufferedBytes).toBeLessThanOrEqual(bound)

        slow.resumeReading()
        const replies = await slow.waitForTexts(count)
        const wrong = replies.filter((reply, i) => reply !== `{"message": "${message(i)}"}`)
        expect(wrong.length).toBe(0)
      }, 60_000)
    })

    describe("binary frames over WebSocket", () => {
      test("HELLO, PUT, GET and a subscription, in binary messages", async () => {
        using server = startTestServer()
        await using client = await WsClient.connect(wsUrl(server))
        const writer = new FrameWriter()
        writer.begin(Op.hello, 0, 1).bytes(MAGIC).u8(1).end()
        writer.begin(Op.subscribe, 0, 2).topic("t").end()
        writer
          .begin(Op.put, 1, 3)
          .topic("t")
          .bytes(new Uint8Array([0, 255]))
          .end()
        client.send(writer.take())
        const replies: BinaryReply[] = []
        const decoder = new BinaryDecoder(
          {
            frame: (frame) => replies.push(readReply(frame)),
            fail: (error) => replies.push({ op: Op.error, requestId: 0, fatal: true, code: error.code, text: error.message }),
          },
          1 << 20,
        )
        let decoded = 0
        const waitForReplies = async (count: number): Promise<void> => {
          while (replies.length < count) {
            await client.waitForMessages(decoded + 1)
            decoder.push(client.messages[decoded++] as Uint8Array)
          }
        }
        await waitForReplies(4)
        expect(replies.map((reply) => reply.op)).toEqual([Op.welcome, Op.ok, Op.putAck, Op.deliver])
        expect(replies[3]).toMatchObject({ requestId: 0, seq: 1, topic: "t", payload: new Uint8Array([0, 255]) })
        // The push used the connection's cursor: a GET now finds nothing.
        writer.begin(Op.get, 0, 4).topic("t").end()
        client.send(writer.take())
        await waitForReplies(5)
        expect(replies[4]).toEqual({ op: Op.empty, requestId: 4 })
      })

      test("a binary subscriber that stops reading gets every push intact once it reads again", async () => {
        using server = startTestServer()
        await using slow = await RawWsClient.connect(door.portOf(server))
        await using writer = await TestClient.connect(server.port)
        const frames = new FrameWriter()
        frames.begin(Op.hello, 0, 1).bytes(MAGIC).u8(1).end()
        frames.begin(Op.subscribe, 0, 2).topic("big").end()
        slow.sendBinary(frames.take())
        const replies: BinaryReply[] = []
        const failures: string[] = []
        const decoder = new BinaryDecoder(
          { frame: (frame) => replies.push(readReply(frame)), fail: (error) => failures.push(error.message) },
          1 << 20,
        )
        const decodeReceived = (): void => {
          for (const message of slow.binaries.splice(0)) decoder.push(message)
        }
        await slow.waitForBinaries(1)
        decodeReceived()
        expect(replies.map((reply) => reply.op)).toEqual([Op.welcome, Op.ok])

        // About 24 MiB of pushes while the client reads nothing: the server's buffers fill, its
        // writes are cut short, and later pushes wait in the store.
        slow.pauseReading()
        const count = 1500
        const message = (i: number) => `${i}:`.padEnd(16 * 1024, String.fromCharCode(97 + (i % 26)))
        writer.sendRequests(Array.from({ length: count }, (_, i) => ({ action: "put", topic: "big", message: message(i) })))
        await writer.ask({ action: "get", topic: "sync" })
        slow.resumeReading()
        for (let round = 0; round < count && replies.length < 2 + count; round++) {
          await slow.waitForBinaries(1)
          decodeReceived()
        }
        const delivered = replies
          .slice(2)
          .map((reply) => (reply.op === Op.deliver ? new TextDecoder().decode(reply.payload) : `op ${reply.op}`))
        const wrong = delivered.filter((text, i) => text !== message(i))
        expect(failures).toEqual([])
        expect(delivered.length).toBe(count)
        expect(wrong.length).toBe(0)
      }, 60_000)

      test("text after binary on one WebSocket is refused", async () => {
        using server = startTestServer()
        await using client = await WsClient.connect(wsUrl(server))
        const writer = new FrameWriter()
        writer.begin(Op.hello, 0, 1).bytes(MAGIC).u8(1).end()
        client.send(writer.take())
        await client.waitForMessages(1)
        client.send(JSON.stringify({ action: "get", topic: "t" }))
        expect((await client.closed).code).toBe(1008)
      })
    })

    test("TCP, WebSocket and HTTP clients exchange messages through one topic", async () => {
      using server = startTestServer()
      await using tcp = await TestClient.connect(server.port)
      await using ws = await WsClient.connect(wsUrl(server))
      const http = `http://127.0.0.1:${door.portOf(server)}/topics/shared`
      tcp.send(request({ action: "put", topic: "shared", message: "from tcp" }))
      await tcp.ask({ action: "get", topic: "sync" })
      ws.send(JSON.stringify({ action: "put", topic: "shared", message: "from websocket" }))
      await ws.ask({ action: "get", topic: "sync" })
      const posted = await fetch(http, { method: "POST", body: "from http" })
      expect(await posted.json()).toEqual({ topic: "shared", seq: 3 })

      tcp.sendRequests([1, 2, 3].map(() => ({ action: "get", topic: "shared" })))
      expect((await tcp.waitForReplies(4)).slice(1).map((reply) => reply.message)).toEqual(["from tcp", "from websocket", "from http"])
      for (const message of ["from tcp", "from websocket", "from http"]) {
        expect(await ws.ask({ action: "get", topic: "shared" })).toBe(`{"message": "${message}"}`)
      }
      const first = await fetch(`${http}?after=0`)
      expect([first.headers.get("DSMQ-Seq"), await first.text()]).toEqual(["1", "from tcp"])
    })

    test("a WebSocket client can close while its get_wait is held and requests wait behind it", async () => {
      using server = startTestServer()
      const client = await WsClient.connect(wsUrl(server))
      client.send(JSON.stringify({ action: "get_wait", topic: "t", timeout: 60 }))
      client.send(JSON.stringify({ action: "get", topic: "t" }))
      await eventually(() => server.stats().queuedRequests === 1, "the get to wait behind the get_wait")
      client.close()
      // The close handshake completes (a paused socket would not read the Close frame at all).
      await client.closed
      await eventually(() => server.stats().connections === 0, "the server to see the close")
    })
  })
}
