/**
 * Reading the fields of one binary frame: the header's numbers, and BodyReader for a body's
 * fields in order. Shared by the request reader (server) and the reply reader (client).
 */

import { isPattern, patternProblem } from "../../topic/pattern.ts"
import { MAX_TOPIC_BYTES, topicProblem } from "../../topic/topic-name.ts"
import { ProtocolError } from "../errors.ts"
import { HEADER_BYTES } from "./constants.ts"
import { KnownNames } from "./known-names.ts"

const utf8 = new TextDecoder("utf-8", { fatal: true })
/** Names already read and checked (see KnownNames). */
const knownNames = new KnownNames()

export function readU32(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0
}

export function requestIdOf(frame: Uint8Array): number {
  return readU32(frame, 6)
}

/** Reads the fields of one frame's body in order, with bounds checks that throw ProtocolError. */
export class BodyReader {
  #at: number
  constructor(
    readonly frame: Uint8Array,
    readonly opcode: number,
  ) {
    this.#at = HEADER_BYTES
  }

  get remaining(): number {
    return this.frame.length - this.#at
  }

  u8(): number {
    this.#need(1)
    return this.frame[this.#at++]!
  }

  u16(): number {
    this.#need(2)
    const value = (this.frame[this.#at]! << 8) | this.frame[this.#at + 1]!
    this.#at += 2
    return value
  }

  u32(): number {
    this.#need(4)
    const value = readU32(this.frame, this.#at)
    this.#at += 4
    return value
  }

  u64(): number {
    const high = this.u32()
    return high * 2 ** 32 + this.u32()
  }

  /** A big-endian IEEE 754 double. */
  f64(): number {
    this.#need(8)
    const value = new DataView(this.frame.buffer, this.frame.byteOffset + this.#at, 8).getFloat64(0)
    this.#at += 8
    return value
  }

  bytes(count: number): Uint8Array {
    this.#need(count)
    const view = this.frame.subarray(this.#at, this.#at + count)
    this.#at += count
    return view
  }

  rest(): Uint8Array {
    return this.bytes(this.remaining)
  }

  topic(): string {
    const length = this.u16()
    if (length > MAX_TOPIC_BYTES) throw badField(`topic is longer than ${MAX_TOPIC_BYTES} bytes`)
    try {
      return utf8.decode(this.bytes(length))
    } catch (error) {
      if (error instanceof ProtocolError) throw error
      throw badField("topic is not valid UTF-8")
    }
  }

  /** A topic name: a string as `topic()` reads it, that is also a valid topic. */
  topicName(): string {
    const start = this.#at + 2
    if (this.remaining >= 2) {
      const length = (this.frame[this.#at]! << 8) | this.frame[this.#at + 1]!
      const known = length <= this.remaining - 2 ? knownNames.find(this.frame, start, length) : null
      if (known !== null) {
        this.#at = start + length
        return known
      }
    }
    const topic = this.topic()
    const problem = topicProblem(topic)
    if (problem !== null) throw badField(problem)
    knownNames.remember(this.frame, start, this.#at - start, topic)
    return topic
  }

  /** A name to read from: a topic, or a pattern (`+`, `#`) that must then be a valid one. */
  readName(): string {
    const name = this.topicName()
    const problem = isPattern(name) ? patternProblem(name) : null
    if (problem !== null) throw badField(problem)
    return name
  }

  end(): void {
    if (this.remaining !== 0) throw badField(`${this.remaining} unexpected bytes after the body of opcode ${hex(this.opcode)}`)
  }

  #need(count: number): void {
    if (this.remaining < count) throw badField(`the body of opcode ${hex(this.opcode)} ends early`)
  }
}

/** A field that is missing, cut short or out of range. */
export function badField(text: string): ProtocolError {
  return new ProtocolError("bad_field", text)
}

/** An opcode or flags byte as it is written in error texts: `0x0b`. */
export function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`
}
