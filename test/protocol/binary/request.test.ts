import { describe, expect, test } from "bun:test"
import {
  BinaryDecoder,
  type BinaryReply,
  type BinaryRequest,
  detachRequest,
  FrameWriter,
  HEADER_BYTES,
  Op,
  readReply,
  readRequest,
  writeError,
} from "../../../src/protocol/binary/request.ts"
import { ErrorCode, type ErrorName, ProtocolError } from "../../../src/protocol/errors.ts"
import { MAX_TOPIC_BYTES, MAX_WAIT_MS } from "../../../src/protocol/limits.ts"
import { bytes, encodeReplies, encodeRequests, entry, fromHex, rawFrame, readReplyCopy, rep, req, toHex } from "../../binary-frames.ts"
import { byteByByte, type DecoderFactory, decodeAll, RecordingSink, randomChunks, splitAt } from "../decoder-contract.ts"

const MAX = 4096
/** A BinaryDecoder whose frames the RecordingSink records as hex (it records text). */
const hexDecoder =
  (max: number): DecoderFactory =>
  (sink) =>
    new BinaryDecoder({ frame: (frame) => sink.frame(bytes(toHex(frame))), fail: (error) => sink.fail(error) }, max)
const decoder = hexDecoder(MAX)

const errorNames = (sink: RecordingSink) => sink.errors.map((error): string => error.errorName)

/** One request of every opcode, with payloads holding bytes that look like frame headers. */
const REQUESTS: BinaryRequest[] = [
  req.hello(1),
  req.put(2, "t", "hi", true),
  req.put(3, "ünïcödé ✓ 🎉", new Uint8Array([0, 0, 0, 6, 0x80, 0, 0, 0, 0, 0])),
  req.put(4, "empty", ""),
  req.putMany(5, [entry("a", "1"), entry("b", new Uint8Array([0xff, 0])), entry("a", "")], true),
  req.putMany(6, []),
  req.get(7, "t"),
  req.getLatest(8, "t"),
  req.getWait(9, "t", 1500),
  req.subscribe(10, "t"),
  req.unsubscribe(11, "t"),
  req.ping(12, "ab"),
  req.ping(13),
  req.stats(0xfffffffe),
]
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

/** A rejection as plain values, for whole-object comparison. */
function outcome(frame: Uint8Array): unknown {
  const request = readRequest(frame)
  if (request.op !== "rejected") return request
  return {
    op: "rejected",
    requestId: request.requestId,
    errorName: request.error.errorName,
    code: request.error.code,
    fatal: request.fatal,
  }
}

/** [name, opcode, flags, body in hex, the error, whether it is fatal] */
type BadBody = [name: string, opcode: number, flags: number, body: string, errorName: ErrorName, fatal: boolean]
const bad = (name: string, opcode: number, flags: number, body: string, errorName: ErrorName, fatal = false): BadBody => [
  name,
  opcode,
  flags,
  body,
  errorName,
  fatal,
]

const rejected = (requestId: number, errorName: ErrorName, fatal = false) => ({
  op: "rejected",
  requestId,
  errorName,
  code: ErrorCode[errorName],
  fatal,
})

