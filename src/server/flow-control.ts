/**
 * Flow control for one connection, so that one client can never make the server buffer
 * without bound, nor keep the event loop from serving the others:
 * - no request runs while more than `maxOutboundBytes` of output wait for the client, nor
 *   beyond RUN_BUDGET requests or TURN_OUTPUT_BYTES of output in one turn of the event loop;
 * - received bytes are decoded a slice at a time, only as far as the turn can run (decoded
 *   requests wait in the inbox, copied off the chunk); the rest is kept undecoded and reading
 *   from the peer pauses, so the client feels TCP backpressure instead of the server
 *   buffering for it (behind a held get_wait, see PAUSE_AT_QUEUED);
 * - a read with a large reply waits while this turn's output, over every connection, is spent
 *   (bulk-turn.ts), and so does a subscriber's catch-up.
 *
 * It knows nothing of sockets or sessions: the connection it paces answers a few questions
 * (`Paced`), so it is tested with a fake one.
 */
import type { ProtocolError } from "../protocol/errors.ts"
import { type BudgetHolder, type BufferBudget, PAUSED_OUTPUT_BYTES } from "./buffer-budget.ts"
import { type BulkTurn, bulkTurn, LARGE_READ_BYTES } from "./bulk-turn.ts"
import { endOfTurn } from "./end-of-turn.ts"

/**
 * Requests one connection may run before it lets the event loop serve others. Bun hands over
 * up to 512 KiB at a time (about 9,000 small puts, tens of milliseconds of work); past this
 * budget the rest waits for the next turn, so one flooding client delays the others by a
 * fraction of a millisecond per turn (64 puts, ~0.4 ms), not by its whole chunk. At 256 a
 * flood of small puts held the event loop 1.7 ms per turn per connection and the loop's p99
 * lag was 2-3x higher (bench/isolation.ts); pipelined throughput did not change.
 */
export const RUN_BUDGET = 64
/**
 * Output one connection may produce before it lets the event loop serve others: the byte
 * side of RUN_BUDGET. Replies of near-megabyte messages cost about 2 ms per megabyte to read
 * and encode; without this, four readers asking for big messages at once stalled everyone
 * else for 40 ms. Each turn still runs at least one request, however large its reply.
 */
export const TURN_OUTPUT_BYTES = 256 * 1024
/**
 * Requests decoded behind a get_wait that holds the session. Past them, what arrives is kept
 * undecoded, up to HELD_READ_BYTES, and only then does reading pause: Bun does not tell a
 * paused socket that its client closed the connection (a FIN is seen only by reading), so a
 * connection held by a long get_wait keeps reading in order to notice its client leave.
 */
export const PAUSE_AT_QUEUED = 256
/** Taken requests at the inbox's head past which settle() drops them (when they are at least half of it). */
const COMPACT_INBOX_AT = 1024
export const HELD_READ_BYTES = 1024 * 1024
/**
 * Bytes of decoded requests a connection may hold back (behind a get_wait, or while its client
 * does not read its replies) before it decodes no more: without it, 256 one-megabyte puts
 * behind a long get_wait held 256 MiB for one connection. Checked between slices of
 * FEED_SLICE_BYTES, so one slice or one request more at most.
 */
export const MAX_QUEUED_BYTES = 1024 * 1024
/** Passes of the run loop (each up to the outbound cap of output) before yielding a turn. */
export const MAX_PASSES_PER_TURN = 4
/**
 * A chunk this large means the client is streaming requests. Reading from it then pauses
 * until the next turn of the event loop, so every other connection is served in between:
 * without this, a flooding client's socket is read again and again while others wait.
 */
export const YIELD_AFTER_CHUNK_BYTES = 16 * 1024
/**
 * Bytes given to the decoder at a time. Decoding is the part of a request that runs before
 * any budget is checked (a 512 KiB chunk of small puts is 7,000 JSON.parse calls, 15 ms); fed
 * in slices, decoding stops once RUN_BUDGET requests wait, and the rest of the chunk waits,
 * undecoded, until they have run.
 */
export const FEED_SLICE_BYTES = 16 * 1024

