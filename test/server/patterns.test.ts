/**
 * Wildcard reads: a name with `+` (one level) or `#` (everything below, only as the last level;
 * `lab/#` also matches `lab`) given for reading is a pattern, on every TCP protocol. Messages
 * come in put order across the matching topics, each naming its topic.
 */
import { describe, expect, test } from "bun:test"
import type { AuthConfig } from "../../src/auth/auth.ts"
import { Op } from "../../src/protocol/binary/constants.ts"
import { BinaryDecoder } from "../../src/protocol/binary/decoder.ts"
import type { BinaryReply } from "../../src/protocol/binary/reply.ts"
import { ErrorCode } from "../../src/protocol/errors.ts"
import { BinaryClient } from "../binary-client.ts"
import { encodeRequests, entry, readReplyCopy, rep, req } from "../binary-frames.ts"
import { eventually, request, startTestServer, TestClient } from "../helpers.ts"
import { WsClient } from "../ws-helpers.ts"

const LAB = "lab-token-0123456789"
const labOnly: AuthConfig = { tokens: [{ name: "lab", token: LAB, read: ["lab/#"], write: ["#"] }], anonymousLegacy: null }

/** Puts `[topic, message]` pairs in order through one json-stream client, and waits until they are stored. */
async function putAll(port: number, puts: readonly (readonly [string, string])[]): Promise<void> {
  await using writer = await TestClient.connect(port)
  writer.sendRequests(puts.map(([topic, message]) => ({ action: "put", topic, message })))
  await writer.ask({ action: "get", topic: "sync" })
}

const delivered = (client: BinaryClient): [string, string][] =>
  client.frames.flatMap((frame): [string, string][] =>
    frame.op === Op.deliver ? [[frame.topic, Buffer.from(frame.payload).toString()]] : [],
  )

describe("binary SUBSCRIBE on a pattern", () => {
  test("pushes every matching put, in put order, each naming its topic; not the others", async () => {
    using server = startTestServer()
    await using subscriber = await BinaryClient.connect(server.port)
    expect(await subscriber.call(req.subscribe(2, "lab/#"))).toEqual(rep.ok(2))
    await putAll(server.port, [
      ["lab/a", "1"],
      ["labx/a", "no"],
      ["lab/b/c", "2"],
      ["lab", "3"],
      ["office/lab", "no"],
      ["lab/a", "4"],
    ])
    await subscriber.waitUntil(() => delivered(subscriber).length === 4, "four pushes")
    expect(delivered(subscriber)).toEqual([
      ["lab/a", "1"],
      ["lab/b/c", "2"],
      ["lab", "3"],
      ["lab/a", "4"],
    ])
  })

  test("what was put before the subscription (after the connection opened) comes first, from the store, in put order across topics", async () => {
    using server = startTestServer()
    await using subscriber = await BinaryClient.connect(server.port)
    const puts = Array.from({ length: 30 }, (_, i): [string, string] => [`lab/${["x", "y", "z"][i % 3]}`, `${i}`])
    await putAll(server.port, puts)
    expect(await subscriber.call(req.subscribe(2, "lab/+"))).toEqual(rep.ok(2))
    // A topic that appears only now is included from its first message.
    await putAll(server.port, [["lab/new", "30"]])
    await subscriber.waitUntil(() => delivered(subscriber).length === 31, "31 pushes")
    expect(delivered(subscriber)).toEqual([...puts, ["lab/new", "30"]])
  })

  test("+ in the middle matches one level only", async () => {
    using server = startTestServer()
    await using subscriber = await BinaryClient.connect(server.port)
    await subscriber.call(req.subscribe(2, "lab/+/temp"))
    await putAll(server.port, [
      ["lab/a/temp", "yes"],
      ["lab/a/b/temp", "no"],
      ["lab/temp", "no"],
      ["lab/b/temp", "yes too"],
    ])
    await subscriber.waitUntil(() => delivered(subscriber).length === 2, "two pushes")
    expect(delivered(subscriber)).toEqual([
      ["lab/a/temp", "yes"],
      ["lab/b/temp", "yes too"],
    ])
  })

  test("a topic matched by two subscriptions of one connection is delivered once", async () => {
    using server = startTestServer()
    await using subscriber = await BinaryClient.connect(server.port)
    await subscriber.call(req.subscribe(2, "lab/a"))
    await subscriber.call(req.subscribe(3, "lab/#"))
    await putAll(server.port, [
      ["lab/a", "1"],
      ["lab/b", "2"],
    ])
    await subscriber.waitUntil(() => delivered(subscriber).length >= 2, "two pushes")
    expect(await subscriber.call(req.ping(4))).toMatchObject({ op: Op.pong })
    expect(delivered(subscriber)).toEqual([
      ["lab/a", "1"],
      ["lab/b", "2"],
    ])
  })

  test("GET and GET_WAIT on a pattern read the oldest unread matching message, naming its topic", async () => {
    using server = startTestServer()
    await using reader = await BinaryClient.connect(server.port)
    await putAll(server.port, [
      ["lab/b", "first"],
      ["lab/a", "second"],
    ])
    expect(await reader.call(req.get(2, "lab/#"))).toEqual(rep.message(2, 1, "lab/b", "first"))
    expect(await reader.call(req.get(3, "lab/#"))).toEqual(rep.message(3, 2, "lab/a", "second"))
    expect(await reader.call(req.get(4, "lab/#"))).toEqual(rep.empty(4))
    const waiting = reader.call(req.getWait(5, "lab/#", 30_000))
    await putAll(server.port, [
      ["other", "no"],
      ["lab/c/d", "third"],
    ])
    expect(await waiting).toEqual(rep.message(5, 4, "lab/c/d", "third"))
  })

  test("malformed patterns are refused with bad_field; the connection goes on", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    for (const [id, pattern] of [
      [2, "a#b"],
      [3, "a/#/b"],
      [4, "a+/b"],
    ] as const) {
      const reply = await client.call(req.subscribe(id, pattern))
      expect(reply).toMatchObject({ op: Op.error, code: ErrorCode.bad_field })
    }
    expect(await client.call(req.get(5, "a/#"))).toEqual(rep.empty(5))
  })
})

