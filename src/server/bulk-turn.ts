/**
 * Large replies, server-wide, per turn of the event loop. Each connection's flow control bounds
 * what it produces in one turn (TURN_OUTPUT_BYTES), but always lets it run one request, so a
 * crowd of connections each asking for a near-megabyte message at once still made one long
 * turn: 100 readers arriving together took 240-800 ms of one turn (about 1-2 ms a megabyte to
 * read, encode and write), and every other client waited for all of it.
 *
 * So a read whose reply would be large (LARGE_READ_BYTES or more, known before it runs: see
 * Session.readsAtLeast) runs only while this turn's output, over every connection, is under
 * BULK_BYTES_PER_TURN, and nobody is waiting ahead of it. Otherwise it waits, at the head of
 * its connection's queue, and the connection is resumed in a later turn, in the order they
 * began to wait, as long as there is room. Small requests never wait here: a ping behind a
 * crowd of big reads waits for at most one turn's worth of them.
 *
 * A subscriber's catch-up (backlog) takes its room from the same turn, and large pushes go
 * through catch-up, so they are paced alike.
 */

/** A read returning at least this much is paced (a small one costs less than the look-up that would tell). */
export const LARGE_READ_BYTES = 64 * 1024
/** Output of all connections in one turn past which large reads wait: about 1-2 ms of work. */
export const BULK_BYTES_PER_TURN = 1024 * 1024

export class BulkTurn {
  readonly #maxBytes: number
  readonly #nextTurn: (task: () => void) => void
  /** Output counted in this turn, over every connection. */
  #bytes = 0
  /** Connections waiting to go on, in the order they began to wait (a Set: each waits once). */
  readonly #waiting = new Set<() => void>()
  /** The waiters of this turn are being resumed: they go first, so they are let through. */
  #resuming = false
  #turnScheduled = false

  /** `nextTurn` runs a task in a later turn of the event loop (a test may run it by hand). */
  constructor(maxBytes = BULK_BYTES_PER_TURN, nextTurn: (task: () => void) => void = setImmediate) {
    this.#maxBytes = maxBytes
    this.#nextTurn = nextTurn
  }

  /** Whether a large read may run now: room left in this turn, and nobody waiting before it. */
  get hasRoom(): boolean {
    return this.#bytes < this.#maxBytes && (this.#resuming || this.#waiting.size === 0)
  }

  /** Connections waiting for a later turn. */
  get waitingCount(): number {
    return this.#waiting.size
  }

  /** Output produced in this turn, by any connection. */
  count(bytes: number): void {
    if (bytes === 0) return
    this.#bytes += bytes
    this.#scheduleTurn()
  }

  /** `resume` runs in a later turn, after those that began to wait before it, once there is room. */
  wait(resume: () => void): void {
    this.#waiting.add(resume)
    this.#scheduleTurn()
  }

  /** A connection that closed waits no more. */
  cancel(resume: () => void): void {
    this.#waiting.delete(resume)
  }

  #scheduleTurn(): void {
    if (this.#turnScheduled) return
    this.#turnScheduled = true
    this.#nextTurn(this.#newTurn)
  }

  readonly #newTurn = (): void => {
    this.#turnScheduled = false
    this.#bytes = 0
    // Taken first: one that waits again (it had more than the room) goes behind the others, next turn.
    const waiting = [...this.#waiting]
    let failure: unknown = null
    this.#resuming = true
    try {
      for (const resume of waiting) {
        if (this.#bytes >= this.#maxBytes) break
        this.#waiting.delete(resume)
        try {
          resume()
        } catch (error) {
          // One connection's failure must not keep the others waiting; it still surfaces.
          failure ??= error
        }
      }
    } finally {
      this.#resuming = false
    }
    if (this.#waiting.size > 0) this.#scheduleTurn()
    if (failure !== null) throw failure
  }
}

/** The process's one pacer: every server in it shares the event loop. */
export const bulkTurn = new BulkTurn()
