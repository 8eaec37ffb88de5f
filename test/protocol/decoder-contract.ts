/**
 * A sink that records what a decoder reports, and helpers that feed a byte stream in every
 * possible way (one piece, split at every point, byte by byte, random chunks).
 */
import type { FrameDecoder, FrameSink } from "../../src/protocol/decoder.ts"
import type { ProtocolError } from "../../src/protocol/errors.ts"

const utf8 = new TextDecoder()

export class RecordingSink implements FrameSink {
  readonly frames: string[] = []
  readonly errors: ProtocolError[] = []
  frame(body: Uint8Array): void {
    this.frames.push(utf8.decode(body))
  }
  fail(error: ProtocolError): void {
    this.errors.push(error)
  }
}

export type DecoderFactory = (sink: FrameSink) => FrameDecoder

export function decodeAll(factory: DecoderFactory, chunks: Uint8Array[]): RecordingSink {
  const sink = new RecordingSink()
  const decoder = factory(sink)
  for (const chunk of chunks) decoder.push(chunk)
  return sink
}

/** The stream split into two chunks at `at`. */
export function splitAt(bytes: Uint8Array, at: number): Uint8Array[] {
  return [bytes.subarray(0, at), bytes.subarray(at)]
}

export function byteByByte(bytes: Uint8Array): Uint8Array[] {
  return Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1))
}

/** Deterministic chunking (a fixed-seed LCG), so a failure can be replayed. */
export function randomChunks(bytes: Uint8Array, seed: number, maxChunk: number): Uint8Array[] {
  const chunks: Uint8Array[] = []
  let state = seed >>> 0
  for (let start = 0; start < bytes.length; ) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    const size = 1 + (state % maxChunk)
    chunks.push(bytes.subarray(start, start + size))
    start += size
  }
  return chunks
}
