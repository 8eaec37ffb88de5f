/**
 * The binary protocol against a real server, over real sockets, with a raw client that checks
 * every frame the server sends. Waits are on socket events (a reply, a close), never on time.
 */
import { describe, expect, test } from "bun:test"
import { Op } from "../../src/protocol/binary/constants.ts"
import { FrameWriter } from "../../src/protocol/binary/frame-writer.ts"
import type { BinaryReply } from "../../src/protocol/binary/reply.ts"
import type { BinaryRequest } from "../../src/protocol/binary/request.ts"
import { ErrorCode } from "../../src/protocol/errors.ts"
import { DEFAULT_MAX_MESSAGE_BYTES } from "../../src/start-server.ts"
import { BinaryClient, statsBody } from "../binary-client.ts"
import { bytes, encodeRequests, entry, fromHex, rawFrame, rep, req, writeRequest } from "../binary-frames.ts"
import { eventually, request, startTestServer, TestClient } from "../helpers.ts"

type Server = ReturnType<typeof startTestServer>

/** A PING round trip: every request sent before it has run (pending GET_WAITs aside). */
async function sync(client: BinaryClient): Promise<void> {
  const id = client.nextId()
  expect(await client.call(req.ping(id, "sync"))).toEqual(rep.pong(id, "sync"))
}

/** Frames received after the first `from`, without PONGs to `sync`. */
function framesFrom(client: BinaryClient, from: number): BinaryReply[] {
  return client.frames.slice(from).filter((frame) => !(frame.op === Op.pong && new TextDecoder().decode(frame.body) === "sync"))
}

/** A fresh client puts a message and reads it back: the server still serves. */
async function expectServerStillServes(server: Server): Promise<void> {
  await using client = await BinaryClient.connect(server.port)
  const topic = `alive-${crypto.randomUUID()}`
  const putId = client.nextId()
  const ack = await client.call(req.put(putId, topic, "still here", true))
  expect(ack).toEqual(rep.putAck(putId, expect.any(Number) as unknown as number))
  const getId = client.nextId()
  const seq = ack.op === Op.putAck ? ack.seq : -1
  expect(await client.call(req.get(getId, topic))).toEqual(rep.message(getId, seq, topic, "still here"))
}

const ALL_BYTES = new Uint8Array(Array.from({ length: 256 }, (_, i) => i))

describe("the handshake", () => {
  test("HELLO is answered by WELCOME with version 1 and the maximum frame size", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    expect(client.welcome).toEqual(rep.welcome(1, DEFAULT_MAX_MESSAGE_BYTES))
    using small = startTestServer({ maxMessageBytes: 4096 })
    await using other = await BinaryClient.connect(small.port)
    expect(other.welcome).toEqual(rep.welcome(1, 4096))
  })

  test("a HELLO split into single bytes is understood", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port, { hello: false })
    for (const byte of encodeRequests(req.hello(7), req.ping(8, "p"))) client.sendBytes(new Uint8Array([byte]))
    await client.waitForFrames(2)
    expect(client.frames).toEqual([rep.welcome(7, DEFAULT_MAX_MESSAGE_BYTES), rep.pong(8, "p")])
  })

  test("a first frame that is not HELLO gets a fatal malformed_frame, and the server serves others", async () => {
    using server = startTestServer()
    await using bystander = await BinaryClient.connect(server.port)
    await using client = await BinaryClient.connect(server.port, { hello: false })
    client.send(req.get(5, "t"), req.put(6, "t", "never stored", true), req.ping(7))
    await client.closed
    expect(client.frames).toEqual([rep.error(5, ErrorCode.malformed_frame, true)])
    await sync(bystander)
    await expectServerStillServes(server)
    expect(server.stats().puts).toBe(1)
  })

  test.each([
    ["an unknown opcode", rawFrame(0x42, 0, 5, new Uint8Array(0))],
    ["a HELLO with a flag set", rawFrame(Op.hello, 0x01, 5, new Uint8Array([0x44, 0x53, 0x4d, 0x51, 1]))],
    ["a HELLO without its version byte", rawFrame(Op.hello, 0, 5, new Uint8Array([0x44, 0x53, 0x4d, 0x51]))],
  ])("%s as the first frame is fatal too", async (_name, frame) => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port, { hello: false })
    client.sendBytes(frame)
    client.send(req.ping(6))
    await client.closed
    expect(client.frames).toEqual([rep.error(5, ErrorCode.malformed_frame, true)])
    await expectServerStillServes(server)
  })

  test.each([0, 2, 255])("HELLO asking for version %d gets a fatal unsupported_version (code 8)", async (version) => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port, { hello: false })
    client.send(req.hello(3, version), req.ping(4))
    await client.closed
    expect(client.frames).toEqual([rep.error(3, 8, true)])
    await expectServerStillServes(server)
  })

  test("HELLO with the wrong magic gets a fatal malformed_frame", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port, { hello: false })
    client.sendBytes(rawFrame(Op.hello, 0, 3, new Uint8Array([0x44, 0x53, 0x4d, 0x52, 1])))
    await client.closed
    expect(client.frames).toEqual([rep.error(3, ErrorCode.malformed_frame, true)])
  })

  test("a second HELLO gets a non-fatal bad_field", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    const id = client.nextId()
    expect(await client.call(req.hello(id))).toEqual(rep.error(id, ErrorCode.bad_field, false))
    await sync(client)
  })
})

