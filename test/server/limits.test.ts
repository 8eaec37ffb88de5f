/** Per-connection and server-wide limits: each has a default, a flag and a clear error. */
import { expect, test } from "bun:test"
import { connect, DsmqError } from "../../src/client.ts"
import { parseArguments } from "../../src/options.ts"
import { Op } from "../../src/protocol/binary/constants.ts"
import { DEFAULT_LIMITS } from "../../src/start-server.ts"
import { BinaryClient } from "../binary-client.ts"
import { req } from "../binary-frames.ts"
import { eventually, request, startTestServer, TestClient } from "../helpers.ts"
import { WsClient } from "../ws-helpers.ts"

test("connections past --max-connections are closed at once; the others keep working", async () => {
  const logged: string[] = []
  using server = startTestServer({ limits: { maxConnections: 2 }, log: (line) => logged.push(line) })
  await using first = await TestClient.connect(server.port)
  await using second = await TestClient.connect(server.port)
  const third = await TestClient.connect(server.port)
  await third.closed
  const upgrade = await fetch(`http://127.0.0.1:${server.httpPort}/`, {
    headers: {
      Upgrade: "websocket",
      Connection: "Upgrade",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version": "13",
    },
  })
  expect(upgrade.status).toBe(503)
  expect(server.stats().errors.limit_exceeded).toBe(2)
  expect(logged.some((line) => line.includes("at the limit of 2 connections"))).toBe(true)
  expect(await first.ask({ action: "get", topic: "t" })).toEqual({ message: "" })
  await second[Symbol.asyncDispose]()
  await eventually(() => server.stats().connections === 1, "a place to free up")
  await using ws = await WsClient.connect(`ws://127.0.0.1:${server.httpPort}/`)
  expect(await ws.ask({ action: "get", topic: "t" })).toBe('{"message": ""}')
})

test("subscriptions past --max-subscriptions get limit_exceeded; the connection goes on", async () => {
  using server = startTestServer({ limits: { maxSubscriptions: 2 } })
  await using client = await connect({ port: server.port, retries: 0 })
  await client.subscribe("a")
  await client.subscribe("b")
  const refused = await client.subscribe("c").catch((error: unknown) => error)
  expect(refused).toBeInstanceOf(DsmqError)
  expect(refused).toMatchObject({ codeName: "limit_exceeded", code: 14 })
  await client.ping()
})

test("GET_WAITs past --max-pending-waits get limit_exceeded; answered ones free their place", async () => {
  using server = startTestServer({ limits: { maxPendingWaits: 2 } })
  await using client = await BinaryClient.connect(server.port)
  client.send(req.getWait(1, "a", 60_000), req.getWait(2, "b", 60_000), req.getWait(3, "c", 60_000))
  await client.waitForFrames(1)
  expect(client.frames[0]).toMatchObject({ op: Op.error, requestId: 3, code: 14, fatal: false })
  server.broker.put("a", new TextEncoder().encode("x"))
  await client.waitForFrames(2)
  client.send(req.getWait(4, "c", 0))
  await client.waitForFrames(3)
  expect(client.frames.slice(1).map((frame) => frame.requestId)).toEqual([1, 4])
})

test("topics with control characters are refused on every protocol", async () => {
  using server = startTestServer()
  await using json = await TestClient.connect(server.port)
  expect(await json.ask({ action: "get", topic: "bad\ntopic" })).toMatchObject({ error: { code: "bad_field" } })
  await using binary = await connect({ port: server.port, retries: 0 })
  expect(await binary.get("tab\there").catch((error: unknown) => (error as DsmqError).codeName)).toBe("bad_field")
  const http = await fetch(`http://127.0.0.1:${server.httpPort}/topics/a%00b`)
  expect(http.status).toBe(400)
  json.send(request({ action: "put", topic: "fine/topic", message: "ok" }))
  expect(await json.ask({ action: "get", topic: "fine/topic" })).toMatchObject({ message: "ok" })
})

test("limits have defaults and flags", () => {
  expect(DEFAULT_LIMITS).toEqual({
    maxConnections: 1024,
    maxOutboundBytes: 4 * 1024 * 1024,
    maxSubscriptions: 1024,
    maxPendingWaits: 1024,
    maxCursors: 100_000,
    maxBufferedBytes: 256 * 1024 * 1024,
    budgetPauseMs: 30_000,
    authTimeoutSeconds: 10,
  })
  expect(
    parseArguments(["--max-connections", "10", "--max-outbound-bytes", "1MiB", "--max-subscriptions", "5", "--max-pending-waits", "7"]),
  ).toMatchObject({
    options: { limits: { maxConnections: 10, maxOutboundBytes: 1024 * 1024, maxSubscriptions: 5, maxPendingWaits: 7 } },
  })
  expect(() => parseArguments(["--max-outbound-bytes", "1KiB"])).toThrow("--max-outbound-bytes must be a size from 64KiB")
  expect(() => parseArguments(["--max-connections", "0"])).toThrow("--max-connections must be a whole number from 1")
})
