/**
 * `+` and `#` are pattern characters: a put (or a named cursor) on a name that holds one is
 * refused with bad_field on every protocol, and the connection goes on where the protocol
 * allows. A read of such a name is a read of a pattern (test/server/patterns.test.ts), also when
 * a --db file already holds topics with those characters.
 */
import { afterEach, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { MAGIC, Op } from "../../src/protocol/binary/constants.ts"
import { BinaryDecoder } from "../../src/protocol/binary/decoder.ts"
import { FrameWriter } from "../../src/protocol/binary/frame-writer.ts"
import { type BinaryReply, readReply } from "../../src/protocol/binary/reply.ts"
import { ErrorCode } from "../../src/protocol/errors.ts"
import { Store } from "../../src/store/store.ts"
import { BinaryClient } from "../binary-client.ts"
import { entry, rep, req } from "../binary-frames.ts"
import { type Framing, request, startTestServer, TestClient } from "../helpers.ts"
import { WsClient } from "../ws-helpers.ts"

const refusedText = (topic: string, character: string) =>
  `topic ${JSON.stringify(topic)} contains "${character}": "+" and "#" are pattern characters and cannot be part of a topic name`
/** The topics every protocol is tried with, and the character each is refused for. */
const RESERVED: [string, string][] = [
  ["lab/#", "#"],
  ["lab/+/x", "+"],
]
const BAD_FIELD = ErrorCode.bad_field

describe("upstream JSON protocols", () => {
  for (const framing of ["json-stream", "json-header"] as const satisfies Framing[]) {
    test(`${framing}: a put with ack is answered bad_field and the connection goes on`, async () => {
      using server = startTestServer()
      await using client = await TestClient.connect(server.port, framing)
      for (const [topic, character] of RESERVED) {
        expect(await client.ask({ action: "put", topic, message: "m", ack: true }, framing)).toEqual({
          message: "",
          error: { code: "bad_field", text: refusedText(topic, character) },
        })
        // A get on the name is as before: nothing there.
        expect(await client.ask({ action: "get", topic }, framing)).toEqual({ message: "" })
      }
      client.send(request({ action: "put", topic: "lab/x", message: "fine" }, framing))
      expect(await client.ask({ action: "get", topic: "lab/x" }, framing)).toEqual({ message: "fine", seq: 1 })
      expect(client.isClosed).toBe(false)
    })

    test(`${framing}: a put without ack gets the error, then the connection closes, as for any bad put`, async () => {
      using server = startTestServer()
      await using client = await TestClient.connect(server.port, framing)
      client.send(request({ action: "put", topic: "lab/#", message: "m" }, framing))
      await client.closed
      expect(client.replies).toEqual([{ message: "", error: { code: "bad_field", text: refusedText("lab/#", "#") } }])
    })
  }

  test("WebSocket text (upstream 1.x): a put with ack is answered bad_field and the socket stays open", async () => {
    using server = startTestServer()
    await using client = await WsClient.connect(`ws://127.0.0.1:${server.httpPort}/`)
    for (const [topic, character] of RESERVED) {
      expect(JSON.parse(await client.ask({ action: "put", topic, message: "m", ack: true }))).toEqual({
        message: "",
        error: { code: "bad_field", text: refusedText(topic, character) },
      })
    }
    client.send(JSON.stringify({ action: "put", topic: "lab/x", message: "fine" }))
    expect(await client.ask({ action: "get", topic: "lab/x" })).toBe('{"message": "fine"}')
  })
})

describe("binary protocol", () => {
  test("TCP: PUT and PUT_MANY get a non-fatal bad_field; nothing is stored; reads and the connection go on", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    for (const [topic, character] of RESERVED) {
      expect(await client.call(req.put(10, topic, "m", true))).toEqual(rep.error(10, BAD_FIELD, false, refusedText(topic, character)))
      expect(await client.call(req.put(11, topic, "m"))).toEqual(rep.error(11, BAD_FIELD, false, refusedText(topic, character)))
      client.frames.length = 0
    }
    expect(await client.call(req.putMany(12, [entry("lab/x", "a"), entry("lab/+/x", "b")], true))).toEqual(
      rep.error(12, BAD_FIELD, false, refusedText("lab/+/x", "+")),
    )
    expect(await client.call(req.get(13, "lab/#"))).toEqual(rep.empty(13))
    expect(await client.call(req.subscribe(14, "lab/#"))).toEqual(rep.ok(14))
    expect(await client.call(req.put(15, "lab/x", "fine", true))).toEqual(rep.putAck(15, 1))
    expect(server.broker.store.messageCount).toBe(1)
  })

  test("TCP: CURSOR with + or # in its name gets a non-fatal bad_field; a good name then works", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    expect(await client.call(req.cursor(20, "worker#1"))).toEqual(
      rep.error(
        20,
        BAD_FIELD,
        false,
        'cursor name "worker#1" contains "#": "+" and "#" are pattern characters and cannot be part of a cursor name',
      ),
    )
    expect(await client.call(req.cursor(21, "worker+1"))).toEqual(rep.error(21, BAD_FIELD, false))
    expect(await client.call(req.cursor(22, "worker-1"))).toEqual(rep.ok(22))
  })

  test("over WebSocket: PUT gets a non-fatal bad_field and the socket goes on", async () => {
    using server = startTestServer()
    await using client = await WsClient.connect(`ws://127.0.0.1:${server.httpPort}/`)
    const replies: BinaryReply[] = []
    const decoder = new BinaryDecoder(
      { frame: (frame) => replies.push(readReply(frame)), fail: (error) => replies.push(rep.error(0, error.code, true)) },
      1 << 20,
    )
    let decoded = 0
    const waitForReplies = async (count: number): Promise<BinaryReply[]> => {
      while (replies.length < count) {
        await client.waitForMessages(decoded + 1)
        decoder.push(client.messages[decoded++] as Uint8Array)
      }
      return replies
    }
    const writer = new FrameWriter()
    writer.begin(Op.hello, 0, 1).bytes(MAGIC).u8(1).end()
    writer
      .begin(Op.put, 1, 2)
      .topic("lab/#")
      .bytes(new Uint8Array([1]))
      .end()
    writer
      .begin(Op.put, 1, 3)
      .topic("lab/+/x")
      .bytes(new Uint8Array([2]))
      .end()
    writer
      .begin(Op.put, 1, 4)
      .topic("lab/x")
      .bytes(new Uint8Array([3]))
      .end()
    client.send(writer.take())
    expect((await waitForReplies(4)).slice(1)).toEqual([
      rep.error(2, BAD_FIELD, false, refusedText("lab/#", "#")),
      rep.error(3, BAD_FIELD, false, refusedText("lab/+/x", "+")),
      rep.putAck(4, 1),
    ])
  })
})