describe("puts and gets", () => {
  test("a PUT is acknowledged only with ACK; GET returns messages oldest first, then EMPTY", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    client.send(req.put(10, "t", "one"), req.put(11, "t", "two", true), req.put(12, "u", "other"), req.ping(13))
    await client.replyTo(13)
    // No reply to the PUTs without ACK.
    expect(client.frames).toEqual([rep.putAck(11, 2), rep.pong(13)])
    client.send(req.get(14, "t"), req.get(15, "t"), req.get(16, "t"), req.get(17, "u"), req.get(18, "nothing-here"))
    await client.waitForFrames(7)
    expect(client.frames.slice(2)).toEqual([
      rep.message(14, 1, "t", "one"),
      rep.message(15, 2, "t", "two"),
      rep.empty(16),
      rep.message(17, 3, "u", "other"),
      rep.empty(18),
    ])
  })

  test("GET_LATEST returns the newest unread message; the older ones count as read", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    client.send(req.put(1, "t", "m1"), req.put(2, "t", "m2"), req.put(3, "t", "m3"))
    client.send(req.getLatest(4, "t"), req.get(5, "t"), req.getLatest(6, "t"))
    client.send(req.put(7, "t", "m4"), req.put(8, "t", "m5"), req.get(9, "t"), req.getLatest(10, "t"), req.get(11, "t"))
    await client.waitForFrames(6)
    expect(client.frames).toEqual([
      rep.message(4, 3, "t", "m3"),
      rep.empty(5),
      rep.empty(6),
      rep.message(9, 4, "t", "m4"),
      rep.message(10, 5, "t", "m5"),
      rep.empty(11),
    ])
  })

  test("a reader sees only messages put after it connected", async () => {
    using server = startTestServer()
    await using writer = await BinaryClient.connect(server.port)
    writer.send(req.put(writer.nextId(), "t", "early"))
    await sync(writer)
    await using reader = await BinaryClient.connect(server.port)
    expect(await reader.call(req.get(50, "t"))).toEqual(rep.empty(50))
    const id = writer.nextId()
    expect(await writer.call(req.put(id, "t", "late", true))).toEqual(rep.putAck(id, 2))
    expect(await reader.call(req.get(51, "t"))).toEqual(rep.message(51, 2, "t", "late"))
  })

  test("PUT_MANY stores its messages with consecutive sequence numbers and acknowledges the first and the count", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    client.send(req.put(1, "a", "before"))
    client.send(req.putMany(2, [entry("a", "1"), entry("b", "2"), entry("a", "3")], true))
    client.send(req.putMany(3, [entry("b", "4")]))
    client.send(req.putMany(4, [entry("c", "5"), entry("c", "6")], true))
    client.send(req.putMany(5, [], true))
    client.send(req.get(6, "a"), req.get(7, "a"), req.get(8, "a"), req.get(9, "b"), req.get(10, "b"), req.getLatest(11, "c"))
    await client.waitForFrames(9)
    expect(client.frames).toEqual([
      rep.putAck(2, 2, 3),
      rep.putAck(4, 6, 2),
      rep.putAck(5, 8, 0),
      rep.message(6, 1, "a", "before"),
      rep.message(7, 2, "a", "1"),
      rep.message(8, 4, "a", "3"),
      rep.message(9, 3, "b", "2"),
      rep.message(10, 5, "b", "4"),
      rep.message(11, 7, "c", "6"),
    ])
  })

  test("a PUT_MANY with one bad entry stores none of it and the connection goes on", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    const writer = new FrameWriter()
    // Second entry: a topic of 1025 bytes.
    writer.begin(Op.putMany, 0x01, 20).u32(2).topic("t").u32(2).bytes(bytes("ok"))
    writer.u16(1025).bytes(new Uint8Array(1025).fill(0x78)).u32(0).end()
    client.sendBytes(writer.take())
    client.send(req.get(21, "t"), req.put(22, "t", "after", true), req.get(23, "t"))
    await client.waitForFrames(4)
    expect(client.frames).toEqual([
      rep.error(20, ErrorCode.bad_field, false),
      rep.empty(21),
      rep.putAck(22, 1),
      rep.message(23, 1, "t", "after"),
    ])
    expect(server.stats().puts).toBe(1)
  })

  test("payloads are bytes: every byte value, empty, and the largest frame the server takes", async () => {
    using server = startTestServer({ maxMessageBytes: 64 * 1024 })
    await using client = await BinaryClient.connect(server.port)
    // The largest PUT: its length field (6 + topic + payload) is exactly the maximum.
    const largest = new Uint8Array(64 * 1024 - 6 - 2 - 1).map((_, i) => (i * 7) % 256)
    client.send(req.put(1, "b", ALL_BYTES), req.put(2, "b", ""), req.putMany(3, [entry("b", ""), entry("b", ALL_BYTES)]))
    client.send(req.put(4, "b", largest, true))
    client.send(req.get(5, "b"), req.get(6, "b"), req.get(7, "b"), req.get(8, "b"), req.get(9, "b"), req.get(10, "b"))
    await client.waitForFrames(7)
    expect(client.frames).toEqual([
      rep.putAck(4, 5),
      rep.message(5, 1, "b", ALL_BYTES),
      // An empty payload is a MESSAGE, not EMPTY.
      rep.message(6, 2, "b", ""),
      rep.message(7, 3, "b", ""),
      rep.message(8, 4, "b", ALL_BYTES),
      rep.message(9, 5, "b", largest),
      rep.empty(10),
    ])
  })

  test("PING echoes its bytes, whatever they are", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    expect(await client.call(req.ping(1, ALL_BYTES))).toEqual(rep.pong(1, ALL_BYTES))
    expect(await client.call(req.ping(0xffffffff))).toEqual(rep.pong(0xffffffff))
  })
})