/** What flow control asks of the connection it paces. */
export interface Paced {
  /** Output produced and not yet handed to the transport, in bytes. */
  producedBytes(): number
  /** Output not taken by the peer yet: produced, or queued in the transport, in bytes. */
  outboundBytes(): number
  /** Everything the connection holds for its client (input, queued requests, output), for the server-wide budget. */
  bufferedBytes(): number
  /** The budget paused this connection and it did not shrink for MAX_PAUSE_MS: close it now. */
  budgetStalled(): void
  /** True while a request holds back the ones behind it (a JSON get_wait). */
  isHolding(): boolean
  /** Whether `request` is a read whose reply would be at least `bytes`, known without running it. */
  readsAtLeast(request: unknown, bytes: number): boolean
  /** False once the connection decodes nothing more (it is closing or stopping). */
  isDecoding(): boolean
  /** Decodes one slice of received bytes; its frames reach the connection during the call. */
  decode(slice: Uint8Array): void
  pauseReading(): void
  resumeReading(): void
  /** Run what may run and send the output: after a yielded turn (with a fresh budget), or when woken. */
  pump(): void
}

/** Bad bytes in the stream, queued behind the requests that came before them. */
export class StreamFailure {
  constructor(readonly error: ProtocolError) {}
}

export class FlowControl implements BudgetHolder {
  readonly #peer: Paced
  readonly #maxOutboundBytes: number
  /** The server-wide budget this connection reports to; null: none (tests of one connection). */
  readonly #budget: BufferBudget | null
  /** Paused by the budget: no reading, no pushes, and requests only while output is small. */
  #budgetPaused = false
  /** The connection is gone (see clear): it reports nothing more. */
  #cleared = false
  readonly #nextTurn: (task: () => void) => void
  readonly #bulk: BulkTurn
  /** Waiting for a turn with room for large output (its queue's head is a large read, or it has backlog). */
  #waitingForBulk = false
  /**
   * Received bytes not yet decoded because requests were backing up (see FEED_SLICE_BYTES),
   * oldest first; copies, since Bun may reuse a chunk's memory. A list, not one buffer, so
   * that a client dribbling small chunks costs no copying of what is already kept.
   */
  readonly #unfed: Uint8Array[] = []
  #unfedBytes = 0
  /** Requests held back, oldest at #inboxHead, and the size of each as received. */
  #inbox: unknown[] = []
  #inboxSizes: number[] = []
  #inboxHead = 0
  /** Bytes of the requests held back (see MAX_QUEUED_BYTES). */
  #inboxBytes = 0
  /** Requests run and bytes sent since this connection last let the event loop turn. */
  #ranThisTurn = 0
  #sentThisTurn = 0
  /** A yielded turn is scheduled. */
  #turnYielded = false
  /** A pump is scheduled for the end of the current handler (see `wake`). */
  #woken = false
  /** Reading is paused for a turn after a large chunk (see YIELD_AFTER_CHUNK_BYTES). */
  #yieldingRead = false
  #paused = false
  /**
   * A WebSocket's text messages are requests as they come, with no decoder to hold them back:
   * such a connection pauses reading once the inbox is full.
   */
  requestsArriveWhole = false

  /** `nextTurn` runs a task in a later turn of the event loop (a test may run it by hand, and pace large output with its own BulkTurn). */
  constructor(
    peer: Paced,
    maxOutboundBytes: number,
    budget: BufferBudget | null = null,
    nextTurn: (task: () => void) => void = setImmediate,
    bulk: BulkTurn = bulkTurn,
  ) {
    this.#peer = peer
    this.#maxOutboundBytes = maxOutboundBytes
    this.#budget = budget
    this.#nextTurn = nextTurn
    this.#bulk = bulk
  }

  /** Waiting for a later turn to run a large read or catch up (bulk-turn.ts): nothing more runs now. */
  get waitingForBulk(): boolean {
    return this.#waitingForBulk
  }

  /** Whether the server-wide budget has paused this connection (its pushes then wait in the store). */
  get budgetPaused(): boolean {
    return this.#budgetPaused
  }

  budgetStalled(): void {
    this.#peer.budgetStalled()
  }

  budgetPause(paused: boolean): void {
    this.#budgetPaused = paused
    this.#updatePause()
    // Resumed: run what waited, and catch subscriptions up.
    if (!paused) this.wake()
  }

  /** Decoded requests waiting to run. */
  get queuedRequests(): number {
    return this.#inbox.length - this.#inboxHead
  }

  /** Bytes received and not run yet: kept undecoded, or decoded and queued. */
  get heldBytes(): number {
    return this.#unfedBytes + this.#inboxBytes
  }

  get hasUnfed(): boolean {
    return this.#unfed.length > 0
  }

  /** Received bytes: decoded as far as this turn can run, the rest kept, behind what is kept already. */
  receive(chunk: Uint8Array): void {
    // Bytes still waiting to be decoded come first (reading pauses, but not at once).
    if (this.#unfed.length > 0) this.#keep(new Uint8Array(chunk))
    else this.#feed(chunk, false)
  }

  /** A chunk as large as a stream of requests: stop reading for one turn (YIELD_AFTER_CHUNK_BYTES). */
  yieldReadingAfter(chunkBytes: number): void {
    if (chunkBytes < YIELD_AFTER_CHUNK_BYTES || this.#yieldingRead) return
    this.#yieldingRead = true
    this.#nextTurn(() => {
      this.#yieldingRead = false
      this.#updatePause()
    })
  }

