/**
 * The server-wide budget for bytes held for clients (--max-buffered-bytes): undecoded input,
 * decoded requests not run yet, decoder tails and output the clients have not taken, over all
 * connections. Each connection's own limits bound it alone; this bounds their sum.
 *
 * Every connection reports what it holds after each of its turns and after each push. Past
 * the budget:
 * - the connections holding the most are paused, largest first, until those still running
 *   hold at most half of it;
 * - so is any other whose bytes waiting on its client (replies it has not taken, the
 *   unfinished frame it is sending) grow past SMALL_HOLDER_BYTES (requests waiting to run do
 *   not count: the server drains those by itself);
 * - new connections are refused.
 * A paused connection reads nothing, gets no pushes (its subscriptions catch up from the store
 * later) and runs requests only while its output is small, so it can only shrink, as its client
 * reads; once it holds less than SMALL_HOLDER_BYTES it runs again. Once the total is back under
 * three quarters of the budget, the paused connections resume, RESUMED_PER_TURN at a time,
 * longest paused first, for as long as the total stays under three quarters.
 *
 * So the total passes the budget by at most SMALL_HOLDER_BYTES per connection, plus, for each
 * connection still running when it was passed, what that one received or produced in its last
 * turn (a read, or TURN_OUTPUT_BYTES and a frame): a reply is only measured once it exists.
 *
 * A paused connection that holds as much as ever after MAX_PAUSE_MS (a client that never
 * reads, or never finishes a frame) is closed with limit_exceeded: otherwise a few clients that
 * never read could keep the server refusing everyone else for good.
 */

/** A connection, as the budget sees it. */
export interface BudgetHolder {
  /** Pause or resume this holder (see the module comment for what pausing means). */
  budgetPause(paused: boolean): void
  /** Paused for MAX_PAUSE_MS without shrinking: close (the budget has already forgotten it). */
  budgetStalled(): void
}

/** How long a paused holder may go without shrinking before it is closed. */
export const MAX_PAUSE_MS = 30_000
/** How often paused holders are looked at, and how many stalled ones are closed each time (the rest wait for the next look). */
const STALL_CHECK_MS = 100
const STALLED_CLOSED_PER_CHECK = 64

/**
 * Paused holders resumed in one turn of the event loop. Each reads what its client sent
 * while it was paused (up to a megabyte) in its first turn back: 300 partial frames resumed at
 * once took 210 ms of data handlers in one turn, and everyone else waited for it.
 */
export const RESUMED_PER_TURN = 16

/** Output a paused connection may still produce by running requests (puts produce none). */
export const PAUSED_OUTPUT_BYTES = 64 * 1024
/** Past the budget, a connection holding less than this may still grow: a client that reads its replies holds about this much. */
export const SMALL_HOLDER_BYTES = 64 * 1024

export class BufferBudget {
  readonly maxBytes: number
  readonly #maxPauseMs: number
  readonly #held = new Map<BudgetHolder, number>()
  readonly #waitingOnClient = new Map<BudgetHolder, number>()
  /** Paused holders: since when they have not shrunk, and what they held then. */
  readonly #paused = new Map<BudgetHolder, { since: number; bytes: number }>()
  #totalBytes = 0
  #pausedBytes = 0
  /** Looks for stalled holders while any is paused. */
  #stallCheck: Timer | null = null
  /** Holders resumed in this turn of the event loop (see RESUMED_PER_TURN), and whether the next turn is scheduled to start a new count. */
  #resumedThisTurn = 0
  #turnScheduled = false

  readonly #clock: () => number
  readonly #nextTurn: (task: () => void) => void

  /**
   * `clock` gives milliseconds (a test may pass its own, and call `closeStalled` itself);
   * `nextTurn` runs a task in a later turn of the event loop (a test may run it by hand).
   */
  constructor(
    maxBytes: number,
    maxPauseMs = MAX_PAUSE_MS,
    clock: () => number = () => performance.now(),
    nextTurn: (task: () => void) => void = setImmediate,
  ) {
    this.maxBytes = maxBytes
    this.#maxPauseMs = maxPauseMs
    this.#clock = clock
    this.#nextTurn = nextTurn
  }

  /** Bytes held for all clients. */
  get totalBytes(): number {
    return this.#totalBytes
  }

  get pausedCount(): number {
    return this.#paused.size
  }

  /** Whether a new connection may open: not while the budget is exceeded. */
  get admits(): boolean {
    return this.#totalBytes <= this.maxBytes
  }