describe("GET_WAIT", () => {
  test("is answered by another client's put, and does not hold back the requests behind it", async () => {
    using server = startTestServer()
    await using waiter = await BinaryClient.connect(server.port)
    await using writer = await BinaryClient.connect(server.port)
    waiter.send(req.getWait(1, "t", 60_000), req.ping(2, "behind"), req.put(3, "other", "x", true), req.get(4, "other"))
    await waiter.waitForFrames(3)
    // Everything behind the wait was answered while it is pending.
    expect(waiter.frames).toEqual([rep.pong(2, "behind"), rep.putAck(3, 1), rep.message(4, 1, "other", "x")])
    const id = writer.nextId()
    expect(await writer.call(req.put(id, "t", "now", true))).toEqual(rep.putAck(id, 2))
    expect(await waiter.replyTo(1)).toEqual(rep.message(1, 2, "t", "now"))
    await sync(waiter)
    expect(framesFrom(waiter, 3)).toEqual([rep.message(1, 2, "t", "now")])
  })

  test("answers EMPTY when its timeout passes, and at once when a message is there", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    expect(await client.call(req.getWait(1, "t", 5))).toEqual(rep.empty(1))
    expect(await client.call(req.getWait(2, "t", 0))).toEqual(rep.empty(2))
    client.send(req.put(3, "t", "here"))
    expect(await client.call(req.getWait(4, "t", 60_000))).toEqual(rep.message(4, 1, "t", "here"))
  })

  test("a second GET_WAIT on the same topic gets a non-fatal bad_field; waits on other topics are fine", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    await using writer = await BinaryClient.connect(server.port)
    client.send(req.getWait(1, "t", 60_000), req.getWait(2, "t", 60_000), req.getWait(3, "u", 60_000), req.ping(4))
    await client.waitForFrames(2)
    expect(client.frames).toEqual([rep.error(2, ErrorCode.bad_field, false), rep.pong(4)])
    writer.send(req.put(1, "u", "for u"), req.put(2, "t", "for t"))
    await client.waitForFrames(4)
    expect(client.frames.slice(2)).toEqual([rep.message(3, 1, "u", "for u"), rep.message(1, 2, "t", "for t")])
    // Once answered, the topic can be waited on again.
    expect(await client.call(req.getWait(5, "t", 0))).toEqual(rep.empty(5))
  })

  test("a client that vanishes while its GET_WAIT is pending leaves nothing behind", async () => {
    using server = startTestServer()
    const waiter = await BinaryClient.connect(server.port)
    waiter.send(req.getWait(waiter.nextId(), "t", 60_000), req.subscribe(waiter.nextId(), "t"))
    await sync(waiter)
    expect(server.stats().subscribers).toBe(1)
    waiter.terminate()
    await waiter.closed
    await eventually(() => server.stats().connections === 0, "the server to drop the connection")
    expect(server.stats().subscribers).toBe(0)
    await expectServerStillServes(server)
  })
})

