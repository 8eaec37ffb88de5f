/**
 * A map that forgets its oldest entry when full, so that memory stays bounded whatever keys
 * clients send. Oldest by insertion, not by use: a hit costs one look-up and no reordering.
 */
export class BoundedCache<K, V> {
  readonly #entries = new Map<K, V>()
  readonly capacity: number

  /** `capacity` 0 keeps nothing. */
  constructor(capacity: number) {
    this.capacity = capacity
  }

  get size(): number {
    return this.#entries.size
  }

  get(key: K): V | undefined {
    return this.#entries.get(key)
  }

  set(key: K, value: V): void {
    if (this.capacity === 0) return
    if (this.#entries.size >= this.capacity && !this.#entries.has(key)) {
      // A Map iterates in insertion order: the first key is the oldest.
      this.#entries.delete(this.#entries.keys().next().value as K)
    }
    this.#entries.set(key, value)
  }

  clear(): void {
    this.#entries.clear()
  }
}
