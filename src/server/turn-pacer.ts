/**
 * What all connections together may do in one turn of the event loop. Each connection's flow
 * control bounds its own turn (RUN_BUDGET requests, TURN_OUTPUT_BYTES of output), but a crowd of
 * connections each doing its share still made one long turn, and every other client waited for
 * all of it:
 * - large replies: 100 readers arriving together, each asking for a near-megabyte message, took
 *   240-800 ms of one turn (about 1-2 ms a megabyte to read, encode and write);
 * - pipelined requests: under the abuse soak's mix (50 connections pipelining gets, floods of
 *   puts), about 100 connections each ran their 64 requests in every turn, 12 ms of work between
 *   two reads of the sockets, and a well-behaved client's p99 was 7-11 times its baseline.
 *
 * So the pacer counts, in each turn and over every connection, the output produced and the
 * requests run:
 * - a read whose reply would be large (LARGE_READ_BYTES or more, known before it runs: see
 *   Session.readsAtLeast) runs only while this turn's output is under BULK_BYTES_PER_TURN and
 *   nobody is waiting ahead of it; a subscriber's catch-up (and so a large push) takes its room
 *   from the same output;
 * - past its first RUNS_BEFORE_PACING requests of a turn (flow-control.ts), a connection runs
 *   more only while this turn's requests are under RUNS_PER_TURN. A client sending a few
 *   requests at a time is never held back; a pipelining crowd shares one turn's worth.
 * Otherwise the connection waits, and waiting connections are resumed in a later turn, in the
 * order they began to wait, as long as there is room.
 */

/** A read returning at least this much is paced (a small one costs less than the look-up that would tell). */
export const LARGE_READ_BYTES = 64 * 1024
/** Output of all connections in one turn past which large reads wait: about 1-2 ms of work. */
export const BULK_BYTES_PER_TURN = 1024 * 1024
/**
 * Requests of all connections in one turn past which pipelining connections wait: about 1 ms of
 * small requests, four connections' RUN_BUDGET. See bench/README.md for the isolation runs that chose it.
 */
export const RUNS_PER_TURN = 256

export class TurnPacer {
  readonly #maxBytes: number
  readonly #maxRuns: number
  readonly #nextTurn: (task: () => void) => void
  /** Output and requests counted in this turn, over every connection. */
  #bytes = 0
  #runs = 0
  #turn = 0
  /** Connections waiting to go on, in the order they began to wait (a Set: each waits once). */
  readonly #waiting = new Set<() => void>()
  /** The waiters of this turn are being resumed: they go first, so they are let through. */
  #resuming = false
  #turnScheduled = false

  /** `nextTurn` runs a task in a later turn of the event loop (a test may run it by hand). */
  constructor(maxBytes = BULK_BYTES_PER_TURN, maxRuns = RUNS_PER_TURN, nextTurn: (task: () => void) => void = setImmediate) {
    this.#maxBytes = maxBytes
    this.#maxRuns = maxRuns
    this.#nextTurn = nextTurn
  }

  /** Changes when a turn in which anything was counted has passed: a connection's own budget then starts afresh. */
  get turn(): number {
    return this.#turn
  }

  /** Whether a large read may run now: room left in this turn's output, and nobody waiting before it. */
  get hasRoom(): boolean {
    return this.#bytes < this.#maxBytes && (this.#resuming || this.#waiting.size === 0)
  }

  /** Whether a connection past its own first requests of this turn may run one more. */
  get hasRunRoom(): boolean {
    return this.#runs < this.#maxRuns
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

  /** A request run in this turn, by any connection. */
  countRun(): void {
    this.#runs++
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
    this.#runs = 0
    this.#turn++
    // Taken first: one that waits again (it had more than the room) goes behind the others, next turn.
    const waiting = [...this.#waiting]
    let failure: unknown = null
    this.#resuming = true
    try {
      for (const resume of waiting) {
        if (this.#bytes >= this.#maxBytes || this.#runs >= this.#maxRuns) break
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
export const turnPacer = new TurnPacer()
