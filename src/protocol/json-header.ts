/**
 * Generation 2 framing: every message, in both directions, is a JSON header
 * `{"msg_length": N}` followed by a JSON body of N - 1,000,000 bytes. The offset keeps the
 * header exactly 23 bytes for bodies under 9,000,000 bytes, which is what upstream clients read.
 */
import { TailBufferingDecoder } from "./decoder.ts"
import { ProtocolError } from "./errors.ts"
import { describeByte } from "./json-stream.ts"

export const LENGTH_OFFSET = 1_000_000
export const HEADER_PREFIX = '{"msg_length": '
/** Upstream headers are 23 bytes; allow a longer number (larger bodies) and nothing more. */
const MAX_HEADER_BYTES = 40
const RIGHT_BRACE = 0x7d
const DIGIT_0 = 0x30
const DIGIT_9 = 0x39
const PREFIX_BYTES = new TextEncoder().encode(HEADER_PREFIX)

export function encodeHeader(bodyBytes: number): string {
  return `${HEADER_PREFIX}${bodyBytes + LENGTH_OFFSET}}`
}

const AWAITING_HEADER = -1

export class JsonHeaderDecoder extends TailBufferingDecoder {
  /** Body length announced by the last header, or AWAITING_HEADER. */
  #bodyBytes = AWAITING_HEADER

  push(chunk: Uint8Array): void {
    if (this.stopped || chunk.length === 0) return
    const data = chunk
    let position = 0
    if (this.tail.length > 0) {
      position = this.#completeTail(chunk)
      if (position < 0) return
    }
    for (;;) {
      if (this.#bodyBytes === AWAITING_HEADER) {
        const headerEnd = this.#readHeader(data, position)
        if (headerEnd < 0) break
        position = headerEnd
      }
      if (data.length - position < this.#bodyBytes) break
      const end = position + this.#bodyBytes
      this.#bodyBytes = AWAITING_HEADER
      this.sink.frame(data.subarray(position, end))
      if (this.stopped) return
      position = end
    }
    if (this.stopped) return
    if (position < data.length) this.tail.append(data.subarray(position))
  }

  /**
   * Finishes what the tail holds with the fewest bytes of `chunk`: the rest of a header (at most
   * MAX_HEADER_BYTES), or the rest of a body, which then goes out as a frame. Returns where in
   * `chunk` decoding goes on in place, or -1 when the chunk was used up (or the stream failed).
   */
  #completeTail(chunk: Uint8Array): number {
    const had = this.tail.length
    if (this.#bodyBytes === AWAITING_HEADER) {
      this.tail.append(chunk.subarray(0, Math.max(0, MAX_HEADER_BYTES - had)))
      const headerEnd = this.#readHeader(this.tail.view(), 0)
      // Still arriving (all of this chunk is in the tail then: the header is shorter than
      // MAX_HEADER_BYTES, or it failed), or complete.
      if (headerEnd < 0) return -1
      this.tail.clear()
      return headerEnd - had
    }
    const need = this.#bodyBytes - had
    if (chunk.length < need) {
      this.tail.append(chunk)
      return -1
    }
    this.tail.append(chunk.subarray(0, need))
    this.#bodyBytes = AWAITING_HEADER
    this.sink.frame(this.tail.view())
    this.tail.clear()
    return this.stopped ? -1 : need
  }

  /** Parses a header at `start`; returns the offset after it, or -1 if incomplete or failed. */
  #readHeader(data: Uint8Array, start: number): number {
    const available = Math.min(data.length - start, MAX_HEADER_BYTES)
    const prefixChecked = Math.min(available, PREFIX_BYTES.length)
    for (let i = 0; i < prefixChecked; i++) {
      if (data[start + i] !== PREFIX_BYTES[i]) {
        this.fail(
          new ProtocolError(
            "malformed_frame",
            `expected a '${HEADER_PREFIX}N}' header but got ${describeByte(data[start + i]!)} at header byte ${i}`,
          ),
        )
        return -1
      }
    }
    let value = 0
    let digits = 0
    for (let i = PREFIX_BYTES.length; i < available; i++) {
      const byte = data[start + i]!
      if (byte >= DIGIT_0 && byte <= DIGIT_9) {
        value = value * 10 + (byte - DIGIT_0)
        digits++
        continue
      }
      if (byte !== RIGHT_BRACE || digits === 0) break
      if (value < LENGTH_OFFSET) {
        this.fail(new ProtocolError("malformed_frame", `msg_length ${value} is below the ${LENGTH_OFFSET} offset`))
        return -1
      }
      const bodyBytes = value - LENGTH_OFFSET
      if (bodyBytes > this.maxFrameBytes) {
        this.fail(
          new ProtocolError("too_large", `announced body of ${bodyBytes} bytes is larger than the maximum of ${this.maxFrameBytes} bytes`),
        )
        return -1
      }
      this.#bodyBytes = bodyBytes
      return start + i + 1
    }
    // Either the header is still arriving, or it holds something other than digits and '}'.
    const seen = data.length - start
    const clean = digits === available - prefixChecked || available <= PREFIX_BYTES.length
    if (clean && seen < MAX_HEADER_BYTES) return -1
    this.fail(new ProtocolError("malformed_frame", `malformed '${HEADER_PREFIX}N}' header`))
    return -1
  }
}
