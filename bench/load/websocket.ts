/**
 * WebSocket drivers for the load generator: the broker's endpoint at ws://HOST:HTTP_PORT/ through
 * Bun's built-in client (`new WebSocket(url)`, binaryType "arraybuffer"), carrying the same
 * self-describing payloads as the TCP drivers in wire.ts.
 *
 * - WebSocketBinaryLink: the binary protocol's frames in binary messages. Load puts are built by
 *   wire.ts's `Out`, as on TCP, each flush one message of one or more frames; control requests
 *   (HELLO, SUBSCRIBE) are written with src/protocol/binary.ts's FrameWriter; what the server
 *   sends is split by its BinaryDecoder, DELIVER frames read in place, replies with readReply.
 * - WebSocketJsonLink: upstream dsmq 1.x, one JSON request per text message and one reply per
 *   text message (`{"message": "..."}`, without seq).
 *
 * Bun's client queues what the kernel does not take (`bufferedAmount`) and fires no drain
 * event, so a writer that fills it polls it every millisecond until it is empty again.
 */
import { BINARY_VERSION, MAGIC, Op } from "../../src/protocol/binary/constants.ts"
import { BinaryDecoder } from "../../src/protocol/binary/decoder.ts"
import { FrameWriter } from "../../src/protocol/binary/frame-writer.ts"
import { type BinaryReply, readReply } from "../../src/protocol/binary/reply.ts"
import { type ByteSink, CONTROL_IDS, type FrameHandler, type JsonReply, jsonPutText, jsonReady, Out } from "./wire.ts"

const CONNECT_TIMEOUT_MS = 5000
/**
 * How long `close()` waits for the server's answer to its Close frame before dropping the
 * connection. The server reads nothing, Close frames included, from a WebSocket it has paused:
 * a JSON connection with get_waits queued behind a held one stays paused until they are
 * answered, and Bun's client would wait 30 s. (A TCP link's `end()` does not wait at all.)
 */
const CLOSE_GRACE_MS = 500
/** How often a writer whose WebSocket has a backlog looks whether it has gone (ms). */
const DRAIN_POLL_MS = 1
/** Frames the server sends are never near this; the decoder only needs a bound. */
const MAX_FRAME_BYTES = 2 ** 31

/** Opens a WebSocket; rejects if it is not open within CONNECT_TIMEOUT_MS. */
function connect(url: string): Promise<WebSocket> {
  const socket = new WebSocket(url)
  socket.binaryType = "arraybuffer"
  const { promise, resolve, reject } = Promise.withResolvers<WebSocket>()
  const timer = setTimeout(() => {
    socket.terminate()
    reject(new Error(`WebSocket ${url} did not open within ${CONNECT_TIMEOUT_MS} ms`))
  }, CONNECT_TIMEOUT_MS)
  socket.onopen = () => {
    clearTimeout(timer)
    resolve(socket)
  }
  socket.onerror = (event) => {
    clearTimeout(timer)
    reject(new Error(`WebSocket ${url}: ${(event as ErrorEvent).message || "connection failed"}`))
  }
  socket.onclose = (event) => {
    clearTimeout(timer)
    reject(closeError(event))
  }
  return promise
}

const closeError = (event: CloseEvent): Error =>
  new Error(`WebSocket closed (code ${event.code}${event.reason === "" ? "" : `: ${event.reason}`})`)

/** Starts the closing handshake; drops the connection if it has not finished within CLOSE_GRACE_MS. */
function closeSocket(socket: WebSocket, closed: Promise<void>): Promise<void> {
  if (socket.readyState === WebSocket.OPEN) socket.close()
  const timer = setTimeout(() => socket.terminate(), CLOSE_GRACE_MS)
  return closed.finally(() => clearTimeout(timer))
}

/** Resolves once `socket` has nothing queued (polled: the client fires no drain event). */
function whenEmpty(socket: WebSocket): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (socket.bufferedAmount === 0 || socket.readyState !== WebSocket.OPEN) resolve()
      else setTimeout(check, DRAIN_POLL_MS)
    }
    check()
  })
}