describe("JSON get on a pattern", () => {
  test("every reader gets every matching message once, in put order, with its topic", async () => {
    using server = startTestServer()
    await using first = await TestClient.connect(server.port)
    await using second = await TestClient.connect(server.port, "json-header")
    await putAll(server.port, [
      ["lab/a", "1"],
      ["lab/b/c", "2"],
      ["labx/a", "no"],
      ["lab/a", "3"],
    ])
    for (const [reader, framing] of [
      [first, "json-stream"],
      [second, "json-header"],
    ] as const) {
      const replies = []
      for (let i = 0; i < 4; i++) replies.push(await reader.ask({ action: "get", topic: "lab/#" }, framing))
      expect(replies).toEqual([
        { message: "1", seq: 1, topic: "lab/a" },
        { message: "2", seq: 2, topic: "lab/b/c" },
        { message: "3", seq: 4, topic: "lab/a" },
        { message: "" },
      ])
    }
  })

  test("get_latest on a pattern answers the newest matching message and marks the older ones read", async () => {
    using server = startTestServer()
    await using reader = await TestClient.connect(server.port)
    await putAll(server.port, [
      ["lab/a", "old"],
      ["lab/b", "newest"],
      ["other", "x"],
    ])
    expect(await reader.ask({ action: "get_latest", topic: "lab/+" })).toEqual({ message: "newest", seq: 2, topic: "lab/b" })
    expect(await reader.ask({ action: "get", topic: "lab/a" })).toEqual({ message: "" })
    expect(await reader.ask({ action: "get", topic: "other" })).toMatchObject({ message: "x" })
  })

  test("get_wait on a pattern waits for the first matching put", async () => {
    using server = startTestServer()
    await using reader = await TestClient.connect(server.port)
    const reply = reader.ask({ action: "get_wait", topic: "lab/#", timeout: 30 })
    await putAll(server.port, [
      ["office", "no"],
      ["lab/x", "yes"],
    ])
    expect(await reply).toEqual({ message: "yes", seq: 2, topic: "lab/x" })
  })

  test("a malformed pattern is answered bad_field and the connection goes on", async () => {
    using server = startTestServer()
    await using reader = await TestClient.connect(server.port)
    expect(await reader.ask({ action: "get", topic: "lab/#/x" })).toMatchObject({
      error: { code: "bad_field", text: 'pattern "lab/#/x": "#" must be the last level (it stands for everything below)' },
    })
    expect(await reader.ask({ action: "get", topic: "lab" })).toEqual({ message: "" })
  })
})

