/** Frames out of chunks: the binary protocol's splitter, the first step for every received byte. */
import { TailBufferingDecoder } from "../decoder.ts"
import { ProtocolError } from "../errors.ts"
import { LENGTH_BYTES, MIN_LENGTH } from "./constants.ts"
import { readU32 } from "./fields.ts"

/**
 * Splits a byte stream into whole frames (header included). A frame that straddles chunks is
 * completed in the tail with just the bytes it lacks; every frame after it is read in place.
 */
export class BinaryDecoder extends TailBufferingDecoder {
  push(chunk: Uint8Array): void {
    if (this.stopped || chunk.length === 0) return
    let position = this.tail.length > 0 ? this.#completeTail(chunk) : 0
    if (position < 0 || this.stopped) return
    while (chunk.length - position >= LENGTH_BYTES) {
      const frameBytes = this.#frameBytes(chunk, position)
      if (frameBytes < 0) return
      const end = position + frameBytes
      if (end > chunk.length) break
      this.sink.frame(chunk.subarray(position, end))
      if (this.stopped) return
      position = end
    }
    if (position < chunk.length) this.tail.append(chunk.subarray(position))
  }

  /** Adds to the tail what its frame lacks, and delivers it once whole: how much of `chunk` that took, or -1 if all of it did not suffice. */
  #completeTail(chunk: Uint8Array): number {
    const tail = this.tail
    let position = 0
    if (tail.length < LENGTH_BYTES) {
      position = Math.min(LENGTH_BYTES - tail.length, chunk.length)
      tail.append(chunk.subarray(0, position))
      if (tail.length < LENGTH_BYTES) return -1
    }
    const frameBytes = this.#frameBytes(tail.view(), 0)
    if (frameBytes < 0) return -1
    const take = Math.min(frameBytes - tail.length, chunk.length - position)
    tail.append(chunk.subarray(position, position + take))
    position += take
    if (tail.length < frameBytes) return -1
    this.sink.frame(tail.view())
    tail.clear()
    return position
  }

  /** The whole size of the frame whose length field is at `position`, or -1 when it is refused (the decoder has failed). */
  #frameBytes(data: Uint8Array, position: number): number {
    const length = readU32(data, position)
    if (length < MIN_LENGTH) {
      this.fail(new ProtocolError("malformed_frame", `frame length ${length} is below the minimum of ${MIN_LENGTH}`))
      return -1
    }
    if (length > this.maxFrameBytes) {
      this.fail(new ProtocolError("too_large", `frame of ${length} bytes is larger than the maximum of ${this.maxFrameBytes}`))
      return -1
    }
    return LENGTH_BYTES + length
  }
}