  /** Decodes kept bytes, oldest first, as far as this turn can run. */
  feedKept(): void {
    // Bounded: each round takes one chunk off, and puts back at most what it did not decode
    // (only when #mayDecode turned false, which ends the loop).
    while (this.#unfed.length > 0 && this.#peer.isDecoding() && this.#mayDecode()) {
      const chunk = this.#unfed.shift()!
      this.#unfedBytes -= chunk.length
      this.#feed(chunk, true)
    }
  }

  /** Received bytes that will not be decoded after all (the connection stops reading). */
  dropUnfed(): void {
    this.#unfed.length = 0
    this.#unfedBytes = 0
  }

  /** The connection is gone: forget everything held. */
  clear(): void {
    this.#cleared = true
    this.#budget?.forget(this)
    this.#bulk.cancel(this.#resumeBulk)
    this.dropUnfed()
    this.#inbox = []
    this.#inboxSizes = []
    this.#inboxHead = 0
    this.#inboxBytes = 0
  }

  /** Whether a request may run now: turn budget left, nothing holding, and the client keeping up. */
  #mayRun(): boolean {
    const maxOutbound = this.#budgetPaused ? PAUSED_OUTPUT_BYTES : this.#maxOutboundBytes
    return this.hasTurnBudget() && !this.#peer.isHolding() && this.#peer.outboundBytes() < maxOutbound
  }

  /** Whether `request`, just decoded, may run at once, ahead of nothing. */
  mayRunNow(request: unknown): boolean {
    return this.#inboxHead === this.#inbox.length && this.#mayRun() && !this.#waitsForBulk(request)
  }

  /** Whether the oldest queued request may run now. */
  mayRunNext(): boolean {
    return this.#mayRun() && !this.#waitsForBulk(this.#inbox[this.#inboxHead])
  }

  /** A large read while this turn's output is spent: it waits for a turn with room (bulk-turn.ts). */
  #waitsForBulk(request: unknown): boolean {
    if (this.#waitingForBulk) return true
    if (this.#bulk.hasRoom || request instanceof StreamFailure || !this.#peer.readsAtLeast(request, LARGE_READ_BYTES)) return false
    this.#awaitBulk()
    return true
  }

  #awaitBulk(): void {
    this.#waitingForBulk = true
    this.#bulk.wait(this.#resumeBulk)
  }

  readonly #resumeBulk = (): void => {
    this.#waitingForBulk = false
    this.#peer.pump()
  }

  countRun(): void {
    this.#ranThisTurn++
  }

  countSent(bytes: number): void {
    this.#sentThisTurn += bytes
    this.#bulk.count(bytes)
  }

  /** Queues a request (detached from the chunk) that may not run yet; `size` as received. */
  hold(request: unknown, size: number): void {
    this.#inbox.push(request)
    this.#inboxSizes.push(size)
    this.#inboxBytes += size
  }

  /** Queues a broken stream behind the requests before it. */
  holdFailure(error: ProtocolError): void {
    this.hold(new StreamFailure(error), 0)
  }

  get hasQueued(): boolean {
    return this.#inboxHead < this.#inbox.length
  }

  /** The oldest queued request or stream failure, counted as run. */
  takeQueued(): unknown {
    this.#ranThisTurn++
    this.#inboxBytes -= this.#inboxSizes[this.#inboxHead]!
    const request = this.#inbox[this.#inboxHead]
    // Not kept once taken: under a steady flood the inbox is never empty, so never reset.
    this.#inbox[this.#inboxHead++] = undefined
    return request
  }

  /** @internal Slots the inbox's arrays hold, taken ones included (bounded: see settle). */
  get inboxSlots(): number {
    return this.#inbox.length
  }

  /** Bytes a subscriber's backlog may produce now, or null when this turn's output is spent. */
  backlogBudget(): number | null {
    if (this.#budgetPaused || this.#waitingForBulk) return null
    if (!this.#bulk.hasRoom) {
      this.#awaitBulk()
      return null
    }
    const turnRoom = TURN_OUTPUT_BYTES - this.#sentThisTurn - this.#peer.producedBytes()
    if (turnRoom <= 0) return null
    return Math.min(this.#maxOutboundBytes - this.#peer.outboundBytes(), turnRoom)
  }

  /** What is left of this turn's RUN_BUDGET and TURN_OUTPUT_BYTES. */
  hasTurnBudget(): boolean {
    return this.#ranThisTurn < RUN_BUDGET && this.#sentThisTurn + this.#peer.producedBytes() < TURN_OUTPUT_BYTES
  }

  /** Lets the event loop serve other sockets, then resumes the peer's turn with a fresh budget. */
  yieldTurn(): void {
    if (this.#turnYielded) return
    this.#turnYielded = true
    this.#nextTurn(() => {
      this.#turnYielded = false
      this.#ranThisTurn = 0
      this.#sentThisTurn = 0
      this.#peer.pump()
    })
  }

  /**
   * Something happened outside the connection's own handlers (a wait answered, a push): pump
   * once, at the end of this turn of the event loop (EndOfTurn), so the pushes that every
   * publisher's chunk in this turn causes go out together, in one write per subscriber (a
   * microtask wrote once per publisher: with ten publishers, ten writes). What it produced is
   * reported to the budget at once, so one turn of pushes cannot carry many subscribers past it.
   */
  wake(): void {
    this.#reportToBudget()
    if (this.#woken) return
    this.#woken = true
    endOfTurn.schedule(this.#pumpWoken)
  }

  readonly #pumpWoken = (): void => {
    this.#woken = false
    this.#peer.pump()
  }

  /** After a pump: reuse an emptied inbox (or drop its taken half), and pause or resume reading to match what is held. */
  settle(): void {
    if (this.#inboxHead === this.#inbox.length) {
      this.#inbox.length = 0
      this.#inboxSizes.length = 0
      this.#inboxHead = 0
    } else if (this.#inboxHead >= COMPACT_INBOX_AT && this.#inboxHead * 2 >= this.#inbox.length) {
      this.#inbox.splice(0, this.#inboxHead)
      this.#inboxSizes.splice(0, this.#inboxHead)
      this.#inboxHead = 0
    }
    this.#updatePause()
    this.#reportToBudget()
  }

  /** What the connection holds; all but the requests waiting to run wait on the client (output, an unfinished frame). */
  #reportToBudget(): void {
    // Gone: a late wake or resume must not count it again.
    if (this.#budget === null || this.#cleared) return
    const bytes = this.#peer.bufferedBytes()
    this.#budget.report(this, bytes, bytes - this.heldBytes)
  }

  /** Pauses reading while bytes are kept undecoded (behind a get_wait: only past HELD_READ_BYTES) or for a yielded turn. */
  #updatePause(): void {
    const inboxFull = this.requestsArriveWhole && (this.queuedRequests >= PAUSE_AT_QUEUED || this.#inboxBytes >= MAX_QUEUED_BYTES)
    const keeping = this.#unfed.length > 0 && (!this.#peer.isHolding() || this.#unfedBytes >= HELD_READ_BYTES)
    const shouldPause = this.#yieldingRead || inboxFull || keeping || this.#budgetPaused
    if (shouldPause === this.#paused) return
    this.#paused = shouldPause
    if (shouldPause) this.#peer.pauseReading()
    else this.#peer.resumeReading()
  }

  /** Gives bytes to the decoder a slice at a time; the rest is kept (copied, unless `owned`). */
  #feed(bytes: Uint8Array, owned: boolean): void {
    for (let offset = 0; offset < bytes.length; offset += FEED_SLICE_BYTES) {
      if (!this.#peer.isDecoding()) return
      if (!this.#mayDecode()) {
        // new Uint8Array(view) copies (a Buffer's slice would not).
        const rest = owned ? bytes.subarray(offset) : new Uint8Array(bytes.subarray(offset))
        this.#unfed.unshift(rest)
        this.#unfedBytes += rest.length
        return
      }
      // A chunk that fits one slice (the usual case) goes as it is: subarray is not free.
      this.#peer.decode(
        bytes.length <= FEED_SLICE_BYTES ? bytes : bytes.subarray(offset, Math.min(bytes.length, offset + FEED_SLICE_BYTES)),
      )
    }
  }

  #keep(chunk: Uint8Array): void {
    this.#unfed.push(chunk)
    this.#unfedBytes += chunk.length
  }

  /**
   * Whether to decode more of what was received: what this turn can still run, or, while a
   * get_wait holds the session, up to PAUSE_AT_QUEUED requests (see there).
   */
  #mayDecode(): boolean {
    const queued = this.queuedRequests
    if (this.#inboxBytes >= MAX_QUEUED_BYTES) return false
    if (this.#peer.isHolding()) return queued < PAUSE_AT_QUEUED
    return queued < RUN_BUDGET && (queued === 0 || this.hasTurnBudget())
  }
}
