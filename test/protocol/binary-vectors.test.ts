/**
 * test/vectors/binary-protocol.json: the binary protocol's worked examples as data, shared with
 * the Python client's tests. Each vector's bytes decode with this codec to its meaning and its
 * meaning encodes back to its bytes; the document's examples are all there, verbatim; and the
 * frames a decoder must refuse are refused with the code the vector names.
 */
import { describe, expect, test } from "bun:test"
import { Op } from "../../src/protocol/binary/constants.ts"
import { BinaryDecoder } from "../../src/protocol/binary/decoder.ts"
import { type BinaryReply, readReply } from "../../src/protocol/binary/reply.ts"
import { type BinaryRequest, readRequest } from "../../src/protocol/binary/request.ts"
import { ProtocolError } from "../../src/protocol/errors.ts"
import { DEFAULT_MAX_MESSAGE_BYTES } from "../../src/start-server.ts"
import { formatRaw, formatReply, formatRequest, fromHex, toHex } from "../binary-frames.ts"

type Direction = "request" | "reply"
type Meaning = Record<string, unknown> & { readonly op: string; readonly requestId: number }

interface FrameVector {
  readonly name: string
  readonly source: "docs" | "extra"
  readonly direction: Direction
  readonly hex: string
  readonly value: Meaning
}

interface RejectedVector {
  readonly name: string
  readonly source?: "docs"
  readonly direction: Direction
  readonly hex: string
  readonly error: string
  readonly value?: Meaning
}

const VECTORS = (await Bun.file(new URL("../vectors/binary-protocol.json", import.meta.url)).json()) as {
  readonly frames: FrameVector[]
  readonly rejected: RejectedVector[]
}
const DOC = await Bun.file(new URL("../../docs/PROTOCOL.md", import.meta.url)).text()

const REQUEST_NAMES: Record<string, number> = {
  HELLO: Op.hello,
  PUT: Op.put,
  PUT_MANY: Op.putMany,
  GET: Op.get,
  GET_LATEST: Op.getLatest,
  GET_WAIT: Op.getWait,
  SUBSCRIBE: Op.subscribe,
  UNSUBSCRIBE: Op.unsubscribe,
  PING: Op.ping,
  STATS: Op.stats,
  CURSOR: Op.cursor,
  TOPICS: Op.topics,
  FROM: Op.from,
}
const REPLY_NAMES: Record<string, number> = {
  OK: Op.ok,
  WELCOME: Op.welcome,
  PUT_ACK: Op.putAck,
  MESSAGE: Op.message,
  EMPTY: Op.empty,
  PONG: Op.pong,
  STATS: Op.statsReply,
  DELIVER: Op.deliver,
  TOPICS: Op.topicsReply,
  ERROR: Op.error,
}
const namesOf = (direction: Direction) => (direction === "request" ? REQUEST_NAMES : REPLY_NAMES)
const nameOf = (direction: Direction, op: number) => Object.entries(namesOf(direction)).find(([, code]) => code === op)![0]

/** The one frame in `bytes`, split as the server splits its input. */
function singleFrame(bytes: Uint8Array): Uint8Array {
  const frames: Uint8Array[] = []
  const errors: string[] = []
  const decoder = new BinaryDecoder(
    { frame: (frame) => frames.push(frame.slice()), fail: (error) => errors.push(error.errorName) },
    DEFAULT_MAX_MESSAGE_BYTES,
  )
  decoder.push(bytes)
  expect({ frames: frames.length, errors, leftOver: decoder.buffered }).toEqual({ frames: 1, errors: [], leftOver: 0 })
  return frames[0]!
}