describe("permissions", () => {
  test("a pattern some readable topic matches is accepted and delivers only readable topics; one none can match is forbidden", async () => {
    using server = startTestServer({ auth: labOnly })
    await using subscriber = await BinaryClient.connect(server.port, { token: LAB })
    expect(await subscriber.call(req.subscribe(2, "#"))).toEqual(rep.ok(2))
    expect(await subscriber.call(req.subscribe(3, "other/#"))).toMatchObject({ op: Op.error, code: ErrorCode.forbidden })
    await using writer = await TestClient.connect(server.port)
    writer.send(request({ action: "auth", token: LAB }))
    writer.sendRequests([
      { action: "put", topic: "office", message: "hidden" },
      { action: "put", topic: "lab/a", message: "seen" },
    ])
    await writer.ask({ action: "get", topic: "lab/sync" })
    await subscriber.waitUntil(() => delivered(subscriber).length === 1, "one push")
    expect(await subscriber.call(req.get(4, "#"))).toEqual(rep.empty(4))
    expect(delivered(subscriber)).toEqual([["lab/a", "seen"]])
    await eventually(() => server.stats().subscribers === 1, "one subscription")
  })
})

test("a WebSocket binary client subscribes to a pattern as a TCP client does", async () => {
  using server = startTestServer()
  await using ws = await WsClient.connect(`ws://127.0.0.1:${server.port}/`)
  ws.send(encodeRequests(req.hello(1), req.subscribe(2, "lab/+")))
  await ws.waitForMessages(1)
  await putAll(server.port, [
    ["lab/x", "over websocket"],
    ["other", "no"],
  ])
  const frames: BinaryReply[] = []
  const decoder = new BinaryDecoder({ frame: (frame) => void frames.push(readReplyCopy(frame)), fail: () => {} }, 1 << 20)
  for (let i = 0; i < 1000 && !frames.some((frame) => frame.op === Op.deliver); i++) {
    await ws.waitForMessages(i + 1)
    decoder.push(ws.messages[i] as Uint8Array)
  }
  expect(frames.filter((frame) => frame.op === Op.deliver)).toEqual([rep.deliver(1, "lab/x", "over websocket")])
})

test("a stalled lab/# subscriber is caught up from the store in put order across three topics, nothing lost", async () => {
  using server = startTestServer()
  const seen: [number, string][] = []
  const problems: string[] = []
  await using slow = await BinaryClient.connect(server.port, {
    keepPushes: false,
    onFrame: (reply) => {
      if (reply.op !== Op.deliver) return
      if (seen.length > 0 && reply.seq <= seen[seen.length - 1]![0]) problems.push(`seq ${reply.seq} after ${seen[seen.length - 1]![0]}`)
      seen.push([reply.seq, reply.topic])
    },
  })
  expect(await slow.call(req.subscribe(2, "lab/#"))).toEqual(rep.ok(2))
  slow.pause()
  await using publisher = await BinaryClient.connect(server.port)
  const total = 30_000
  const topics = ["lab/a", "lab/b/c", "lab"]
  const payload = new Uint8Array(300).fill(0x61)
  for (let start = 0; start < total; start += 1000) {
    const id = publisher.nextId()
    const entries = Array.from({ length: 1000 }, (_, k) => entry(topics[(start + k) % 3]!, payload))
    expect((await publisher.call(req.putMany(id, entries, true))).op).toBe(Op.putAck)
  }
  // About 9 MiB of pushes: past the outbound cap, so the rest waits in the store.
  await eventually(() => server.stats().maxConnectionBufferedBytes >= 4 * 1024 * 1024, "the subscriber to back up")
  slow.resume()
  await slow.waitUntil(() => seen.length === total, `${total} deliveries (have ${seen.length})`)
  expect(problems).toEqual([])
  expect(seen.map(([seq]) => seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1))
  expect(seen.slice(0, 4).map(([, topic]) => topic)).toEqual(["lab/a", "lab/b/c", "lab", "lab/a"])
})

test("a pattern subscriber behind retention is told how many it missed, per topic", async () => {
  using server = startTestServer({
    retention: { defaults: { maxMessages: 2, maxBytes: null, maxAgeMs: null, policy: "drop-oldest" }, rules: [], maxStoreBytes: null },
  })
  await using reader = await BinaryClient.connect(server.port)
  await putAll(server.port, [
    ["lab/a", "a1"],
    ["lab/b", "b1"],
    ["lab/a", "a2"],
    ["lab/a", "a3"],
    ["lab/a", "a4"],
  ])
  // lab/a kept a3 and a4 (a1, a2 dropped); lab/b kept b1.
  expect(await reader.call(req.get(2, "lab/#"))).toEqual(rep.message(2, 2, "lab/b", "b1"))
  expect(await reader.call(req.get(3, "lab/#"))).toEqual(rep.message(3, 4, "lab/a", "a3", 2))
  expect(await reader.call(req.get(4, "lab/#"))).toEqual(rep.message(4, 5, "lab/a", "a4"))
})