/**
 * A WebSocket as the sink of an `Out`: each write is one binary message. While the client still
 * holds unsent bytes it takes nothing, as a socket whose kernel buffer is full, and calls
 * `onDrain` once they are gone, so `Out` queues and waits exactly as it does on TCP.
 */
class WebSocketSink implements ByteSink {
  readonly #socket: WebSocket
  readonly #onDrain: () => void
  #polling = false

  constructor(socket: WebSocket, onDrain: () => void) {
    this.#socket = socket
    this.#onDrain = onDrain
  }

  write(data: Uint8Array, byteOffset = 0, byteLength = data.length - byteOffset): number {
    if (this.#socket.readyState !== WebSocket.OPEN) return 0
    if (this.#socket.bufferedAmount > 0) {
      this.#poll()
      return 0
    }
    // The client copies what it sends: the caller may reuse its buffer at once.
    this.#socket.send(data.subarray(byteOffset, byteOffset + byteLength))
    return byteLength
  }

  #poll(): void {
    if (this.#polling) return
    this.#polling = true
    void whenEmpty(this.#socket).then(() => {
      this.#polling = false
      if (this.#socket.readyState === WebSocket.OPEN) this.#onDrain()
    })
  }
}

interface Pending {
  resolve(reply: BinaryReply): void
  reject(error: Error): void
}

/**
 * One WebSocket speaking the binary protocol. DELIVER pushes and replies to the caller's own
 * requests go to `onFrame`, in place; replies to the link's control requests resolve them.
 */
export class WebSocketBinaryLink {
  readonly out = new Out()
  readonly #socket: WebSocket
  readonly #writer = new FrameWriter()
  readonly #decoder: BinaryDecoder
  readonly #pending = new Map<number, Pending>()
  #nextControlId = CONTROL_IDS
  #closedError: Error | null = null
  readonly closed = Promise.withResolvers<void>()
  /** Frames that are not replies to control requests: `bytes[start]` to `bytes[end]`, valid only during the call. */
  onFrame: FrameHandler = () => {}

  private constructor(socket: WebSocket) {
    this.#socket = socket
    this.#decoder = new BinaryDecoder(
      {
        frame: (frame) => this.#frame(frame),
        fail: (error) => this.#fail(new Error(`bad frame from server: ${error.message}`)),
      },
      MAX_FRAME_BYTES,
    )
    socket.onmessage = (event: MessageEvent) => {
      if (event.data instanceof ArrayBuffer) this.#decoder.push(new Uint8Array(event.data))
      else this.#fail(new Error("a text message on a binary WebSocket"))
    }
    socket.onclose = (event) => this.#fail(closeError(event))
    socket.onerror = () => {} // followed by close
    this.out.attach(new WebSocketSink(socket, () => this.out.onDrain()))
  }

  static async open(url: string): Promise<WebSocketBinaryLink> {
    const link = new WebSocketBinaryLink(await connect(url))
    const welcome = await link.#request((writer, id) => writer.begin(Op.hello, 0, id).bytes(MAGIC).u8(BINARY_VERSION).end())
    if (welcome.op !== Op.welcome) throw new Error(`expected WELCOME, got opcode 0x${welcome.op.toString(16)}`)
    return link
  }

  async subscribe(topic: Uint8Array): Promise<void> {
    const reply = await this.#request((writer, id) => writer.begin(Op.subscribe, 0, id).u16(topic.length).bytes(topic).end())
    if (reply.op !== Op.ok) throw new Error(`SUBSCRIBE answered with opcode 0x${reply.op.toString(16)}`)
  }