describe("readRequest", () => {
  test.each(REQUESTS.map((request) => [request.op, request] as const))("reads back opcode 0x%i", (_op, request) => {
    expect(readRequest(encodeRequests(request))).toEqual(request)
  })

  test("reads the extremes of each field", () => {
    const longest = "é".repeat(MAX_TOPIC_BYTES / 2)
    const requests: BinaryRequest[] = [
      req.get(0, longest),
      req.get(0xffffffff, ""),
      req.getWait(1, "t", 0),
      req.getWait(1, "t", MAX_WAIT_MS),
      req.put(1, "t", new Uint8Array(Array.from({ length: 256 }, (_, i) => i)), true),
      req.putMany(1, [entry(longest, ""), entry("", new Uint8Array(300).fill(0xab))], true),
      req.hello(1, 2),
    ]
    for (const request of requests) expect(readRequest(encodeRequests(request))).toEqual(request)
  })

  test("PUT_MANY with 1,000 entries", () => {
    const entries = Array.from({ length: 1000 }, (_, i) => entry(`topic-${i % 10}`, `payload ${i}`))
    expect(readRequest(encodeRequests(req.putMany(7, entries, true)))).toEqual(req.putMany(7, entries, true))
  })

  const topic1025 = "x".repeat(MAX_TOPIC_BYTES + 1)
  const u16 = (n: number) => n.toString(16).padStart(4, "0")
  const u32 = (n: number) => n.toString(16).padStart(8, "0")
  const hexOf = (text: string) => toHex(bytes(text))

  const BAD_BODIES: BadBody[] = [
    bad("PUT: topic length past the end", Op.put, 0, "0005 74", "bad_field"),
    bad("PUT: no topic length at all", Op.put, 0, "00", "bad_field"),
    bad("PUT: a topic that is not UTF-8", Op.put, 0, "0002 c328 6869", "bad_field"),
    bad("PUT: a topic over 1024 bytes", Op.put, 0, `${u16(1025)} ${hexOf(topic1025)} 6869`, "bad_field"),
    bad("PUT: undefined flag bit 0x02", Op.put, 0x02, "0001 74 6869", "bad_field"),
    bad("PUT: undefined flag bit 0x80", Op.put, 0x81, "0001 74 6869", "bad_field"),
    bad("GET: topic length past the end", Op.get, 0, "0004 746f70", "bad_field"),
    bad("GET: trailing bytes", Op.get, 0, "0001 74 00", "bad_field"),
    bad("GET: a topic that is not UTF-8", Op.get, 0, "0001 ff", "bad_field"),
    bad("GET: a truncated multi-byte character", Op.get, 0, "0002 74e2", "bad_field"),
    bad("GET: a topic over 1024 bytes", Op.get, 0, `${u16(1025)} ${hexOf(topic1025)}`, "bad_field"),
    bad("GET: an empty body", Op.get, 0, "", "bad_field"),
    bad("GET: flag 0x01", Op.get, 0x01, "0001 74", "bad_field"),
    bad("GET_LATEST: trailing bytes", Op.getLatest, 0, "0001 74 7474", "bad_field"),
    bad("SUBSCRIBE: a topic that is not UTF-8", Op.subscribe, 0, "0001 80", "bad_field"),
    bad("SUBSCRIBE: flag 0x01", Op.subscribe, 0x01, "0001 74", "bad_field"),
    bad("UNSUBSCRIBE: topic length past the end", Op.unsubscribe, 0, "0100", "bad_field"),
    bad("GET_WAIT: timeout above 3,600,000 ms", Op.getWait, 0, `${u32(MAX_WAIT_MS + 1)} 0001 74`, "bad_field"),
    bad("GET_WAIT: timeout 2^32 - 1", Op.getWait, 0, "ffffffff 0001 74", "bad_field"),
    bad("GET_WAIT: no topic", Op.getWait, 0, "000005dc", "bad_field"),
    bad("GET_WAIT: trailing bytes", Op.getWait, 0, "000005dc 0001 74 00", "bad_field"),
    bad("PUT_MANY: count larger than the body", Op.putMany, 0, "00000002 0001 74 00000001 61", "bad_field"),
    bad("PUT_MANY: count 2^32 - 1 and a short body", Op.putMany, 0x01, "ffffffff 0001 74 00000001 61", "bad_field"),
    bad("PUT_MANY: payload length past the end", Op.putMany, 0, "00000001 0001 74 00000009 61", "bad_field"),
    bad("PUT_MANY: trailing bytes after the entries", Op.putMany, 0, "00000001 0001 74 00000001 61 00", "bad_field"),
    bad("PUT_MANY: an entry's topic not UTF-8", Op.putMany, 0, "00000001 0001 fe 00000001 61", "bad_field"),
    bad("PUT_MANY: an entry's topic over 1024 bytes", Op.putMany, 0, `00000001 ${u16(1025)} ${hexOf(topic1025)} 00000000`, "bad_field"),
    bad("PUT_MANY: a bad second entry", Op.putMany, 0, "00000002 0001 74 00000001 61 0003 74 00000001 61", "bad_field"),
    bad("PUT_MANY: no count", Op.putMany, 0, "000000", "bad_field"),
    bad("PUT_MANY: flag 0x02", Op.putMany, 0x02, "00000000", "bad_field"),
    bad("STATS: a body", Op.stats, 0, "00", "bad_field"),
    bad("STATS: flag 0x01", Op.stats, 0x01, "", "bad_field"),
    bad("PING: flag 0x01", Op.ping, 0x01, "6162", "bad_field"),
    bad("HELLO: flag 0x01", Op.hello, 0x01, "44534d51 01", "bad_field"),
    bad("an unknown opcode 0x0c", 0x0c, 0, "", "unknown_action"),
    bad("an unknown opcode 0x42 with a body", 0x42, 0, "0102030405", "unknown_action"),
    bad("opcode 0x00", 0x00, 0, "", "unknown_action"),
    bad("a reply opcode (OK) sent as a request", Op.ok, 0, "", "unknown_action"),
    bad("a reply opcode (ERROR) sent as a request", Op.error, 0, "0001", "unknown_action"),
    bad("an unknown opcode with flags set (still unknown_action, so clients can probe)", 0x42, 0x80, "", "unknown_action"),
    bad("HELLO: wrong magic", Op.hello, 0, `${hexOf("dsmq")} 01`, "malformed_frame", true),
    bad("HELLO: the JSON header's first bytes as magic", Op.hello, 0, `${hexOf('{"ms')} 01`, "malformed_frame", true),
  ]

  test.each(BAD_BODIES)("%s", (_name, opcode, flags, body, errorName, fatal) => {
    const requestId = 0xdeadbeef
    const frame = rawFrame(opcode, flags, requestId, fromHex(body))
    expect(outcome(frame)).toEqual(rejected(requestId, errorName, fatal))
  })

  test("byte fields are views of the frame", () => {
    const frame = encodeRequests(req.put(1, "t", "abc"))
    const request = readRequest(frame)
    if (request.op !== Op.put) throw new Error("not a PUT")
    expect(request.payload.buffer).toBe(frame.buffer)
  })

  test("detachRequest copies every byte field, so changing the chunk changes nothing", () => {
    const requests: BinaryRequest[] = [
      req.put(1, "t", "payload", true),
      req.putMany(2, [entry("a", "one"), entry("b", "two")], true),
      req.ping(3, "ping body"),
    ]
    for (const original of requests) {
      const frame = encodeRequests(original)
      const view = readRequest(frame)
      const detached = detachRequest(view)
      expect(detached).toEqual(original)
      frame.fill(0x21, HEADER_BYTES)
      // The view now reads the overwritten bytes; the detached copy does not.
      expect(view).not.toEqual(original)
      expect(detached).toEqual(original)
    }
  })

  test("detachRequest leaves requests without byte fields as they are", () => {
    for (const request of [req.get(1, "t"), req.getWait(2, "t", 5), req.stats(3), req.hello(4)]) {
      const read = readRequest(encodeRequests(request))
      expect(detachRequest(read)).toBe(read)
    }
    const rejection = readRequest(rawFrame(0x42, 0, 5))
    expect(detachRequest(rejection)).toBe(rejection)
  })
})

