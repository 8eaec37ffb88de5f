/**
 * Test helpers: a server on an ephemeral port and a raw TCP client that speaks bytes, queues
 * what the kernel does not take, and lets a test wait for replies or for the close event.
 */
import type { Socket } from "bun"
import { Outbound } from "../src/io/outbound.ts"
import type { FrameDecoder } from "../src/protocol/decoder.ts"
import type { ProtocolError } from "../src/protocol/errors.ts"
import { encodeHeader, JsonHeaderDecoder } from "../src/protocol/json-header.ts"
import { JsonStreamDecoder } from "../src/protocol/json-stream.ts"
import { DEFAULT_MAX_MESSAGE_BYTES, type RunningServer, type ServerOptions, startServer } from "../src/start-server.ts"
import { EventWaiter } from "./event-waiter.ts"

export function startTestServer(options: Partial<ServerOptions> = {}): RunningServer & Disposable {
  const server = startServer({
    host: "127.0.0.1",
    port: 0,
    httpPort: 0,
    maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
    allowShutdown: false,
    ...options,
  })
  return Object.assign(server, { [Symbol.dispose]: () => server.stop() })
}

/**
 * Waits for a condition on server-side state, yielding to the event loop between checks so the
 * server's socket handlers run. Bounded by turns of the event loop, not by time.
 */
export async function eventually(condition: () => boolean, what: string, maxTurns = 200_000): Promise<void> {
  for (let turn = 0; turn < maxTurns; turn++) {
    if (condition()) return
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
  throw new Error(`gave up waiting for ${what} after ${maxTurns} event-loop turns`)
}

export type Framing = "json-stream" | "json-header"

export interface Reply {
  message: string
  seq?: number
  missed?: number
  /** The message's topic, in replies to reads of a pattern. */
  topic?: string
  auth?: string
  error?: { code: string; text: string }
}

/**
 * JSON as upstream Python clients send it: `json.dumps` output, with ", " and ": " separators
 * and every non-ASCII character escaped as \uXXXX.
 */
export function pyJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pyJson).join(", ")}]`
  if (typeof value === "object" && value !== null) {
    return `{${Object.entries(value)
      .map(([key, item]) => `${pyJson(key)}: ${pyJson(item)}`)
      .join(", ")}}`
  }
  const json = JSON.stringify(value)
  return json.replace(/[\u0080-\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`)
}

/** A request framed for a protocol generation. */
export function request(value: unknown, framing: Framing = "json-stream"): string {
  const body = pyJson(value)
  return framing === "json-header" ? encodeHeader(Buffer.byteLength(body)) + body : body
}

const utf8 = new TextDecoder()

export class TestClient implements AsyncDisposable {
  readonly replies: Reply[] = []
  readonly closed: Promise<void>
  #chunks: Uint8Array[] = []
  #socket!: Socket<undefined>
  #outbound!: Outbound
  readonly #events = new EventWaiter()
  #decoder: FrameDecoder
  #decodeError: ProtocolError | null = null
  #isClosed = false
  #resolveClosed!: () => void

  private constructor(framing: Framing) {
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve))
    const sink = {
      frame: (body: Uint8Array) => this.replies.push(JSON.parse(utf8.decode(body)) as Reply),
      fail: (error: ProtocolError) => (this.#decodeError = error),
    }
    this.#decoder = framing === "json-header" ? new JsonHeaderDecoder(sink, 1 << 30) : new JsonStreamDecoder(sink, 1 << 30)
  }

  static async connect(port: number, framing: Framing = "json-stream"): Promise<TestClient> {
    const client = new TestClient(framing)
    client.#socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_socket, chunk) => {
          client.#chunks.push(Buffer.from(chunk))
          client.#decoder.push(chunk)
          client.#events.notify()
        },
        drain: () => client.#outbound.writeQueued(),
        close: () => {
          client.#isClosed = true
          client.#resolveClosed()
          client.#events.notify()
        },
        error: () => {},
      },
    })
    client.#outbound = new Outbound(client.#socket)
    return client
  }

  /** Every byte received, for tests that compare exact bytes. */
  get received(): Buffer {
    if (this.#chunks.length !== 1) this.#chunks = [Buffer.concat(this.#chunks)]
    return Buffer.from(this.#chunks[0]!)
  }

  /** Forgets the bytes received so far (replies stay counted). */
  clearReceived(): void {
    this.#chunks = []
  }

  get isClosed(): boolean {
    return this.#isClosed
  }

  send(data: string | Uint8Array): void {
    this.#outbound.send(typeof data === "string" ? Buffer.from(data) : data)
  }

  /** Sends requests as one write. */
  sendRequests(values: unknown[], framing: Framing = "json-stream"): void {
    this.send(values.map((value) => request(value, framing)).join(""))
  }

  /** Resolves once `count` replies have arrived in total; rejects if the connection closes first. */
  async waitForReplies(count: number): Promise<Reply[]> {
    await this.waitUntil(() => this.replies.length >= count, `${count} replies (have ${this.replies.length})`)
    return this.replies
  }

  /** Sends one get-like request and returns its reply. */
  async ask(value: unknown, framing: Framing = "json-stream"): Promise<Reply> {
    const count = this.replies.length + 1
    this.send(request(value, framing))
    return (await this.waitForReplies(count))[count - 1]!
  }

  /** Waits on socket events (data, close) until `condition` holds. */
  async waitUntil(condition: () => boolean, what: string): Promise<void> {
    await this.#events.until(
      condition,
      () =>
        this.#decodeError !== null
          ? `reply stream is malformed: ${this.#decodeError.message}`
          : this.#isClosed
            ? "connection closed"
            : null,
      what,
    )
  }

  /** Stops reading from the socket, like a client that never reads its replies. */
  pauseReading(): void {
    this.#socket.pause()
  }

  resumeReading(): void {
    this.#socket.resume()
  }

  end(): void {
    this.#socket.end()
  }

  /** Closes without a FIN-after-data handshake: the peer sees the connection vanish. */
  terminate(): void {
    this.#socket.terminate()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#isClosed) {
      this.#socket.end()
      await this.closed
    }
  }
}

/**
 * Both doors to WebSocket and HTTP: the HTTP port, and the TCP port (HTTP told apart by its
 * first bytes and relayed). Tests of those protocols run on each.
 */
export const DOORS = [
  { name: "on the HTTP port", portOf: (server: { httpPort: number | null }) => server.httpPort! },
  { name: "on the TCP port", portOf: (server: { port: number }) => server.port },
] as const