describe("pipelining", () => {
  test("5,000 mixed requests in one write: every reply carries its request's id, in request order", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    const { stream, expected, waitAnswers } = pipelinedTraffic(5_000, 2024)
    client.sendBytes(stream)
    await client.waitForFrames(expected.length)
    await sync(client)
    expect(client.frames.length).toBe(expected.length + 1)
    expect(client.frames.slice(0, expected.length)).toEqual(expected)
    // Request ids are distinct, so the order check is exact: replies come in request order,
    // except a GET_WAIT's, which comes when a later put answers it.
    const position = new Map(expected.map((reply, i) => [reply.requestId, i]))
    const inOrder = client.frames.slice(0, expected.length).filter((reply) => !waitAnswers.has(reply.requestId))
    expect(inOrder.map((reply) => position.get(reply.requestId)!)).toEqual(
      inOrder.map((reply) => position.get(reply.requestId)!).toSorted((a, b) => a - b),
    )
    expect(waitAnswers.size).toBeGreaterThan(10)
  })
})

/**
 * A fixed-seed mix of requests and the replies a model of the broker predicts for them, for one
 * client on a fresh server: puts (with and without ACK), PUT_MANY, GET, GET_LATEST, GET_WAIT
 * (answered at once, or later by a put, or refused as a second wait), PING, STATS, unknown
 * opcodes and bad bodies. Request ids are distinct and shuffled.
 */