describe("FrameWriter and readReply", () => {
  const REPLIES: BinaryReply[] = [
    rep.ok(1),
    rep.empty(2),
    rep.welcome(3, 1024 * 1024),
    rep.welcome(3, 0xffffffff, 2),
    rep.putAck(4, 7),
    rep.putAck(4, 1, 0),
    rep.putAck(5, 2 ** 32, 1000),
    rep.putAck(5, 2 ** 32 + 7, 0xffffffff),
    rep.putAck(5, Number.MAX_SAFE_INTEGER, 1),
    rep.message(6, 7, "t", "hi"),
    rep.message(6, 2 ** 40 + 3, "ünïcödé ✓ 🎉", new Uint8Array(Array.from({ length: 256 }, (_, i) => i))),
    rep.message(6, 1, "t", ""),
    rep.deliver(8, "t", "yo"),
    rep.deliver(2 ** 32 - 1, "", new Uint8Array([0])),
    rep.deliver(2 ** 32 + 1, "t", new Uint8Array([0, 0, 0, 6])),
    rep.pong(9, "ab"),
    rep.pong(9),
    rep.statsReply(10, JSON.stringify({ connections: 1 })),
    rep.error(11, ErrorCode.unknown_action, false, "unknown opcode 0x42"),
    rep.error(0, ErrorCode.too_large, true, "frame of 2000000 bytes is larger than the maximum of 1048576"),
    rep.error(12, ErrorCode.bad_field, false, "ünïcödé ✓"),
    rep.error(13, ErrorCode.malformed_frame, true, ""),
  ]

  test.each(REPLIES.map((reply) => [reply.op, reply] as const))("opcode 0x%i round-trips", (_op, reply) => {
    expect(readReply(encodeReplies(reply))).toEqual(reply)
  })

  test("a stream of every reply decodes back to the same replies", () => {
    const stream = encodeReplies(...REPLIES)
    for (const seed of [11, 12, 13]) {
      // Frames are views valid only during the call: keep copies.
      const read: BinaryReply[] = []
      const errors: ProtocolError[] = []
      const replies = new BinaryDecoder({ frame: (frame) => read.push(readReplyCopy(frame)), fail: (error) => errors.push(error) }, 1 << 20)
      for (const chunk of randomChunks(stream, seed, 13)) replies.push(chunk)
      expect({ read, errors }).toEqual({ read: REPLIES, errors: [] })
    }
  })

  test("writes u64 sequence numbers above 2^32 big-endian, in full", () => {
    expect(toHex(encodeReplies(rep.putAck(1, 2 ** 32 + 7, 2)))).toBe("00000012" + "8200" + "00000001" + "0000000100000007" + "00000002")
    expect(toHex(encodeReplies(rep.deliver(0x1234_5678_9abc, "t", "")))).toBe(
      "00000011" + "8700" + "00000000" + "0000123456789abc" + "0001" + "74",
    )
    const max = toHex(encodeReplies(rep.putAck(1, Number.MAX_SAFE_INTEGER, 1)))
    expect(max.slice(20, 36)).toBe("001fffffffffffff")
  })

  test("writeError writes the stable code, the FATAL flag and the text", () => {
    const writer = new FrameWriter()
    writeError(writer, 9, new ProtocolError("unsupported_version", "version 2 is not supported"), true)
    writeError(writer, 10, new ProtocolError("bad_field", "no"), false)
    const stream = writer.take()
    expect(toHex(stream.subarray(0, 12))).toBe("00000022" + "ff01" + "00000009" + "0008")
    const read: BinaryReply[] = []
    new BinaryDecoder({ frame: (frame) => read.push(readReply(frame)), fail: () => {} }, 1024).push(stream)
    expect(read).toEqual([
      rep.error(9, ErrorCode.unsupported_version, true, "version 2 is not supported"),
      rep.error(10, ErrorCode.bad_field, false, "no"),
    ])
  })

  test("frames written back to back each get their own length; take() starts afresh", () => {
    const writer = new FrameWriter()
    writer.begin(Op.ok, 0, 1).end()
    writer.begin(Op.pong, 0, 2).bytes(bytes("abc")).end()
    expect(writer.length).toBe(10 + 13)
    const taken = writer.take()
    expect(toHex(taken)).toBe("00000006800000000001" + "00000009850000000002616263")
    expect(writer.length).toBe(0)
    writer.begin(Op.empty, 0, 3).end()
    // The earlier result is not overwritten by later frames.
    expect(toHex(taken.subarray(0, 10))).toBe("00000006800000000001")
    expect(toHex(writer.take())).toBe("00000006840000000003")
  })

  test("grows for frames larger than its buffer", () => {
    const payload = new Uint8Array(100_000).map((_, i) => i % 251)
    expect(readReply(encodeReplies(rep.message(1, 5, "big", payload)))).toEqual(rep.message(1, 5, "big", payload))
  })

  test("abandon() drops a frame begun but not ended", () => {
    const writer = new FrameWriter()
    writer.begin(Op.ok, 0, 1).end()
    writer.begin(Op.message, 0, 2).u64(1)
    expect(() => writer.topic("x".repeat(MAX_TOPIC_BYTES + 1))).toThrow(ProtocolError)
    writer.abandon()
    writer.begin(Op.empty, 0, 3).end()
    expect(toHex(writer.take())).toBe("00000006800000000001" + "00000006840000000003")
  })

  test("a topic of exactly 1024 UTF-8 bytes is written", () => {
    const topic = "🎉".repeat(MAX_TOPIC_BYTES / 4)
    expect(readReply(encodeReplies(rep.message(1, 1, topic, "")))).toEqual(rep.message(1, 1, topic, ""))
  })

  test.each<[string, string, ErrorName]>([
    ["an unknown reply opcode", "00000006 42 00 00000001", "unknown_action"],
    ["a MESSAGE cut inside its seq", "0000000a 83 00 00000001 00000000", "bad_field"],
    ["a MESSAGE whose topic runs past the end", "00000011 83 00 00000001 0000000000000001 0009 74", "bad_field"],
    ["an OK with a body", "00000007 80 00 00000001 00", "bad_field"],
    ["an ERROR without a code", "00000007 ff 01 00000001 00", "bad_field"],
  ])("readReply refuses %s", (_name, hex, errorName) => {
    let thrown: unknown = null
    try {
      readReply(fromHex(hex))
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(ProtocolError)
    expect((thrown as ProtocolError).errorName).toBe(errorName)
  })
})
