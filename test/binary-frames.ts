/**
 * Test-side encoders for the binary protocol: any request or reply value written back into
 * bytes with FrameWriter (the inverse of readRequest / readReply), a formatter that prints a
 * frame the way docs/PROTOCOL.md does (one hex group per field), and small byte helpers.
 */
import { expect } from "bun:test"
import { Flag, MAGIC, Op } from "../src/protocol/binary/constants.ts"
import { FrameWriter, writeMessage } from "../src/protocol/binary/frame-writer.ts"
import { type BinaryReply, readReply } from "../src/protocol/binary/reply.ts"
import type { BinaryRequest, PutEntry } from "../src/protocol/binary/request.ts"

const encoder = new TextEncoder()

export const bytes = (text: string): Uint8Array => encoder.encode(text)
export const text = (value: Uint8Array): string => new TextDecoder().decode(value)
export const toHex = (value: Uint8Array): string => Buffer.from(value).toString("hex")
export const fromHex = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex.replace(/[\s|]/g, ""), "hex"))

/** Writes `request` as one frame. */
export function writeRequest(writer: FrameWriter, request: BinaryRequest): void {
  const { requestId } = request
  switch (request.op) {
    case Op.hello:
      writer
        .begin(Op.hello, request.putTimes ? Flag.putTimes : 0, requestId)
        .bytes(MAGIC)
        .u8(request.version)
      if (request.token !== null) writer.topic(request.token)
      writer.end()
      return
    case Op.put:
      writer
        .begin(Op.put, request.ack ? Flag.ack : 0, requestId)
        .topic(request.topic)
        .bytes(request.payload)
        .end()
      return
    case Op.putMany:
      writer.begin(Op.putMany, request.ack ? Flag.ack : 0, requestId).u32(request.entries.length)
      for (const entry of request.entries) writer.topic(entry.topic).u32(entry.payload.length).bytes(entry.payload)
      writer.end()
      return
    case Op.get:
    case Op.getLatest:
    case Op.subscribe:
    case Op.unsubscribe:
      writer.begin(request.op, 0, requestId).topic(request.topic).end()
      return
    case Op.getWait:
      writer.begin(Op.getWait, 0, requestId).u32(request.timeoutMs).topic(request.topic).end()
      return
    case Op.ping:
      writer.begin(Op.ping, 0, requestId).bytes(request.body).end()
      return
    case Op.stats:
      writer.begin(Op.stats, 0, requestId).end()
      return
    case Op.cursor:
      writer.begin(Op.cursor, 0, requestId).topic(request.name).end()
      return
    case Op.topics:
      writer.begin(Op.topics, 0, requestId).u32(request.limit).topic(request.after)
      if (request.match !== null) writer.topic(request.match)
      writer.end()
      return
    case Op.from:
      writer.begin(Op.from, 0, requestId).u64(request.seq).end()
      return
  }
}

/** Writes `reply` as one frame. */
export function writeReply(writer: FrameWriter, reply: BinaryReply): void {
  const { requestId } = reply
  switch (reply.op) {
    case Op.ok:
    case Op.empty:
      writer.begin(reply.op, 0, requestId).end()
      return
    case Op.welcome:
      writer.begin(Op.welcome, 0, requestId).u8(reply.version).u32(reply.maxFrameBytes).end()
      return
    case Op.putAck:
      writer.begin(Op.putAck, 0, requestId).u64(reply.seq).u32(reply.count).end()
      return
    case Op.message:
    case Op.deliver:
      writeMessage(writer, reply.op, requestId, reply.seq, reply.missed, reply.topic, reply.payload, reply.putAt)
      return
    case Op.pong:
    case Op.statsReply:
    case Op.topicsReply:
      writer.begin(reply.op, 0, requestId).bytes(reply.body).end()
      return
    case Op.error:
      writer
        .begin(Op.error, reply.fatal ? Flag.fatal : 0, requestId)
        .u16(reply.code)
        .bytes(bytes(reply.text))
        .end()
      return
  }
}

