import { describe, expect, test } from "bun:test"
import { Op } from "../../../src/protocol/binary/constants.ts"
import { BinaryDecoder } from "../../../src/protocol/binary/decoder.ts"
import { bytes, encodeRequests, fromHex, rawFrame, req, toHex } from "../../binary-frames.ts"
import { byteByByte, type DecoderFactory, decodeAll, RecordingSink, randomChunks, splitAt } from "../decoder-contract.ts"
import { REQUESTS } from "./sample-requests.ts"

const MAX = 4096
/** A BinaryDecoder whose frames the RecordingSink records as hex (it records text). */
const hexDecoder =
  (max: number): DecoderFactory =>
  (sink) =>
    new BinaryDecoder({ frame: (frame) => sink.frame(bytes(toHex(frame))), fail: (error) => sink.fail(error) }, max)
const decoder = hexDecoder(MAX)

const errorNames = (sink: RecordingSink) => sink.errors.map((error): string => error.errorName)

const FRAMES = REQUESTS.map((request) => toHex(encodeRequests(request)))
const STREAM = encodeRequests(...REQUESTS)

describe("BinaryDecoder", () => {
  test("splits a stream into its frames, header included", () => {
    const sink = decodeAll(decoder, [STREAM])
    expect({ frames: sink.frames, errors: sink.errors }).toEqual({ frames: FRAMES, errors: [] })
  })

  test("gives the same frames for every split point of the stream", () => {
    for (let at = 0; at <= STREAM.length; at++) {
      const sink = decodeAll(decoder, splitAt(STREAM, at))
      expect({ at, frames: sink.frames, errors: sink.errors }).toEqual({ at, frames: FRAMES, errors: [] })
    }
  })

  test("gives the same frames byte by byte", () => {
    const sink = decodeAll(decoder, byteByByte(STREAM))
    expect({ frames: sink.frames, errors: sink.errors }).toEqual({ frames: FRAMES, errors: [] })
  })

  test("gives the same frames for random chunkings of a long stream (fixed seeds)", () => {
    const requests = Array.from({ length: 600 }, (_, i) => {
      const request = REQUESTS[i % REQUESTS.length]!
      return { ...request, requestId: i + 1 }
    })
    const stream = encodeRequests(...requests)
    const frames = requests.map((request) => toHex(encodeRequests(request)))
    for (const seed of [1, 2, 3, 42, 1234, 99_999]) {
      for (const maxChunk of [3, 17, 101, 4096]) {
        const sink = decodeAll(decoder, randomChunks(stream, seed, maxChunk))
        expect({ seed, maxChunk, count: sink.frames.length, errors: sink.errors }).toEqual({
          seed,
          maxChunk,
          count: frames.length,
          errors: [],
        })
        expect(sink.frames).toEqual(frames)
      }
    }
  })

  test.each([0, 1, 5])("a frame length of %d (below 6) is malformed_frame; frames before it are kept", (length) => {
    const bad = new Uint8Array([0, 0, 0, length, 0x04, 0, 0, 0, 0, 1])
    for (const chunks of [[STREAM, bad, STREAM], byteByByte(new Uint8Array([...STREAM, ...bad, ...STREAM]))]) {
      const sink = decodeAll(decoder, chunks)
      expect({ frames: sink.frames, errors: errorNames(sink) }).toEqual({ frames: FRAMES, errors: ["malformed_frame"] })
    }
  })

  test("a frame of the minimum length (6: no body) is a frame", () => {
    const sink = decodeAll(decoder, [fromHex("00000006 0a00 00000001")])
    expect({ frames: sink.frames, errors: sink.errors }).toEqual({ frames: ["000000060a0000000001"], errors: [] })
  })

  test("a length above the maximum is too_large, refused from the length field alone", () => {
    const sink = new RecordingSink()
    const stream = decoder(sink)
    stream.push(encodeRequests(req.ping(1, "x")))
    // Only the 4 bytes of the length: no body is waited for, nothing is buffered.
    stream.push(fromHex((MAX + 1).toString(16).padStart(8, "0")))
    expect({ frames: sink.frames.length, errors: errorNames(sink), buffered: stream.buffered }).toEqual({
      frames: 1,
      errors: ["too_large"],
      buffered: 0,
    })
    // The decoder stays stopped: later bytes are ignored.
    stream.push(encodeRequests(req.ping(2, "y")))
    expect({ frames: sink.frames.length, errors: sink.errors.length }).toEqual({ frames: 1, errors: 1 })
  })

  test("a length of exactly the maximum is accepted", () => {
    const body = new Uint8Array(MAX - 6).fill(7)
    const frame = rawFrame(Op.ping, 0, 1, body)
    const sink = decodeAll(decoder, randomChunks(frame, 5, 1000))
    expect({ frames: sink.frames, errors: sink.errors }).toEqual({ frames: [toHex(frame)], errors: [] })
  })

  test("a length of 2^32 - 1 is too_large, not an overflow", () => {
    const sink = decodeAll(decoder, [fromHex("ffffffff 0900 00000001")])
    expect(errorNames(sink)).toEqual(["too_large"])
  })

  test("hands out complete frames as views of the chunk, without copying", () => {
    const chunk = encodeRequests(req.put(1, "t", "x".repeat(100)), req.get(2, "t"), req.ping(3, "p"))
    const seen: Uint8Array[] = []
    const stream = new BinaryDecoder({ frame: (frame) => seen.push(frame), fail: () => {} }, MAX)
    stream.push(chunk)
    expect(seen.map((frame) => ({ same: frame.buffer === chunk.buffer, offset: frame.byteOffset }))).toEqual([
      { same: true, offset: 0 },
      { same: true, offset: 4 + 6 + 3 + 100 },
      { same: true, offset: 4 + 6 + 3 + 100 + 4 + 6 + 3 },
    ])
    expect(stream.buffered).toBe(0)
  })

  test("copies only an unfinished tail, and completes it from the next chunk", () => {
    const frames = encodeRequests(req.get(1, "t"), req.get(2, "topic"))
    const firstLength = 4 + 6 + 3
    const seen: string[] = []
    const stream = new BinaryDecoder({ frame: (frame) => seen.push(toHex(frame)), fail: () => {} }, MAX)
    stream.push(frames.subarray(0, firstLength + 5))
    expect({ seen: seen.length, buffered: stream.buffered }).toEqual({ seen: 1, buffered: 5 })
    stream.push(frames.subarray(firstLength + 5))
    expect({ seen, buffered: stream.buffered }).toEqual({
      seen: [toHex(frames.subarray(0, firstLength)), toHex(frames.subarray(firstLength))],
      buffered: 0,
    })
  })

  test("waits for a frame's body without error", () => {
    const sink = new RecordingSink()
    const stream = decoder(sink)
    const frame = encodeRequests(req.put(1, "t", "payload"))
    stream.push(frame.subarray(0, 3))
    stream.push(frame.subarray(3, 12))
    expect({ frames: sink.frames, errors: sink.errors, buffered: stream.buffered }).toEqual({
      frames: [],
      errors: [],
      buffered: 12,
    })
    stream.push(frame.subarray(12))
    expect(sink.frames).toEqual([toHex(frame)])
  })
})