function pipelinedTraffic(count: number, seed: number): { stream: Uint8Array; expected: BinaryReply[]; waitAnswers: Set<number> } {
  let state = seed
  const random = (n: number) => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) % n
  const ids = Array.from({ length: count }, (_, i) => 1000 + i)
  for (let i = ids.length - 1; i > 0; i--) {
    const j = random(i + 1)
    ;[ids[i], ids[j]] = [ids[j]!, ids[i]!]
  }
  const topics = ["a", "b", "c", "ü"]
  const stored: { seq: number; topic: string; payload: Uint8Array }[] = []
  const cursors = new Map<string, number>()
  const waits = new Map<string, number>()
  const waitAnswers = new Set<number>()
  const expected: BinaryReply[] = []
  const writer = new FrameWriter()
  const payload = () => new Uint8Array(random(40)).map(() => random(256))
  const unread = (topic: string) => stored.filter((m) => m.topic === topic && m.seq > (cursors.get(topic) ?? 0))

  const store = (topic: string, bytes: Uint8Array) => {
    const seq = stored.length + 1
    stored.push({ seq, topic, payload: bytes })
    return seq
  }
  // After a put is stored: a pending wait on its topic is answered with the oldest unread message.
  const announce = (topic: string) => {
    const waitId = waits.get(topic)
    if (waitId === undefined) return
    waits.delete(topic)
    const message = unread(topic)[0]!
    cursors.set(topic, message.seq)
    expected.push(rep.message(waitId, message.seq, topic, message.payload))
    waitAnswers.add(waitId)
  }

  for (let i = 0; i < count; i++) {
    const id = ids[i]!
    const topic = topics[random(topics.length)]!
    const roll = random(100)
    let sent: BinaryRequest | null = null
    if (roll < 20) {
      const ack = roll < 14
      const bytes = payload()
      const seq = store(topic, bytes)
      sent = req.put(id, topic, bytes, ack)
      announce(topic)
      if (ack) expected.push(rep.putAck(id, seq))
    } else if (roll < 28) {
      const entries = Array.from({ length: 1 + random(4) }, () => entry(topics[random(topics.length)]!, payload()))
      const first = stored.length + 1
      for (const { topic: entryTopic, payload: bytes } of entries) store(entryTopic, bytes)
      for (const { topic: entryTopic } of entries) announce(entryTopic)
      sent = req.putMany(id, entries, roll < 26)
      if (roll < 26) expected.push(rep.putAck(id, first, entries.length))
    } else if (roll < 50 || (roll < 62 && waits.has(topic))) {
      const latest = roll >= 40
      const messages = unread(topic)
      const message = latest ? messages.at(-1) : messages[0]
      sent = latest ? req.getLatest(id, topic) : req.get(id, topic)
      if (message === undefined) expected.push(rep.empty(id))
      else {
        cursors.set(topic, message.seq)
        expected.push(rep.message(id, message.seq, topic, message.payload))
      }
    } else if (roll < 70) {
      sent = req.getWait(id, topic, 60_000)
      const message = unread(topic)[0]
      if (waits.has(topic)) expected.push(rep.error(id, ErrorCode.bad_field, false))
      else if (message !== undefined) {
        cursors.set(topic, message.seq)
        expected.push(rep.message(id, message.seq, topic, message.payload))
      } else waits.set(topic, id)
    } else if (roll < 92) {
      const body = payload()
      sent = req.ping(id, body)
      expected.push(rep.pong(id, body))
    } else if (roll < 94) {
      sent = req.stats(id)
      expected.push({ op: Op.statsReply, requestId: id, body: expect.any(Uint8Array) as unknown as Uint8Array })
    } else if (roll < 97) {
      writer
        .begin(0x40 + random(0x40), 0, id)
        .bytes(payload())
        .end()
      expected.push(rep.error(id, ErrorCode.unknown_action, false))
    } else {
      // A GET with a byte after its topic.
      writer.begin(Op.get, 0, id).topic(topic).u8(0).end()
      expected.push(rep.error(id, ErrorCode.bad_field, false))
    }
    if (sent !== null) writeRequest(writer, sent)
  }
  // Answer the waits still pending, so every request has its reply.
  for (const topic of [...waits.keys()]) {
    const id = 1000 + count + expected.length
    writeRequest(writer, req.put(id, topic, "last", true))
    const seq = store(topic, bytes("last"))
    announce(topic)
    expected.push(rep.putAck(id, seq))
  }
  return { stream: writer.take(), expected, waitAnswers }
}

