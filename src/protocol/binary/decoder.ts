/** Frames out of chunks: the binary protocol's splitter, the first step for every received byte. */
import { TailBufferingDecoder } from "../decoder.ts"
import { ProtocolError } from "../errors.ts"
import { LENGTH_BYTES, MIN_LENGTH } from "./constants.ts"
import { readU32 } from "./fields.ts"

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
