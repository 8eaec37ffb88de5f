import { ByteBuffer } from "./byte-buffer.ts"
import type { ProtocolError } from "./errors.ts"

/** Receives what a decoder finds in a byte stream. */
export interface FrameSink {
  /** One complete request body. `body` is a view into the decoder's memory, valid only during the call. */
  frame(body: Uint8Array): void
  /** The stream cannot be split into requests any more; no frame follows. */
  fail(error: ProtocolError): void
}

/** Splits a byte stream, delivered in arbitrary chunks, into request bodies. */
export interface FrameDecoder {
  push(chunk: Uint8Array): void
  /** Stop delivering frames, including the rest of the chunk being pushed. */
  stop(): void
  /** Bytes held for an incomplete frame. */
  readonly buffered: number
  /** Changes the largest frame accepted from here on (raised once a client has authenticated). */
  setMaxFrameBytes(bytes: number): void
}

/**
 * What every decoder shares: complete frames are read in place from the pushed chunk; a frame
 * cut by the chunk's end is copied into `tail`, completed there with just the bytes of the next
 * chunk it lacks, and the rest of that chunk is read in place again.
 */
export abstract class TailBufferingDecoder implements FrameDecoder {
  protected readonly sink: FrameSink
  protected maxFrameBytes: number
  protected readonly tail = new ByteBuffer()
  protected stopped = false

  constructor(sink: FrameSink, maxFrameBytes: number) {
    this.sink = sink
    this.maxFrameBytes = maxFrameBytes
  }

  abstract push(chunk: Uint8Array): void

  setMaxFrameBytes(bytes: number): void {
    this.maxFrameBytes = bytes
  }

  get buffered(): number {
    return this.tail.length
  }

  stop(): void {
    this.stopped = true
    this.tail.clear()
  }

  protected fail(error: ProtocolError): void {
    this.stop()
    this.sink.fail(error)
  }
}
