import { describe, expect, test } from "bun:test"
import { JsonStreamDecoder } from "../../src/protocol/json-stream.ts"
import { byteByByte, type DecoderFactory, decodeAll, RecordingSink, randomChunks, splitAt } from "./decoder-contract.ts"

const MAX = 1024
const decoderWithMax =
  (max: number): DecoderFactory =>
  (sink) =>
    new JsonStreamDecoder(sink, max)
const decoder: DecoderFactory = decoderWithMax(MAX)
const bytes = (text: string) => new TextEncoder().encode(text)

// Objects chosen to trip a naive scanner: braces and quotes inside strings, escapes,
// nesting, multi-byte UTF-8, and whitespace between objects.
const TRICKY = [
  '{"action": "put", "topic": "greetings", "message": "Hello!"}',
  '{"action":"put","topic":"t","message":"braces } { and \\"quotes\\" inside"}',
  '{"action":"put","topic":"t","message":"backslash at end \\\\"}',
  '{"action":"put","topic":"t","message":"ünïcödé ✓ 🎉 日本"}',
  '{"action":"get","topic":"t","nested":{"a":[{"b":"}"}]}}',
]
const [first, second, third, fourth, fifth] = TRICKY
const STREAM = `${first}${second}\n${third} \r\n\t${fourth}${fifth}\n`

