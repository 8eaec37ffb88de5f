import { describe, expect, test } from "bun:test"
import { HEADER_BYTES, Op } from "../../../src/protocol/binary/constants.ts"
import { type BinaryRequest, detachRequest, readRequest } from "../../../src/protocol/binary/request.ts"
import { ErrorCode, type ErrorName } from "../../../src/protocol/errors.ts"
import { MAX_WAIT_MS } from "../../../src/protocol/limits.ts"
import { MAX_TOPIC_BYTES } from "../../../src/topic/topic-name.ts"
import { bytes, encodeRequests, entry, fromHex, rawFrame, req, toHex } from "../../binary-frames.ts"
import { REQUESTS } from "./sample-requests.ts"

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
    bad("an unknown opcode 0x0e", 0x0e, 0, "", "unknown_action"),
    bad("HELLO: flag 0x04", Op.hello, 0x04, "44534d51 01", "bad_field"),
    bad("FROM: a seq of 2^53", Op.from, 0, "0020000000000000", "bad_field"),
    bad("FROM: a short body", Op.from, 0, "00000000", "bad_field"),
    bad("FROM: a flag", Op.from, 0x01, "0000000000000001", "bad_field"),
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
