/**
 * Bytes on their way to one socket. Bun's `socket.write` does not buffer: it returns how many
 * bytes the kernel took, and the rest must be written again when the socket signals `drain`.
 *
 * Queued pieces are written in order. Small ones are joined into writes of up to
 * WRITE_COALESCE_BYTES (fewer system calls); a piece that large goes out as it is. What the
 * kernel did not take of a write stays as a view and goes out alone next: no byte is copied
 * twice, where joining the whole queue on every drain copied a backed-up reader's queue again
 * and again.
 */
import type { Socket } from "bun"

/** The most bytes one write joins small pieces into. */
export const WRITE_COALESCE_BYTES = 256 * 1024
/** Taken slots at the queue's head past which they are dropped (when they are at least half of it). */
const COMPACT_AT = 1024
const NOTHING = new Uint8Array(0)

export class Outbound {
  readonly #socket: Socket<unknown>
  /** Pieces not taken by the kernel, the oldest at #head (slots before it are taken). */
  #queued: Uint8Array[] = []
  #head = 0
  /** The head piece is what a write left over: it goes out alone, so that no byte is joined twice. */
  #headIsRest = false
  #queuedBytes = 0
  /** Bytes copied to join small pieces, for the tests. */
  #joinedBytes = 0

  constructor(socket: Socket<unknown>) {
    this.#socket = socket
  }

  /** Bytes the kernel has not taken yet. */
  get queuedBytes(): number {
    return this.#queuedBytes
  }

  get isIdle(): boolean {
    return this.#head === this.#queued.length
  }

  /** @internal Bytes copied so far to join small pieces into one write. */
  get joinedBytes(): number {
    return this.#joinedBytes
  }

  /** Writes now if nothing is waiting, else queues behind what is. */
  send(bytes: Uint8Array): void {
    if (bytes.length === 0) return
    const wasIdle = this.isIdle
    this.#queued.push(bytes)
    this.#queuedBytes += bytes.length
    if (wasIdle) this.writeQueued()
  }

  /**
   * Sends the first `length` bytes of `bytes`, which the caller reuses once this returns: written
   * straight from them when nothing is waiting (no allocation when the kernel takes them all,
   * the usual case); whatever has to wait is copied first.
   */
  sendLent(bytes: Uint8Array, length: number): void {
    if (length === 0) return
    if (!this.isIdle) {
      this.send(bytes.slice(0, length))
      return
    }
    const written = this.#socket.write(bytes, 0, length)
    if (written < 0) {
      this.#socket.terminate()
      return
    }
    if (written === length) return
    // The kernel is full (`drain` will come): the rest waits, alone at the head, as any write's rest.
    const rest = bytes.slice(written, length)
    this.#queued.push(rest)
    this.#queuedBytes += rest.length
    this.#headIsRest = true
  }

  /** Writes queued bytes until the kernel stops taking them (then `drain` comes) or none are left. */
  writeQueued(): void {
    // Bounded: each round either empties a write's worth of the queue or ends.
    while (!this.isIdle) {
      const bytes = this.#nextWrite()
      const written = this.#socket.write(bytes)
      if (written < 0) {
        // Closed or shutting down (Bun ends its side itself when the peer's FIN arrives): these
        // bytes can never go out, and no `drain` will come. Closing now makes sure the `close`
        // handler runs: a paused socket in this state was otherwise held open indefinitely.
        this.discard()
        this.#socket.terminate()
        return
      }
      this.#consume(written)
      if (written < bytes.length) return
    }
  }

  discard(): void {
    this.#queued = []
    this.#head = 0
    this.#headIsRest = false
    this.#queuedBytes = 0
  }

  /** The head piece, or the small pieces at the head joined into one (which then takes their place). */
  #nextWrite(): Uint8Array {
    const queued = this.#queued
    const first = queued[this.#head]!
    if (this.#headIsRest) return first
    let end = this.#head
    let total = 0
    while (end < queued.length && total + queued[end]!.length <= WRITE_COALESCE_BYTES) total += queued[end++]!.length
    if (end - this.#head < 2) return first
    const joined = new Uint8Array(total)
    let offset = 0
    for (let i = this.#head; i < end; i++) {
      joined.set(queued[i]!, offset)
      offset += queued[i]!.length
      queued[i] = NOTHING
    }
    this.#joinedBytes += total
    this.#head = end - 1
    queued[this.#head] = joined
    return joined
  }

  /** The kernel took `written` bytes from the head of the queue. */
  #consume(written: number): void {
    this.#queuedBytes -= written
    const queued = this.#queued
    let left = written
    while (left > 0) {
      const piece = queued[this.#head]!
      if (left < piece.length) {
        queued[this.#head] = piece.subarray(left)
        this.#headIsRest = true
        break
      }
      left -= piece.length
      queued[this.#head++] = NOTHING
      this.#headIsRest = false
    }
    if (this.#head === queued.length) {
      queued.length = 0
      this.#head = 0
    } else if (this.#head >= COMPACT_AT && this.#head * 2 >= queued.length) {
      queued.splice(0, this.#head)
      this.#head = 0
    }
  }
}