describe("subscriptions", () => {
  test("several subscribers each get every message once, in order", async () => {
    using server = startTestServer()
    const subscribers = await Promise.all([1, 2, 3].map(() => BinaryClient.connect(server.port)))
    await using publisher = await BinaryClient.connect(server.port)
    for (const subscriber of subscribers) {
      const id = subscriber.nextId()
      expect(await subscriber.call(req.subscribe(id, "news"))).toEqual(rep.ok(id))
    }
    const expected: BinaryReply[] = []
    for (let i = 0; i < 300; i += 3) {
      // A PUT, a PUT_MANY of two, and a put on another topic that no one subscribed to.
      publisher.send(req.put(publisher.nextId(), "news", `m${i}`))
      publisher.send(req.putMany(publisher.nextId(), [entry("news", `m${i + 1}`), entry("other", "x"), entry("news", `m${i + 2}`)]))
      const seq = (i / 3) * 4
      expected.push(
        rep.deliver(seq + 1, "news", `m${i}`),
        rep.deliver(seq + 2, "news", `m${i + 1}`),
        rep.deliver(seq + 4, "news", `m${i + 2}`),
      )
    }
    await sync(publisher)
    for (const subscriber of subscribers) {
      await subscriber.waitForFrames(1 + expected.length)
      await sync(subscriber) // a duplicate push would have come before this PONG
      expect(framesFrom(subscriber, 1)).toEqual(expected)
      await subscriber[Symbol.asyncDispose]()
    }
  })

  test("SUBSCRIBE first delivers the unread messages put since the connection started, then new ones", async () => {
    using server = startTestServer()
    await using publisher = await BinaryClient.connect(server.port)
    publisher.send(req.put(1, "t", "before the subscriber connected"))
    await sync(publisher)
    await using subscriber = await BinaryClient.connect(server.port)
    publisher.send(req.put(2, "t", "read with GET"))
    await sync(publisher)
    expect(await subscriber.call(req.get(1, "t"))).toEqual(rep.message(1, 2, "t", "read with GET"))
    publisher.send(req.put(3, "t", "unread 1"), req.put(4, "t", "unread 2"), req.put(5, "elsewhere", "not subscribed"))
    await sync(publisher)
    subscriber.send(req.subscribe(2, "t"))
    await subscriber.waitForFrames(4)
    publisher.send(req.put(6, "t", "new"))
    await subscriber.waitForFrames(5)
    await sync(subscriber)
    expect(framesFrom(subscriber, 1)).toEqual([
      rep.ok(2),
      rep.deliver(3, "t", "unread 1"),
      rep.deliver(4, "t", "unread 2"),
      rep.deliver(6, "t", "new"),
    ])
    // Delivered messages count as read for GET too: the cursor is the same.
    expect(await subscriber.call(req.get(3, "t"))).toEqual(rep.empty(3))
  })

  test("after UNSUBSCRIBE's OK no DELIVER follows, and unread messages stay for GET", async () => {
    using server = startTestServer()
    await using subscriber = await BinaryClient.connect(server.port)
    await using publisher = await BinaryClient.connect(server.port)
    expect(await subscriber.call(req.subscribe(1, "t"))).toEqual(rep.ok(1))
    publisher.send(req.put(1, "t", "pushed"))
    await subscriber.waitForFrames(2)
    // Pipelined with puts from the same connection: the OK comes after the push of the put before it.
    subscriber.send(req.put(2, "t", "own put"), req.unsubscribe(3, "t"), req.put(4, "t", "after"))
    publisher.send(req.put(5, "t", "also after"))
    await sync(publisher)
    await sync(subscriber)
    expect(framesFrom(subscriber, 0)).toEqual([rep.ok(1), rep.deliver(1, "t", "pushed"), rep.deliver(2, "t", "own put"), rep.ok(3)])
    subscriber.send(req.get(6, "t"), req.get(7, "t"), req.get(8, "t"))
    await subscriber.replyTo(8)
    expect(framesFrom(subscriber, 4)).toEqual([rep.message(6, 3, "t", "after"), rep.message(7, 4, "t", "also after"), rep.empty(8)])
    expect(server.stats().subscribers).toBe(0)
    // Unsubscribing from a topic one is not subscribed to is answered OK too.
    expect(await subscriber.call(req.unsubscribe(9, "never"))).toEqual(rep.ok(9))
  })

  test("subscribing twice is answered OK and changes nothing", async () => {
    using server = startTestServer()
    await using subscriber = await BinaryClient.connect(server.port)
    await using publisher = await BinaryClient.connect(server.port)
    subscriber.send(req.subscribe(1, "t"), req.subscribe(2, "t"))
    await subscriber.waitForFrames(2)
    expect(server.stats().subscribers).toBe(1)
    publisher.send(req.put(1, "t", "once"))
    await sync(publisher)
    await subscriber.waitForFrames(3)
    expect(await subscriber.call(req.subscribe(3, "t"))).toEqual(rep.ok(3))
    await sync(subscriber)
    expect(framesFrom(subscriber, 0)).toEqual([rep.ok(1), rep.ok(2), rep.deliver(1, "t", "once"), rep.ok(3)])
    // One UNSUBSCRIBE ends it.
    expect(await subscriber.call(req.unsubscribe(4, "t"))).toEqual(rep.ok(4))
    expect(server.stats().subscribers).toBe(0)
  })
})

