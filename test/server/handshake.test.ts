/**
 * What a connection may hold before it says who it is: with tokens, one first frame of at most
 * 16 KiB and --auth-timeout to authenticate; without, the timeout for a started first request.
 */
import { expect, test } from "bun:test"
import type { AuthConfig } from "../../src/auth/auth.ts"
import { Op } from "../../src/protocol/binary/constants.ts"
import { ErrorCode } from "../../src/protocol/errors.ts"
import { HANDSHAKE_FRAME_BYTES } from "../../src/server/handshake.ts"
import { BinaryClient } from "../binary-client.ts"
import { rawFrame, req } from "../binary-frames.ts"
import { eventually, request, startTestServer, TestClient } from "../helpers.ts"

const TOKEN = "handshake-token-0123456789"
const auth: AuthConfig = { tokens: [{ name: "lab", token: TOKEN, read: ["#"], write: ["#"] }], anonymousLegacy: null }
/** Short enough for a test, in seconds; the tests wait for the close, not for the time. */
const QUICK = { authTimeoutSeconds: 0.05 }

test("with tokens, a connection that never authenticates is closed after --auth-timeout, with unauthorized", async () => {
  using server = startTestServer({ auth, limits: QUICK })
  await using silent = await BinaryClient.connect(server.port, { hello: false })
  await silent.closed
  await using json = await TestClient.connect(server.port)
  json.send('{"action": "au')
  await json.closed
  expect(json.replies).toEqual([{ message: "", error: { code: "unauthorized", text: "no authentication within 0.05 s" } }])
  await eventually(() => server.stats().connections === 0, "both closed")
})

test("with tokens, a first frame over 16 KiB is refused at once, before it arrives whole", async () => {
  using server = startTestServer({ auth })
  await using client = await BinaryClient.connect(server.port, { hello: false })
  // A HELLO announcing 100 KiB: only its header is sent.
  client.sendBytes(rawFrame(Op.hello, 0, 1, new Uint8Array(100 * 1024)).subarray(0, 10))
  await client.closed
  expect(client.frames.at(-1)).toMatchObject({ op: Op.error, code: ErrorCode.too_large, fatal: true })
})

test("once authenticated, frames up to the maximum are accepted; the deadline is over", async () => {
  using server = startTestServer({ auth, limits: QUICK })
  await using client = await BinaryClient.connect(server.port, { token: TOKEN })
  const big = new Uint8Array(4 * HANDSHAKE_FRAME_BYTES).fill(0x61)
  expect((await client.call(req.put(2, "t", big, true))).op).toBe(Op.putAck)
  // A slow client that did authenticate outlives the deadline (another client's close shows it passed).
  await using late = await BinaryClient.connect(server.port, { hello: false })
  await late.closed
  expect((await client.call(req.ping(3))).op).toBe(Op.pong)
})

test("without tokens, a started first request must finish in time; a connection that sends nothing stays", async () => {
  using server = startTestServer({ limits: QUICK })
  await using idle = await TestClient.connect(server.port)
  await using partial = await TestClient.connect(server.port)
  partial.send('{"action": "get", "to')
  await partial.closed
  expect(partial.replies).toEqual([
    { message: "", error: { code: "malformed_frame", text: "the first request did not arrive whole within 0.05 s" } },
  ])
  // The idle one waited past the deadline and is served.
  expect(await idle.ask({ action: "get", topic: "t" })).toEqual({ message: "" })
  expect(idle.isClosed).toBe(false)
  idle.send(request({ action: "put", topic: "t", message: "x" }))
})
