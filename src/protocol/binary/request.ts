/**
 * The binary protocol (docs/PROTOCOL.md): length-prefixed frames with an opcode, flags and a
 * request id. Pure bytes <-> values: the decoder splits a stream into frames, `readRequest` /
 * `readReply` interpret one frame, and FrameWriter builds frames into one growable buffer.
 */
import { TailBufferingDecoder } from "../decoder.ts"
import { ErrorCode, type ErrorName, ProtocolError } from "../errors.ts"
import { MAX_TOPIC_BYTES, MAX_WAIT_MS, topicProblem } from "../limits.ts"

export const BINARY_VERSION = 1
export const MAGIC = new Uint8Array([0x44, 0x53, 0x4d, 0x51]) // "DSMQ"
/** u32 length, u8 opcode, u8 flags, u32 request id. */
export const HEADER_BYTES = 10
const LENGTH_BYTES = 4
/** The smallest legal value of the length field: opcode, flags and request id. */
const MIN_LENGTH = HEADER_BYTES - LENGTH_BYTES

export const Op = {
  hello: 0x01,
  put: 0x02,
  putMany: 0x03,
  get: 0x04,
  getLatest: 0x05,
  getWait: 0x06,
  subscribe: 0x07,
  unsubscribe: 0x08,
  ping: 0x09,
  stats: 0x0a,
  cursor: 0x0b,
  ok: 0x80,
  welcome: 0x81,
  putAck: 0x82,
  message: 0x83,
  empty: 0x84,
  pong: 0x85,
  statsReply: 0x86,
  deliver: 0x87,
  error: 0xff,
} as const
export type Op = (typeof Op)[keyof typeof Op]

export const Flag = {
  /** On PUT and PUT_MANY: answer with PUT_ACK. */
  ack: 0x01,
  /** On ERROR: the server closes the connection after this frame. */
  fatal: 0x01,
  /** On MESSAGE and DELIVER: a u32 count of messages the reader missed follows the seq. */
  missed: 0x01,
} as const

/** Longest cursor name, in UTF-8 bytes. */
export const MAX_CURSOR_NAME_BYTES = 256

const utf8 = new TextDecoder("utf-8", { fatal: true })
const encoder = new TextEncoder()

export function readU32(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0
}

/** Splits a byte stream into whole frames (header included); copies only an unfinished tail. */
export class BinaryDecoder extends TailBufferingDecoder {
  push(chunk: Uint8Array): void {
    if (this.stopped || chunk.length === 0) return
    const data = this.withTail(chunk)
    let position = 0
    while (data.length - position >= LENGTH_BYTES) {
      const length = readU32(data, position)
      if (length < MIN_LENGTH) {
        this.fail(new ProtocolError("malformed_frame", `frame length ${length} is below the minimum of ${MIN_LENGTH}`))
        return
      }
      if (length > this.maxFrameBytes) {
        this.fail(new ProtocolError("too_large", `frame of ${length} bytes is larger than the maximum of ${this.maxFrameBytes}`))
        return
      }
      const end = position + LENGTH_BYTES + length
      if (end > data.length) break
      this.sink.frame(data.subarray(position, end))
      if (this.stopped) return
      position = end
    }
    if (position === data.length) this.tail.clear()
    else this.keepFrom(data, chunk, position)
  }
}

/** Reads the fields of one frame's body in order, with bounds checks that throw ProtocolError. */
class BodyReader {
  #at: number
  constructor(
    readonly frame: Uint8Array,
    readonly opcode: number,
  ) {
    this.#at = HEADER_BYTES
  }

  get remaining(): number {
    return this.frame.length - this.#at
  }

