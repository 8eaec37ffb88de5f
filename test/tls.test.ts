/** --tls-cert / --tls-key: TLS on the TCP port, HTTPS and WSS on the HTTP port. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { connect } from "../src/client.ts"
import { parseArguments } from "../src/options.ts"
import { eventually, startTestServer } from "./helpers.ts"
import { makeSelfSignedCertificate } from "./self-signed.ts"
import { spawnServer } from "./server-process.ts"

let directory = ""
let cert = ""
let key = ""

beforeAll(() => {
  // A throwaway self-signed certificate for 127.0.0.1, made for this run.
  directory = mkdtempSync(join(tmpdir(), "dsmq-tls-"))
  makeSelfSignedCertificate(directory)
  cert = readFileSync(join(directory, "cert.pem"), "utf8")
  key = readFileSync(join(directory, "key.pem"), "utf8")
})

afterAll(() => rmSync(directory, { recursive: true, force: true }))

describe("TLS", () => {
  test("the client speaks the binary protocol over TLS, verifying the certificate", async () => {
    using server = startTestServer({ tls: { cert, key } })
    await using client = await connect({ port: server.port, retries: 0, tls: { ca: cert } })
    expect(await client.putAck("t", "secret")).toBe(1)
    expect((await client.getLatest("t"))?.text()).toBe("secret")
  })

  test("upstream JSON over TLS, HTTPS and WSS share one broker", async () => {
    using server = startTestServer({ tls: { cert, key } })
    // Upstream JSON on a TLS socket: one request, one reply at a time.
    let onReply: ((text: string) => void) | null = null
    const handshake = Promise.withResolvers<void>()
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port: server.port,
      tls: { ca: cert },
      socket: {
        data: (_socket, chunk) => onReply?.(chunk.toString()),
        // Bun's write does not buffer: before the handshake it would take nothing.
        handshake: (_socket, success) => (success ? handshake.resolve() : handshake.reject(new Error("TLS handshake failed"))),
      },
    })
    await handshake.promise
    const ask = (value: unknown): Promise<unknown> => {
      const { promise, resolve } = Promise.withResolvers<string>()
      onReply = resolve
      socket.write(JSON.stringify(value))
      return promise.then((text) => JSON.parse(text))
    }
    expect(await ask({ action: "put", topic: "t", message: "over tls", ack: true })).toEqual({ message: "", seq: 1 })
    const posted = await fetch(`https://127.0.0.1:${server.httpPort}/topics/t`, { method: "POST", body: "over https", tls: { ca: cert } })
    expect(await posted.json()).toEqual({ topic: "t", seq: 2 })
    expect(await ask({ action: "get", topic: "t" })).toEqual({ message: "over tls", seq: 1 })
    expect(await ask({ action: "get", topic: "t" })).toEqual({ message: "over https", seq: 2 })
    socket.end()

    // An upstream 1.x client over WSS (Bun's WebSocket takes TLS options as a second argument).
    const ws = new WebSocket(`wss://127.0.0.1:${server.httpPort}/`, { tls: { ca: cert } } as unknown as string[])
    await new Promise((opened, failed) => {
      ws.onopen = opened
      ws.onerror = failed
    })
    const { promise: message, resolve: got } = Promise.withResolvers<string>()
    ws.onmessage = (event) => got(String(event.data))
    await fetch(`https://127.0.0.1:${server.httpPort}/topics/t`, { method: "POST", body: "for wss", tls: { ca: cert } })
    ws.send(JSON.stringify({ action: "get", topic: "t" }))
    expect(await message).toBe('{"message": "for wss"}')
    ws.close()
  })

  test("HTTPS and WSS on the TCP port too: the TLS port relays HTTP after decrypting it", async () => {
    using server = startTestServer({ tls: { cert, key } })
    const posted = await fetch(`https://127.0.0.1:${server.port}/topics/t`, { method: "POST", body: "over https", tls: { ca: cert } })
    expect(await posted.json()).toEqual({ topic: "t", seq: 1 })
    const ws = new WebSocket(`wss://127.0.0.1:${server.port}/`, { tls: { ca: cert } } as unknown as string[])
    await new Promise((opened, failed) => {
      ws.onopen = opened
      ws.onerror = failed
    })
    const { promise: message, resolve: got } = Promise.withResolvers<string>()
    ws.onmessage = (event) => got(String(event.data))
    await fetch(`https://127.0.0.1:${server.port}/topics/t`, { method: "POST", body: "for wss", tls: { ca: cert } })
    ws.send(JSON.stringify({ action: "get", topic: "t" }))
    expect(await message).toBe('{"message": "for wss"}')
    ws.close()
  })

  test("a plaintext client on the TLS port fails its handshake; the server serves others", async () => {
    using server = startTestServer({ tls: { cert, key } })
    const plain = await Bun.connect({ hostname: "127.0.0.1", port: server.port, socket: { data() {}, close() {}, error() {} } })
    plain.write(JSON.stringify({ action: "get", topic: "t" }))
    await eventually(() => server.stats().connections === 0, "the server to drop the plaintext client")
    await using client = await connect({ port: server.port, retries: 0, tls: { ca: cert } })
    await client.ping()
  })

  test("a client that does not trust the certificate refuses the server", async () => {
    using server = startTestServer({ tls: { cert, key } })
    await expect(connect({ port: server.port, retries: 0, tls: true })).rejects.toThrow()
  })

  test("the entry point takes --tls-cert and --tls-key and prints tls:// and https:// addresses", async () => {
    expect(() => parseArguments(["--tls-cert", join(directory, "cert.pem")])).toThrow("go together")
    expect(() => parseArguments(["--tls-cert", `${join(directory, "key.pem")}.missing`, "--tls-key", join(directory, "key.pem")])).toThrow(
      "--tls-cert",
    )
    await using server = await spawnServer([
      "--port",
      "0",
      "--http-port",
      "0",
      "--tls-cert",
      join(directory, "cert.pem"),
      "--tls-key",
      join(directory, "key.pem"),
    ])
    expect(server.firstLine).toMatch(/^dsmq listening on tls:\/\/127\.0\.0\.1:\d+, https:\/\/127\.0\.0\.1:\d+ \(WebSocket wss:/)
    await using client = await connect({ port: server.port, retries: 0, tls: { ca: cert } })
    await client.ping()
  })
})
