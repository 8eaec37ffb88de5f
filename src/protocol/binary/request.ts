/**
 * Reading a client's request frames, on the server side: one frame in, one typed request (or
 * the reason it is refused) out. Byte fields are views into the frame.
 */
import { ProtocolError } from "../errors.ts"
import { MAX_WAIT_MS } from "../limits.ts"
import { Flag, MAGIC, MAX_CURSOR_NAME_BYTES, MAX_TOPICS_PAGE, Op } from "./constants.ts"
import { BodyReader, badField, hex, requestIdOf } from "./fields.ts"

export interface PutEntry {
  readonly topic: string
  readonly payload: Uint8Array
}

export type BinaryRequest =
  | {
      readonly op: typeof Op.hello
      readonly requestId: number
      readonly version: number
      readonly token: string | null
      /** MESSAGE and DELIVER frames should carry put times. */
      readonly putTimes: boolean
    }
  | { readonly op: typeof Op.put; readonly requestId: number; readonly ack: boolean; readonly topic: string; readonly payload: Uint8Array }
  | { readonly op: typeof Op.putMany; readonly requestId: number; readonly ack: boolean; readonly entries: readonly PutEntry[] }
  | {
      readonly op: typeof Op.get | typeof Op.getLatest | typeof Op.subscribe | typeof Op.unsubscribe
      readonly requestId: number
      readonly topic: string
    }
  | { readonly op: typeof Op.getWait; readonly requestId: number; readonly topic: string; readonly timeoutMs: number }
  | { readonly op: typeof Op.ping; readonly requestId: number; readonly body: Uint8Array }
  | { readonly op: typeof Op.stats; readonly requestId: number }
  | {
      readonly op: typeof Op.topics
      readonly requestId: number
      /** At most this many topics (1 to MAX_TOPICS_PAGE). */
      readonly limit: number
      /** Names up to and including this one are skipped ("" for the first page). */
      readonly after: string
      /** Only topics this pattern matches; null for all. */
      readonly match: string | null
    }
  | { readonly op: typeof Op.cursor; readonly requestId: number; readonly name: string }
  | { readonly op: typeof Op.from; readonly requestId: number; readonly seq: number }

export interface RejectedFrame {
  readonly op: "rejected"
  readonly requestId: number
  readonly error: ProtocolError
  readonly fatal: boolean
}

/**
 * Interprets one request frame. Payloads and bodies are views into `frame`; `detachRequest`
 * copies them when the request must outlive the chunk it came in.
 */
export function readRequest(frame: Uint8Array): BinaryRequest | RejectedFrame {
  const opcode = frame[4]!
  const flags = frame[5]!
  const requestId = requestIdOf(frame)
  const body = new BodyReader(frame, opcode)
  try {
    // An unknown opcode is reported as such whatever its flags, so a client can probe for it.
    if (opcode === 0 || opcode > Op.from) {
      return {
        op: "rejected",
        requestId,
        error: new ProtocolError("unknown_action", `unknown opcode ${hex(opcode)}`),
        fatal: false,
      }
    }
    const allowedFlags = opcode === Op.put || opcode === Op.putMany ? Flag.ack : opcode === Op.hello ? Flag.putTimes : 0
    if ((flags & ~allowedFlags) !== 0) throw badField(`flags ${hex(flags)} are not defined for opcode ${hex(opcode)}`)
    switch (opcode) {
      case Op.hello: {
        const magic = body.bytes(MAGIC.length)
        if (!magic.every((byte, i) => byte === MAGIC[i])) {
          return { op: "rejected", requestId, error: new ProtocolError("malformed_frame", "HELLO must start with DSMQ"), fatal: true }
        }
        const version = body.u8()
        // An optional token follows: u16 length + UTF-8, as a topic is written.
        const token = body.remaining >= 2 ? body.topic() : null
        return { op: Op.hello, requestId, version, token, putTimes: (flags & Flag.putTimes) !== 0 }
      }
      case Op.put: {
        const topic = body.topicName()
        return { op: Op.put, requestId, ack: (flags & Flag.ack) !== 0, topic, payload: body.rest() }
      }
      case Op.putMany: {
        const count = body.u32()
        // Each entry takes at least 6 bytes: checked before allocating for `count` entries.
        if (count * 6 > body.remaining) throw badField(`PUT_MANY announces ${count} messages but the body is too short`)
        const entries: PutEntry[] = []
        for (let i = 0; i < count; i++) {
          const topic = body.topicName()
          entries.push({ topic, payload: body.bytes(body.u32()) })
        }
        body.end()
        return { op: Op.putMany, requestId, ack: (flags & Flag.ack) !== 0, entries }
      }
      case Op.get:
      case Op.getLatest:
      case Op.subscribe:
      case Op.unsubscribe: {
        const topic = body.readName()
        body.end()
        return { op: opcode, requestId, topic }
      }
      case Op.getWait: {
        const timeoutMs = body.u32()
        if (timeoutMs > MAX_WAIT_MS) throw badField(`GET_WAIT timeout ${timeoutMs} ms is above the maximum of ${MAX_WAIT_MS}`)
        const topic = body.readName()
        body.end()
        return { op: Op.getWait, requestId, topic, timeoutMs }
      }
      case Op.ping:
        return { op: Op.ping, requestId, body: body.rest() }
      case Op.stats:
        body.end()
        return { op: Op.stats, requestId }
      case Op.topics: {
        const limit = body.u32()
        if (limit < 1 || limit > MAX_TOPICS_PAGE) throw badField(`TOPICS limit must be from 1 to ${MAX_TOPICS_PAGE}, got ${limit}`)
        const after = body.topic()
        const match = body.remaining > 0 ? body.readName() : null
        body.end()
        return { op: Op.topics, requestId, limit, after, match }
      }
      case Op.from: {
        const seq = body.u64()
        body.end()
        if (seq >= 2 ** 53) throw badField(`FROM seq ${seq} is not below 2^53`)
        return { op: Op.from, requestId, seq }
      }
      default: {
        // Op.cursor: the only opcode not handled above
        const name = body.topic()
        body.end()
        if (name === "" || Buffer.byteLength(name) > MAX_CURSOR_NAME_BYTES) {
          throw badField(`a cursor name must have 1 to ${MAX_CURSOR_NAME_BYTES} bytes`)
        }
        return { op: Op.cursor, requestId, name }
      }
    }
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error
    return { op: "rejected", requestId, error, fatal: false }
  }
}

/** A copy of the request whose byte fields no longer share memory with the chunk. */
export function detachRequest<R extends BinaryRequest | RejectedFrame>(request: R): R {
  switch (request.op) {
    case Op.put:
      return { ...request, payload: request.payload.slice() }
    case Op.putMany:
      return { ...request, entries: request.entries.map((entry) => ({ topic: entry.topic, payload: entry.payload.slice() })) }
    case Op.ping:
      return { ...request, body: request.body.slice() }
    default:
      return request
  }
}
