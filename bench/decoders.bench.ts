/**
 * Wire-format costs: splitting a byte stream into requests (both JSON framings and the binary
 * protocol), parsing a body into a request, and encoding a reply (JSON text, binary frames).
 *
 *   bun run bench/decoders.bench.ts        (BENCH_QUICK=1 for fewer sizes and a shorter run)
 *
 * The requests are dsmq puts of topic "bench" with a message of 16 B, 256 B, 4 KiB or 64 KiB of
 * ASCII text (no escapes): `{"action":"put","topic":"bench","message":"..."}` for the JSON
 * protocols, a PUT frame (docs/PROTOCOL.md) for the binary one. One decoder iteration pushes a
 * whole stream of such requests (about 1 MiB, whole requests only, so the decoder is back at a
 * request boundary after every iteration), either one request per chunk or cut into 64 KiB
 * chunks that split requests anywhere. mitata's time is per stream; the table printed at the
 * end divides it into ns per frame and MB/s.
 *
 * The JSON decoders only find request boundaries (parseJsonRequest is measured on its own);
 * the binary case is BinaryDecoder and readRequest together, i.e. the whole of binary decoding,
 * because readRequest is a handful of reads where JSON needs a UTF-8 decode and JSON.parse.
 */
import { bench, do_not_optimize, group, summary } from "mitata"
import { Op } from "../src/protocol/binary/constants.ts"
import { BinaryDecoder } from "../src/protocol/binary/decoder.ts"
import { FrameWriter } from "../src/protocol/binary/frame-writer.ts"
import { readRequest } from "../src/protocol/binary/request.ts"
import type { FrameDecoder, FrameSink } from "../src/protocol/decoder.ts"
import { WireProtocol } from "../src/protocol/detect.ts"
import type { ProtocolError } from "../src/protocol/errors.ts"
import { encodeHeader, JsonHeaderDecoder } from "../src/protocol/json-header.ts"
import { frameReply, messageReply } from "../src/protocol/json-reply.ts"
import { parseJsonRequest } from "../src/protocol/json-request.ts"
import { JsonStreamDecoder } from "../src/protocol/json-stream.ts"
import { DEFAULT_MAX_MESSAGE_BYTES } from "../src/start-server.ts"
import { ALLOCATING_GC, formatBytes, formatMicros, printTable, QUICK, runBenchmarks, writeResults } from "./common.ts"

/** Quick runs keep the two extremes (64 KiB is the one that spans 64 KiB chunks). */
const MESSAGE_SIZES: readonly number[] = QUICK ? [16, 64 * 1024] : [16, 256, 4 * 1024, 64 * 1024]
/** Replies encoded into one FrameWriter before each `take()` in the batched encoder case. */
const REPLIES_PER_TAKE = 32
const CHUNK_BYTES = 64 * 1024
/** Bytes of requests pushed per decoder iteration (rounded up to whole requests). */
const STREAM_BYTES = QUICK ? 256 * 1024 : 1024 * 1024

const encoder = new TextEncoder()

function messageText(size: number): string {
  let text = ""
  const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.,:"
  for (let i = 0; i < size; i++) text += alphabet[(i * 7 + (i >> 5)) % alphabet.length]
  return text
}

function putBody(size: number): Uint8Array {
  return encoder.encode(JSON.stringify({ action: "put", topic: "bench", message: messageText(size) }))
}

