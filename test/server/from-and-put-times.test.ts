/**
 * FROM (read the messages after a seq, as the HTTP API's `after`) and HELLO's PUT_TIMES flag
 * (each MESSAGE and DELIVER carries its put time): what `dsmq get --from` and `dsmq sub
 * --format json` stand on.
 */
import { describe, expect, test } from "bun:test"
import { connect } from "../../src/client.ts"
import { Op } from "../../src/protocol/binary/constants.ts"
import type { BinaryReply } from "../../src/protocol/binary/reply.ts"
import { ErrorCode } from "../../src/protocol/errors.ts"
import { BinaryClient } from "../binary-client.ts"
import { rep, req } from "../binary-frames.ts"
import { startTestServer } from "../helpers.ts"

const BAD_FIELD = ErrorCode.bad_field

function putAtOf(reply: BinaryReply): number | null {
  if (reply.op !== Op.message && reply.op !== Op.deliver) throw new Error(`expected a message, got ${JSON.stringify(reply)}`)
  return reply.putAt
}

describe("FROM", () => {
  test("reads the messages after the seq, those put before the connection included", async () => {
    using server = startTestServer()
    for (const value of ["one", "two", "three"]) server.broker.put("t", new TextEncoder().encode(value))
    await using client = await BinaryClient.connect(server.port)
    expect(await client.call(req.from(2, 1))).toEqual(rep.ok(2))
    expect(await client.call(req.get(3, "t"))).toEqual(rep.message(3, 2, "t", "two"))
    expect(await client.call(req.get(4, "t"))).toEqual(rep.message(4, 3, "t", "three"))
    expect(await client.call(req.get(5, "t"))).toEqual(rep.empty(5))
  })

  test("FROM 0 reads everything kept; a subscription after it catches up from the store, then goes live", async () => {
    using server = startTestServer()
    server.broker.put("lab/a", new TextEncoder().encode("old"))
    await using client = await BinaryClient.connect(server.port)
    expect(await client.call(req.from(2, 0))).toEqual(rep.ok(2))
    expect(await client.call(req.subscribe(3, "lab/#"))).toEqual(rep.ok(3))
    server.broker.put("lab/b", new TextEncoder().encode("new"))
    await client.waitUntil(() => client.frames.filter((frame) => frame.op === Op.deliver).length === 2, "two pushes")
    expect(client.frames.filter((frame) => frame.op === Op.deliver)).toEqual([
      rep.deliver(1, "lab/a", "old"),
      rep.deliver(2, "lab/b", "new"),
    ])
  })

  test("comes before any read, once, and not with CURSOR; the connection goes on", async () => {
    using server = startTestServer()
    await using afterRead = await BinaryClient.connect(server.port)
    expect(await afterRead.call(req.get(2, "t"))).toEqual(rep.empty(2))
    expect(await afterRead.call(req.from(3, 0))).toEqual(
      rep.error(3, BAD_FIELD, false, "CURSOR or FROM must come before any read or subscription, once"),
    )
    expect(await afterRead.call(req.ping(4, "still here"))).toEqual(rep.pong(4, "still here"))

    await using twice = await BinaryClient.connect(server.port)
    expect(await twice.call(req.from(2, 0))).toEqual(rep.ok(2))
    expect(await twice.call(req.from(3, 5))).toEqual(rep.error(3, BAD_FIELD, false))
    expect(await twice.call(req.cursor(4, "worker"))).toEqual(rep.error(4, BAD_FIELD, false))

    await using named = await BinaryClient.connect(server.port)
    expect(await named.call(req.cursor(2, "worker"))).toEqual(rep.ok(2))
    expect(await named.call(req.from(3, 0))).toEqual(rep.error(3, BAD_FIELD, false))
  })

  test("the reader it opens is released with the connection", async () => {
    using server = startTestServer()
    const readersBefore = server.broker.readerCount
    const client = await BinaryClient.connect(server.port)
    expect(await client.call(req.from(2, 0))).toEqual(rep.ok(2))
    expect(server.broker.readerCount).toBe(readersBefore + 1)
    await client[Symbol.asyncDispose]()
    await client.closed
    for (let turn = 0; server.broker.readerCount !== readersBefore; turn++) {
      if (turn > 10_000) throw new Error(`readers: ${server.broker.readerCount}, expected ${readersBefore}`)
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
  })
})

describe("put times", () => {
  test("with PUT_TIMES in HELLO, MESSAGE and DELIVER carry when the message was put", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port, { putTimes: true })
    const before = Date.now()
    expect(await client.call(req.put(2, "t", "x", true))).toEqual(rep.putAck(2, 1))
    const after = Date.now()
    const message = await client.call(req.get(3, "t"))
    const putAt = putAtOf(message)!
    // The server's clock and this one are the same machine's; a second of slack covers rounding.
    expect(putAt).toBeGreaterThan(before - 1000)
    expect(putAt).toBeLessThan(after + 1000)
    expect(message).toEqual(rep.message(3, 1, "t", "x", 0, putAt))
    expect(await client.call(req.subscribe(4, "t"))).toEqual(rep.ok(4))
    server.broker.put("t", new TextEncoder().encode("y"))
    await client.waitUntil(() => client.frames.some((frame) => frame.op === Op.deliver), "a push")
    const pushed = client.frames.find((frame) => frame.op === Op.deliver)!
    expect(putAtOf(pushed)).toBeGreaterThanOrEqual(putAt)
  })

  test("without it, frames are as before: no put time", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    client.send(req.put(2, "t", "x"))
    expect(putAtOf(await client.call(req.get(3, "t")))).toBeNull()
  })

  test("the client asks for them and for a start seq with connect({ putTimes, from })", async () => {
    using server = startTestServer()
    for (const value of ["a", "b"]) server.broker.put("t", new TextEncoder().encode(value))
    await using client = await connect({ port: server.port, from: 1, putTimes: true })
    const message = await client.get("t")
    expect([message?.seq, message?.text(), typeof message?.putAt]).toEqual([2, "b", "number"])
    await using plain = await connect({ port: server.port })
    plain.put("t", "c")
    await plain.ping()
    expect((await plain.get("t"))?.putAt).toBeNull()
    await expect(connect({ port: server.port, from: -1 })).rejects.toThrow("from must be a sequence number")
    await expect(connect({ port: server.port, from: 0, cursor: "x" })).rejects.toThrow("not both")
  })
})