export function encodeRequests(...requests: BinaryRequest[]): Uint8Array {
  const writer = new FrameWriter()
  for (const request of requests) writeRequest(writer, request)
  return writer.take()
}

export function encodeReplies(...replies: BinaryReply[]): Uint8Array {
  const writer = new FrameWriter()
  for (const reply of replies) writeReply(writer, reply)
  return writer.take()
}

/** A frame with any header and body, valid or not. */
export function rawFrame(opcode: number, flags: number, requestId: number, body: Uint8Array = new Uint8Array()): Uint8Array {
  const writer = new FrameWriter()
  writer.begin(opcode, flags, requestId).bytes(body).end()
  return writer.take()
}

/**
 * A reply whose byte fields are copies, so it outlives the chunk it was read from. The copies
 * are plain Uint8Arrays (a socket's chunk is a Buffer), for whole-object comparisons.
 */
export function detachReply(reply: BinaryReply): BinaryReply {
  switch (reply.op) {
    case Op.message:
    case Op.deliver:
      return { ...reply, payload: new Uint8Array(reply.payload) }
    case Op.pong:
    case Op.statsReply:
    case Op.topicsReply:
      return { ...reply, body: new Uint8Array(reply.body) }
    default:
      return reply
  }
}

/** Reads exactly one reply frame from `frame` and copies its byte fields. */
export function readReplyCopy(frame: Uint8Array): BinaryReply {
  return detachReply(readReply(frame))
}

// Request and reply values, for whole-object comparisons.
export const req = {
  hello: (requestId: number, version = 1, token: string | null = null, putTimes = false): BinaryRequest => ({
    op: Op.hello,
    requestId,
    version,
    token,
    putTimes,
  }),
  cursor: (requestId: number, name: string): BinaryRequest => ({ op: Op.cursor, requestId, name }),
  from: (requestId: number, seq: number): BinaryRequest => ({ op: Op.from, requestId, seq }),
  put: (requestId: number, topic: string, payload: Uint8Array | string, ack = false): BinaryRequest => ({
    op: Op.put,
    requestId,
    ack,
    topic,
    payload: typeof payload === "string" ? bytes(payload) : payload,
  }),
  putMany: (requestId: number, entries: PutEntry[], ack = false): BinaryRequest => ({ op: Op.putMany, requestId, ack, entries }),
  get: (requestId: number, topic: string): BinaryRequest => ({ op: Op.get, requestId, topic }),
  getLatest: (requestId: number, topic: string): BinaryRequest => ({ op: Op.getLatest, requestId, topic }),
  getWait: (requestId: number, topic: string, timeoutMs: number): BinaryRequest => ({ op: Op.getWait, requestId, topic, timeoutMs }),
  subscribe: (requestId: number, topic: string): BinaryRequest => ({ op: Op.subscribe, requestId, topic }),
  unsubscribe: (requestId: number, topic: string): BinaryRequest => ({ op: Op.unsubscribe, requestId, topic }),
  ping: (requestId: number, body: Uint8Array | string = new Uint8Array()): BinaryRequest => ({
    op: Op.ping,
    requestId,
    body: typeof body === "string" ? bytes(body) : body,
  }),
  stats: (requestId: number): BinaryRequest => ({ op: Op.stats, requestId }),
  topics: (requestId: number, limit: number, after = "", match: string | null = null): BinaryRequest => ({
    op: Op.topics,
    requestId,
    limit,
    after,
    match,
  }),
}

export const entry = (topic: string, payload: Uint8Array | string): PutEntry => ({
  topic,
  payload: typeof payload === "string" ? bytes(payload) : payload,
})

