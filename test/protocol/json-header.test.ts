import { describe, expect, test } from "bun:test"
import { encodeHeader, JsonHeaderDecoder } from "../../src/protocol/json-header.ts"
import { byteByByte, type DecoderFactory, decodeAll, RecordingSink, randomChunks, splitAt } from "./decoder-contract.ts"

const MAX = 1024
const decoder: DecoderFactory = (sink) => new JsonHeaderDecoder(sink, MAX)
const bytes = (text: string) => new TextEncoder().encode(text)
const framed = (body: string) => encodeHeader(Buffer.byteLength(body)) + body

const BODIES = [
  '{"action": "put", "topic": "greetings", "message": "Hello!"}',
  '{"action":"get","topic":"t"}',
  '{"action":"put","topic":"t","message":"ünïcödé ✓ 🎉 and {"}',
  "{}",
]
const STREAM = BODIES.map(framed).join("")

describe("JsonHeaderDecoder", () => {
  test("encodes upstream's 23-byte header: body length plus 1,000,000", () => {
    expect(encodeHeader(57)).toBe('{"msg_length": 1000057}')
    expect(encodeHeader(57).length).toBe(23)
    expect(encodeHeader(8_999_999).length).toBe(23)
  })

  test("reads each body of a stream", () => {
    const sink = decodeAll(decoder, [bytes(STREAM)])
    expect(sink.errors).toEqual([])
    expect(sink.frames).toEqual(BODIES)
  })

  test("gives the same bodies for every split point, byte by byte and in random chunks", () => {
    const stream = bytes(STREAM)
    for (let at = 0; at <= stream.length; at++) {
      const sink = decodeAll(decoder, splitAt(stream, at))
      expect({ at, frames: sink.frames, errors: sink.errors }).toEqual({ at, frames: BODIES, errors: [] })
    }
    expect(decodeAll(decoder, byteByByte(stream)).frames).toEqual(BODIES)
    for (const seed of [7, 8, 9]) expect(decodeAll(decoder, randomChunks(stream, seed, 30)).frames).toEqual(BODIES)
  })

  test("a body may hold anything, even bytes that look like a header", () => {
    const body = '{"message": "{\\"msg_length\\": 1000001}"}'
    expect(decodeAll(decoder, [bytes(framed(body) + framed("{}"))]).frames).toEqual([body, "{}"])
  })

  test.each([
    ["a header of another shape", '{"length": 1000002}{}', "malformed_frame"],
    ["non-digits in the length", '{"msg_length": 10000x2}{}', "malformed_frame"],
    ["an empty length", '{"msg_length": }', "malformed_frame"],
    ["a length below the offset", '{"msg_length": 0000002}{}', "malformed_frame"],
    ["a length that never ends", `{"msg_length": ${"1".repeat(30)}`, "malformed_frame"],
    ["a body over the maximum", `{"msg_length": ${1_000_000 + MAX + 1}}`, "too_large"],
  ])("fails on %s", (_name, text, errorName) => {
    const sink = decodeAll(decoder, [bytes(framed("{}") + text)])
    expect(sink.frames).toEqual(["{}"])
    expect(sink.errors.map((error): string => error.errorName)).toEqual([errorName])
  })

  test("refuses an oversized body from its header, before buffering any of it", () => {
    const sink = new RecordingSink()
    const stream = new JsonHeaderDecoder(sink, MAX)
    stream.push(bytes(encodeHeader(MAX + 1)))
    expect(sink.errors.map((error) => error.errorName)).toEqual(["too_large"])
    expect(stream.buffered).toBe(0)
  })

  test("waits for an incomplete header or body without error", () => {
    const sink = new RecordingSink()
    const stream = new JsonHeaderDecoder(sink, MAX)
    stream.push(bytes('{"msg_length": 10000'))
    stream.push(bytes("02}{"))
    expect(sink.frames).toEqual([])
    expect(sink.errors).toEqual([])
    expect(stream.buffered).toBe(1)
    stream.push(bytes("}"))
    expect(sink.frames).toEqual(["{}"])
  })
})

test("after a body that straddles two chunks, the rest of the new chunk is read in place", () => {
  const encode = (body: string) => new TextEncoder().encode(`${encodeHeader(body.length)}${body}`)
  const one = encode('{"a":1}')
  const two = encode('{"b":2}')
  const seen: { text: string; inChunk: boolean }[] = []
  const second = new Uint8Array([...one.subarray(30), ...two])
  const stream = new JsonHeaderDecoder(
    { frame: (frame) => seen.push({ text: new TextDecoder().decode(frame), inChunk: frame.buffer === second.buffer }), fail: () => {} },
    1024,
  )
  // The header and part of the body, then the rest of it with a whole second request.
  stream.push(one.subarray(0, 30))
  stream.push(second)
  expect(seen).toEqual([
    { text: '{"a":1}', inChunk: false },
    { text: '{"b":2}', inChunk: true },
  ])
  expect(stream.buffered).toBe(0)
  // A header cut in two is completed from the next chunk, its body read in place.
  seen.length = 0
  const third = new Uint8Array(two.subarray(5))
  const cutHeader = new JsonHeaderDecoder(
    { frame: (frame) => seen.push({ text: new TextDecoder().decode(frame), inChunk: frame.buffer === third.buffer }), fail: () => {} },
    1024,
  )
  cutHeader.push(two.subarray(0, 5))
  cutHeader.push(third)
  expect(seen).toEqual([{ text: '{"b":2}', inChunk: true }])
})