describe("HTTP API", () => {
  test("POST is refused with 400 bad_field; GET, latest and events on the name answer as before", async () => {
    using server = startTestServer()
    const base = `http://127.0.0.1:${server.httpPort}/topics`
    for (const [topic, character] of RESERVED) {
      const response = await fetch(`${base}/${encodeURIComponent(topic)}`, { method: "POST", body: "m" })
      expect([response.status, await response.json()]).toEqual([400, { error: { code: "bad_field", text: refusedText(topic, character) } }])
      expect((await fetch(`${base}/${encodeURIComponent(topic)}`)).status).toBe(204)
      expect((await fetch(`${base}/${encodeURIComponent(topic)}/latest`)).status).toBe(204)
    }
    const abort = new AbortController()
    const events = await fetch(`${base}/${encodeURIComponent("lab/#")}/events`, { signal: abort.signal })
    expect([events.status, events.headers.get("content-type")]).toEqual([200, "text/event-stream; charset=utf-8"])
    abort.abort()
    const cursor = await fetch(`${base}/lab%2Fx?cursor=${encodeURIComponent("worker#1")}`)
    expect([cursor.status, ((await cursor.json()) as { error: { code: string } }).error.code]).toEqual([400, "bad_field"])
    expect(server.broker.store.messageCount).toBe(0)
  })
})

describe("a --db file that already holds such topics", () => {
  const directories: string[] = []
  afterEach(() => {
    for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true })
  })

  test("opens, its messages can be read on every protocol, and new puts on the name are refused", async () => {
    const directory = mkdtempSync(join(tmpdir(), "dsmq-reserved-"))
    directories.push(directory)
    const db = join(directory, "broker.db")
    {
      // Written as an older server would have: through the store, which checks no names.
      const store = new Store({ path: db })
      // A named cursor from before the messages: it has them all to read.
      store.createNamedReader("reader")
      store.put("a/#", new TextEncoder().encode("old hash"))
      store.put("a/+/b", new TextEncoder().encode("old plus"))
      store.close()
    }
    using server = startTestServer({
      db,
      retention: {
        defaults: { maxAgeMs: 3_600_000, maxMessages: 100, maxBytes: null, policy: "drop-oldest" },
        rules: [{ pattern: "a/#", limits: { maxMessages: 10 } }],
        maxStoreBytes: null,
      },
    })
    expect(server.broker.retention.limitsFor("a/#").maxMessages).toBe(10)
    const base = `http://127.0.0.1:${server.httpPort}/topics`
    const http = await fetch(`${base}/${encodeURIComponent("a/#")}?after=0`)
    expect([http.status, await http.text()]).toEqual([200, "old hash"])
    await using binary = await BinaryClient.connect(server.port)
    expect(await binary.call(req.cursor(2, "reader"))).toEqual(rep.ok(2))
    // A read of "a/#" is a pattern now: it matches both old names, and reads them in put order.
    expect(await binary.call(req.get(3, "a/#"))).toEqual(rep.message(3, 1, "a/#", "old hash"))
    expect(await binary.call(req.get(4, "a/#"))).toEqual(rep.message(4, 2, "a/+/b", "old plus"))
    expect(await binary.call(req.get(5, "a/#"))).toEqual(rep.empty(5))
    expect(await binary.call(req.put(6, "a/#", "new", true))).toEqual(rep.error(6, BAD_FIELD, false, refusedText("a/#", "#")))
    await using json = await TestClient.connect(server.port)
    expect(await json.ask({ action: "get", topic: "a/#" })).toEqual({ message: "" })
    const latest = await fetch(`${base}/${encodeURIComponent("a/+/b")}/latest`)
    expect([latest.status, await latest.text()]).toEqual([200, "old plus"])
    expect(server.broker.store.messageCount).toBe(2)
  })
})