/** A binary PUT frame (no ACK) of `size` bytes of the same text. */
function putFrame(size: number): Uint8Array {
  const writer = new FrameWriter()
  writer
    .begin(Op.put, 0, 1)
    .topic("bench")
    .bytes(encoder.encode(messageText(size)))
    .end()
  return writer.take()
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

/** Counts what the JSON decoders find: frames and body bytes. */
class CountingSink implements FrameSink {
  frames = 0
  bytes = 0

  frame(body: Uint8Array): void {
    this.frames++
    this.bytes += body.length
  }

  fail(error: ProtocolError): void {
    throw error
  }
}

/** Reads each binary frame into a request, as the server does, and counts payload bytes. */
class RequestSink extends CountingSink {
  override frame(frame: Uint8Array): void {
    const request = readRequest(frame)
    if (request.op !== Op.put) throw new Error(`binary frame decoded to ${String(request.op)}`)
    this.frames++
    this.bytes += request.payload.length
  }
}

type Framing = "json-stream" | "json-header" | "binary"
const FRAMINGS: readonly Framing[] = ["json-stream", "json-header", "binary"]
type Chunking = "1 request/chunk" | "64 KiB chunks"

/** One decoder benchmark: what one iteration pushes, and how much of it there is. */
interface DecodeCase {
  readonly name: string
  readonly framing: Framing
  readonly chunking: Chunking
  readonly messageBytes: number
  readonly frames: number
  readonly wireBytes: number
  readonly chunks: readonly Uint8Array[]
}

const decodeCases: DecodeCase[] = []
const perRequestCases: { name: string; bytes: number; perIteration?: number }[] = []

function makeSink(framing: Framing): CountingSink {
  return framing === "binary" ? new RequestSink() : new CountingSink()
}

function makeDecoder(framing: Framing, sink: FrameSink): FrameDecoder {
  switch (framing) {
    case "json-stream":
      return new JsonStreamDecoder(sink, DEFAULT_MAX_MESSAGE_BYTES)
    case "json-header":
      return new JsonHeaderDecoder(sink, DEFAULT_MAX_MESSAGE_BYTES)
    case "binary":
      return new BinaryDecoder(sink, DEFAULT_MAX_MESSAGE_BYTES)
  }
}

/** Pushes every chunk once; returns nothing so the only effect is on the decoder and sink. */
function pushAll(decoder: FrameDecoder, chunks: readonly Uint8Array[]): void {
  for (let i = 0; i < chunks.length; i++) decoder.push(chunks[i]!)
}

const decoderLabel = (framing: Framing): string => (framing === "binary" ? "binary + readRequest" : framing)

for (const messageBytes of MESSAGE_SIZES) {
  const body = putBody(messageBytes)
  const requests: Record<Framing, Uint8Array> = {
    "json-stream": body,
    "json-header": concat([encoder.encode(encodeHeader(body.length)), body]),
    binary: putFrame(messageBytes),
  }
  // What the probe sink must count per frame: JSON bodies, or binary payloads.
  const bytesPerFrame: Record<Framing, number> = { "json-stream": body.length, "json-header": body.length, binary: messageBytes }
  group(`decode put requests with a ${formatBytes(messageBytes)} message (a ~${formatBytes(STREAM_BYTES)} stream per iteration)`, () => {
    summary(() => {
      for (const framing of FRAMINGS) {
        const request = requests[framing]
        const frames = Math.ceil(STREAM_BYTES / request.length)
        const stream = concat(Array.from({ length: frames }, () => request))
        const chunkings: Record<Chunking, Uint8Array[]> = {
          "1 request/chunk": Array.from({ length: frames }, () => request),
          "64 KiB chunks": Array.from({ length: Math.ceil(stream.length / CHUNK_BYTES) }, (_, i) =>
            stream.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES),
          ),
        }
        for (const chunking of ["1 request/chunk", "64 KiB chunks"] as const) {
          const chunks = chunkings[chunking]
          const decodeCase: DecodeCase = {
            name: `${decoderLabel(framing)} · ${formatBytes(messageBytes)} · ${chunking}`,
            framing,
            chunking,
            messageBytes,
            frames,
            wireBytes: stream.length,
            chunks,
          }
          decodeCases.push(decodeCase)

          // The stream must decode to exactly `frames` requests and leave nothing buffered.
          const probe = makeSink(framing)
          const probeDecoder = makeDecoder(framing, probe)
          pushAll(probeDecoder, chunks)
          if (probe.frames !== frames || probe.bytes !== frames * bytesPerFrame[framing] || probeDecoder.buffered !== 0) {
            throw new Error(`${decodeCase.name}: decoded ${probe.frames} frames, ${probeDecoder.buffered} bytes left`)
          }

          bench(decodeCase.name, function* () {
            const sink = makeSink(framing)
            const decoder = makeDecoder(framing, sink)
            yield () => {
              pushAll(decoder, chunks)
              do_not_optimize(sink.bytes)
            }
          }).gc(ALLOCATING_GC)
        }
      }
    })
  })
}

