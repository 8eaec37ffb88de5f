/**
 * WebSocket clients for tests: Bun's own WebSocket (what a browser or an upstream 1.x client
 * does), and a raw one over a TCP socket that can stop reading, like a stuck client.
 */
import type { Socket } from "bun"
import { Outbound } from "../src/io/outbound.ts"
import { EventWaiter } from "./event-waiter.ts"

export interface Closed {
  code: number
  reason: string
}

/** Bun's WebSocket with awaitable messages and close. */
export class WsClient implements AsyncDisposable {
  readonly messages: (string | Uint8Array)[] = []
  readonly closed: Promise<Closed>
  #socket: WebSocket
  #isClosed = false
  readonly #events = new EventWaiter()

  private constructor(socket: WebSocket) {
    this.#socket = socket
    socket.binaryType = "arraybuffer"
    this.closed = new Promise((resolve) => {
      socket.addEventListener("close", (event) => {
        this.#isClosed = true
        resolve({ code: event.code, reason: event.reason })
        this.#events.notify()
      })
    })
    socket.addEventListener("message", (event) => {
      this.messages.push(typeof event.data === "string" ? event.data : new Uint8Array(event.data as ArrayBuffer))
      this.#events.notify()
    })
  }

  static async connect(url: string): Promise<WsClient> {
    const socket = new WebSocket(url)
    const client = new WsClient(socket)
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve(), { once: true })
      socket.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)), { once: true })
    })
    return client
  }

  send(data: string | Uint8Array): void {
    this.#socket.send(data)
  }

  /** Sends a text request and resolves with the next message (upstream 1.x's request/reply). */
  async ask(request: unknown): Promise<string> {
    const count = this.messages.length + 1
    this.send(JSON.stringify(request))
    await this.waitForMessages(count)
    return this.messages[count - 1] as string
  }

  async waitForMessages(count: number): Promise<(string | Uint8Array)[]> {
    await this.#events.until(
      () => this.messages.length >= count,
      () => (this.#isClosed ? "closed" : null),
      `${count} messages (have ${this.messages.length})`,
    )
    return this.messages
  }

  close(): void {
    this.#socket.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#isClosed) {
      this.#socket.close()
      await this.closed
    }
  }
}

/**
 * A WebSocket client written on a raw TCP socket: it sends masked frames as RFC 6455 asks,
 * decodes the server's frames, and can pause reading to play a client that stops reading.
 */
export class RawWsClient implements AsyncDisposable {
  readonly texts: string[] = []
  /** Binary messages received (copies). */
  readonly binaries: Uint8Array[] = []
  #socket!: Socket<undefined>
  #outbound!: Outbound
  #buffer = Buffer.alloc(0)
  #upgraded = false
  readonly #events = new EventWaiter()
  #isClosed = false

  static async connect(port: number): Promise<RawWsClient> {
    const client = new RawWsClient()
    client.#socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_socket, chunk) => client.#onData(chunk),
        drain: () => client.#outbound.writeQueued(),
        close: () => {
          client.#isClosed = true
          client.#events.notify()
        },
        error: () => {},
      },
    })
    client.#outbound = new Outbound(client.#socket)
    client.#outbound.send(
      Buffer.from(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      ),
    )
    await client.#waitUntil(() => client.#upgraded, "the upgrade")
    return client
  }

  /** Sends text messages in one write. */
  sendTexts(texts: string[]): void {
    this.#outbound.send(Buffer.concat(texts.map((text) => maskedFrame(0x1, Buffer.from(text)))))
  }

  /** Sends one binary message. */
  sendBinary(bytes: Uint8Array): void {
    this.#outbound.send(maskedFrame(0x2, bytes))
  }

  async waitForBinaries(count: number): Promise<Uint8Array[]> {
    await this.#waitUntil(() => this.binaries.length >= count, `${count} binary messages (have ${this.binaries.length})`)
    return this.binaries
  }

  pauseReading(): void {
    this.#socket.pause()
  }

  resumeReading(): void {
    this.#socket.resume()
  }

  async waitForTexts(count: number): Promise<string[]> {
    await this.#waitUntil(() => this.texts.length >= count, `${count} messages (have ${this.texts.length})`)
    return this.texts
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#socket.terminate()
  }

  #onData(chunk: Uint8Array): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk])
    if (!this.#upgraded) {
      const end = this.#buffer.indexOf("\r\n\r\n")
      if (end < 0) return
      if (!this.#buffer.subarray(0, end).toString().startsWith("HTTP/1.1 101")) throw new Error("upgrade refused")
      this.#upgraded = true
      this.#buffer = this.#buffer.subarray(end + 4)
    }
    // Server frames are unmasked: FIN/opcode, length (7 bits, or 126 + u16, or 127 + u64), payload.
    for (;;) {
      if (this.#buffer.length < 2) break
      const opcode = this.#buffer[0]! & 0x0f
      let length = this.#buffer[1]! & 0x7f
      let offset = 2
      if (length === 126) {
        if (this.#buffer.length < 4) break
        length = this.#buffer.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (this.#buffer.length < 10) break
        length = Number(this.#buffer.readBigUInt64BE(2))
        offset = 10
      }
      if (this.#buffer.length < offset + length) break
      if (opcode === 0x1) this.texts.push(this.#buffer.subarray(offset, offset + length).toString())
      if (opcode === 0x2) this.binaries.push(new Uint8Array(this.#buffer.subarray(offset, offset + length)))
      this.#buffer = this.#buffer.subarray(offset + length)
    }
    this.#events.notify()
  }

  async #waitUntil(condition: () => boolean, what: string): Promise<void> {
    await this.#events.until(condition, () => (this.#isClosed ? "closed" : null), what)
  }
}

function maskedFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const mask = [0x12, 0x34, 0x56, 0x78]
  const header =
    payload.length < 126 ? [0x80 | opcode, 0x80 | payload.length] : [0x80 | opcode, 0x80 | 126, payload.length >> 8, payload.length & 0xff]
  const frame = new Uint8Array(header.length + 4 + payload.length)
  frame.set(header)
  frame.set(mask, header.length)
  for (let i = 0; i < payload.length; i++) frame[header.length + 4 + i] = payload[i]! ^ mask[i % 4]!
  return frame
}