test("STATS returns a JSON object whose counters match the traffic", async () => {
  using server = startTestServer()
  await using client = await BinaryClient.connect(server.port)
  await using subscriber = await BinaryClient.connect(server.port)
  await using json = await TestClient.connect(server.port)
  expect(await subscriber.call(req.subscribe(1, "s"))).toEqual(rep.ok(1))
  client.send(req.put(1, "s", "one"), req.putMany(2, [entry("s", "two"), entry("t", "three")]))
  client.send(req.get(3, "t"), req.get(4, "t"), req.getLatest(5, "s"))
  await client.waitForFrames(3)
  expect(client.frames).toEqual([rep.message(3, 3, "t", "three"), rep.empty(4), rep.message(5, 2, "s", "two")])
  json.send(request({ action: "put", topic: "t", message: "four" }))
  expect(await json.ask({ action: "get", topic: "sync" })).toEqual({ message: "" })
  await subscriber.waitForFrames(3)
  const stats = statsBody(await client.call(req.stats(6)))
  // Deliveries: the GET of "three", the GET_LATEST of "two" (skipping "one"), two pushes.
  const counters = {
    connections: 3,
    connectionsByProtocol: { binary: 2, "json-stream": 1 },
    subscribers: 1,
    puts: 4,
    deliveries: 4,
    storedMessages: 4,
    lastSeq: 4,
    topics: 2,
    topicsReclaimed: 0,
    // Payloads, 100 bytes a message, and topics "t" and "s" (200 bytes and their names).
    storeUsedBytes: 15 + 4 * 100 + 2 * 201,
    // The client's on t and s, the subscriber's on s; the JSON get of the absent "sync" holds none.
    cursors: 3,
    queuedRequests: 0,
    // "one" + "two" + "three" + "four"; delivered: "three", "two", and the pushes "one", "two".
    bytesPut: 15,
    storedBytes: 15,
    bytesDelivered: 14,
    droppedByRetention: 0,
  }
  expect(stats).toEqual({
    ...counters,
    errors: Object.fromEntries(Object.keys(ErrorCode).map((name) => [name, 0])),
    deliveryLatency: { bounds: expect.any(Array), cumulative: expect.any(Array), sum: expect.any(Number), count: 4 },
    maxConnectionBufferedBytes: expect.any(Number),
    bufferedBytes: expect.any(Number),
    maxBufferedBytes: 256 * 1024 * 1024,
    budgetPausedConnections: 0,
    cpuMicros: expect.any(Number),
    bridge: null,
  })
  expect(server.stats()).toMatchObject(counters)
})

describe("bad input", () => {
  test("an unknown opcode and a bad body get non-fatal errors; the connection goes on", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    client.sendBytes(rawFrame(0x42, 0, 1))
    client.sendBytes(rawFrame(0x7f, 0, 2, bytes("a body")))
    client.sendBytes(rawFrame(Op.get, 0x01, 3, fromHex("0001 74")))
    client.sendBytes(rawFrame(Op.getWait, 0, 4, fromHex("00ffffff 0001 74")))
    client.sendBytes(rawFrame(Op.put, 0, 5, fromHex("0009 74")))
    client.send(req.put(6, "t", "fine", true), req.get(7, "t"))
    await client.waitForFrames(7)
    expect(client.frames).toEqual([
      rep.error(1, ErrorCode.unknown_action, false),
      rep.error(2, ErrorCode.unknown_action, false),
      rep.error(3, ErrorCode.bad_field, false),
      rep.error(4, ErrorCode.bad_field, false),
      rep.error(5, ErrorCode.bad_field, false),
      rep.putAck(6, 1),
      rep.message(7, 1, "t", "fine"),
    ])
    expect(client.isClosed).toBe(false)
  })

  test("a frame over --max-message-bytes gets a fatal too_large after the replies before it", async () => {
    using server = startTestServer({ maxMessageBytes: 1024 })
    await using client = await BinaryClient.connect(server.port)
    client.send(req.put(1, "t", "kept", true), req.get(2, "t"))
    client.send(req.put(3, "t", new Uint8Array(2000), true), req.put(4, "after", "never run", true))
    await client.closed
    expect(client.frames).toEqual([rep.putAck(1, 1), rep.message(2, 1, "t", "kept"), rep.error(0, ErrorCode.too_large, true)])
    expect(server.stats().puts).toBe(1)
    await expectServerStillServes(server)
  })

  test("an oversized frame is refused from its length, before its body is sent", async () => {
    using server = startTestServer({ maxMessageBytes: 1024 })
    await using client = await BinaryClient.connect(server.port)
    // Only the header of a 1 MB PUT: the server must not wait for the body.
    client.sendBytes(fromHex("00100000 0200 00000009"))
    await client.closed
    expect(client.frames).toEqual([rep.error(0, ErrorCode.too_large, true)])
    expect(server.stats().maxConnectionBufferedBytes).toBe(0)
  })

  test("a frame length below 6 gets a fatal malformed_frame", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    client.send(req.put(1, "t", "kept", true))
    client.sendBytes(fromHex("00000005 0400 00000002 00"))
    await client.closed
    expect(client.frames).toEqual([rep.putAck(1, 1), rep.error(0, ErrorCode.malformed_frame, true)])
  })

  for (const how of ["end", "terminate"] as const) {
    test(`a client that goes away mid-frame (${how}): the frames before count, the fragment does not`, async () => {
      using server = startTestServer()
      await using reader = await BinaryClient.connect(server.port)
      const writer = await BinaryClient.connect(server.port)
      const fragment = encodeRequests(req.put(2, "t", "never complete")).subarray(0, 15)
      writer.sendBytes(new Uint8Array([...encodeRequests(req.put(1, "t", "complete")), ...fragment]))
      await eventually(() => server.stats().puts === 1 && server.stats().maxConnectionBufferedBytes === 15, "the fragment")
      writer[how]()
      await writer.closed
      await eventually(() => server.stats().connections === 1, "the server to drop the connection")
      reader.send(req.get(1, "t"), req.get(2, "t"))
      await reader.waitForFrames(2)
      expect(reader.frames).toEqual([rep.message(1, 1, "t", "complete"), rep.empty(2)])
    })
  }

  // Corrupted streams on many connections, with a good client served throughout: test/fuzz.test.ts.
})

