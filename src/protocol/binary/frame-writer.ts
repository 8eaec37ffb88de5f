/**
 * Writing binary frames: FrameWriter builds them back to back in one growable buffer, and
 * `writeMessage` / `writeError` write the two frames whose layout has a choice in it.
 */

import { BoundedCache } from "../../topic/bounded-cache.ts"
import { MAX_TOPIC_BYTES } from "../../topic/topic-name.ts"
import { ErrorCode, type ErrorName, ProtocolError } from "../errors.ts"
import { Flag, HEADER_BYTES, LENGTH_BYTES, Op } from "./constants.ts"

const encoder = new TextEncoder()

/** Room for many small replies before the buffer first grows; `take` keeps it for reuse. */
const INITIAL_CAPACITY = 16 * 1024
/**
 * Topics whose UTF-8 bytes are kept, so that a push to many subscribers (one frame each) does
 * not encode the topic again for each (encodeInto allocated a view and a result object per
 * frame). At most 1 MiB (1,024 topics of at most MAX_TOPIC_BYTES), shared by every connection.
 */
const TOPIC_BYTES_CACHED = 1024
const topicBytes = new BoundedCache<string, Uint8Array>(TOPIC_BYTES_CACHED)
/** After `lend`, a buffer larger than this is replaced by a fresh one. */
const LENT_CAPACITY_KEPT = 4 * INITIAL_CAPACITY

/** Where `lend` hands bytes: the first `length` of `bytes`, reused once `sendLent` returns. */
export interface LentBytesSink {
  sendLent(bytes: Uint8Array, length: number): void
}

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

  f64(value: number): this {
    this.#reserve(8)
    this.#view.setFloat64(this.#length, value)
    this.#length += 8
    return this
  }

  bytes(value: Uint8Array): this {
    this.#reserve(value.length)
    this.#bytes.set(value, this.#length)
    this.#length += value.length
    return this
  }

  /** A u16 length and the UTF-8 bytes of `topic` (encoded once per topic, see TOPIC_BYTES_CACHED). */
  topic(topic: string): this {
    let encoded = topicBytes.get(topic)
    if (encoded === undefined) {
      encoded = encoder.encode(topic)
      if (encoded.length > MAX_TOPIC_BYTES) throw new ProtocolError("bad_field", `topic is longer than ${MAX_TOPIC_BYTES} bytes`)
      topicBytes.set(topic, encoded)
    }
    this.#reserve(2 + encoded.length)
    this.#view.setUint16(this.#length, encoded.length)
    this.#bytes.set(encoded, this.#length + 2)
    this.#length += 2 + encoded.length
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

  /**
   * Hands the bytes written since the last `take` to `sink` without copying them, and starts
   * over in the same memory once it returns: the sink copies whatever it keeps. A buffer grown
   * far past its start is let go afterwards, so a burst does not pin its memory.
   */
  lend(sink: LentBytesSink): void {
    const length = this.#length
    this.#length = 0
    sink.sendLent(this.#bytes, length)
    if (this.#bytes.length > LENT_CAPACITY_KEPT) {
      this.#bytes = new Uint8Array(INITIAL_CAPACITY)
      this.#view = new DataView(this.#bytes.buffer)
    }
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
  /** The put time, for a connection that asked for them in HELLO; null leaves it out. */
  putAt: number | null = null,
): void {
  const hasMissed = missed !== null && missed !== 0
  writer.begin(op, (hasMissed ? Flag.missed : 0) | (putAt === null ? 0 : Flag.putTime), requestId).u64(seq)
  if (hasMissed) writer.u32(Math.min(missed, 0xffffffff))
  if (putAt !== null) writer.f64(putAt)
  writer.topic(topic).bytes(payload).end()
}

export function writeError(writer: FrameWriter, requestId: number, error: ProtocolError, fatal: boolean): void {
  writer.begin(Op.error, fatal ? Flag.fatal : 0, requestId).u16(ErrorCode[error.errorName as ErrorName])
  writer.bytes(encoder.encode(error.message)).end()
}