const bodies = MESSAGE_SIZES.map((size) => ({ size, body: putBody(size) }))

group("parseJsonRequest: one put body -> Request (UTF-8 decode + JSON.parse + checks)", () => {
  summary(() => {
    for (const { size, body } of bodies) {
      const check = parseJsonRequest(body)
      if (check.action !== "put" || check.message.length !== size) throw new Error("parseJsonRequest failed")
      const name = `parseJsonRequest · ${formatBytes(size)}`
      perRequestCases.push({ name, bytes: body.length })
      bench(name, () => do_not_optimize(parseJsonRequest(body))).gc(ALLOCATING_GC)
    }
  })
})

// Replies: a stored message (its payload is the put message's UTF-8 bytes) turned into the
// text the connection sends, and finally into the bytes it writes (Buffer.from, as #flush does).
const payloads = MESSAGE_SIZES.map((size) => ({ size, payload: encoder.encode(messageText(size)) }))

group("messageReply: stored message -> reply body", () => {
  summary(() => {
    for (const { size, payload } of payloads) {
      const name = `messageReply · ${formatBytes(size)}`
      perRequestCases.push({ name, bytes: messageReply(1, payload).length })
      bench(name, () => do_not_optimize(messageReply(123_456, payload))).gc(ALLOCATING_GC)
    }
  })
})

group("frameReply (json-header framing): reply body -> header + body", () => {
  summary(() => {
    for (const { size, payload } of payloads) {
      const body = messageReply(123_456, payload)
      const framed = frameReply(WireProtocol.jsonHeader, body)
      if (!framed.endsWith(body) || framed.length !== body.length + 23) throw new Error("unexpected json-header framing")
      const name = `frameReply · ${formatBytes(size)}`
      perRequestCases.push({ name, bytes: framed.length })
      bench(name, () => do_not_optimize(frameReply(WireProtocol.jsonHeader, body))).gc(ALLOCATING_GC)
    }
  })
})

group("whole reply: messageReply + frameReply (json-header) + Buffer.from", () => {
  summary(() => {
    for (const { size, payload } of payloads) {
      const name = `reply bytes · ${formatBytes(size)}`
      perRequestCases.push({ name, bytes: frameReply(WireProtocol.jsonHeader, messageReply(1, payload)).length })
      bench(name, () => do_not_optimize(Buffer.from(frameReply(WireProtocol.jsonHeader, messageReply(123_456, payload))))).gc(ALLOCATING_GC)
    }
  })
})

// Binary replies: the MESSAGE frame a GET gets (a DELIVER push is the same bytes with another
// opcode), written into a FrameWriter as the session does. The server takes the writer's bytes
// once per handled chunk, so both ends are measured: one reply per take (a lone request, as in
// a round trip) and ${REPLIES_PER_TAKE} replies per take (a subscriber fed a burst), per frame.
function writeMessage(writer: FrameWriter, payload: Uint8Array): void {
  writer.begin(Op.message, 0, 77).u64(123_456).topic("bench").bytes(payload).end()
}

