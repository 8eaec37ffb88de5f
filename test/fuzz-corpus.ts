/**
 * The fuzz corpus shared by test/fuzz.test.ts (bounded, under `bun test`) and bench/fuzz.ts
 * (long-running): a seeded PRNG, valid traffic for each protocol the server speaks, mutators
 * that corrupt it, random chunking of the writes, and validators that check the server's
 * replies are well-formed for their protocol. Pure: no sockets, no timers (the drivers that
 * send a case to a server are in test/fuzz-drivers.ts).
 *
 * A case is a function of (seed, index) only (`caseRng`), so any failure is replayed from the
 * two numbers.
 */

import { MAGIC, Op } from "../src/protocol/binary/constants.ts"
import { BinaryDecoder } from "../src/protocol/binary/decoder.ts"
import { FrameWriter } from "../src/protocol/binary/frame-writer.ts"
import { type BinaryReply, readReply } from "../src/protocol/binary/reply.ts"
import { detectProtocol, WireProtocol } from "../src/protocol/detect.ts"
import { ErrorCode, type ProtocolError } from "../src/protocol/errors.ts"
import { encodeHeader, JsonHeaderDecoder } from "../src/protocol/json-header.ts"
import { upstreamMessageReply } from "../src/protocol/json-reply.ts"
import { JsonStreamDecoder } from "../src/protocol/json-stream.ts"

// ---------------------------------------------------------------------------------------------
// The PRNG
// ---------------------------------------------------------------------------------------------

/** sfc32, seeded through splitmix32: fast, 32-bit, and the same sequence on every machine. */
export class Rng {
  #a: number
  #b: number
  #c: number
  #d: number

  constructor(seed: number, stream = 0) {
    let state = (seed ^ Math.imul(stream, 0x9e3779b9)) >>> 0
    const next = (): number => {
      state = (state + 0x9e3779b9) >>> 0
      let z = state
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.#a = next()
    this.#b = next()
    this.#c = next()
    this.#d = next()
    for (let i = 0; i < 12; i++) this.u32()
  }

  u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0
    this.#d = (this.#d + 1) | 0
    this.#a = this.#b ^ (this.#b >>> 9)
    this.#b = (this.#c + (this.#c << 3)) | 0
    this.#c = (this.#c << 21) | (this.#c >>> 11)
    this.#c = (this.#c + t) | 0
    return t >>> 0
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 2 ** 32) * n)
  }

  /** An integer in [low, high]. */
  range(low: number, high: number): number {
    return low + this.int(high - low + 1)
  }

  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!
  }

  bytes(count: number): Uint8Array {
    const bytes = new Uint8Array(count)
    for (let i = 0; i < count; i++) bytes[i] = this.u32() & 0xff
    return bytes
  }
}

/** The PRNG of case `index` of a run seeded with `seed`. */
export function caseRng(seed: number, index: number): Rng {
  return new Rng(seed, index + 1)
}

// ---------------------------------------------------------------------------------------------
// Samples: valid traffic with marks where the mutators aim
// ---------------------------------------------------------------------------------------------

export const PROTOCOLS = ["json-stream", "json-header", "binary", "ws-json", "ws-binary", "http"] as const
export type Protocol = (typeof PROTOCOLS)[number]

/** A length field in a sample, for the length mutators. */
export interface LengthField {
  readonly at: number
  /** Bytes the field takes (for decimal and hex: the digits). */
  readonly width: number
  readonly encoding: "u32" | "u16" | "decimal" | "hex"
}

/** A byte stream of one protocol, with where its requests and length fields are. */
export interface Sample {
  readonly bytes: Uint8Array
  /** Offsets where requests (frames, objects, headers, HTTP requests) start. */
  readonly starts: readonly number[]
  readonly lengths: readonly LengthField[]
}

export interface CorpusOptions {
  /** The server's --max-message-bytes: a few requests are made just over it. */
  readonly maxFrameBytes: number
  /** Tokens the server accepts, when it requires them: most traffic presents one (the first, mostly). */
  readonly tokens?: readonly string[]
}

/** A token for a request: a valid one mostly, when the server has tokens; a wrong one; or none. */
function tokenFor(rng: Rng, options: CorpusOptions): string | null {
  if (options.tokens === undefined || options.tokens.length === 0) return rng.chance(0.1) ? rng.pick(["", "not-a-token"]) : null
  const roll = rng.int(100)
  // The first token mostly (the one that may write), the others now and then.
  const valid = rng.chance(0.75) ? options.tokens[0]! : rng.pick(options.tokens)
  return roll < 85 ? valid : roll < 92 ? rng.pick(["not-a-valid-token-0000", "", "x"]) : null
}

/** The JSON protocols' first request, when the server requires tokens: an `auth` action (usually). */
function authRequest(rng: Rng, options: CorpusOptions): JsonRequest | null {
  if (options.tokens === undefined) return null
  const token = tokenFor(rng, options)
  return token === null ? null : { action: "auth", token }
}

const encoder = new TextEncoder()
const utf8 = (text: string): Uint8Array => encoder.encode(text)

/** Topics the fuzzed traffic uses. `GOOD_PUSH_TOPIC` is also the good binary client's subscription. */
export const GOOD_PUSH_TOPIC = "good-pushes"
const TOPICS = ["t", "u", "fz/a", "fz/b", "ünï 🎉", "", GOOD_PUSH_TOPIC]
const CURSOR_NAMES = ["c1", "c2", "fz-cursor"]

/** Message texts with every character the JSON scanner treats specially. */
function messageText(rng: Rng): string {
  switch (rng.int(10)) {
    case 0:
      return ""
    case 1:
      return rng.pick(["{", "}", "{}", '"', '\\"', "\\", '{"a": [1, {"b": "}"}]}', "\\u0041", "]"])
    case 2:
      return "ünï 🎉 ∑ \u0000 \u001f \u2028"
    case 3:
      return String.fromCharCode(...Array.from({ length: rng.range(1, 20) }, () => rng.range(0x20, 0x7e)))
    case 4:
      return "x".repeat(rng.range(100, 3000))
    case 5:
      // Lone surrogates: JSON allows them escaped; they are stored as U+FFFD.
      return rng.pick(["\ud800", "a\udc00b", "\ud83c"])
    default:
      return `m${rng.int(1000)} ${rng.pick(["hello", "{x}", 'say "hi"', "a\nb\r\nc", "tab\there"])}`
  }
}

type JsonRequest = Record<string, unknown>

/** Arrays nested `depth` deep: what a recursive parser would overflow its stack on. */
function nested(depth: number): unknown {
  let value: unknown = []
  for (let i = 1; i < depth; i++) value = [value]
  return value
}

