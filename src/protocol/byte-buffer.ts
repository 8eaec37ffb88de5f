/**
 * A growable byte buffer for the incomplete tail of a stream. Decoders copy into it only the
 * bytes of a frame that a chunk did not finish; complete frames are read in place.
 */
const INITIAL_CAPACITY = 4096
/** After a large frame, give the memory back instead of holding it for the connection's life. */
const RETAIN_CAPACITY = 64 * 1024

export class ByteBuffer {
  #bytes = new Uint8Array(0)
  #length = 0

  get length(): number {
    return this.#length
  }

  /** The buffered bytes, as a view that is valid until the next append or discard. */
  view(): Uint8Array {
    return this.#bytes.subarray(0, this.#length)
  }

  append(chunk: Uint8Array): void {
    const needed = this.#length + chunk.length
    if (needed > this.#bytes.length) {
      let capacity = Math.max(this.#bytes.length, INITIAL_CAPACITY)
      while (capacity < needed) capacity *= 2
      const grown = new Uint8Array(capacity)
      grown.set(this.#bytes.subarray(0, this.#length))
      this.#bytes = grown
    }
    this.#bytes.set(chunk, this.#length)
    this.#length = needed
  }

  /** Drops the first `count` bytes, keeping the rest at the front. */
  discard(count: number): void {
    if (count >= this.#length) {
      this.clear()
      return
    }
    this.#bytes.copyWithin(0, count, this.#length)
    this.#length -= count
  }

  clear(): void {
    this.#length = 0
    if (this.#bytes.length > RETAIN_CAPACITY) this.#bytes = new Uint8Array(0)
  }
}
