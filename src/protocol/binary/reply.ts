/** Reading the server's frames, on the client side: one frame in, one typed reply out. */
import { ProtocolError } from "../errors.ts"
import { Flag, Op } from "./constants.ts"
import { BodyReader, hex, requestIdOf } from "./fields.ts"

export type BinaryReply =
  | { readonly op: typeof Op.ok | typeof Op.empty; readonly requestId: number }
  | { readonly op: typeof Op.welcome; readonly requestId: number; readonly version: number; readonly maxFrameBytes: number }
  | { readonly op: typeof Op.putAck; readonly requestId: number; readonly seq: number; readonly count: number }
  | {
      readonly op: typeof Op.message | typeof Op.deliver
      readonly requestId: number
      readonly seq: number
      /** Messages before this one that retention removed unread (0 when the flag is absent). */
      readonly missed: number
      /** When it was put (ms since the epoch), if the connection asked for put times; else null. */
      readonly putAt: number | null
      readonly topic: string
      readonly payload: Uint8Array
    }
  | { readonly op: typeof Op.pong | typeof Op.statsReply | typeof Op.topicsReply; readonly requestId: number; readonly body: Uint8Array }
  | {
      readonly op: typeof Op.error
      readonly requestId: number
      readonly fatal: boolean
      readonly code: number
      readonly text: string
    }

/** Interprets one frame from the server (used by the client). Throws ProtocolError on a bad frame. */
export function readReply(frame: Uint8Array): BinaryReply {
  const opcode = frame[4]!
  const requestId = requestIdOf(frame)
  const body = new BodyReader(frame, opcode)
  switch (opcode) {
    case Op.ok:
    case Op.empty:
      body.end()
      return { op: opcode, requestId }
    case Op.welcome: {
      const version = body.u8()
      const maxFrameBytes = body.u32()
      return { op: Op.welcome, requestId, version, maxFrameBytes }
    }
    case Op.putAck: {
      const seq = body.u64()
      const count = body.u32()
      return { op: Op.putAck, requestId, seq, count }
    }
    case Op.message:
    case Op.deliver: {
      const seq = body.u64()
      const missed = (frame[5]! & Flag.missed) !== 0 ? body.u32() : 0
      const putAt = (frame[5]! & Flag.putTime) !== 0 ? body.f64() : null
      const topic = body.topic()
      return { op: opcode, requestId, seq, missed, putAt, topic, payload: body.rest() }
    }
    case Op.pong:
    case Op.statsReply:
    case Op.topicsReply:
      return { op: opcode, requestId, body: body.rest() }
    case Op.error: {
      const code = body.u16()
      return {
        op: Op.error,
        requestId,
        fatal: (frame[5]! & Flag.fatal) !== 0,
        code,
        text: new TextDecoder().decode(body.rest()),
      }
    }
    default:
      throw new ProtocolError("unknown_action", `unknown reply opcode ${hex(opcode)}`)
  }
}