describe("JsonStreamDecoder", () => {
  test("finds each object in a concatenated stream", () => {
    const sink = decodeAll(decoder, [bytes(STREAM)])
    expect(sink.errors).toEqual([])
    expect(sink.frames).toEqual(TRICKY)
  })

  test("gives the same objects for every split point of the stream", () => {
    const stream = bytes(STREAM)
    for (let at = 0; at <= stream.length; at++) {
      const sink = decodeAll(decoder, splitAt(stream, at))
      expect({ at, frames: sink.frames, errors: sink.errors }).toEqual({ at, frames: TRICKY, errors: [] })
    }
  })

  test("gives the same objects byte by byte, including inside multi-byte characters", () => {
    const sink = decodeAll(decoder, byteByByte(bytes(STREAM)))
    expect(sink.frames).toEqual(TRICKY)
  })

  test("gives the same objects for random chunkings of a long stream", () => {
    const objects = Array.from({ length: 500 }, (_, i) => `{"action":"put","topic":"t${i % 7}","message":"m${i} }{\\""}`)
    const stream = bytes(objects.map((object, i) => (i % 3 === 0 ? `${object}\n` : object)).join(""))
    for (const seed of [1, 2, 3, 42, 1234]) {
      const sink = decodeAll(decoder, randomChunks(stream, seed, 97))
      expect(sink.frames.length).toBe(objects.length)
      expect(sink.frames).toEqual(objects)
    }
  })

  test("long strings full of escapes and braces split anywhere (fixed-seed random)", () => {
    let state = 99
    const random = (n: number) => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) % n
    const alphabet = ['"', "\\", "{", "}", "a", "é", " ", "\n", "🎉"]
    const objects = Array.from({ length: 40 }, (_, i) => {
      const message = Array.from({ length: random(3000) }, () => alphabet[random(alphabet.length)]).join("")
      return JSON.stringify({ action: "put", topic: `t${i}`, message })
    })
    const stream = bytes(objects.join(" "))
    for (const seed of [5, 6, 7]) {
      const sink = decodeAll(decoderWithMax(1 << 20), randomChunks(stream, seed, 5000))
      expect(sink.errors).toEqual([])
      expect(sink.frames).toEqual(objects)
    }
  })

  test("hands out complete objects as views of the chunk, without copying", () => {
    const chunk = bytes('{"a":1}{"b":2}')
    const views: Uint8Array[] = []
    new JsonStreamDecoder({ frame: (body) => views.push(body), fail: () => {} }, MAX).push(chunk)
    expect(views.map((view) => view.buffer === chunk.buffer)).toEqual([true, true])
  })

  test("holds only the unfinished tail between chunks", () => {
    const sink = new RecordingSink()
    const stream = new JsonStreamDecoder(sink, MAX)
    stream.push(bytes('{"a":1}{"b":'))
    expect(stream.buffered).toBe('{"b":'.length)
    stream.push(bytes("2}"))
    expect(stream.buffered).toBe(0)
    expect(sink.frames).toEqual(['{"a":1}', '{"b":2}'])
  })

  test.each([
    ["a JSON array", "[1,2]", "'['"],
    ["a bare string", '"get"', `'"'`],
    ["a number", "42", "'4'"],
    ["plain text", "hello", "'h'"],
    ["a stray closing brace", "}", "'}'"],
  ])("fails on %s at the top level", (_name, text, shown) => {
    const sink = decodeAll(decoder, [bytes(`{"ok":1} ${text}`)])
    expect(sink.frames).toEqual(['{"ok":1}'])
    expect(sink.errors.length).toBe(1)
    expect(sink.errors[0]!.errorName).toBe("malformed_frame")
    expect(sink.errors[0]!.message).toContain(shown)
  })

  test("fails on an object larger than the maximum, complete in one chunk", () => {
    const big = `{"message":"${"x".repeat(MAX)}"}`
    const sink = decodeAll(decoder, [bytes(`{"ok":1}${big}`)])
    expect(sink.frames).toEqual(['{"ok":1}'])
    expect(sink.errors.map((error) => error.errorName)).toEqual(["too_large"])
  })

  test("fails on an unfinished object once it passes the maximum, without buffering more", () => {
    const sink = new RecordingSink()
    const stream = new JsonStreamDecoder(sink, MAX)
    stream.push(bytes('{"message":"'))
    for (let i = 0; i < 100 && sink.errors.length === 0; i++) stream.push(bytes("x".repeat(100)))
    expect(sink.errors.map((error) => error.errorName)).toEqual(["too_large"])
    expect(stream.buffered).toBe(0)
    stream.push(bytes('"}{"a":1}'))
    expect(sink.frames).toEqual([])
  })

  test("accepts an object of exactly the maximum size", () => {
    const body = `{"m":"${"x".repeat(MAX - 8)}"}`
    expect(body.length).toBe(MAX)
    expect(decodeAll(decoder, splitAt(bytes(body), 500)).frames).toEqual([body])
  })

  test("stop() inside a frame callback ends decoding of the rest of the chunk", () => {
    const frames: string[] = []
    const stream: JsonStreamDecoder = new JsonStreamDecoder(
      {
        frame: (body) => {
          frames.push(new TextDecoder().decode(body))
          stream.stop()
        },
        fail: () => {},
      },
      MAX,
    )
    stream.push(bytes('{"a":1}{"b":2}'))
    stream.push(bytes('{"c":3}'))
    expect(frames).toEqual(['{"a":1}'])
  })
})

test("after an object that straddles two chunks, the rest of the new chunk is read in place", () => {
  const seen: { text: string; inChunk: boolean }[] = []
  const second = bytes('1}{"b":2}')
  const stream = new JsonStreamDecoder(
    { frame: (frame) => seen.push({ text: new TextDecoder().decode(frame), inChunk: frame.buffer === second.buffer }), fail: () => {} },
    MAX,
  )
  stream.push(bytes('{"a":'))
  expect(stream.buffered).toBe(5)
  stream.push(second)
  // The straddling object is the tail plus the two bytes that complete it; the next is a view of the chunk.
  expect(seen).toEqual([
    { text: '{"a":1}', inChunk: false },
    { text: '{"b":2}', inChunk: true },
  ])
  expect(stream.buffered).toBe(0)
})

test("an object straddling chunks is held to the size limit as it grows", () => {
  const errors: string[] = []
  const stream = new JsonStreamDecoder({ frame: () => {}, fail: (error) => errors.push(error.errorName) }, 16)
  stream.push(bytes('{"a":"0123'))
  stream.push(bytes("4567890"))
  expect(errors).toEqual(["too_large"])
})
