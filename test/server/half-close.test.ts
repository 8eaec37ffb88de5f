/**
 * A client that sends its requests and then half-closes (shutdown(SHUT_WR), `nc -N`) gets every
 * request run and every reply sent before the server ends the connection: nothing it sent is
 * lost because it stopped sending.
 */
import { expect, test } from "bun:test"
import { Op } from "../../src/protocol/binary/constants.ts"
import { BinaryDecoder } from "../../src/protocol/binary/decoder.ts"
import { readReply } from "../../src/protocol/binary/reply.ts"
import { JsonStreamDecoder } from "../../src/protocol/json-stream.ts"
import { encodeRequests, req } from "../binary-frames.ts"
import { type Framing, request, startTestServer } from "../helpers.ts"

/** Writes `bytes` (waiting for drain as needed), half-closes, and resolves with all the server sent until it closed. */
async function sendThenHalfClose(port: number, bytes: Uint8Array): Promise<Uint8Array> {
  const received: Uint8Array[] = []
  let offset = 0
  let resolveClosed!: () => void
  const closed = new Promise<void>((resolve) => {
    resolveClosed = resolve
  })
  const writeRest = (socket: { write(data: Uint8Array): number; shutdown(): void }) => {
    while (offset < bytes.length) {
      const written = socket.write(bytes.subarray(offset))
      if (written <= 0) return
      offset += written
    }
    socket.shutdown()
  }
  await Bun.connect({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: true,
    socket: {
      open: writeRest,
      drain: writeRest,
      data: (_socket, chunk) => {
        received.push(new Uint8Array(chunk))
      },
      // The server's FIN: it has sent everything.
      end: resolveClosed,
      close: resolveClosed,
    },
  })
  await closed
  return Buffer.concat(received)
}

const PUTS = 20_000

for (const framing of ["json-stream", "json-header"] as const satisfies Framing[]) {
  test(`${framing}: ${PUTS} puts then a half-close: every put is stored`, async () => {
    using server = startTestServer()
    const puts = Array.from({ length: PUTS }, (_, i) => request({ action: "put", topic: "t", message: `m${i}` }, framing)).join("")
    await sendThenHalfClose(server.port, new TextEncoder().encode(puts))
    // The server ends the connection only after it ran them all.
    expect(server.broker.store.lastSeq).toBe(PUTS)
    expect(server.broker.store.messageCount).toBe(PUTS)
  })

  test(`${framing}: gets sent before a half-close are all answered, in order, before the server closes`, async () => {
    using server = startTestServer()
    const gets = Array.from({ length: 300 }, () => request({ action: "get", topic: "t" }, framing))
    const sent = [request({ action: "put", topic: "t", message: "only" }, framing), ...gets].join("")
    // Puts by this client come after its cursor: every get finds the put.
    const bodies: string[] = []
    const decoder = new JsonStreamDecoder(
      { frame: (body) => bodies.push(Buffer.from(body).toString()), fail: (error) => bodies.push(`fail ${error.message}`) },
      1 << 20,
    )
    const received = await sendThenHalfClose(server.port, new TextEncoder().encode(sent))
    if (framing === "json-stream") decoder.push(received)
    else
      bodies.push(
        ...Buffer.from(received)
          .toString()
          .split(/\{"msg_length": \d+\}/)
          .filter((part) => part !== ""),
      )
    expect(bodies).toHaveLength(300)
    expect(JSON.parse(bodies[0]!)).toMatchObject({ message: "only" })
    for (const body of bodies.slice(1)) expect(JSON.parse(body)).toMatchObject({ message: "" })
  })
}

test("json-stream: a get_wait sent before a half-close is answered at once with what is there", async () => {
  using server = startTestServer()
  const sent = [
    request({ action: "put", topic: "w", message: "there" }),
    request({ action: "get_wait", topic: "w", timeout: 3600 }),
    request({ action: "get_wait", topic: "w", timeout: 3600 }),
    request({ action: "get", topic: "x" }),
  ].join("")
  const received = await sendThenHalfClose(server.port, new TextEncoder().encode(sent))
  expect(Buffer.from(received).toString()).toBe('{"message":"there","seq":1}{"message":""}{"message":""}')
})

test("json-stream: a request cut off by the half-close is answered malformed_frame after the whole ones", async () => {
  using server = startTestServer()
  const sent = `${request({ action: "put", topic: "t", message: "whole", ack: true })}{"action": "put", "topic": "t", "mess`
  const received = Buffer.from(await sendThenHalfClose(server.port, new TextEncoder().encode(sent))).toString()
  const [ack, error] = received.split(/(?<=\})(?=\{"message")/)
  expect(JSON.parse(ack!)).toEqual({ message: "", seq: 1 })
  expect(JSON.parse(error!)).toMatchObject({ error: { code: "malformed_frame", text: "the connection ended in the middle of a frame" } })
  expect(server.broker.store.lastSeq).toBe(1)
})

test(`binary: ${PUTS} puts then a half-close: every put is stored, and a ping's reply comes back`, async () => {
  using server = startTestServer()
  const puts = Array.from({ length: PUTS }, (_, i) => req.put(i + 2, "t", `m${i}`))
  const sent = encodeRequests(req.hello(1), ...puts, req.ping(PUTS + 2, "last"))
  const replies: number[] = []
  const decoder = new BinaryDecoder(
    { frame: (frame) => replies.push(readReply(frame).op), fail: (error) => replies.push(-error.code) },
    1 << 20,
  )
  decoder.push(await sendThenHalfClose(server.port, sent))
  expect(server.broker.store.lastSeq).toBe(PUTS)
  expect(replies).toEqual([Op.welcome, Op.pong])
})
