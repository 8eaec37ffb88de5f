/**
 * Topic names recently read from frames, by their bytes: a client sends the same few topics
 * over and over (a GET_WAIT per message, a PUT per message), and each read decoded and checked
 * the name again and allocated a new string. A small direct-mapped table (a hash of the bytes
 * picks the slot) returns the string already checked. At most SLOTS names of at most
 * MAX_TOPIC_BYTES each (256 KiB), shared by every connection.
 *
 * A name replaces another in its slot only when it comes twice in a row there: a client
 * reading random names (gets of topics that do not exist, 680,000 a second in bench/
 * isolation.ts) made a copy of each one, 7 % of the server's time, and evicted the names
 * that do repeat.
 */

const SLOTS = 256

/** FNV-1a over `length` bytes of `bytes` from `start`. */
function hash(bytes: Uint8Array, start: number, length: number): number {
  let h = 0x811c9dc5
  for (let i = start; i < start + length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193)
  return h >>> 0
}

export class KnownNames {
  readonly #bytes: (Uint8Array | undefined)[] = new Array(SLOTS)
  readonly #names: string[] = new Array(SLOTS).fill("")
  /** Per slot: the hash of the last name that missed it while it held another, or 0. */
  readonly #knocking = new Uint32Array(SLOTS)

  /** The name whose UTF-8 bytes are `bytes[start, start + length)`, if it is in the table. */
  find(bytes: Uint8Array, start: number, length: number): string | null {
    const slot = hash(bytes, start, length) & (SLOTS - 1)
    const known = this.#bytes[slot]
    if (known === undefined || known.length !== length) return null
    for (let i = 0; i < length; i++) if (known[i] !== bytes[start + i]) return null
    return this.#names[slot]!
  }

  /**
   * A name read and found valid (and not found): kept, with a copy of its bytes, if its slot is
   * free or it is the second time in a row that this name missed the slot's name.
   */
  remember(bytes: Uint8Array, start: number, length: number, name: string): void {
    const h = hash(bytes, start, length)
    const slot = h & (SLOTS - 1)
    if (this.#bytes[slot] !== undefined && this.#knocking[slot] !== h) {
      this.#knocking[slot] = h
      return
    }
    this.#knocking[slot] = 0
    this.#bytes[slot] = bytes.slice(start, start + length)
    this.#names[slot] = name
  }
}
