/**
 * HTTP on the TCP port: a connection that starts like an HTTP request is served by the HTTP
 * port's handlers through the relay (src/net/http-relay.ts). The WebSocket and HTTP API test
 * files run every test on both ports; these are about the relay itself.
 */
import { expect, test } from "bun:test"
import { Op } from "../../src/protocol/binary/constants.ts"
import { BinaryClient } from "../binary-client.ts"
import { req } from "../binary-frames.ts"
import { eventually, request, startTestServer, TestClient } from "../helpers.ts"
import { WsClient } from "../ws-helpers.ts"

const utf8 = new TextDecoder()

/** Sends `parts` as separate writes, a turn of the event loop apart, then half-closes; resolves with all that came back. */
async function exchange(port: number, parts: readonly string[], halfClose = true): Promise<string> {
  const received: string[] = []
  const { promise: closed, resolve } = Promise.withResolvers<void>()
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: true,
    socket: { data: (_socket, chunk) => void received.push(utf8.decode(chunk)), end: () => resolve(), close: () => resolve() },
  })
  for (const part of parts) {
    socket.write(part)
    await new Promise((next) => setImmediate(next))
  }
  if (halfClose) socket.shutdown()
  await closed
  socket.end()
  return received.join("")
}

test("an HTTP request split at every byte is answered as on the HTTP port; the client's FIN ends the connection", async () => {
  using server = startTestServer()
  const healthz = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
  for (let at = 1; at < healthz.length; at++) {
    const answer = await exchange(server.port, [healthz.slice(0, at), healthz.slice(at)])
    expect(answer).toStartWith("HTTP/1.1 200 OK\r\n")
    expect(answer).toEndWith('{"status":"ok"}')
  }
  await eventually(() => server.stats().connections === 0, "every relayed connection to close")
})

test("a WebSocket upgrade split at every byte is accepted on the TCP port", async () => {
  using server = startTestServer()
  const upgrade =
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
  for (let at = 1; at < upgrade.length; at += 7) {
    const answer = await exchange(server.port, [upgrade.slice(0, at), upgrade.slice(at)])
    expect(answer).toStartWith("HTTP/1.1 101 Switching Protocols\r\n")
    expect(answer).toContain("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
  }
})

test("a relayed WebSocket counts once, as a WebSocket, with the server's limits", async () => {
  using server = startTestServer({ limits: { maxConnections: 2 } })
  await using ws = await WsClient.connect(`ws://127.0.0.1:${server.port}/`)
  expect(await ws.ask({ action: "get", topic: "t" })).toBe('{"message": ""}')
  await eventually(() => server.stats().connections === 1, "one connection")
  expect(server.stats().connectionsByProtocol).toEqual({ "websocket-json": 1 })
  await using other = await TestClient.connect(server.port)
  expect(await other.ask({ action: "get", topic: "t" })).toEqual({ message: "" })
  // A third connection passes --max-connections 2: the TCP port refuses it before knowing it is HTTP.
  const refused = await exchange(server.port, ["GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"], false)
  expect(refused).toBe("")
})

test("generation 1, binary and WebSocket clients share the TCP port at the same time", async () => {
  using server = startTestServer()
  await using json = await TestClient.connect(server.port)
  await using binary = await BinaryClient.connect(server.port)
  await using ws = await WsClient.connect(`ws://127.0.0.1:${server.port}/`)
  await using reader = await WsClient.connect(`ws://127.0.0.1:${server.port}/`)
  json.send(request({ action: "put", topic: "shared", message: "from json" }))
  await json.ask({ action: "get", topic: "sync" })
  expect((await binary.call(req.put(2, "shared", "from binary", true))).op).toBe(Op.putAck)
  ws.send(JSON.stringify({ action: "put", topic: "shared", message: "from websocket" }))
  await ws.ask({ action: "get", topic: "sync" })
  for (const message of ["from json", "from binary", "from websocket"]) {
    expect(await reader.ask({ action: "get", topic: "shared" })).toBe(`{"message": "${message}"}`)
  }
  expect(server.stats().connectionsByProtocol).toEqual({ "json-stream": 1, binary: 1, "websocket-json": 2 })
})

test("a permitted shutdown closes upstream WebSockets with 1012 after their replies, then refuses new connections", async () => {
  const server = startTestServer({ allowShutdown: true })
  const url = `ws://127.0.0.1:${server.port}/`
  await using reader = await WsClient.connect(url)
  await using stopper = await WsClient.connect(url)
  expect(await reader.ask({ action: "get", topic: "t" })).toBe('{"message": ""}')
  // A get_wait held at shutdown, and a get behind it, are answered with nothing, as upstream's get() returned "".
  reader.send(JSON.stringify({ action: "get_wait", topic: "t", timeout: 60 }))
  reader.send(JSON.stringify({ action: "get", topic: "t" }))
  await eventually(() => server.stats().queuedRequests === 1, "the get to wait behind the get_wait")
  stopper.send(JSON.stringify({ action: "shutdown", topic: "" }))
  expect(await reader.waitForMessages(3)).toEqual(['{"message": ""}', '{"message": ""}', '{"message": ""}'])
  expect((await reader.closed).code).toBe(1012)
  expect((await stopper.closed).code).toBe(1012)
  await server.stopped
  for (const port of [server.port, server.httpPort!]) {
    expect(Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } })).rejects.toThrow()
  }
})

test("an HTTP client that vanishes mid-request costs nothing; the relay closes with it", async () => {
  using server = startTestServer()
  const socket = await Bun.connect({ hostname: "127.0.0.1", port: server.port, socket: { data() {} } })
  socket.write("POST /topics/t HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nonly part of the body")
  await eventually(() => server.stats().connectionsByProtocol.http === 1, "the relayed connection")
  socket.terminate()
  await eventually(() => server.stats().connections === 0, "the server to let go of it")
  expect(server.stats().puts).toBe(0)
  await using other = await TestClient.connect(server.port)
  expect(await other.ask({ action: "get", topic: "t" })).toEqual({ message: "" })
})