  /**
   * What `holder` holds now (0 once it is gone, see `forget`), and how much of it waits on its
   * client (`waitingOnClient`: unsent replies, an unfinished frame) rather than on the server
   * running what it received, which the server drains by itself.
   */
  report(holder: BudgetHolder, bytes: number, waitingOnClient = bytes): void {
    const known = this.#held.get(holder)
    // Nothing held by a holder not (or no longer) known: nothing to note, and no entry for it.
    if (known === undefined && bytes === 0 && waitingOnClient === 0) return
    const before = known ?? 0
    const waitedBefore = this.#waitingOnClient.get(holder) ?? 0
    // Entries stay, at 0, until `forget`: a Map that deletes and adds a key on every report
    // (twice per delivery to a subscriber) makes garbage.
    this.#waitingOnClient.set(holder, waitingOnClient)
    if (bytes === before && known !== undefined) return
    this.#held.set(holder, bytes)
    this.#totalBytes += bytes - before
    if (this.#paused.has(holder)) {
      this.#pausedBytes += bytes - before
      // Its client read what it held: it is a small holder again, and runs.
      if (bytes < SMALL_HOLDER_BYTES) this.#resume(holder)
    }
    // Only growth can call for a pause: what shrinks leaves less running, not more.
    if (this.#totalBytes > this.maxBytes) {
      if (bytes > before) this.#overBudget(holder, waitingOnClient > waitedBefore ? waitingOnClient : 0)
    } else if (this.#mayResume()) this.#resumeSome()
  }

  /** The holder closed: what it held is freed. */
  forget(holder: BudgetHolder): void {
    // Not paused any more, and not resumed either: it is gone.
    if (this.#paused.delete(holder)) this.#pausedBytes -= this.#held.get(holder) ?? 0
    if (this.#paused.size === 0) this.#stopStallCheck()
    this.report(holder, 0)
    this.#held.delete(holder)
    this.#waitingOnClient.delete(holder)
  }

  /** The server stopped. */
  close(): void {
    this.#stopStallCheck()
  }

  /** Past the budget: the biggest holders pause, and `holder` too if what waits on its client grew past a small holder's size. */
  #overBudget(holder: BudgetHolder, grownWaitingOnClient: number): void {
    if (this.#totalBytes - this.#pausedBytes > this.maxBytes / 2) this.#pauseBiggest()
    if (grownWaitingOnClient >= SMALL_HOLDER_BYTES && !this.#paused.has(holder))
      this.#pause(holder, this.#held.get(holder) ?? 0, this.#clock())
  }

  /** Pauses running holders, largest first, until the running ones hold at most half the budget. */
  #pauseBiggest(): void {
    const running = [...this.#held].filter(([holder, bytes]) => bytes > 0 && !this.#paused.has(holder)).sort((a, b) => b[1] - a[1])
    const now = this.#clock()
    for (const [holder, bytes] of running) {
      if (this.#totalBytes - this.#pausedBytes <= this.maxBytes / 2) break
      this.#pause(holder, bytes, now)
    }
  }

  #pause(holder: BudgetHolder, bytes: number, now: number): void {
    this.#paused.set(holder, { since: now, bytes })
    this.#pausedBytes += bytes
    holder.budgetPause(true)
    this.#stallCheck ??= setInterval(() => this.closeStalled(), STALL_CHECK_MS)
    this.#stallCheck.unref()
  }

  #resume(holder: BudgetHolder): void {
    this.#pausedBytes -= this.#held.get(holder) ?? 0
    this.#paused.delete(holder)
    if (this.#paused.size === 0) this.#stopStallCheck()
    holder.budgetPause(false)
  }

  /** Under three quarters: resumes the longest paused holders, RESUMED_PER_TURN a turn, and the next ones in the next turn. */
  #resumeSome(): void {
    // Map order is the order they were paused in; one paused again goes to the back.
    const batch: BudgetHolder[] = []
    for (const holder of this.#paused.keys()) {
      if (this.#resumedThisTurn + batch.length >= RESUMED_PER_TURN) break
      batch.push(holder)
    }
    this.#resumedThisTurn += batch.length
    for (const holder of batch) this.#resume(holder)
    if (this.#turnScheduled) return
    this.#turnScheduled = true
    this.#nextTurn(() => {
      this.#turnScheduled = false
      this.#resumedThisTurn = 0
      if (this.#mayResume()) this.#resumeSome()
    })
  }

  /** Some holders are paused and the total is back under three quarters of the budget. */
  #mayResume(): boolean {
    return this.#paused.size > 0 && this.#totalBytes <= (this.maxBytes * 3) / 4
  }

  /** Closes paused holders that have not shrunk for MAX_PAUSE_MS; those that shrank start their time again. Runs on a timer. */
  closeStalled(): void {
    const now = this.#clock()
    const stalled: BudgetHolder[] = []
    for (const [holder, pause] of this.#paused) {
      const bytes = this.#held.get(holder) ?? 0
      if (bytes < pause.bytes) this.#paused.set(holder, { since: now, bytes })
      else if (now - pause.since >= this.#maxPauseMs) stalled.push(holder)
    }
    // A bounded number per check, so that a crowd stalled together is not closed in one long turn.
    for (const holder of stalled.slice(0, STALLED_CLOSED_PER_CHECK)) {
      this.forget(holder)
      holder.budgetStalled()
    }
  }

  #stopStallCheck(): void {
    if (this.#stallCheck !== null) clearInterval(this.#stallCheck)
    this.#stallCheck = null
  }
}
