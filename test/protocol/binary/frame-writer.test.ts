import { describe, expect, test } from "bun:test"
import { Op } from "../../../src/protocol/binary/constants.ts"
import { BinaryDecoder } from "../../../src/protocol/binary/decoder.ts"
import { FrameWriter, writeError } from "../../../src/protocol/binary/frame-writer.ts"
import { type BinaryReply, readReply } from "../../../src/protocol/binary/reply.ts"
import { ErrorCode, type ErrorName, ProtocolError } from "../../../src/protocol/errors.ts"
import { MAX_TOPIC_BYTES } from "../../../src/topic/topic-name.ts"
import { bytes, encodeReplies, fromHex, readReplyCopy, rep, toHex } from "../../binary-frames.ts"
import { randomChunks } from "../decoder-contract.ts"

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

  test("lend() hands over its own memory and length, then writes over it; a large buffer is let go", () => {
    const writer = new FrameWriter()
    const lent: { memory: Uint8Array; hex: string }[] = []
    const sink = { sendLent: (memory: Uint8Array, length: number) => lent.push({ memory, hex: toHex(memory.subarray(0, length)) }) }
    writer.begin(Op.ok, 0, 1).end()
    writer.lend(sink)
    expect(writer.length).toBe(0)
    writer.begin(Op.empty, 0, 3).end()
    writer.lend(sink)
    expect(lent.map(({ hex }) => hex)).toEqual(["00000006800000000001", "00000006840000000003"])
    // The same memory both times: nothing was allocated to send.
    expect(lent[1]!.memory).toBe(lent[0]!.memory)
    // A burst that grew the buffer: after lending, a fresh small one takes its place.
    writer.begin(Op.pong, 0, 4).bytes(new Uint8Array(200_000)).end()
    writer.lend(sink)
    expect(lent[2]!.memory.length).toBeGreaterThan(200_000)
    writer.begin(Op.ok, 0, 5).end()
    writer.lend(sink)
    expect(lent[3]!.memory.length).toBeLessThan(200_000)
    expect(lent[3]!.hex).toBe("00000006800000000005")
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