  close(): Promise<void> {
    if (this.#closedError !== null) return this.closed.promise
    this.out.flush()
    return closeSocket(this.#socket, this.closed.promise)
  }

  /** Sends one control request built by `write` (after whatever `out` holds) and resolves with its reply. */
  #request(write: (writer: FrameWriter, requestId: number) => void): Promise<BinaryReply> {
    if (this.#closedError !== null) return Promise.reject(this.#closedError)
    const id = this.#nextControlId++
    if (this.#nextControlId > 0xffff_fff0) this.#nextControlId = CONTROL_IDS
    const { promise, resolve, reject } = Promise.withResolvers<BinaryReply>()
    this.#pending.set(id, { resolve, reject })
    write(this.#writer, id)
    this.out.append(this.#writer.take())
    return promise
  }

  #frame(frame: Uint8Array): void {
    const op = frame[4]!
    // The hot path: a push, read in place by the caller.
    if (op === Op.deliver) {
      this.onFrame(frame, 0, frame.length)
      return
    }
    let reply: BinaryReply
    try {
      // A copy: the reply is read after this call, when the decoder may have reused the bytes.
      reply = readReply(frame.slice())
    } catch (error) {
      this.#fail(new Error(`bad frame from server: ${(error as Error).message}`))
      return
    }
    const pending = reply.requestId >= CONTROL_IDS ? this.#pending.get(reply.requestId) : undefined
    if (pending !== undefined) {
      this.#pending.delete(reply.requestId)
      if (reply.op === Op.error) pending.reject(new Error(`server error ${reply.code}: ${reply.text}`))
      else pending.resolve(reply)
      return
    }
    if (reply.op === Op.error) {
      this.#fail(new Error(`server error ${reply.code} for request ${reply.requestId}: ${reply.text}`))
      return
    }
    this.onFrame(frame, 0, frame.length)
  }

  #fail(error: Error): void {
    if (this.#closedError !== null) return
    this.#closedError = error
    this.#decoder.stop()
    for (const pending of this.#pending.values()) pending.reject(error)
    this.#pending.clear()
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.close()
    this.closed.resolve()
  }
}

/**
 * A writer's side of a JSON WebSocket: each put is a text message of its own, sent at once.
 * `length` counts the bytes sent since the last `flush()`, so a blasting writer can send in
 * chunks as it does with `Out`; `backlog` is what the client has not handed to the kernel.
 */
export class TextOut {
  readonly #socket: WebSocket
  length = 0

  constructor(socket: WebSocket) {
    this.#socket = socket
  }

  get backlog(): number {
    return this.#socket.bufferedAmount
  }

  /** A put whose message is a load payload, as one text message. */
  jsonPut(topic: string, phase: number, writer: number, index: number, time: number, sentAt = time): void {
    const text = jsonPutText(topic, phase, writer, index, time, sentAt)
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.send(text)
    this.length += text.length
  }

  /** Every message is already sent; starts a new chunk. */
  flush(): void {
    this.length = 0
  }

  whenDrained(): Promise<void> {
    return whenEmpty(this.#socket)
  }
}

/** One WebSocket speaking upstream 1.x JSON; each reply goes to `onReply`. */
export class WebSocketJsonLink {
  readonly out: TextOut
  readonly #socket: WebSocket
  #closed = false
  readonly closed = Promise.withResolvers<void>()
  onReply: (reply: JsonReply) => void = () => {}
  onClose: (error: Error) => void = () => {}

  private constructor(socket: WebSocket) {
    this.#socket = socket
    this.out = new TextOut(socket)
    socket.onmessage = (event: MessageEvent) => {
      if (typeof event.data === "string") this.onReply(JSON.parse(event.data) as JsonReply)
      else this.#close(new Error("a binary message on a JSON WebSocket"))
    }
    socket.onclose = (event) => this.#close(closeError(event))
    socket.onerror = () => {} // followed by close
  }

  static async open(url: string): Promise<WebSocketJsonLink> {
    return new WebSocketJsonLink(await connect(url))
  }

  /** Sends one request (a text message). */
  send(text: string): void {
    if (!this.#closed) this.#socket.send(text)
  }

  /** A `get` round trip, so the connection is surely accepted (its cursors started) before anyone puts. */
  ready(): Promise<void> {
    return jsonReady(this, "WebSocket closed")
  }

  close(): Promise<void> {
    if (this.#closed) return this.closed.promise
    return closeSocket(this.#socket, this.closed.promise)
  }

  #close(error: Error): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.close()
    this.onClose(error)
    this.closed.resolve()
  }
}
