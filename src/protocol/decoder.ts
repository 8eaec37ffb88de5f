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
}
