/**
 * Lean protocol drivers for the load generator. They write the frames of docs/PROTOCOL.md (the
 * layout of src/protocol/binary.ts's FrameWriter) and read replies with JsonStreamDecoder, but
 * skip what src/client.ts does for applications (a promise and a Message object per message, an
 * async iterator per subscription), and read binary frames in place, without an object per
 * frame: one JavaScript thread must read 100,000 messages a second, and its garbage-collection
 * pauses (1-3 ms each) land in the measured latencies, so the fewer the better.
 *
 * Every message the load generator puts carries its own identity in its payload, so receivers
 * can check loss, duplicates and order and measure latency whatever the protocol:
 *
 *   binary payload (PAYLOAD_BYTES long): u8 phase, 3 bytes 0, u32 writer, u32 index,
 *     f64 scheduled send time, f64 actual send time (both ms on the main thread's
 *     performance.now() clock), then 'x' filler;
 *   JSON message: "phase|writer|index|scheduled|actual|" padded with 'x' to PAYLOAD_BYTES characters.
 *
 * Open-loop writers send on a fixed schedule: latency counts from the scheduled time, so a
 * writer that falls behind shows; the actual send time tells how much of it was the writer's.
 *
 * Phase 0 is warm-up (received and ignored), phase 1 is measured.
 */
import type { Socket } from "bun"
import { BINARY_VERSION, HEADER_BYTES, MAGIC, Op } from "../../src/protocol/binary/constants.ts"
import { readU32 } from "../../src/protocol/binary/fields.ts"
import { JsonStreamDecoder } from "../../src/protocol/json-stream.ts"

export const PAYLOAD_BYTES = 64
export const PHASE_WARMUP = 0
export const PHASE_MEASURED = 1
/** Offsets inside a binary payload. */
const AT_WRITER = 4
const AT_INDEX = 8
const AT_TIME = 12
const AT_SENT = 20
const FILLER = 0x78 // 'x'

const encoder = new TextEncoder()
const utf8 = new TextDecoder()

/** What a receiver found in one message: who sent it, which one, when it was to be sent, and when it was. */
export type Arrival = (writer: number, index: number, phase: number, scheduledAt: number, sentAt: number) => void

/**
 * Where an `Out` writes: a Bun socket, or anything that takes bytes the same way (returns how
 * many it took, and has `Out.onDrain` called when it can take more), such as a WebSocket
 * (bench/load/websocket.ts).
 */
export interface ByteSink {
  write(data: Uint8Array, byteOffset?: number, byteLength?: number): number
}

/**
 * Bytes on their way to one socket. Frames are appended to one buffer and written together
 * at the end of the tick (or on `flush()`); what the kernel does not take is copied and written
 * again on `drain` (Bun's socket.write does not buffer).
 */
export class Out {
  #socket: ByteSink | null = null
  bytes = new Uint8Array(64 * 1024)
  view = new DataView(this.bytes.buffer)
  length = 0
  readonly #queue: Uint8Array[] = []
  #queuedBytes = 0
  #flushScheduled = false
  #autoFlush: boolean
  #drained: (() => void) | null = null

  /** `autoFlush`: flush in a microtask after the first append of a tick (off for the paced sender). */
  constructor(autoFlush = true) {
    this.#autoFlush = autoFlush
  }

  attach(socket: ByteSink): void {
    this.#socket = socket
  }

  /** Bytes written by the application that the kernel has not taken yet. */
  get backlog(): number {
    return this.#queuedBytes + this.length
  }

  /** Makes room for `count` more bytes; returns the offset to write them at. */
  reserve(count: number): number {
    const needed = this.length + count
    if (needed > this.bytes.length) {
      let capacity = this.bytes.length * 2
      while (capacity < needed) capacity *= 2
      const grown = new Uint8Array(capacity)
      grown.set(this.bytes.subarray(0, this.length))
      this.bytes = grown
      this.view = new DataView(grown.buffer)
    }
    const at = this.length
    this.length = needed
    if (this.#autoFlush && !this.#flushScheduled) {
      this.#flushScheduled = true
      queueMicrotask(() => this.flush())
    }
    return at
  }

