/**
 * Generation 1 framing: JSON objects sent back to back with no delimiter and no length,
 * optionally separated by whitespace. Object boundaries are found by a small state machine
 * (brace depth, inside-a-string, after-a-backslash) that remembers where it stopped, so no
 * byte is scanned twice. Structural characters are ASCII and UTF-8 continuation bytes are
 * >= 0x80, so a chunk may end anywhere, even inside a multi-byte character.
 *
 * Objects are handed out as views of the chunk they arrived in. Only an object that straddles
 * chunks is copied, and only its own bytes: the start kept from the earlier chunk, then just
 * the part of the new chunk that completes it; the rest of the new chunk is read in place.
 */
import { TailBufferingDecoder } from "./decoder.ts"
import { ProtocolError } from "./errors.ts"

const LEFT_BRACE = 0x7b
const RIGHT_BRACE = 0x7d
const QUOTE = 0x22
const BACKSLASH = 0x5c
const SPACE = 0x20
const TAB = 0x09
const LF = 0x0a
const CR = 0x0d

const NOT_IN_OBJECT = -1
/** The object being scanned began in an earlier chunk: its start is in the tail. */
const IN_TAIL = -2

export class JsonStreamDecoder extends TailBufferingDecoder {
  // Scanner state, kept across chunks.
  #depth = 0
  #inString = false
  #escaped = false

  push(chunk: Uint8Array): void {
    if (this.stopped || chunk.length === 0) return
    // The tail only ever holds the start of an unfinished object, already scanned.
    const data = chunk
    let position = 0
    let objectStart = this.tail.length > 0 ? IN_TAIL : NOT_IN_OBJECT

    let depth = this.#depth
    let inString = this.#inString
    let escaped = this.#escaped
    const length = data.length
    let nextQuote = -2 // -2: not searched yet
    let nextBackslash = -2
    for (; position < length; position++) {
      const byte = data[position]!
      if (depth === 0) {
        if (byte === LEFT_BRACE) {
          depth = 1
          objectStart = position
        } else if (byte !== SPACE && byte !== LF && byte !== CR && byte !== TAB) {
          this.fail(
            new ProtocolError(
              "malformed_frame",
              `expected a JSON object ('{') but got ${describeByte(byte)}; requests must be JSON objects`,
            ),
          )
          return
        }
      } else if (inString) {
        if (escaped) {
          escaped = false
          continue
        }
        // Jump to the next quote or backslash with indexOf (native, fast for long strings)
        // instead of looking at every byte. Each search result is kept until passed, so the
        // chunk is still searched only once: -1 means "none in the rest of this data".
        if (nextQuote !== -1 && nextQuote < position) nextQuote = data.indexOf(QUOTE, position)
        if (nextBackslash !== -1 && nextBackslash < position) nextBackslash = data.indexOf(BACKSLASH, position)
        const stop = nextBackslash === -1 || (nextQuote !== -1 && nextQuote < nextBackslash) ? nextQuote : nextBackslash
        if (stop === -1) {
          position = length // the rest of the data is inside the string
          break
        }
        position = stop
        if (stop === nextBackslash) escaped = true
        else inString = false
      } else if (byte === QUOTE) {
        inString = true
      } else if (byte === LEFT_BRACE) {
        depth++
      } else if (byte === RIGHT_BRACE && --depth === 0) {
        const end = position + 1
        if (objectStart === IN_TAIL) {
          if (this.tail.length + end > this.maxFrameBytes) {
            this.#failTooLarge()
            return
          }
          // Completed by the first `end` bytes of this chunk: only those are copied.
          this.tail.append(data.subarray(0, end))
          this.sink.frame(this.tail.view())
          this.tail.clear()
        } else {
          if (end - objectStart > this.maxFrameBytes) {
            this.#failTooLarge()
            return
          }
          this.sink.frame(data.subarray(objectStart, end))
        }
        if (this.stopped) return
        objectStart = NOT_IN_OBJECT
      }
    }
    this.#depth = depth
    this.#inString = inString
    this.#escaped = escaped

    if (objectStart === NOT_IN_OBJECT) return
    // The unfinished object is kept: all of this chunk continues it, or it starts in this chunk.
    const keptFrom = objectStart === IN_TAIL ? 0 : objectStart
    if (this.tail.length + length - keptFrom > this.maxFrameBytes) {
      this.#failTooLarge()
      return
    }
    this.tail.append(data.subarray(keptFrom))
  }

  #failTooLarge(): void {
    this.fail(new ProtocolError("too_large", `request is larger than the maximum of ${this.maxFrameBytes} bytes`))
  }
}

export function describeByte(byte: number): string {
  const hex = `0x${byte.toString(16).padStart(2, "0")}`
  return byte >= 0x20 && byte < 0x7f ? `'${String.fromCharCode(byte)}' (${hex})` : hex
}