/** A request of the JSON protocols; mostly valid, some deliberately refused ones. */
function jsonRequest(rng: Rng, options: CorpusOptions): JsonRequest {
  const topic = rng.pick(TOPICS)
  switch (rng.int(14)) {
    case 0:
    case 1:
    case 2:
      return { action: "put", topic, message: messageText(rng) }
    case 3:
    case 4:
      return { action: "put", topic, message: messageText(rng), ack: true }
    case 5:
    case 6:
    case 7:
      return { action: "get", topic }
    case 8:
      return { action: "get_latest", topic }
    case 9:
      // Short waits (0 to 5 ms), so a held connection is let go soon; rarely the default 10 s.
      return rng.chance(0.1) ? { action: "get_wait", topic } : { action: "get_wait", topic, timeout: rng.pick([0, 0.001, 0.005, 1e-3]) }
    case 10:
      // Extra fields, other key orders, odd but valid values.
      return { topic, extra: [1, { b: "}" }], action: "get", ack: false }
    case 11:
      // Just over the limit: refused with too_large.
      return rng.chance(0.3) ? { action: "put", topic, message: "y".repeat(options.maxFrameBytes) } : { action: "get", topic }
    case 12:
      return rng.pick<JsonRequest>([
        { action: "shutdown", topic: "" },
        { action: "auth", token: "not-a-token" },
        { action: "put", topic, message: 5 },
        { action: "get", topic: 7 },
        { action: "get_wait", topic, timeout: -1 },
        { action: "get", topic: "x".repeat(1025) },
        { action: "get", topic, deep: nested(rng.range(10, 3000)) },
        // Lone surrogates: JSON can carry them, UTF-8 cannot (refused as bad_field).
        { action: "put", topic: rng.pick(["\ud800", "a\udc00", "\udbff"]), message: "x", ack: rng.chance(0.5) },
        { action: "get", topic: rng.pick(["\ud800", "\udc00z"]) },
        { action: "nope", topic },
        { topic },
      ])
    default:
      return { action: "put", topic, message: messageText(rng), ack: rng.chance(0.5) }
  }
}

/** JSON as upstream Python clients write it (", ", ": ", non-ASCII escaped), or compact, or pretty. */
function serializeJson(value: unknown, rng: Rng): string {
  // Deep nesting compact only: indented, its size would grow with the square of the depth.
  if (typeof value === "object" && value !== null && "deep" in value) return JSON.stringify(value)
  switch (rng.int(4)) {
    case 0:
      return JSON.stringify(value)
    case 1:
      return JSON.stringify(value, null, rng.pick([1, 2, "\t"]))
    default:
      return pythonJson(value)
  }
}

export function pythonJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(", ")}]`
  if (typeof value === "object" && value !== null) {
    return `{${Object.entries(value)
      .map(([key, item]) => `${pythonJson(key)}: ${pythonJson(item)}`)
      .join(", ")}}`
  }
  return JSON.stringify(value).replace(/[\u0080-\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`)
}

/** Builds a sample piece by piece, recording starts and length fields. */
class SampleBuilder {
  readonly #parts: Uint8Array[] = []
  #length = 0
  readonly starts: number[] = []
  readonly lengths: LengthField[] = []

  get length(): number {
    return this.#length
  }