  append(bytes: Uint8Array): void {
    const at = this.reserve(bytes.length)
    this.bytes.set(bytes, at)
  }

  /** Writes everything appended so far (after anything still queued). */
  flush(): void {
    this.#flushScheduled = false
    const socket = this.#socket
    if (socket === null) return
    if (this.#queue.length > 0) this.onDrain()
    if (this.length === 0) return
    const length = this.length
    this.length = 0
    if (this.#queue.length > 0) {
      this.#queue.push(this.bytes.slice(0, length))
      this.#queuedBytes += length
      return
    }
    const written = Math.max(0, socket.write(this.bytes, 0, length))
    if (written < length) {
      this.#queue.push(this.bytes.slice(written, length))
      this.#queuedBytes += length - written
    }
  }

  /** Writes queued bytes until the kernel stops taking them. */
  onDrain(): void {
    const socket = this.#socket
    while (socket !== null && this.#queue.length > 0) {
      const head = this.#queue[0]!
      const written = Math.max(0, socket.write(head))
      this.#queuedBytes -= written
      if (written < head.length) {
        this.#queue[0] = head.subarray(written)
        return
      }
      this.#queue.shift()
    }
    const drained = this.#drained
    this.#drained = null
    drained?.()
  }

  /** Resolves once nothing is queued for the kernel (at once if nothing is). */
  whenDrained(): Promise<void> {
    if (this.#queue.length === 0) return Promise.resolve()
    return new Promise((resolve) => (this.#drained = resolve))
  }

  // Binary frames, laid out as FrameWriter does (docs/PROTOCOL.md).

  /** Starts a frame whose body is `bodyBytes` long; returns the body's offset. */
  frame(op: number, flags: number, requestId: number, bodyBytes: number): number {
    const at = this.reserve(HEADER_BYTES + bodyBytes)
    const view = this.view
    view.setUint32(at, HEADER_BYTES - 4 + bodyBytes)
    view.setUint8(at + 4, op)
    view.setUint8(at + 5, flags)
    view.setUint32(at + 6, requestId)
    return at + HEADER_BYTES
  }

  /** A u16 length and the topic's bytes at `at`; returns the offset after them. */
  topicAt(at: number, topic: Uint8Array): number {
    this.view.setUint16(at, topic.length)
    this.bytes.set(topic, at + 2)
    return at + 2 + topic.length
  }

  /** A load payload at `at` (PAYLOAD_BYTES long). */
  payloadAt(at: number, phase: number, writer: number, index: number, time: number, sentAt = time): void {
    const bytes = this.bytes
    const view = this.view
    view.setUint32(at, phase << 24)
    view.setUint32(at + AT_WRITER, writer)
    view.setUint32(at + AT_INDEX, index)
    view.setFloat64(at + AT_TIME, time)
    view.setFloat64(at + AT_SENT, sentAt)
    bytes.fill(FILLER, at + AT_SENT + 8, at + PAYLOAD_BYTES)
  }

  /** A PUT (no ACK) of one load payload. */
  put(topic: Uint8Array, phase: number, writer: number, index: number, time: number, sentAt = time): void {
    const body = this.frame(Op.put, 0, 0, 2 + topic.length + PAYLOAD_BYTES)
    this.payloadAt(this.topicAt(body, topic), phase, writer, index, time, sentAt)
  }

  /** A PUT_MANY (no ACK) of `count` load payloads with consecutive indexes from `firstIndex`. */
  putMany(topic: Uint8Array, phase: number, writer: number, firstIndex: number, count: number, time: number): void {
    const entryBytes = 2 + topic.length + 4 + PAYLOAD_BYTES
    let at = this.frame(Op.putMany, 0, 0, 4 + count * entryBytes)
    this.view.setUint32(at, count)
    at += 4
    for (let i = 0; i < count; i++) {
      at = this.topicAt(at, topic)
      this.view.setUint32(at, PAYLOAD_BYTES)
      this.payloadAt(at + 4, phase, writer, firstIndex + i, time)
      at += 4 + PAYLOAD_BYTES
    }
  }

  /** GET, GET_LATEST, SUBSCRIBE, UNSUBSCRIBE: a topic only. */
  topicRequest(op: number, requestId: number, topic: Uint8Array): void {
    this.topicAt(this.frame(op, 0, requestId, 2 + topic.length), topic)
  }

  getWait(requestId: number, timeoutMs: number, topic: Uint8Array): void {
    const at = this.frame(Op.getWait, 0, requestId, 4 + 2 + topic.length)
    this.view.setUint32(at, timeoutMs)
    this.topicAt(at + 4, topic)
  }

  // JSON requests (upstream's bare-object protocol).

  /** `{"action":"put",...}` with a load payload as the message (all ASCII: one byte per character). */
  jsonPut(topic: string, phase: number, writer: number, index: number, time: number, sentAt = time): void {
    const text = jsonPutText(topic, phase, writer, index, time, sentAt)
    const at = this.reserve(text.length)
    encoder.encodeInto(text, this.bytes.subarray(at, at + text.length))
  }
}

const FILL_TEXT = "x".repeat(PAYLOAD_BYTES)

/** A JSON put request whose message is a load payload (all ASCII). */
export function jsonPutText(topic: string, phase: number, writer: number, index: number, time: number, sentAt = time): string {
  return `{"action":"put","topic":${JSON.stringify(topic)},"message":"${jsonPayload(phase, writer, index, time, sentAt)}"}`
}

export function jsonPayload(phase: number, writer: number, index: number, time: number, sentAt = time): string {
  const head = `${phase}|${writer}|${index}|${time.toFixed(4)}|${sentAt.toFixed(4)}|`
  return head.length >= PAYLOAD_BYTES ? head : head + FILL_TEXT.slice(head.length)
}

const scratch = new DataView(new ArrayBuffer(8))

/** Reads a binary load payload starting at `at` in `frame` and reports it. */
export function readPayload(frame: Uint8Array, at: number, arrival: Arrival): void {
  if (frame.length - at < AT_SENT + 8) throw new Error(`payload of ${frame.length - at} bytes is too short`)
  for (let k = 0; k < 8; k++) scratch.setUint8(k, frame[at + AT_TIME + k]!)
  const scheduledAt = scratch.getFloat64(0)
  for (let k = 0; k < 8; k++) scratch.setUint8(k, frame[at + AT_SENT + k]!)
  arrival(readU32(frame, at + AT_WRITER), readU32(frame, at + AT_INDEX), frame[at]!, scheduledAt, scratch.getFloat64(0))
}

/** Reads a JSON load payload (a message string) and reports it. */
export function readJsonPayload(message: string, arrival: Arrival): void {
  const a = message.indexOf("|")
  const b = message.indexOf("|", a + 1)
  const c = message.indexOf("|", b + 1)
  const d = message.indexOf("|", c + 1)
  const e = message.indexOf("|", d + 1)
  if (a < 0 || e < 0) throw new Error(`not a load payload: ${JSON.stringify(message.slice(0, 80))}`)
  arrival(
    Number(message.slice(a + 1, b)),
    Number(message.slice(b + 1, c)),
    Number(message.slice(0, a)),
    Number(message.slice(c + 1, d)),
    Number(message.slice(d + 1, e)),
  )
}

/** Where the payload of the MESSAGE or DELIVER frame starting at `start` in `bytes` starts. */
export function payloadOffset(bytes: Uint8Array, start: number): number {
  const topicLength = start + HEADER_BYTES + 8
  return topicLength + 2 + ((bytes[topicLength]! << 8) | bytes[topicLength + 1]!)
}

/** Called with each whole frame: it is `bytes[start]` to `bytes[end]`, valid only during the call. */
export type FrameHandler = (bytes: Uint8Array, start: number, end: number) => void

/** Keeps a message cut by the end of a chunk until the next chunk completes it (only its bytes are copied). */
export class Carry {
  #bytes = new Uint8Array(16 * 1024)
  #length = 0

  /** The chunk to parse: `chunk` itself when nothing is carried, else the carried bytes followed by it. */
  join(chunk: Uint8Array): Uint8Array {
    if (this.#length === 0) return chunk
    this.#ensure(this.#length + chunk.length)
    this.#bytes.set(chunk, this.#length)
    const joined = this.#bytes.subarray(0, this.#length + chunk.length)
    this.#length = 0
    return joined
  }

  /** Keeps `bytes[from..]` (which may live in this carry's own buffer). */
  keep(bytes: Uint8Array, from: number): void {
    const rest = bytes.length - from
    if (rest === 0) return
    if (bytes.buffer === this.#bytes.buffer) {
      this.#bytes.copyWithin(0, bytes.byteOffset + from, bytes.byteOffset + bytes.length)
    } else {
      this.#ensure(rest)
      this.#bytes.set(bytes.subarray(from), 0)
    }
    this.#length = rest
  }

  #ensure(capacity: number): void {
    if (capacity <= this.#bytes.length) return
    let size = this.#bytes.length * 2
    while (size < capacity) size *= 2
    const grown = new Uint8Array(size)
    grown.set(this.#bytes.subarray(0, this.#length))
    this.#bytes = grown
  }
}

/**
 * Splits a stream of binary frames in place: whole frames in a chunk are handed over as offsets
 * into it; only a frame cut by the chunk's end is copied, to be completed by the next one.
 */
export class FrameSplitter {
  readonly #carry = new Carry()

  push(chunk: Uint8Array, onFrame: FrameHandler): void {
    const bytes = this.#carry.join(chunk)
    const end = bytes.length
    let at = 0
    while (end - at >= 4) {
      const frameEnd = at + 4 + readU32(bytes, at)
      if (frameEnd > end) break
      onFrame(bytes, at, frameEnd)
      at = frameEnd
    }
    this.#carry.keep(bytes, at)
  }
}

export function topicBytes(topic: string): Uint8Array {
  return encoder.encode(topic)
}

interface Pending {
  resolve(frame: Uint8Array): void
  reject(error: Error): void
}

/** Request ids at and above this are the link's own control requests; below are the caller's. */
export const CONTROL_IDS = 0xf000_0000

/**
 * One binary-protocol connection. Frames the caller cares about (DELIVER pushes, replies to its
 * own requests) go to `onFrame`, in place; replies to `request()` resolve its promise (a copy).
 */
export class BinaryLink {
  readonly out = new Out()
  #socket: Socket<unknown> | null = null
  readonly #splitter = new FrameSplitter()
  readonly #pending = new Map<number, Pending>()
  #nextControlId = CONTROL_IDS
  #closed = false
  #closedError: Error | null = null
  readonly closed = Promise.withResolvers<void>()
  /** Frames that are not replies to `request()`: `bytes[start]` to `bytes[end]`, valid only during the call. */
  onFrame: FrameHandler = () => {}
  readonly #handle: FrameHandler = (bytes, start, end) => this.#frame(bytes, start, end)

  static async open(host: string, port: number): Promise<BinaryLink> {
    const link = new BinaryLink()
    link.#socket = await Bun.connect({
      hostname: host,
      port,
      socket: {
        data: (_socket, chunk) => {
          if (!link.#closed) link.#splitter.push(chunk, link.#handle)
        },
        drain: () => link.out.onDrain(),
        close: () => link.#fail(new Error("connection closed")),
        error: (_socket, error) => link.#fail(error),
      },
    })
    link.out.attach(link.#socket)
    const welcome = await link.request((out, id) => {
      const at = out.frame(Op.hello, 0, id, MAGIC.length + 1)
      out.bytes.set(MAGIC, at)
      out.bytes[at + MAGIC.length] = BINARY_VERSION
    })
    if (welcome[4] !== Op.welcome) throw new Error(`expected WELCOME, got opcode 0x${welcome[4]!.toString(16)}`)
    return link
  }

  /** Sends one control request built by `write` (given the request id to use) and resolves with its reply frame (a copy). */
  request(write: (out: Out, requestId: number) => void): Promise<Uint8Array> {
    if (this.#closedError !== null) return Promise.reject(this.#closedError)
    const id = this.#nextControlId++
    if (this.#nextControlId > 0xffff_fff0) this.#nextControlId = CONTROL_IDS
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>()
    this.#pending.set(id, { resolve, reject })
    write(this.out, id)
    return promise
  }

  async subscribe(topic: Uint8Array): Promise<void> {
    const reply = await this.request((out, id) => out.topicRequest(Op.subscribe, id, topic))
    if (reply[4] !== Op.ok) throw new Error(`SUBSCRIBE answered with opcode 0x${reply[4]!.toString(16)}`)
  }

  /** A round trip: every request sent before it has been handled when it resolves. */
  async ping(): Promise<void> {
    await this.request((out, id) => out.frame(Op.ping, 0, id, 0))
  }

  async stats(): Promise<Record<string, unknown>> {
    const reply = await this.request((out, id) => out.frame(Op.stats, 0, id, 0))
    if (reply[4] !== Op.statsReply) throw new Error(`STATS answered with opcode 0x${reply[4]!.toString(16)}`)
    return JSON.parse(utf8.decode(reply.subarray(HEADER_BYTES))) as Record<string, unknown>
  }

  close(): Promise<void> {
    if (!this.#closed && this.#socket !== null) {
      this.out.flush()
      this.#socket.end()
    }
    return this.closed.promise
  }

  #frame(bytes: Uint8Array, start: number, end: number): void {
    const op = bytes[start + 4]!
    const id = readU32(bytes, start + 6)
    if (id >= CONTROL_IDS) {
      const pending = this.#pending.get(id)
      if (pending !== undefined) {
        this.#pending.delete(id)
        if (op === Op.error) pending.reject(new Error(`server error: ${utf8.decode(bytes.subarray(start + HEADER_BYTES + 2, end))}`))
        else pending.resolve(bytes.slice(start, end))
        return
      }
    }
    if (op === Op.error) {
      this.#fail(new Error(`server error for request ${id}: ${utf8.decode(bytes.subarray(start + HEADER_BYTES + 2, end))}`))
      return
    }
    this.onFrame(bytes, start, end)
  }

  #fail(error: Error): void {
    if (this.#closed) return
    this.#closed = true
    this.#closedError = error
    for (const pending of this.#pending.values()) pending.reject(error)
    this.#pending.clear()
    this.#socket?.end()
    this.closed.resolve()
  }
}

/** A JSON reply as the server sends it. */
export interface JsonReply {
  readonly message: string
  readonly seq?: number
  readonly error?: { readonly code: string; readonly text: string }
}

/** A JSON link: a connection (TCP or WebSocket) whose replies go to `onReply`. */
interface JsonRoundTripper {
  onReply: (reply: JsonReply) => void
  send(text: string): void
  readonly closed: { readonly promise: Promise<void> }
}

/** A `get` round trip on a JSON link, so the server has surely accepted it (its cursors started). */
export async function jsonReady(link: JsonRoundTripper, closedMessage: string): Promise<void> {
  const previous = link.onReply
  const { promise, resolve } = Promise.withResolvers<void>()
  link.onReply = () => {
    link.onReply = previous
    resolve()
  }
  link.send(`{"action":"get","topic":"__bench_ready"}`)
  await Promise.race([promise, link.closed.promise.then(() => Promise.reject(new Error(closedMessage)))])
}

/** One connection speaking upstream's bare-JSON protocol; each reply goes to `onReply`. */
export class JsonLink {
  readonly out = new Out()
  #socket: Socket<unknown> | null = null
  readonly #decoder: JsonStreamDecoder
  #closed = false
  readonly closed = Promise.withResolvers<void>()
  onReply: (reply: JsonReply) => void = () => {}
  onClose: (error: Error) => void = () => {}

  constructor() {
    this.#decoder = new JsonStreamDecoder(
      {
        frame: (body) => this.onReply(JSON.parse(utf8.decode(body)) as JsonReply),
        fail: (error) => this.#close(new Error(`bad reply from server: ${error.message}`)),
      },
      2 ** 31,
    )
  }

  static async open(host: string, port: number): Promise<JsonLink> {
    const link = new JsonLink()
    link.#socket = await Bun.connect({
      hostname: host,
      port,
      socket: {
        data: (_socket, chunk) => link.#decoder.push(chunk),
        drain: () => link.out.onDrain(),
        close: () => link.#close(new Error("connection closed")),
        error: (_socket, error) => link.#close(error),
      },
    })
    link.out.attach(link.#socket)
    return link
  }

  /** Appends one request (sent at the end of the tick). */
  send(text: string): void {
    const bytes = encoder.encode(text)
    const at = this.out.reserve(bytes.length)
    this.out.bytes.set(bytes, at)
  }

  /** Appends pre-encoded request bytes. */
  sendBytes(bytes: Uint8Array): void {
    this.out.append(bytes)
  }

  /** A `get` round trip, so the connection is surely accepted (its cursors started) before anyone puts. */
  ready(): Promise<void> {
    return jsonReady(this, "connection closed")
  }

  close(): Promise<void> {
    if (!this.#closed && this.#socket !== null) {
      this.out.flush()
      this.#socket.end()
    }
    return this.closed.promise
  }

  #close(error: Error): void {
    if (this.#closed) return
    this.#closed = true
    this.#decoder.stop()
    this.#socket?.end()
    this.onClose(error)
    this.closed.resolve()
  }
}

/**
 * A connection to the floor's servers (bench/load/echo-server.ts): the same 64-byte payloads,
 * raw. As "echo" it sends them and gets them back; as a relay "reader" it announces itself
 * with "R", waits for the "K" that says it is registered, then receives every writer's
 * payloads; as a relay "writer" it announces itself with "W" and sends.
 */
export class EchoLink {
  readonly out = new Out()
  #socket: Socket<unknown> | null = null
  readonly #pending = new Uint8Array(PAYLOAD_BYTES)
  #pendingLength = 0
  #awaitingAck = false
  #acknowledged: (() => void) | null = null
  onArrival: Arrival = () => {}
  readonly closed = Promise.withResolvers<void>()

  static async open(host: string, port: number, role: "echo" | "reader" | "writer" = "echo"): Promise<EchoLink> {
    const link = new EchoLink()
    link.#socket = await Bun.connect({
      hostname: host,
      port,
      socket: {
        data: (_socket, chunk) => link.#data(chunk),
        drain: () => link.out.onDrain(),
        close: () => link.closed.resolve(),
        error: () => link.closed.resolve(),
      },
    })
    link.out.attach(link.#socket)
    if (role === "writer") link.out.append(new Uint8Array([0x57])) // "W"
    if (role === "reader") {
      link.#awaitingAck = true
      const { promise, resolve } = Promise.withResolvers<void>()
      link.#acknowledged = resolve
      link.out.append(new Uint8Array([0x52])) // "R"
      await Promise.race([promise, link.closed.promise.then(() => Promise.reject(new Error("relay closed the connection")))])
    }
    return link
  }

  send(phase: number, index: number, time: number, writer = 0, sentAt = time): void {
    this.out.payloadAt(this.out.reserve(PAYLOAD_BYTES), phase, writer, index, time, sentAt)
  }

  close(): Promise<void> {
    this.out.flush()
    this.#socket?.end()
    return this.closed.promise
  }

  #data(chunk: Uint8Array): void {
    let at = 0
    if (this.#awaitingAck && chunk.length > 0) {
      this.#awaitingAck = false
      at = 1
      this.#acknowledged?.()
    }
    while (at < chunk.length) {
      if (this.#pendingLength === 0 && chunk.length - at >= PAYLOAD_BYTES) {
        readPayload(chunk, at, this.onArrival) // a whole record: read it in place
        at += PAYLOAD_BYTES
        continue
      }
      const take = Math.min(PAYLOAD_BYTES - this.#pendingLength, chunk.length - at)
      for (let k = 0; k < take; k++) this.#pending[this.#pendingLength + k] = chunk[at + k]!
      this.#pendingLength += take
      at += take
      if (this.#pendingLength === PAYLOAD_BYTES) {
        this.#pendingLength = 0
        readPayload(this.#pending, 0, this.onArrival)
      }
    }
  }
}
