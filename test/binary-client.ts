/**
 * A raw binary-protocol test client: it sends frames built with FrameWriter, queues what the
 * kernel does not take and writes it from `drain`, decodes every frame the server sends with
 * BinaryDecoder + readReply, and lets a test wait for frames or for the close by awaiting
 * socket events (never time).
 */
import type { Socket } from "bun"
import { Outbound } from "../src/io/outbound.ts"
import { Op } from "../src/protocol/binary/constants.ts"
import { BinaryDecoder } from "../src/protocol/binary/decoder.ts"
import { FrameWriter } from "../src/protocol/binary/frame-writer.ts"
import { type BinaryReply, readReply } from "../src/protocol/binary/reply.ts"
import type { BinaryRequest } from "../src/protocol/binary/request.ts"
import type { ProtocolError } from "../src/protocol/errors.ts"
import { detachReply, writeRequest } from "./binary-frames.ts"
import { EventWaiter } from "./event-waiter.ts"

export interface BinaryClientOptions {
  /** Send HELLO and wait for its WELCOME before `connect` resolves (default true). */
  readonly hello?: boolean
  /**
   * Keep a copy of every DELIVER push in `frames` (default true). Long streams turn this off
   * and check each push in `onFrame` instead; replies are always kept.
   */
  readonly keepPushes?: boolean
  /** Called for each frame; byte fields are views, valid only during the call. */
  readonly onFrame?: (reply: BinaryReply) => void
  /** A token for the HELLO. */
  readonly token?: string
  /** Ask in HELLO for put times on MESSAGE and DELIVER frames. */
  readonly putTimes?: boolean
}

export class BinaryClient implements AsyncDisposable {
  /**
   * Frames received (after the WELCOME, when `connect` sent the HELLO), byte fields copied;
   * without `keepPushes`, replies only.
   */
  readonly frames: BinaryReply[] = []
  /** Frames received in all, kept or not (after the WELCOME, when `connect` sent the HELLO). */
  frameCount = 0
  /** The WELCOME that answered the HELLO `connect` sent. */
  welcome: BinaryReply | null = null
  readonly closed: Promise<void>
  #socket!: Socket<undefined>
  #outbound!: Outbound
  readonly #decoder: BinaryDecoder
  readonly #keepPushes: boolean
  readonly #onFrame: ((reply: BinaryReply) => void) | undefined
  #streamError: Error | null = null
  #isClosed = false
  readonly #events = new EventWaiter()
  #resolveClosed!: () => void
  /** Ids from `nextId` start high, so tests may also use small literal ids on one connection. */
  #nextId = 1_000_000
  #finishing = false

  private constructor(options: BinaryClientOptions) {
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve))
    this.#keepPushes = options.keepPushes ?? true
    this.#onFrame = options.onFrame
    this.#decoder = new BinaryDecoder(
      {
        frame: (frame) => this.#receive(frame),
        fail: (error: ProtocolError) => (this.#streamError = error),
      },
      1 << 30,
    )
  }

  static async connect(port: number, options: BinaryClientOptions = {}): Promise<BinaryClient> {
    const client = new BinaryClient(options)
    client.#socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_socket, chunk) => {
          client.#decoder.push(chunk)
          client.#events.notify()
        },
        drain: () => client.#writeQueued(),
        close: () => {
          client.#isClosed = true
          client.#resolveClosed()
          client.#events.notify()
        },
        error: () => {},
      },
    })
    client.#outbound = new Outbound(client.#socket)
    if (options.hello ?? true) {
      client.welcome = await client.call({
        op: Op.hello,
        requestId: 1,
        version: 1,
        token: options.token ?? null,
        putTimes: options.putTimes ?? false,
      })
      if (client.welcome.op !== Op.welcome) throw new Error(`HELLO answered with ${JSON.stringify(client.welcome)}`)
      client.frames.length = 0
      client.frameCount = 0
    }
    return client
  }

  /** A request id not used yet on this connection. */
  nextId(): number {
    return this.#nextId++
  }

  get isClosed(): boolean {
    return this.#isClosed
  }

  /** A frame the server sent that did not decode (null while all did). */
  get streamError(): Error | null {
    return this.#streamError
  }

  /** Sends the requests in one write. */
  send(...requests: BinaryRequest[]): void {
    const writer = new FrameWriter()
    for (const request of requests) writeRequest(writer, request)
    this.sendBytes(writer.take())
  }

  /** Sends raw bytes (possibly not valid frames), behind anything not yet written. */
  sendBytes(bytes: Uint8Array): void {
    if (bytes.length === 0) return
    if (this.#finishing) throw new Error("sendBytes after finishSending")
    this.#outbound.send(bytes)
  }

  /** Sends one request and resolves with the first frame that carries its request id. */
  async call(request: BinaryRequest): Promise<BinaryReply> {
    this.send(request)
    return this.replyTo(request.requestId)
  }

  /** The first frame received with `requestId`, once it is there. */
  async replyTo(requestId: number): Promise<BinaryReply> {
    let reply: BinaryReply | undefined
    await this.waitUntil(
      () => (reply = this.frames.find((frame) => frame.requestId === requestId)) !== undefined,
      `the reply to request ${requestId}`,
    )
    return reply!
  }

  /** Resolves once `count` frames have arrived in all. */
  async waitForFrames(count: number): Promise<BinaryReply[]> {
    await this.waitUntil(() => this.frameCount >= count, `${count} frames (have ${this.frameCount})`)
    return this.frames
  }

  /** Waits on socket events until `condition` holds; throws if the stream breaks or closes first. */
  async waitUntil(condition: () => boolean, what: string): Promise<void> {
    await this.#events.until(
      condition,
      () =>
        this.#streamError !== null
          ? `reply stream is malformed: ${this.#streamError.message}`
          : this.#isClosed
            ? "connection closed"
            : null,
      what,
    )
  }

  /** Stops reading from the socket: the server's writes back up in the kernel, then in the server. */
  pause(): void {
    this.#socket.pause()
  }

  resume(): void {
    this.#socket.resume()
  }

  /** Closes the connection (Bun's `end()` stops reading too). */
  end(): void {
    this.#socket.end()
  }

  /**
   * Half-closes: the server sees the end of the stream once everything queued is written, and
   * this client goes on reading until the server closes.
   */
  finishSending(): void {
    this.#finishing = true
    if (this.#outbound.isIdle) this.#socket.shutdown()
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

  #receive(frame: Uint8Array): void {
    this.frameCount++
    let reply: BinaryReply
    try {
      reply = readReply(frame)
    } catch (error) {
      this.#streamError = error as Error
      return
    }
    this.#onFrame?.(reply)
    if (this.#keepPushes || reply.op !== Op.deliver) this.frames.push(detachReply(reply))
  }

  #writeQueued(): void {
    this.#outbound.writeQueued()
    if (this.#finishing && this.#outbound.isIdle) this.#socket.shutdown()
  }
}

/** The parsed body of a STATS reply. */
export function statsBody(reply: BinaryReply): Record<string, unknown> {
  if (reply.op !== Op.statsReply) throw new Error(`expected STATS, got ${JSON.stringify(reply)}`)
  return JSON.parse(new TextDecoder().decode(reply.body)) as Record<string, unknown>
}