  start(): void {
    this.starts.push(this.#length)
  }

  append(bytes: Uint8Array | string): void {
    const part = typeof bytes === "string" ? utf8(bytes) : bytes
    this.#parts.push(part)
    this.#length += part.length
  }

  /** Appends a decimal or hex number and marks it as a length field. */
  number(value: number, encoding: "decimal" | "hex"): void {
    const text = encoding === "decimal" ? String(value) : value.toString(16)
    this.lengths.push({ at: this.#length, width: text.length, encoding })
    this.append(text)
  }

  mark(at: number, width: number, encoding: LengthField["encoding"]): void {
    this.lengths.push({ at: this.#length + at, width, encoding })
  }

  build(): Sample {
    const bytes = new Uint8Array(this.#length)
    let at = 0
    for (const part of this.#parts) {
      bytes.set(part, at)
      at += part.length
    }
    return { bytes, starts: this.starts, lengths: this.lengths }
  }
}

const WHITESPACE = ["", "", "", " ", "\n", "\r\n", "\t", "  \n\t"]

/** Generation 1: bare objects, back to back, sometimes with whitespace between. */
export function jsonStreamSample(rng: Rng, options: CorpusOptions): Sample {
  const builder = new SampleBuilder()
  const requests = jsonRequests(rng, options)
  for (const request of requests) {
    builder.append(rng.pick(WHITESPACE))
    builder.start()
    builder.append(serializeJson(request, rng))
  }
  return builder.build()
}

/** A connection's JSON requests: an `auth` first when the server wants one, then 1 to 12 others. */
function jsonRequests(rng: Rng, options: CorpusOptions): JsonRequest[] {
  const auth = authRequest(rng, options)
  const requests = Array.from({ length: rng.range(1, 12) }, () => jsonRequest(rng, options))
  return auth === null ? requests : [auth, ...requests]
}

/** Generation 2: every request behind a `{"msg_length": N}` header. */
export function jsonHeaderSample(rng: Rng, options: CorpusOptions): Sample {
  const builder = new SampleBuilder()
  for (const request of jsonRequests(rng, options)) {
    const body = utf8(serializeJson(request, rng))
    builder.start()
    const header = encodeHeader(body.length)
    const digits = /\d+/.exec(header)!
    builder.append(header.slice(0, digits.index))
    builder.number(Number(digits[0]), "decimal")
    builder.append(header.slice(digits.index + digits[0].length))
    builder.append(body)
  }
  return builder.build()
}

/** The binary protocol: HELLO (usually), then a mix of every request, some refused on purpose. */
export function binarySample(rng: Rng, options: CorpusOptions): Sample {
  const builder = new SampleBuilder()
  const writer = new FrameWriter()
  /** Writes one frame; `marks` are (offset in frame, width, encoding) of its length fields. */
  const frame = (write: (w: FrameWriter) => void, marks: [number, number, "u32" | "u16"][] = []) => {
    write(writer)
    const bytes = writer.take()
    builder.start()
    builder.mark(0, 4, "u32")
    for (const [at, width, encoding] of marks) builder.mark(at, width, encoding)
    builder.append(bytes)
  }
  const topicMark = (offset: number): [number, number, "u16"] => [offset, 2, "u16"]
  if (rng.chance(0.92)) {
    const version = rng.chance(0.95) ? 1 : rng.pick([0, 2, 255])
    frame((w) => {
      w.begin(Op.hello, 0, 1).bytes(MAGIC).u8(version)
      const token = tokenFor(rng, options)
      if (token !== null) w.topic(token)
      w.end()
    })
  }
  for (let i = rng.range(1, 16); i > 0; i--) {
    const id = rng.chance(0.9) ? rng.range(2, 1000) : rng.u32()
    const topic = rng.pick(TOPICS)
    const payload = rng.chance(0.05) ? new Uint8Array(options.maxFrameBytes) : rng.bytes(rng.int(rng.chance(0.1) ? 2000 : 64))
    switch (rng.int(16)) {
      case 0:
      case 1:
      case 2:
        frame(
          (w) =>
            w
              .begin(Op.put, rng.chance(0.5) ? 1 : 0, id)
              .topic(topic)
              .bytes(payload)
              .end(),
          [topicMark(10)],
        )
        break
      case 3: {
        const entries = Array.from({ length: rng.int(4) }, () => ({ topic: rng.pick(TOPICS), payload: rng.bytes(rng.int(40)) }))
        const marks: [number, number, "u32" | "u16"][] = [[10, 4, "u32"]]
        frame((w) => {
          w.begin(Op.putMany, rng.chance(0.5) ? 1 : 0, id).u32(entries.length)
          for (const entry of entries) {
            marks.push([w.frameLength + 4, 2, "u16"])
            w.topic(entry.topic)
            marks.push([w.frameLength + 4, 4, "u32"])
            w.u32(entry.payload.length).bytes(entry.payload)
          }
          w.end()
        }, marks)
        break
      }
      case 4:
      case 5:
        frame((w) => w.begin(Op.get, 0, id).topic(topic).end(), [topicMark(10)])
        break
      case 6:
        frame((w) => w.begin(Op.getLatest, 0, id).topic(topic).end(), [topicMark(10)])
        break
      case 7:
        frame(
          (w) =>
            w
              .begin(Op.getWait, 0, id)
              .u32(rng.pick([0, 1, 5, 60_000]))
              .topic(topic)
              .end(),
          [[10, 4, "u32"], topicMark(14)],
        )
        break
      case 8:
        frame((w) => w.begin(Op.subscribe, 0, id).topic(topic).end(), [topicMark(10)])
        break
      case 9:
        frame((w) => w.begin(Op.unsubscribe, 0, id).topic(topic).end(), [topicMark(10)])
        break
      case 10:
        frame((w) => w.begin(Op.ping, 0, id).bytes(payload).end())
        break
      case 11:
        frame((w) => w.begin(Op.stats, 0, id).end())
        break
      case 12:
        frame((w) => w.begin(Op.cursor, 0, id).topic(rng.pick(CURSOR_NAMES)).end(), [topicMark(10)])
        break
      case 13:
        // Unknown opcodes and flags, a second HELLO: refused without closing.
        frame((w) =>
          rng.chance(0.5)
            ? w
                .begin(rng.pick([0x0d, 0x42, 0x7f, 0x80, 0xfe]), rng.int(4), id)
                .bytes(payload)
                .end()
            : w.begin(Op.hello, 0, id).bytes(MAGIC).u8(1).end(),
        )
        break
      default:
        frame((w) => w.begin(Op.put, 1, id).topic(topic).bytes(payload).end(), [topicMark(10)])
    }
  }
  return builder.build()
}

/** Upstream 1.x over WebSocket: one JSON request per text message (as bytes; the driver frames them). */
export function wsJsonMessages(rng: Rng, options: CorpusOptions): Uint8Array[] {
  return jsonRequests(rng, options).map((request) => utf8(rng.chance(0.7) ? JSON.stringify(request) : serializeJson(request, rng)))
}

/** HTTP/1.1 requests for the API, pipelined on one connection; some refused on purpose. */
export function httpSample(rng: Rng, options: CorpusOptions): Sample {
  const builder = new SampleBuilder()
  const odd = ["lab%2Ftemp", "%ZZ", "%C3", "%FF%FE", "a%00b", "%2e%2e", "t;x=1"]
  const topicSegment = (): string =>
    rng.chance(0.5)
      ? encodeURIComponent(rng.pick(TOPICS.filter((topic) => topic !== "")))
      : rng.chance(0.15)
        ? "x".repeat(rng.chance(0.5) ? 1024 : 1025)
        : rng.pick(odd)
  for (let i = rng.range(1, 3); i > 0; i--) {
    let method = "GET"
    let path: string
    let body: Uint8Array | null = null
    const headers: string[] = [`Host: 127.0.0.1`]
    switch (rng.int(12)) {
      case 0:
      case 1:
      case 2:
        method = "POST"
        path = `/topics/${topicSegment()}`
        body = rng.chance(0.05)
          ? new Uint8Array(options.maxFrameBytes + rng.pick([1, options.maxFrameBytes + 2000]))
          : rng.bytes(rng.int(200))
        break
      case 3:
      case 4: {
        const query = [
          rng.chance(0.7) ? `after=${rng.pick(["0", "1", "5", "99999999999", "-1", "x", "1e3", "9999999999999999"])}` : "",
          rng.chance(0.2) ? `wait=${rng.pick(["0", "0.001", "1e-3", "nan", "-1", "3601", "0x1"])}` : "",
          rng.chance(0.15) ? `cursor=${rng.pick([...CURSOR_NAMES, "", "x".repeat(257)])}` : "",
        ].filter((part) => part !== "")
        path = `/topics/${topicSegment()}${query.length > 0 ? `?${query.join("&")}` : ""}`
        break
      }
      case 5:
        path = `/topics/${topicSegment()}/latest`
        break
      case 6:
        path = `/topics/${topicSegment()}/events${rng.chance(0.3) ? "?after=0" : ""}`
        if (rng.chance(0.3)) headers.push(`Last-Event-ID: ${rng.pick(["0", "3", "abc", "99999999999999999999"])}`)
        break
      case 7:
        path = rng.pick([
          "/healthz",
          "/metrics",
          "/",
          "/topics",
          "/topics/",
          "/topics/a/b/c",
          "/nothing",
          "//topics/t",
          "/topics/t/latest/x",
        ])
        break
      case 8:
        method = rng.pick(["PUT", "DELETE", "OPTIONS", "PATCH", "POST", "BREW"])
        path = rng.pick(["/topics/t", "/topics/t/latest", "/topics/t/events", "/healthz", "/metrics"])
        if (method !== "OPTIONS" && rng.chance(0.5)) body = rng.bytes(rng.int(20))
        break
      case 9:
        method = "POST"
        path = `/topics/${topicSegment()}`
        body = utf8(messageText(rng))
        headers.push(
          rng.pick(["Content-Type: text/plain", "Authorization: Bearer nope", "Expect: 100-continue", `X-Long: ${"h".repeat(2000)}`]),
        )
        break
      case 10:
        // Something that is not the API: an upgrade on another path, an old HTTP version.
        path = rng.pick(["/topics/t", "/ws"])
        headers.push(
          "Upgrade: websocket",
          "Connection: Upgrade",
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
          "Sec-WebSocket-Version: 13",
        )
        break
      default:
        path = `/topics/${topicSegment()}?after=0`
        headers.push(`Authorization: Bearer ${rng.pick(["x", "", "a".repeat(300)])}`)
    }
    const token = tokenFor(rng, options)
    if (token !== null && options.tokens !== undefined && rng.chance(0.15))
      path += `${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`
    else if (token !== null) headers.push(`Authorization: Bearer ${token}`)
    builder.start()
    builder.append(`${method} ${path} HTTP/1.1\r\n${headers.map((header) => `${header}\r\n`).join("")}`)
    if (body !== null && rng.chance(0.2)) {
      // Chunked: each chunk's size is a hex length field.
      builder.append("Transfer-Encoding: chunked\r\n\r\n")
      for (let at = 0; at < body.length; ) {
        const size = Math.min(body.length - at, rng.range(1, 100))
        builder.number(size, "hex")
        builder.append("\r\n")
        builder.append(body.subarray(at, at + size))
        builder.append("\r\n")
        at += size
      }
      builder.append("0\r\n\r\n")
    } else if (body !== null) {
      builder.append("Content-Length: ")
      builder.number(body.length, "decimal")
      builder.append("\r\n\r\n")
      builder.append(body)
    } else {
      builder.append("\r\n")
    }
  }
  return builder.build()
}

/** A valid sample of a stream protocol (the WebSocket ones are framed by the driver). */
export function streamSample(protocol: "json-stream" | "json-header" | "binary" | "http", rng: Rng, options: CorpusOptions): Sample {
  switch (protocol) {
    case "json-stream":
      return jsonStreamSample(rng, options)
    case "json-header":
      return jsonHeaderSample(rng, options)
    case "binary":
      return binarySample(rng, options)
    case "http":
      return httpSample(rng, options)
  }
}

// ---------------------------------------------------------------------------------------------
// Mutators
// ---------------------------------------------------------------------------------------------

const DICTIONARY: Record<"json" | "binary" | "http", readonly (string | number[])[]> = {
  json: [
    "{",
    "}",
    '"',
    "\\",
    "\\u",
    "\\ud800",
    ":",
    ",",
    "[",
    "]",
    "null",
    "1e999",
    "-0",
    " ",
    "\n",
    "}}}}",
    "{{{{",
    '{"action": "get", "topic": "t"}',
    '{"msg_length": ',
    '{"msg_length": 1000010}',
    '{"msg_length": 99999999999}',
    [0xc3],
    [0xff],
    [0xed, 0xa0, 0x80],
    [0xf4, 0x90, 0x80, 0x80],
    [0xe2, 0x82],
    [0x00],
    [0xc0, 0x80],
  ],
  binary: [
    [0, 0, 0, 0],
    [0xff, 0xff, 0xff, 0xff],
    [0, 0, 0, 6, 0x09, 0, 0, 0, 0, 1],
    [0, 0, 0, 5],
    [0x00],
    [0xff],
    [0x7f, 0xff, 0xff, 0xff],
    [0, 0, 0, 0x0b, 0x01, 0, 0, 0, 0, 1, 0x44, 0x53, 0x4d, 0x51, 0x01],
    [0xc3],
    [0xed, 0xa0, 0x80],
    [0, 0x10, 0, 0],
  ],
  http: [
    "\r\n",
    "\r\n\r\n",
    "\n",
    " ",
    "%",
    "%zz",
    "%ff",
    "%2F",
    "/",
    "?",
    "&after=",
    "&wait=0",
    "Content-Length: 5\r\n",
    "Content-Length: 99999999999999999999\r\n",
    "Transfer-Encoding: chunked\r\n",
    "0\r\n\r\n",
    "GET / HTTP/1.1\r\n",
    "HTTP/1.0",
    "Expect: 100-continue\r\n",
    "Last-Event-ID: 99999999999999999999\r\n",
    "Host: x\r\n",
    [0x00],
    [0xff],
    [0x7f],
    "GET /topics/t?after=0 HTTP/1.1\r\nHost: x\r\n\r\n",
  ],
}

function dictionaryFor(protocol: Protocol): readonly (string | number[])[] {
  return protocol === "http" ? DICTIONARY.http : protocol === "binary" || protocol === "ws-binary" ? DICTIONARY.binary : DICTIONARY.json
}

function token(entry: string | number[]): Uint8Array {
  return typeof entry === "string" ? utf8(entry) : new Uint8Array(entry)
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0))
  let at = 0
  for (const part of parts) {
    bytes.set(part, at)
    at += part.length
  }
  return bytes
}

/** A value for a corrupted length field: off by one, zero, just over a limit, or huge. */
function corruptValue(rng: Rng, field: LengthField, original: number, options: CorpusOptions): number {
  const max = options.maxFrameBytes
  const huge = field.encoding === "u16" ? 0xffff : field.encoding === "u32" ? 0xffffffff : 1e20
  return rng.pick([
    original + 1,
    Math.max(0, original - 1),
    0,
    1,
    5,
    6,
    1024,
    1025,
    max,
    max + 1,
    max + 6,
    huge,
    Math.floor(huge / 2),
    rng.u32(),
    original * 2 + 7,
  ])
}

function readField(bytes: Uint8Array, field: LengthField): number {
  const view = bytes.subarray(field.at, field.at + field.width)
  if (field.encoding === "u32") return ((view[0]! << 24) | (view[1]! << 16) | (view[2]! << 8) | view[3]!) >>> 0
  if (field.encoding === "u16") return (view[0]! << 8) | view[1]!
  return Number.parseInt(new TextDecoder().decode(view), field.encoding === "hex" ? 16 : 10) || 0
}

function writeField(field: LengthField, value: number, rng: Rng): Uint8Array {
  switch (field.encoding) {
    case "u32": {
      const clamped = Math.min(0xffffffff, Math.max(0, Math.floor(value)))
      return new Uint8Array([clamped >>> 24, (clamped >>> 16) & 0xff, (clamped >>> 8) & 0xff, clamped & 0xff])
    }
    case "u16": {
      const clamped = Math.min(0xffff, Math.max(0, Math.floor(value)))
      return new Uint8Array([clamped >>> 8, clamped & 0xff])
    }
    case "decimal":
      // Numbers that parse oddly too: signs, exponents, leading zeros, nothing.
      return utf8(
        rng.chance(0.8)
          ? BigInt(Math.floor(Math.min(value, 1e20))).toString()
          : rng.pick(["-1", "1e6", "0001000005", "", " 5", "1000000.5", "+1000001", "99999999999999999999999999"]),
      )
    case "hex":
      return utf8(
        rng.chance(0.8)
          ? Math.floor(Math.min(value, 2 ** 52)).toString(16)
          : rng.pick(["-1", "g", "", "ffffffffffffffff", "5;ext=1", "0x5"]),
      )
  }
}

/** A sample after mutation, with what was done to it (for the failure report). */
export interface Mutated {
  readonly bytes: Uint8Array
  readonly ops: readonly string[]
}

/**
 * One to four mutations. Length-field corruptions go first (they need the sample's marks),
 * then byte-level ones: bit flips, insertions (random or dictionary), deletions, truncation,
 * duplication of a range (often a whole request, often many times), splicing with `donor`.
 */
export function mutate(sample: Sample, donor: Sample, protocol: Protocol, rng: Rng, options: CorpusOptions): Mutated {
  const ops: string[] = []
  let bytes: Uint8Array = sample.bytes
  // Length fields, last first, so earlier offsets stay valid.
  if (sample.lengths.length > 0 && rng.chance(0.45)) {
    const fields = Array.from({ length: rng.range(1, 2) }, () => rng.pick(sample.lengths)).toSorted((a, b) => b.at - a.at)
    let previous = -1
    for (const field of fields) {
      if (field.at === previous) continue
      previous = field.at
      const value = corruptValue(rng, field, readField(bytes, field), options)
      const replacement = writeField(field, value, rng)
      bytes = concat(bytes.subarray(0, field.at), replacement, bytes.subarray(field.at + field.width))
      const shown =
        field.encoding === "u32" || field.encoding === "u16"
          ? String(readField(replacement, { ...field, at: 0 }))
          : new TextDecoder().decode(replacement) || "''"
      ops.push(`length@${field.at}(${field.encoding})=${shown}`)
    }
  }
  const starts = sample.starts
  const position = (): number =>
    starts.length > 0 && rng.chance(0.4) ? Math.min(bytes.length, rng.pick(starts) + rng.int(12)) : rng.int(bytes.length + 1)
  const rounds = ops.length > 0 ? rng.int(3) : rng.range(1, 4)
  for (let round = 0; round < rounds; round++) {
    switch (rng.int(9)) {
      case 0:
      case 1: {
        const flips = rng.range(1, 8)
        bytes = bytes.slice()
        for (let i = 0; i < flips && bytes.length > 0; i++) {
          const at = Math.min(bytes.length - 1, position())
          bytes[at]! ^= 1 << rng.int(8)
        }
        ops.push(`flip×${flips}`)
        break
      }
      case 2: {
        const at = position()
        const inserted = rng.chance(0.5) ? token(rng.pick(dictionaryFor(protocol))) : rng.bytes(rng.range(1, 16))
        bytes = concat(bytes.subarray(0, at), inserted, bytes.subarray(at))
        ops.push(`insert@${at}+${inserted.length}`)
        break
      }
      case 3: {
        const at = position()
        const count = rng.range(1, 16)
        bytes = concat(bytes.subarray(0, at), bytes.subarray(at + count))
        ops.push(`delete@${at}-${count}`)
        break
      }
      case 4: {
        const at = rng.int(bytes.length + 1)
        bytes = bytes.subarray(0, at)
        ops.push(`truncate@${at}`)
        break
      }
      case 5: {
        // A whole request (or any range), repeated, inserted at a request boundary or anywhere.
        let from = rng.int(bytes.length + 1)
        let to = Math.min(bytes.length, from + rng.range(1, 64))
        if (starts.length > 1 && rng.chance(0.6)) {
          const k = rng.int(starts.length - 1)
          from = starts[k]!
          to = Math.min(bytes.length, starts[k + 1]!)
        }
        const range = bytes.subarray(from, to)
        // Many copies of a small request; a large one (up to --max-message-bytes) once or twice.
        const times = Math.max(
          1,
          Math.min(rng.chance(0.2) ? rng.range(10, 60) : rng.range(1, 3), Math.floor((256 * 1024) / Math.max(1, range.length))),
        )
        const at = starts.length > 0 && rng.chance(0.5) ? Math.min(bytes.length, rng.pick(starts)) : rng.int(bytes.length + 1)
        bytes = concat(bytes.subarray(0, at), ...Array.from({ length: times }, () => range), bytes.subarray(at))
        ops.push(`duplicate[${from},${to})×${times}@${at}`)
        break
      }
      case 6: {
        // Two streams spliced: this one's head, the donor's tail.
        const cut = starts.length > 0 && rng.chance(0.5) ? Math.min(bytes.length, rng.pick(starts)) : rng.int(bytes.length + 1)
        const donorCut = donor.starts.length > 0 && rng.chance(0.5) ? rng.pick(donor.starts) : rng.int(donor.bytes.length + 1)
        bytes = concat(bytes.subarray(0, cut), donor.bytes.subarray(donorCut))
        ops.push(`splice@${cut}+donor@${donorCut}`)
        break
      }
      case 7: {
        const at = position()
        const value = rng.pick([0x00, 0xff, 0x7f, 0x80, 0x7b, 0x7d, 0x22, 0x5c, rng.int(256)])
        bytes = bytes.slice()
        if (at < bytes.length) bytes[at] = value
        ops.push(`set@${at}=${value}`)
        break
      }
      default: {
        // Two requests swapped.
        if (starts.length < 3) break
        const k = rng.int(starts.length - 2)
        const a = bytes.subarray(starts[k]!, Math.min(bytes.length, starts[k + 1]!))
        const b = bytes.subarray(Math.min(bytes.length, starts[k + 1]!), Math.min(bytes.length, starts[k + 2]!))
        bytes = concat(bytes.subarray(0, starts[k]!), b, a, bytes.subarray(Math.min(bytes.length, starts[k + 2]!)))
        ops.push(`swap#${k}`)
      }
    }
  }
  return { bytes, ops }
}

/** The stream cut into the pieces the client writes one by one (at most `maxPieces`). */
export function chunk(bytes: Uint8Array, rng: Rng, maxPieces = 48): Uint8Array[] {
  if (bytes.length === 0) return []
  let sizes: () => number
  switch (rng.int(5)) {
    case 0:
      return [bytes]
    case 1:
      sizes = () => 1 // byte by byte (bounded by maxPieces; the rest goes in one piece)
      break
    case 2:
      sizes = () => rng.range(1, 8)
      break
    case 3:
      sizes = () => rng.range(1, Math.max(1, Math.ceil(bytes.length / 3)))
      break
    default:
      sizes = () => 1 << rng.int(12)
  }
  const pieces: Uint8Array[] = []
  let at = 0
  while (at < bytes.length) {
    const size = pieces.length === maxPieces - 1 ? bytes.length - at : sizes()
    pieces.push(bytes.subarray(at, at + size))
    at += size
  }
  return pieces
}

// ---------------------------------------------------------------------------------------------
// WebSocket framing (client to server: masked), with its own mutations
// ---------------------------------------------------------------------------------------------

export const WsOpcode = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const

/** One masked frame; `lengthAt` is where its payload length field starts (for corruption). */
export function maskedFrame(
  opcode: number,
  payload: Uint8Array,
  rng: Rng,
  fin = true,
): { bytes: Uint8Array; lengthAt: number; lengthWidth: number } {
  const length = payload.length
  const header: number[] = [(fin ? 0x80 : 0) | opcode]
  if (length < 126) header.push(0x80 | length)
  else if (length < 65536) header.push(0x80 | 126, length >> 8, length & 0xff)
  else header.push(0x80 | 127, 0, 0, 0, 0, (length >>> 24) & 0xff, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff)
  const mask = rng.bytes(4)
  const bytes = new Uint8Array(header.length + 4 + length)
  bytes.set(header)
  bytes.set(mask, header.length)
  for (let i = 0; i < length; i++) bytes[header.length + 4 + i] = payload[i]! ^ mask[i & 3]!
  return { bytes, lengthAt: 1, lengthWidth: header.length - 1 }
}

export function closeFrame(rng: Rng, code = 1000): Uint8Array {
  return maskedFrame(WsOpcode.close, new Uint8Array([code >> 8, code & 0xff]), rng).bytes
}

/**
 * WebSocket messages as masked frames: some fragmented into continuation frames with a PING
 * between, and, rarely, the framing itself corrupted (bit flips in a header, a length field
 * made huge or inconsistent, a reserved bit, an unmasked frame).
 */
export function frameMessages(messages: readonly { opcode: number; payload: Uint8Array }[], rng: Rng): Mutated {
  const ops: string[] = []
  const frames: { bytes: Uint8Array; lengthAt: number; lengthWidth: number }[] = []
  for (const { opcode, payload } of messages) {
    if (payload.length > 2 && rng.chance(0.15)) {
      const cut = rng.range(1, payload.length - 1)
      frames.push(maskedFrame(opcode, payload.subarray(0, cut), rng, false))
      if (rng.chance(0.5)) frames.push(maskedFrame(WsOpcode.ping, utf8("p"), rng))
      frames.push(maskedFrame(WsOpcode.continuation, payload.subarray(cut), rng, true))
      ops.push("fragmented")
    } else {
      frames.push(maskedFrame(opcode, payload, rng))
    }
  }
  if (frames.length > 0 && rng.chance(0.08)) {
    const k = rng.int(frames.length)
    const frame = frames[k]!
    const bytes = frame.bytes.slice()
    switch (rng.int(4)) {
      case 0:
        bytes[0]! ^= 1 << rng.int(8) // FIN, reserved bits, opcode
        ops.push(`ws-flip-byte0#${k}`)
        break
      case 1:
        bytes[1]! &= 0x7f // unmasked
        ops.push(`ws-unmasked#${k}`)
        break
      case 2:
        bytes[frame.lengthAt]! = (bytes[frame.lengthAt]! & 0x80) | rng.pick([126, 127, 125, 0])
        ops.push(`ws-length7#${k}`)
        break
      default:
        if (frame.lengthWidth === 9) {
          bytes.fill(0xff, 2, 10)
          bytes[2] = 0x7f
          ops.push(`ws-length64-huge#${k}`)
        } else {
          bytes[frame.lengthAt]! = 0x80 | 127
          ops.push(`ws-length-claims64#${k}`)
        }
    }
    frames[k] = { ...frame, bytes }
  }
  return { bytes: concat(...frames.map((frame) => frame.bytes)), ops }
}

/** The WebSocket binary traffic: a binary sample, mutated, cut into messages anywhere. */
export function splitIntoMessages(bytes: Uint8Array, rng: Rng): Uint8Array[] {
  if (bytes.length === 0) return [bytes]
  const pieces = chunk(bytes, rng, 24)
  // Adjacent pieces merged now and then: messages of one or several frames, or of parts.
  const messages: Uint8Array[] = []
  for (const piece of pieces) {
    const last = messages.at(-1)
    if (last !== undefined && rng.chance(0.3)) messages[messages.length - 1] = concat(last, piece)
    else messages.push(piece)
  }
  return messages
}

// ---------------------------------------------------------------------------------------------
// Validators: is what the server sent well-formed for its protocol?
// ---------------------------------------------------------------------------------------------

function merge<K>(into: Map<K, number>, from: ReadonlyMap<K, number>): void {
  for (const [key, count] of from) into.set(key, (into.get(key) ?? 0) + count)
}

/**
 * What the validators tolerate, and why. Each is counted in the tally when it happens.
 * - bunErrorInStream: Bun's HTTP server, on a pipelined request it cannot parse behind a
 *   streaming response (an event stream), writes its bare "HTTP/1.1 400 Bad Request" into the
 *   middle of the chunked body, then closes. Not this project's code.
 */
export const KNOWN_ISSUES = {
  bunErrorInStream: "Bun writes its own 4xx/5xx response into an unfinished chunked body when a pipelined request does not parse",
} as const

export const ERROR_NAMES: ReadonlySet<string> = new Set(Object.keys(ErrorCode))
const ERROR_CODES: ReadonlySet<number> = new Set(Object.values(ErrorCode))
/** JSON errors after which the server always closes (never an in-place answer). */
const ALWAYS_CLOSING = new Set(["malformed_frame", "bad_json", "not_an_object", "unknown_action", "too_large", "shutdown_refused"])
/** Binary error codes that are fatal (the connection closes), and those that never are. */
const FATAL_CODES: ReadonlySet<number> = new Set([
  ErrorCode.malformed_frame,
  ErrorCode.too_large,
  ErrorCode.unsupported_version,
  ErrorCode.unauthorized,
])
const NON_FATAL_CODES: ReadonlySet<number> = new Set([
  ErrorCode.unknown_action,
  ErrorCode.bad_field,
  ErrorCode.topic_full,
  ErrorCode.store_full,
  ErrorCode.cursor_busy,
  ErrorCode.forbidden,
  ErrorCode.limit_exceeded,
])
const REPLY_KEYS = new Set(["message", "seq", "missed", "error", "auth"])

/** What a validator found, for the summary and for the thresholds that show the fuzzing reached far. */
export class Tally {
  connections = 0
  bytesSent = 0
  bytesReceived = 0
  replies = 0
  /** Replies that carried a message (a get answered with one). */
  messages = 0
  /** Connections that got an error that closes, and ones that got no reply at all. */
  closingErrors = 0
  silent = 0
  /** A reply cut off at the end (the client half-closed before the server finished writing). */
  truncated = 0
  readonly errors = new Map<string, number>()
  readonly statuses = new Map<number, number>()
  readonly closeCodes = new Map<number, number>()
  /** Known bugs and quirks the validators tolerate (see KNOWN_ISSUES), by name. */
  readonly known = new Map<string, number>()

  error(name: string): void {
    this.errors.set(name, (this.errors.get(name) ?? 0) + 1)
  }

  note(issue: keyof typeof KNOWN_ISSUES): void {
    this.known.set(issue, (this.known.get(issue) ?? 0) + 1)
  }

  add(other: Tally): void {
    this.connections += other.connections
    this.bytesSent += other.bytesSent
    this.bytesReceived += other.bytesReceived
    this.replies += other.replies
    this.messages += other.messages
    this.closingErrors += other.closingErrors
    this.silent += other.silent
    this.truncated += other.truncated
    merge(this.errors, other.errors)
    merge(this.statuses, other.statuses)
    merge(this.closeCodes, other.closeCodes)
    merge(this.known, other.known)
  }

  summary(): string {
    const map = (m: ReadonlyMap<string | number, number>) =>
      [...m]
        .toSorted((a, b) => String(a[0]).localeCompare(String(b[0]), "en", { numeric: true }))
        .map(([k, v]) => `${k}:${v}`)
        .join(" ")
    return (
      `${this.connections} connections, ${this.bytesSent} bytes sent, ${this.bytesReceived} received, ${this.replies} replies ` +
      `(${this.messages} with a message), ${this.closingErrors} closed by an error, ${this.silent} silent, ${this.truncated} cut off` +
      (this.errors.size > 0 ? `; errors ${map(this.errors)}` : "") +
      (this.statuses.size > 0 ? `; statuses ${map(this.statuses)}` : "") +
      (this.closeCodes.size > 0 ? `; close codes ${map(this.closeCodes)}` : "") +
      (this.known.size > 0 ? `; known issues tolerated ${map(this.known)}` : "")
    )
  }
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

/** One JSON reply object; `webSocket`: upstream 1.x's exact format for plain message replies. */
function checkJsonReply(text: string, webSocket: boolean, problems: string[], tally: Tally): string | null {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    problems.push(`a reply is not JSON: ${JSON.stringify(text.slice(0, 200))}`)
    return null
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    problems.push(`a reply is not an object: ${text.slice(0, 200)}`)
    return null
  }
  const reply = value as Record<string, unknown>
  tally.replies++
  const where = () => `in reply ${text.slice(0, 200)}`
  for (const key of Object.keys(reply)) if (!REPLY_KEYS.has(key)) problems.push(`unexpected field ${JSON.stringify(key)} ${where()}`)
  if (typeof reply.message !== "string") problems.push(`'message' is not a string ${where()}`)
  if (reply.seq !== undefined && !(Number.isSafeInteger(reply.seq) && (reply.seq as number) >= 0)) problems.push(`bad seq ${where()}`)
  if (reply.missed !== undefined && !(Number.isSafeInteger(reply.missed) && (reply.missed as number) > 0 && reply.seq !== undefined)) {
    problems.push(`bad missed ${where()}`)
  }
  if (reply.error !== undefined) {
    const error = reply.error as Record<string, unknown> | null
    if (typeof error !== "object" || error === null || typeof error.code !== "string" || typeof error.text !== "string") {
      problems.push(`malformed error ${where()}`)
      return null
    }
    if (!ERROR_NAMES.has(error.code)) problems.push(`unknown error code ${error.code} ${where()}`)
    if (reply.message !== "" || reply.seq !== undefined) problems.push(`an error reply with a message or seq ${where()}`)
    tally.error(error.code)
    return error.code
  }
  if (reply.seq !== undefined && reply.message !== "") tally.messages++
  if (webSocket && reply.seq === undefined && reply.auth === undefined && typeof reply.message === "string") {
    // Upstream's exact bytes: `{"message": "..."}` with ": " and non-ASCII escaped.
    const expected = upstreamMessageReply(utf8(reply.message))
    if (text !== expected)
      problems.push(`a WebSocket reply is not in upstream's format: ${text.slice(0, 200)} (expected ${expected.slice(0, 200)})`)
    if (reply.message !== "") tally.messages++
  }
  return null
}

/** Checks replies in order: nothing may follow an error that closes the connection. */
function checkJsonReplies(texts: readonly string[], webSocket: boolean, problems: string[], tally: Tally): boolean {
  let closedBy: string | null = null
  for (const text of texts) {
    if (closedBy !== null) {
      problems.push(`a reply after the closing error ${closedBy}: ${text.slice(0, 200)}`)
      break
    }
    const code = checkJsonReply(text, webSocket, problems, tally)
    if (code !== null && ALWAYS_CLOSING.has(code)) closedBy = code
  }
  if (closedBy !== null) tally.closingErrors++
  return closedBy !== null
}

/** Splits a reply stream with the protocol's own decoder; returns the bodies and whether a tail was left. */
function decodeJsonStream(received: Uint8Array, header: boolean, problems: string[]): { bodies: string[]; tail: boolean } {
  const bodies: string[] = []
  let failure: ProtocolError | null = null
  const sink = {
    frame: (body: Uint8Array) => {
      try {
        bodies.push(strictUtf8.decode(body))
      } catch {
        problems.push("a reply is not valid UTF-8")
      }
    },
    fail: (error: ProtocolError) => (failure = error),
  }
  const decoder = header ? new JsonHeaderDecoder(sink, 1 << 30) : new JsonStreamDecoder(sink, 1 << 30)
  decoder.push(received)
  if (failure !== null) problems.push(`the reply stream does not split into replies: ${(failure as ProtocolError).message}`)
  return { bodies, tail: decoder.buffered > 0 }
}

export interface BinaryCheckOptions {
  readonly maxFrameBytes: number
  /** The stream started with a HELLO the server has to answer first (TCP; WebSocket too). */
  readonly expectHandshake: boolean
}

/** Binary reply frames, in order: a WELCOME or a fatal error first, nothing after a fatal error. */
class BinaryReplyChecker {
  #frames = 0
  #welcomes = 0
  #fatal: BinaryReply | null = null
  readonly #problems: string[]
  readonly #tally: Tally
  readonly #options: BinaryCheckOptions

  constructor(problems: string[], tally: Tally, options: BinaryCheckOptions) {
    this.#problems = problems
    this.#tally = tally
    this.#options = options
  }

  get fatal(): boolean {
    return this.#fatal !== null
  }

  frame(frame: Uint8Array): void {
    const problems = this.#problems
    let reply: BinaryReply
    try {
      reply = readReply(frame)
    } catch (error) {
      problems.push(`a reply frame does not decode: ${String(error)} (${Buffer.from(frame.subarray(0, 64)).toString("hex")})`)
      return
    }
    this.#tally.replies++
    const describe = () => `${JSON.stringify({ ...reply, payload: undefined, body: undefined })}`
    if (this.#fatal !== null) problems.push(`a frame after the fatal error: ${describe()}`)
    if (this.#frames === 0 && this.#options.expectHandshake && reply.op !== Op.welcome && !(reply.op === Op.error && reply.fatal)) {
      problems.push(`the first frame is neither WELCOME nor a fatal error: ${describe()}`)
    }
    this.#frames++
    switch (reply.op) {
      case Op.welcome:
        if (++this.#welcomes > 1) problems.push("a second WELCOME")
        if (reply.version !== 1 || reply.maxFrameBytes !== this.#options.maxFrameBytes) problems.push(`a wrong WELCOME: ${describe()}`)
        break
      case Op.error: {
        const name = Object.entries(ErrorCode).find(([, code]) => code === reply.code)?.[0] ?? `code-${reply.code}`
        this.#tally.error(name)
        if (!ERROR_CODES.has(reply.code)) problems.push(`an unknown error code: ${describe()}`)
        if (reply.fatal) {
          this.#fatal = reply
          this.#tally.closingErrors++
          if (!FATAL_CODES.has(reply.code)) problems.push(`a fatal error with a code that is never fatal: ${describe()}`)
        } else if (!NON_FATAL_CODES.has(reply.code)) {
          problems.push(`a non-fatal error with a code that is always fatal (or a JSON one): ${describe()}`)
        }
        break
      }
      case Op.message:
      case Op.deliver:
        this.#tally.messages++
        if (!(Number.isSafeInteger(reply.seq) && reply.seq > 0)) problems.push(`a bad seq: ${describe()}`)
        if (reply.op === Op.deliver && reply.requestId !== 0) problems.push(`a DELIVER with a request id: ${describe()}`)
        break
      case Op.putAck:
        if (!(Number.isSafeInteger(reply.seq) && reply.seq > 0 && reply.count >= 0)) problems.push(`a bad PUT_ACK: ${describe()}`)
        break
      case Op.statsReply:
        try {
          const stats = JSON.parse(strictUtf8.decode(reply.body)) as unknown
          if (typeof stats !== "object" || stats === null) problems.push("a STATS body that is not an object")
        } catch {
          problems.push("a STATS body that is not JSON")
        }
        break
      default:
        // OK, EMPTY, PONG: nothing more to check.
        break
    }
  }
}

/** Checks a binary reply stream (TCP). */
function checkBinaryStream(received: Uint8Array, problems: string[], tally: Tally, options: BinaryCheckOptions): void {
  const checker = new BinaryReplyChecker(problems, tally, options)
  let failure: ProtocolError | null = null
  const decoder = new BinaryDecoder({ frame: (frame) => checker.frame(frame), fail: (error) => (failure = error) }, 1 << 30)
  decoder.push(received)
  if (failure !== null) problems.push(`the reply stream does not split into frames: ${(failure as ProtocolError).message}`)
  if (decoder.buffered > 0) tally.truncated++
}

/**
 * Checks what a fuzzed TCP connection received. The protocol is the one the server detected
 * from the first bytes sent; no reply at all is fine (e.g. a stream cut before a request ended).
 */
export function checkTcpReplies(sent: Uint8Array, received: Uint8Array, maxFrameBytes: number, tally: Tally): string[] {
  const problems: string[] = []
  tally.bytesReceived += received.length
  if (received.length === 0) {
    tally.silent++
    return problems
  }
  const protocol = detectProtocol(sent)
  switch (protocol) {
    case null:
      problems.push(`a reply to a stream whose protocol cannot be decided: ${received.length} bytes`)
      break
    case WireProtocol.binary:
      checkBinaryStream(received, problems, tally, { maxFrameBytes, expectHandshake: true })
      break
    case WireProtocol.http: {
      // Served by Bun's HTTP server through the TCP port's relay: an HTTP response, whatever it says.
      const head = new TextDecoder().decode(received.subarray(0, 16))
      if (!/^HTTP\/1\.1 [1-5]\d\d /.test(head)) problems.push(`an HTTP request got something else back: ${JSON.stringify(head)}`)
      break
    }
    default: {
      const { bodies, tail } = decodeJsonStream(received, protocol === WireProtocol.jsonHeader, problems)
      if (tail) tally.truncated++
      checkJsonReplies(bodies, false, problems, tally)
    }
  }
  return problems
}

/** What a raw WebSocket client got after the upgrade: data messages, then maybe a close frame. */
export interface WsReceived {
  readonly messages: readonly { readonly text: boolean; readonly data: Uint8Array }[]
  /** The server's close frame (code 1005 when it had no code), or null when the TCP connection just ended. */
  readonly close: { readonly code: number; readonly reason: string } | null
  /** Frames that broke the WebSocket framing rules, as the client parsed them. */
  readonly framingProblems: readonly string[]
  /** Data frames after the close frame. */
  readonly afterClose: number
}

/** Close codes the server may send: normal, protocol error, bad data, policy (our errors), too big, server stopping. */
const CLOSE_CODES = new Set([1000, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1012])

/** Checks what a fuzzed WebSocket connection received: all text (JSON) or all binary (frames). */
export function checkWsReplies(received: WsReceived, maxFrameBytes: number, tally: Tally): string[] {
  const problems = [...received.framingProblems]
  for (const message of received.messages) tally.bytesReceived += message.data.length
  if (received.afterClose > 0) problems.push(`${received.afterClose} data frames after the close frame`)
  if (received.close !== null) {
    tally.closeCodes.set(received.close.code, (tally.closeCodes.get(received.close.code) ?? 0) + 1)
    if (!CLOSE_CODES.has(received.close.code)) problems.push(`close code ${received.close.code} (${received.close.reason})`)
    if (received.close.code === 1008) {
      const name = /^([a-z_]+): /.exec(received.close.reason)?.[1]
      if (name === undefined || !ERROR_NAMES.has(name))
        problems.push(`a 1008 close whose reason names no error: ${JSON.stringify(received.close.reason)}`)
    }
  }
  if (received.messages.length === 0) {
    tally.silent++
    return problems
  }
  if (received.messages[0]!.text) {
    if (received.messages.some((message) => !message.text)) problems.push("binary messages on a connection that got JSON text")
    const texts: string[] = []
    for (const message of received.messages.filter((m) => m.text)) {
      try {
        texts.push(strictUtf8.decode(message.data))
      } catch {
        problems.push("a text message that is not UTF-8")
      }
    }
    const closed = checkJsonReplies(texts, true, problems, tally)
    if (closed && received.close !== null && received.close.code !== 1008)
      problems.push(`an error that closes, then close code ${received.close.code}`)
  } else {
    if (received.messages.some((message) => message.text)) problems.push("text messages on a connection that got binary frames")
    const checker = new BinaryReplyChecker(problems, tally, { maxFrameBytes, expectHandshake: true })
    for (const message of received.messages.filter((m) => !m.text)) {
      let failure: ProtocolError | null = null
      const decoder = new BinaryDecoder({ frame: (frame) => checker.frame(frame), fail: (error) => (failure = error) }, 1 << 30)
      decoder.push(message.data)
      if (failure !== null) problems.push(`a binary message does not split into frames: ${(failure as ProtocolError).message}`)
      else if (decoder.buffered > 0) problems.push("a binary message that does not hold whole frames")
    }
    if (checker.fatal && received.close !== null && received.close.code !== 1008)
      problems.push(`a fatal error, then close code ${received.close.code}`)
  }
  return problems
}

/** Statuses the HTTP port may answer with (Bun's own for bad HTTP, the API's for the rest). */
const HTTP_STATUSES = new Set([100, 101, 200, 201, 204, 400, 401, 403, 404, 405, 408, 409, 411, 413, 414, 417, 431, 503, 505, 507])
const API_ERROR_STATUS: Record<string, number[]> = {
  bad_field: [400],
  not_found: [404],
  method_not_allowed: [405],
  too_large: [413],
  cursor_busy: [409],
  topic_full: [507],
  store_full: [507],
  unauthorized: [401],
  forbidden: [403],
  limit_exceeded: [503],
}

/**
 * Checks an HTTP/1.1 response stream: a status line, headers, then a body framed by
 * Content-Length or chunked encoding. A 101 ends the HTTP part; a streaming body (events) may
 * be cut off when the connection ends.
 */
export function checkHttpReplies(received: Uint8Array, tally: Tally): string[] {
  const problems: string[] = []
  tally.bytesReceived += received.length
  if (received.length === 0) {
    tally.silent++
    return problems
  }
  const text = Buffer.from(received).toString("latin1")
  let at = 0
  while (at < text.length) {
    const headEnd = text.indexOf("\r\n\r\n", at)
    if (headEnd < 0) {
      problems.push(`an incomplete response head: ${JSON.stringify(text.slice(at, at + 200))}`)
      break
    }
    const lines = text.slice(at, headEnd).split("\r\n")
    const status = /^HTTP\/1\.1 (\d{3})(?: [^\r\n]*)?$/.exec(lines[0]!)
    if (status === null) {
      problems.push(`a bad status line: ${JSON.stringify(lines[0]!.slice(0, 200))}`)
      break
    }
    const code = Number(status[1])
    tally.replies++
    tally.statuses.set(code, (tally.statuses.get(code) ?? 0) + 1)
    if (!HTTP_STATUSES.has(code) && code !== 500) problems.push(`status ${code}: ${JSON.stringify(text.slice(at, at + 300))}`)
    const headers = new Map<string, string>()
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":")
      if (colon <= 0) problems.push(`a bad header line: ${JSON.stringify(line.slice(0, 100))}`)
      else headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim())
    }
    at = headEnd + 4
    if (code === 101) break // the rest is WebSocket
    if (code === 100) continue // an interim response: the final one follows
    let body: string
    const type = headers.get("content-type") ?? ""
    if (headers.get("transfer-encoding")?.toLowerCase() === "chunked") {
      body = ""
      let complete = false
      for (;;) {
        const lineEnd = text.indexOf("\r\n", at)
        if (lineEnd < 0) break
        const sizeText = text.slice(at, lineEnd)
        if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) {
          if (type.startsWith("text/event-stream") && /^HTTP\/1\.1 [45]\d\d /.test(sizeText)) {
            // Bun's own error response, in the middle of the stream: parse it as the next response.
            tally.note("bunErrorInStream")
            complete = true
          } else {
            problems.push(`a bad chunk size ${JSON.stringify(sizeText.slice(0, 40))}`)
            at = text.length
          }
          break
        }
        const size = Number.parseInt(sizeText, 16)
        if (lineEnd + 2 + size + 2 > text.length) break
        body += text.slice(lineEnd + 2, lineEnd + 2 + size)
        at = lineEnd + 2 + size + 2
        if (size === 0) {
          complete = true
          break
        }
      }
      if (!complete) {
        // Only an event stream may be cut off: it ends when the client goes.
        if (!type.startsWith("text/event-stream")) problems.push(`a chunked ${code} response cut off`)
        else tally.truncated++
        at = text.length
      }
    } else {
      const length = headers.has("content-length") ? Number(headers.get("content-length")) : code === 204 || code === 304 ? 0 : null
      if (length === null || !Number.isSafeInteger(length)) {
        // No length: the body runs to the end of the connection.
        body = text.slice(at)
        at = text.length
      } else {
        if (at + length > text.length) {
          problems.push(`a ${code} body cut off (${text.length - at} of ${length} bytes)`)
          body = text.slice(at)
        } else body = text.slice(at, at + length)
        at += length
      }
    }
    checkHttpResponse(code, headers, body, problems, tally)
  }
  return problems
}

function checkHttpResponse(code: number, headers: Map<string, string>, body: string, problems: string[], tally: Tally): void {
  const type = headers.get("content-type") ?? ""
  // 505 is Bun's answer to a request line it cannot parse, 507 a full store, 503 the connection
  // limit (checked as an API error below); any other 5xx is a failure.
  if (code >= 500 && code !== 503 && code !== 505 && code !== 507) {
    problems.push(`status ${code}: ${body.slice(0, 200)}`)
    return
  }
  if (code === 204 && body !== "") problems.push("a 204 with a body")
  if (type.startsWith("application/json")) {
    let value: Record<string, unknown>
    try {
      value = JSON.parse(Buffer.from(body, "latin1").toString("utf8")) as Record<string, unknown>
    } catch {
      problems.push(`a ${code} JSON body that is not JSON: ${JSON.stringify(body.slice(0, 200))}`)
      return
    }
    if (code >= 400) {
      const error = value.error as Record<string, unknown> | undefined
      if (typeof error?.code !== "string" || typeof error.text !== "string") {
        problems.push(`a ${code} without {"error": {"code", "text"}}: ${body.slice(0, 200)}`)
        return
      }
      tally.error(error.code)
      const statuses = API_ERROR_STATUS[error.code]
      if (statuses === undefined) problems.push(`a ${code} with an unknown error code ${error.code}`)
      else if (!statuses.includes(code)) problems.push(`error ${error.code} with status ${code}`)
      if (code === 405 && !headers.has("allow")) problems.push("a 405 without Allow")
    } else if (code === 201) {
      if (typeof value.topic !== "string" || !(Number.isSafeInteger(value.seq) && (value.seq as number) > 0))
        problems.push(`a bad 201 body: ${body.slice(0, 200)}`)
    }
  } else if (type.startsWith("application/octet-stream")) {
    tally.messages++
    if (code !== 200 || !/^\d+$/.test(headers.get("dsmq-seq") ?? "")) problems.push(`a message response without DSMQ-Seq (${code})`)
  } else if (type.startsWith("text/event-stream")) {
    for (const line of body.split("\n")) {
      if (line !== "" && !/^(:|id: \d+$|event: (message|missed)$|data: )/.test(line))
        problems.push(`a bad event-stream line: ${JSON.stringify(line.slice(0, 100))}`)
    }
  }
}