/** A decoded frame as the vectors write it: the op by name, byte fields as hex. */
function meaningOf(direction: Direction, value: BinaryRequest | BinaryReply): Meaning {
  const meaning: Record<string, unknown> = {}
  for (const [key, field] of Object.entries(value)) {
    if (key === "op") meaning.op = nameOf(direction, field as number)
    // Fields of an option the frame does not use are left out, as the vectors predate them.
    else if ((key === "putTimes" && field === false) || (key === "putAt" && field === null)) continue
    else if (field instanceof Uint8Array) meaning[`${key}Hex`] = toHex(field)
    else if (key === "entries") {
      meaning.entries = (field as { topic: string; payload: Uint8Array }[]).map((entry) => ({
        topic: entry.topic,
        payloadHex: toHex(entry.payload),
      }))
    } else meaning[key] = field
  }
  return meaning as Meaning
}

/** The inverse of `meaningOf`. */
function frameOf(direction: Direction, meaning: Meaning): BinaryRequest | BinaryReply {
  const op = namesOf(direction)[meaning.op]
  const value: Record<string, unknown> =
    op === Op.hello ? { putTimes: false } : op === Op.message || op === Op.deliver ? { putAt: null } : {}
  for (const [key, field] of Object.entries(meaning)) {
    if (key === "op") value.op = namesOf(direction)[field as string]
    else if (key.endsWith("Hex")) value[key.slice(0, -3)] = fromHex(field as string)
    else if (key === "entries") {
      value.entries = (field as { topic: string; payloadHex: string }[]).map((entry) => ({
        topic: entry.topic,
        payload: fromHex(entry.payloadHex),
      }))
    } else value[key] = field
  }
  return value as unknown as BinaryRequest | BinaryReply
}

/** Complete example lines of the document's worked examples (those with `..` leave bytes out). */
const DOC_LINES = DOC.slice(DOC.indexOf("## Worked examples"))
  .split("\n")
  .filter((line) => /^ {4}[0-9a-f]{8} \|/.test(line) && !line.includes(".."))
  .map((line) => line.trim())

describe("shared binary protocol vectors", () => {
  test("the file has frames of every opcode in both directions", () => {
    const seen = new Set(VECTORS.frames.map((vector) => `${vector.direction} ${vector.value.op}`))
    for (const name of Object.keys(REQUEST_NAMES)) expect(seen).toContain(`request ${name}`)
    for (const name of Object.keys(REPLY_NAMES)) expect(seen).toContain(`reply ${name}`)
  })

  test("the document's complete examples are the vectors from docs, in order", () => {
    const fromDocs = [...VECTORS.frames, ...VECTORS.rejected].filter((vector) => vector.source === "docs").map((vector) => vector.hex)
    expect(DOC_LINES.length).toBe(24)
    expect(fromDocs).toEqual(DOC_LINES)
  })

  test.each(VECTORS.frames.map((vector) => [vector.name, vector] as const))("%s: bytes and meaning agree", (_name, vector) => {
    const frame = singleFrame(fromHex(vector.hex))
    const decoded = vector.direction === "request" ? readRequest(frame) : readReply(frame)
    expect(decoded.op).not.toBe("rejected")
    expect(meaningOf(vector.direction, decoded as BinaryRequest | BinaryReply)).toEqual(vector.value)
    const value = frameOf(vector.direction, vector.value)
    const printed = vector.direction === "request" ? formatRequest(value as BinaryRequest) : formatReply(value as BinaryReply)
    expect(printed).toBe(vector.hex)
  })

  test.each(VECTORS.rejected.map((vector) => [vector.name, vector] as const))("%s is refused", (_name, vector) => {
    const frame = singleFrame(fromHex(vector.hex))
    // The vector's grouping is the document's, so its bytes are exactly what it shows.
    expect(formatRaw(frame[4]!, frame[5]!, new DataView(frame.buffer).getUint32(6), frame.subarray(10)).replaceAll(" ", "")).toBe(
      vector.hex.replaceAll(" ", ""),
    )
    if (vector.direction === "request") {
      const request = readRequest(frame)
      expect(request.op).toBe("rejected")
      if (request.op === "rejected") expect(request.error.errorName).toBe(vector.error as never)
      return
    }
    let thrown: unknown = null
    try {
      readReply(frame)
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(ProtocolError)
    expect((thrown as ProtocolError).errorName).toBe(vector.error as never)
  })
})