export const rep = {
  ok: (requestId: number): BinaryReply => ({ op: Op.ok, requestId }),
  empty: (requestId: number): BinaryReply => ({ op: Op.empty, requestId }),
  welcome: (requestId: number, maxFrameBytes: number, version = 1): BinaryReply => ({
    op: Op.welcome,
    requestId,
    version,
    maxFrameBytes,
  }),
  putAck: (requestId: number, seq: number, count = 1): BinaryReply => ({ op: Op.putAck, requestId, seq, count }),
  message: (
    requestId: number,
    seq: number,
    topic: string,
    payload: Uint8Array | string,
    missed = 0,
    putAt: number | null = null,
  ): BinaryReply => ({
    op: Op.message,
    requestId,
    seq,
    missed,
    putAt,
    topic,
    payload: typeof payload === "string" ? bytes(payload) : payload,
  }),
  deliver: (seq: number, topic: string, payload: Uint8Array | string, missed = 0, putAt: number | null = null): BinaryReply => ({
    op: Op.deliver,
    requestId: 0,
    seq,
    missed,
    putAt,
    topic,
    payload: typeof payload === "string" ? bytes(payload) : payload,
  }),
  pong: (requestId: number, body: Uint8Array | string = new Uint8Array()): BinaryReply => ({
    op: Op.pong,
    requestId,
    body: typeof body === "string" ? bytes(body) : body,
  }),
  statsReply: (requestId: number, body: Uint8Array | string): BinaryReply => ({
    op: Op.statsReply,
    requestId,
    body: typeof body === "string" ? bytes(body) : body,
  }),
  /** An ERROR; without `errorText`, any non-empty text matches (for toEqual). */
  error: (requestId: number, code: number, fatal: boolean, errorText?: string): BinaryReply => ({
    op: Op.error,
    requestId,
    fatal,
    code,
    text: errorText ?? (expect.stringMatching(/./) as unknown as string),
  }),
}

/**
 * FrameWriter that remembers where each field starts and ends, so a frame can be printed one
 * hex group per field: `length | opcode flags | request id | body fields`.
 */
class GroupingWriter extends FrameWriter {
  readonly groups: [number, number][] = []
  #depth = 0

  #record<T>(work: () => T): T {
    const start = this.length
    this.#depth++
    const result = work()
    this.#depth--
    if (this.#depth === 0 && this.length > start) this.groups.push([start, this.length])
    return result
  }

  override u8(value: number): this {
    return this.#record(() => super.u8(value))
  }
  override u16(value: number): this {
    return this.#record(() => super.u16(value))
  }
  override u32(value: number): this {
    return this.#record(() => super.u32(value))
  }
  override u64(value: number): this {
    return this.#record(() => super.u64(value))
  }
  override f64(value: number): this {
    return this.#record(() => super.f64(value))
  }
  override bytes(value: Uint8Array): this {
    return this.#record(() => super.bytes(value))
  }
  /** Two groups: the u16 length, then the UTF-8 bytes. */
  override topic(topic: string): this {
    const start = this.length
    super.topic(topic)
    if (this.#depth === 0) {
      this.groups.push([start, start + 2])
      if (this.length > start + 2) this.groups.push([start + 2, this.length])
    }
    return this
  }
}

function format(write: (writer: FrameWriter) => void): string {
  const writer = new GroupingWriter()
  write(writer)
  const frame = writer.take()
  const hex = (start: number, end: number) => toHex(frame.subarray(start, end))
  const body = writer.groups.map(([start, end]) => hex(start, end)).join(" ")
  return `${hex(0, 4)} | ${hex(4, 5)} ${hex(5, 6)} | ${hex(6, 10)} |${body === "" ? "" : ` ${body}`}`
}

/** The frame as docs/PROTOCOL.md prints it. */
export function formatRequest(request: BinaryRequest): string {
  return format((writer) => writeRequest(writer, request))
}

export function formatReply(reply: BinaryReply): string {
  return format((writer) => writeReply(writer, reply))
}

/** A frame with an opcode the protocol does not define, printed the same way. */
export function formatRaw(opcode: number, flags: number, requestId: number, body: Uint8Array): string {
  return format((writer) => {
    writer.begin(opcode, flags, requestId)
    if (body.length > 0) writer.bytes(body)
    writer.end()
  })
}