group("binary reply: FrameWriter MESSAGE frame(s) + take()", () => {
  summary(() => {
    for (const { size, payload } of payloads) {
      const probe = new FrameWriter()
      writeMessage(probe, payload)
      const frameBytes = probe.take().length
      if (frameBytes !== 10 + 8 + 2 + 5 + size) throw new Error(`unexpected MESSAGE frame of ${frameBytes} bytes`)

      const single = `binary reply · ${formatBytes(size)}`
      perRequestCases.push({ name: single, bytes: frameBytes })
      bench(single, function* () {
        const writer = new FrameWriter()
        yield () => {
          writeMessage(writer, payload)
          return do_not_optimize(writer.take())
        }
      }).gc(ALLOCATING_GC)

      const batched = `binary reply ×${REPLIES_PER_TAKE}/take · ${formatBytes(size)}`
      perRequestCases.push({ name: batched, bytes: frameBytes, perIteration: REPLIES_PER_TAKE })
      bench(batched, function* () {
        const writer = new FrameWriter()
        yield () => {
          for (let i = 0; i < REPLIES_PER_TAKE; i++) writeMessage(writer, payload)
          return do_not_optimize(writer.take())
        }
      }).gc(ALLOCATING_GC)
    }
  })
})

const stats = await runBenchmarks()

/** Bytes per nanosecond is GB/s; times 1000 is MB/s (10^6 bytes per second). */
const megabytesPerSecond = (bytes: number, ns: number): string => ((bytes / ns) * 1000).toFixed(0)

printTable(
  "Decoders: per frame (mitata's time per stream divided by the frames in it)",
  ["decoder · message · chunking", "frames/iter", "ns/frame p50", "ns/frame avg", "MB/s (p50)"],
  decodeCases.flatMap((c) => {
    const result = stats.get(c.name)
    if (result === undefined) return []
    return [
      [
        c.name,
        String(c.frames),
        (result.p50 / c.frames).toFixed(0),
        (result.avg / c.frames).toFixed(0),
        megabytesPerSecond(c.wireBytes, result.p50),
      ],
    ]
  }),
)

printTable(
  "Per request/reply: median time and throughput (bytes = the request body, the reply text, or the binary frame)",
  ["benchmark", "bytes", "µs p50", "MB/s (p50)"],
  perRequestCases.flatMap(({ name, bytes, perIteration = 1 }) => {
    const result = stats.get(name)
    if (result === undefined) return []
    const ns = result.p50 / perIteration
    return [[perIteration === 1 ? name : `${name} (per frame)`, String(bytes), formatMicros(ns), megabytesPerSecond(bytes, ns)]]
  }),
)

// The whole decode of one put, from wire bytes to a request, for each protocol: the JSON
// framings' boundary search plus parseJsonRequest (medians added up), and binary framing with
// readRequest (measured together), in 64 KiB chunks.
const decodePerFrame = (framing: Framing, size: number): number | undefined => {
  const decodeCase = decodeCases.find((c) => c.framing === framing && c.messageBytes === size && c.chunking === "64 KiB chunks")
  const result = decodeCase === undefined ? undefined : stats.get(decodeCase.name)
  return decodeCase === undefined || result === undefined ? undefined : result.p50 / decodeCase.frames
}
const wholeRows = MESSAGE_SIZES.flatMap((size) => {
  const parse = stats.get(`parseJsonRequest · ${formatBytes(size)}`)?.p50
  const stream = decodePerFrame("json-stream", size)
  const header = decodePerFrame("json-header", size)
  const binary = decodePerFrame("binary", size)
  if (parse === undefined || stream === undefined || header === undefined || binary === undefined) return []
  return [
    [
      formatBytes(size),
      formatMicros(stream + parse),
      formatMicros(header + parse),
      formatMicros(binary),
      `${((stream + parse) / binary).toFixed(1)}x`,
    ],
  ]
})
if (wholeRows.length > 0) {
  printTable(
    "Whole put decode, wire bytes -> request, 64 KiB chunks: µs per request (p50; JSON = framing + parseJsonRequest)",
    ["message", "json-stream", "json-header", "binary", "json-stream / binary"],
    wholeRows,
  )
}

await writeResults("decoders")