test("JSON stream, header-framed JSON and binary clients share one port and one topic", async () => {
  using server = startTestServer()
  await using stream = await TestClient.connect(server.port, "json-stream")
  await using header = await TestClient.connect(server.port, "json-header")
  await using binary = await BinaryClient.connect(server.port)
  await using subscriber = await BinaryClient.connect(server.port)
  expect(await subscriber.call(req.subscribe(1, "shared"))).toEqual(rep.ok(1))
  // The JSON clients have sent nothing yet: their protocol is not known.
  await eventually(() => server.stats().connections === 4, "the server to accept every connection")
  expect(server.stats().connectionsByProtocol).toEqual({ undecided: 2, binary: 2 })

  stream.send(request({ action: "put", topic: "shared", message: "from json-stream" }))
  expect(await stream.ask({ action: "get", topic: "sync" })).toEqual({ message: "" })
  expect(await header.ask({ action: "put", topic: "shared", message: "from json-header", ack: true }, "json-header")).toEqual({
    message: "",
    seq: 2,
  })
  expect(await binary.call(req.put(2, "shared", "from binary", true))).toEqual(rep.putAck(2, 3))
  expect(server.stats().connectionsByProtocol).toEqual({ "json-stream": 1, "json-header": 1, binary: 2 })

  await subscriber.waitForFrames(4)
  expect(subscriber.frames.slice(1)).toEqual([
    rep.deliver(1, "shared", "from json-stream"),
    rep.deliver(2, "shared", "from json-header"),
    rep.deliver(3, "shared", "from binary"),
  ])
  const all = [
    { message: "from json-stream", seq: 1 },
    { message: "from json-header", seq: 2 },
    { message: "from binary", seq: 3 },
    { message: "" },
  ]
  stream.sendRequests(Array(4).fill({ action: "get", topic: "shared" }))
  expect((await stream.waitForReplies(5)).slice(1)).toEqual(all)
  header.sendRequests(Array(4).fill({ action: "get", topic: "shared" }), "json-header")
  expect((await header.waitForReplies(5)).slice(1)).toEqual(all)
  binary.send(req.get(3, "shared"), req.get(4, "shared"), req.get(5, "shared"), req.get(6, "shared"))
  await binary.waitForFrames(5)
  expect(binary.frames.slice(1)).toEqual([
    rep.message(3, 1, "shared", "from json-stream"),
    rep.message(4, 2, "shared", "from json-header"),
    rep.message(5, 3, "shared", "from binary"),
    rep.empty(6),
  ])
})