  u8(): number {
    this.#need(1)
    return this.frame[this.#at++]!
  }

  u16(): number {
    this.#need(2)
    const value = (this.frame[this.#at]! << 8) | this.frame[this.#at + 1]!
    this.#at += 2
    return value
  }

  u32(): number {
    this.#need(4)
    const value = readU32(this.frame, this.#at)
    this.#at += 4
    return value
  }

  u64(): number {
    const high = this.u32()
    return high * 2 ** 32 + this.u32()
  }

  bytes(count: number): Uint8Array {
    this.#need(count)
    const view = this.frame.subarray(this.#at, this.#at + count)
    this.#at += count
    return view
  }

  rest(): Uint8Array {
    return this.bytes(this.remaining)
  }

  topic(): string {
    const length = this.u16()
    if (length > MAX_TOPIC_BYTES) throw bad(`topic is longer than ${MAX_TOPIC_BYTES} bytes`)
    try {
      return utf8.decode(this.bytes(length))
    } catch (error) {
      if (error instanceof ProtocolError) throw error
      throw bad("topic is not valid UTF-8")
    }
  }

  /** A topic name: a string as `topic()` reads it, that is also a valid topic. */
  topicName(): string {
    const topic = this.topic()
    const problem = topicProblem(topic)
    if (problem !== null) throw bad(problem)
    return topic
  }

  end(): void {
    if (this.remaining !== 0) throw bad(`${this.remaining} unexpected bytes after the body of opcode ${hex(this.opcode)}`)
  }

  #need(count: number): void {
    if (this.remaining < count) throw bad(`the body of opcode ${hex(this.opcode)} ends early`)
  }
}

function bad(text: string): ProtocolError {
  return new ProtocolError("bad_field", text)
}

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`
}

export interface PutEntry {
  readonly topic: string
  readonly payload: Uint8Array
}

export type BinaryRequest =
  | { readonly op: typeof Op.hello; readonly requestId: number; readonly version: number; readonly token: string | null }
  | { readonly op: typeof Op.put; readonly requestId: number; readonly ack: boolean; readonly topic: string; readonly payload: Uint8Array }
  | { readonly op: typeof Op.putMany; readonly requestId: number; readonly ack: boolean; readonly entries: readonly PutEntry[] }
  | {
      readonly op: typeof Op.get | typeof Op.getLatest | typeof Op.subscribe | typeof Op.unsubscribe
      readonly requestId: number
      readonly topic: string
    }
  | { readonly op: typeof Op.getWait; readonly requestId: number; readonly topic: string; readonly timeoutMs: number }
  | { readonly op: typeof Op.ping; readonly requestId: number; readonly body: Uint8Array }
  | { readonly op: typeof Op.stats; readonly requestId: number }
  | { readonly op: typeof Op.cursor; readonly requestId: number; readonly name: string }

export interface RejectedFrame {
  readonly op: "rejected"
  readonly requestId: number
  readonly error: ProtocolError
  readonly fatal: boolean
}

export function requestIdOf(frame: Uint8Array): number {
  return readU32(frame, 6)
}

/**
 * Interprets one request frame. Payloads and bodies are views into `frame`; `detachRequest`
 * copies them when the request must outlive the chunk it came in.
 */
export function readRequest(frame: Uint8Array): BinaryRequest | RejectedFrame {
  const opcode = frame[4]!
  const flags = frame[5]!
  const requestId = requestIdOf(frame)
  const body = new BodyReader(frame, opcode)
  try {
    // An unknown opcode is reported as such whatever its flags, so a client can probe for it.
    if (opcode === 0 || opcode > Op.cursor) {
      return {
        op: "rejected",
        requestId,
        error: new ProtocolError("unknown_action", `unknown opcode ${hex(opcode)}`),
        fatal: false,
      }
    }
    const allowedFlags = opcode === Op.put || opcode === Op.putMany ? Flag.ack : 0
    if ((flags & ~allowedFlags) !== 0) throw bad(`flags ${hex(flags)} are not defined for opcode ${hex(opcode)}`)
    switch (opcode) {
      case Op.hello: {
        const magic = body.bytes(MAGIC.length)
        if (!magic.every((byte, i) => byte === MAGIC[i])) {
          return { op: "rejected", requestId, error: new ProtocolError("malformed_frame", "HELLO must start with DSMQ"), fatal: true }
        }
        const version = body.u8()
        // An optional token follows: u16 length + UTF-8, as a topic is written.
        const token = body.remaining >= 2 ? body.topic() : null
        return { op: Op.hello, requestId, version, token }
      }
      case Op.put: {
        const topic = body.topicName()
        return { op: Op.put, requestId, ack: (flags & Flag.ack) !== 0, topic, payload: body.rest() }
      }
      case Op.putMany: {
        const count = body.u32()
        // Each entry takes at least 6 bytes: checked before allocating for `count` entries.
        if (count * 6 > body.remaining) throw bad(`PUT_MANY announces ${count} messages but the body is too short`)
        const entries: PutEntry[] = []
        for (let i = 0; i < count; i++) {
          const topic = body.topicName()
          entries.push({ topic, payload: body.bytes(body.u32()) })
        }
        body.end()
        return { op: Op.putMany, requestId, ack: (flags & Flag.ack) !== 0, entries }
      }
      case Op.get:
      case Op.getLatest:
      case Op.subscribe:
      case Op.unsubscribe: {
        const topic = body.topicName()
        body.end()
        return { op: opcode, requestId, topic }
      }
      case Op.getWait: {
        const timeoutMs = body.u32()
        if (timeoutMs > MAX_WAIT_MS) throw bad(`GET_WAIT timeout ${timeoutMs} ms is above the maximum of ${MAX_WAIT_MS}`)
        const topic = body.topicName()
        body.end()
        return { op: Op.getWait, requestId, topic, timeoutMs }
      }
      case Op.ping:
        return { op: Op.ping, requestId, body: body.rest() }
      case Op.stats:
        body.end()
        return { op: Op.stats, requestId }
      default: {
        // Op.cursor, the last opcode
        const name = body.topic()
        body.end()
        if (name === "" || Buffer.byteLength(name) > MAX_CURSOR_NAME_BYTES) {
          throw bad(`a cursor name must have 1 to ${MAX_CURSOR_NAME_BYTES} bytes`)
        }
        return { op: Op.cursor, requestId, name }
      }
    }
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error
    return { op: "rejected", requestId, error, fatal: false }
  }
}

/** A copy of the request whose byte fields no longer share memory with the chunk. */
export function detachRequest<R extends BinaryRequest | RejectedFrame>(request: R): R {
  switch (request.op) {
    case Op.put:
      return { ...request, payload: request.payload.slice() }
    case Op.putMany:
      return { ...request, entries: request.entries.map((entry) => ({ topic: entry.topic, payload: entry.payload.slice() })) }
    case Op.ping:
      return { ...request, body: request.body.slice() }
    default:
      return request
  }
}

export type BinaryReply =
  | { readonly op: typeof Op.ok | typeof Op.empty; readonly requestId: number }
  | { readonly op: typeof Op.welcome; readonly requestId: number; readonly version: number; readonly maxFrameBytes: number }
  | { readonly op: typeof Op.putAck; readonly requestId: number; readonly seq: number; readonly count: number }
  | {
      readonly op: typeof Op.message | typeof Op.deliver
      readonly requestId: number
      readonly seq: number
      /** Messages before this one that retention removed unread (0 when the flag is absent). */
      readonly missed: number
      readonly topic: string
      readonly payload: Uint8Array
    }
  | { readonly op: typeof Op.pong | typeof Op.statsReply; readonly requestId: number; readonly body: Uint8Array }
  | {
      readonly op: typeof Op.error
      readonly requestId: number
      readonly fatal: boolean
      readonly code: number
      readonly text: string
    }

/** Interprets one frame from the server (used by the client). Throws ProtocolError on a bad frame. */
export function readReply(frame: Uint8Array): BinaryReply {
  const opcode = frame[4]!
  const requestId = requestIdOf(frame)
  const body = new BodyReader(frame, opcode)
  switch (opcode) {
    case Op.ok:
    case Op.empty:
      body.end()
      return { op: opcode, requestId }
    case Op.welcome: {
      const version = body.u8()
      const maxFrameBytes = body.u32()
      return { op: Op.welcome, requestId, version, maxFrameBytes }
    }
    case Op.putAck: {
      const seq = body.u64()
      const count = body.u32()
      return { op: Op.putAck, requestId, seq, count }
    }
    case Op.message:
    case Op.deliver: {
      const seq = body.u64()
      const missed = (frame[5]! & Flag.missed) !== 0 ? body.u32() : 0
      const topic = body.topic()
      return { op: opcode, requestId, seq, missed, topic, payload: body.rest() }
    }
    case Op.pong:
    case Op.statsReply:
      return { op: opcode, requestId, body: body.rest() }
    case Op.error: {
      const code = body.u16()
      return {
        op: Op.error,
        requestId,
        fatal: (frame[5]! & Flag.fatal) !== 0,
        code,
        text: new TextDecoder().decode(body.rest()),
      }
    }
    default:
      throw new ProtocolError("unknown_action", `unknown reply opcode ${hex(opcode)}`)
  }
}

const INITIAL_CAPACITY = 16 * 1024

/**
 * Builds frames back to back in one buffer, so everything produced while handling one chunk
 * (or one tick, on the client) goes out in one write.
 */
export class FrameWriter {
  #bytes = new Uint8Array(INITIAL_CAPACITY)
  #view = new DataView(this.#bytes.buffer)
  #length = 0
  #frameStart = -1

  get length(): number {
    return this.#length
  }

  /** Starts a frame; finish it with `end()`. */
  begin(opcode: number, flags: number, requestId: number): this {
    this.#reserve(HEADER_BYTES)
    this.#frameStart = this.#length
    this.#view.setUint8(this.#length + 4, opcode)
    this.#view.setUint8(this.#length + 5, flags)
    this.#view.setUint32(this.#length + 6, requestId)
    this.#length += HEADER_BYTES
    return this
  }

  end(): void {
    this.#view.setUint32(this.#frameStart, this.frameLength)
    this.#frameStart = -1
  }

  /** The length field of the frame being written: bytes after the length itself. */
  get frameLength(): number {
    return this.#length - this.#frameStart - LENGTH_BYTES
  }

  u8(value: number): this {
    this.#reserve(1)
    this.#bytes[this.#length++] = value
    return this
  }

  u16(value: number): this {
    this.#reserve(2)
    this.#view.setUint16(this.#length, value)
    this.#length += 2
    return this
  }

  u32(value: number): this {
    this.#reserve(4)
    this.#view.setUint32(this.#length, value)
    this.#length += 4
    return this
  }

  u64(value: number): this {
    this.u32(Math.floor(value / 2 ** 32))
    return this.u32(value >>> 0)
  }

  bytes(value: Uint8Array): this {
    this.#reserve(value.length)
    this.#bytes.set(value, this.#length)
    this.#length += value.length
    return this
  }

  /** A u16 length and the UTF-8 bytes of `topic`. */
  topic(topic: string): this {
    this.#reserve(2 + topic.length * 3)
    const { written } = encoder.encodeInto(topic, this.#bytes.subarray(this.#length + 2))
    if (written > MAX_TOPIC_BYTES) throw new ProtocolError("bad_field", `topic is longer than ${MAX_TOPIC_BYTES} bytes`)
    this.#view.setUint16(this.#length, written)
    this.#length += 2 + written
    return this
  }

  /**
   * Bytes written since the last `take`, in memory of their own that later writes do not touch.
   * A small result is copied out and the buffer kept for reuse; a large one takes the buffer
   * along (no copy) and the writer starts a fresh one. Either way the result holds no more
   * memory than about four times its size, which matters when it waits behind a slow reader.
   */
  take(): Uint8Array {
    const length = this.#length
    this.#length = 0
    if (length * 4 < this.#bytes.length) return this.#bytes.slice(0, length)
    const taken = this.#bytes.subarray(0, length)
    this.#bytes = new Uint8Array(INITIAL_CAPACITY)
    this.#view = new DataView(this.#bytes.buffer)
    return taken
  }

  /** Drops a frame begun but not ended (its content turned out to be invalid). */
  abandon(): void {
    if (this.#frameStart >= 0) this.#length = this.#frameStart
    this.#frameStart = -1
  }

  #reserve(count: number): void {
    const needed = this.#length + count
    if (needed <= this.#bytes.length) return
    let capacity = this.#bytes.length * 2
    while (capacity < needed) capacity *= 2
    const grown = new Uint8Array(capacity)
    grown.set(this.#bytes.subarray(0, this.#length))
    this.#bytes = grown
    this.#view = new DataView(grown.buffer)
  }
}

/** A MESSAGE or DELIVER frame; the MISSED flag and count only when something was missed. */
export function writeMessage(
  writer: FrameWriter,
  op: typeof Op.message | typeof Op.deliver,
  requestId: number,
  seq: number,
  missed: number | null,
  topic: string,
  payload: Uint8Array,
): void {
  if (missed === null || missed === 0) writer.begin(op, 0, requestId).u64(seq)
  else writer.begin(op, Flag.missed, requestId).u64(seq).u32(Math.min(missed, 0xffffffff))
  writer.topic(topic).bytes(payload).end()
}

export function writeError(writer: FrameWriter, requestId: number, error: ProtocolError, fatal: boolean): void {
  writer.begin(Op.error, fatal ? Flag.fatal : 0, requestId).u16(ErrorCode[error.errorName as ErrorName])
  writer.bytes(encoder.encode(error.message)).end()
}
