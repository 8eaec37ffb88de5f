/**
 * FlowControl on its own, with a fake connection and no sockets: what runs, what is decoded,
 * what is kept, and when reading pauses, as the budgets and caps say.
 */

import { describe, expect, test } from "bun:test"
import { ProtocolError } from "../../src/protocol/errors.ts"
import type { BufferBudget } from "../../src/server/buffer-budget.ts"
import { BULK_BYTES_PER_TURN, BulkTurn, LARGE_READ_BYTES } from "../../src/server/bulk-turn.ts"
import {
  FEED_SLICE_BYTES,
  FlowControl,
  HELD_READ_BYTES,
  MAX_QUEUED_BYTES,
  PAUSE_AT_QUEUED,
  type Paced,
  RUN_BUDGET,
  StreamFailure,
  TURN_OUTPUT_BYTES,
  YIELD_AFTER_CHUNK_BYTES,
} from "../../src/server/flow-control.ts"

const REQUEST_BYTES = 64
const MAX_OUTBOUND = 1024 * 1024

/**
 * A connection whose "decoder" cuts every REQUEST_BYTES bytes into one request, the first byte
 * its number mod 256, and runs it as the connection does: at once if flow control allows, else held.
 */
class FakeConnection implements Paced {
  readonly flow: FlowControl
  readonly ran: number[] = []
  readonly held: number[] = []
  readonly laterTurns: (() => void)[] = []
  produced = 0
  queuedInTransport = 0
  holding = false
  decoding = true
  paused = false
  stalled = false
  pumps = 0
  /** Requests that are reads of a large message (see readsAtLeast). */
  readonly largeReads = new Set<number>()
  /** Large output, paced for this connection (its turns among laterTurns) or shared with another. */
  readonly bulk: BulkTurn
  /** What a pump does (by default: nothing but count). */
  onPump: () => void = () => {}

  constructor(budget: BufferBudget | null = null, bulk: BulkTurn | null = null) {
    const later = (task: () => void) => this.laterTurns.push(task)
    this.bulk = bulk ?? new BulkTurn(BULK_BYTES_PER_TURN, later)
    this.flow = new FlowControl(this, MAX_OUTBOUND, budget, later, this.bulk)
  }

  bufferedBytes(): number {
    return this.flow.heldBytes + this.outboundBytes()
  }

  producedBytes(): number {
    return this.produced
  }
  outboundBytes(): number {
    return this.produced + this.queuedInTransport
  }
  isHolding(): boolean {
    return this.holding
  }
  readsAtLeast(request: unknown, bytes: number): boolean {
    expect(bytes).toBe(LARGE_READ_BYTES)
    return this.largeReads.has(request as number)
  }
  isDecoding(): boolean {
    return this.decoding
  }
  decode(slice: Uint8Array): void {
    expect(slice.length % REQUEST_BYTES).toBe(0)
    for (let offset = 0; offset < slice.length; offset += REQUEST_BYTES) {
      const request = slice[offset]!
      if (this.flow.mayRunNow(request)) {
        this.flow.countRun()
        this.ran.push(request)
      } else {
        this.flow.hold(request, REQUEST_BYTES)
        this.held.push(request)
      }
    }
  }
  pauseReading(): void {
    this.paused = true
  }
  budgetStalled(): void {
    this.stalled = true
  }
  resumeReading(): void {
    this.paused = false
  }
  pump(): void {
    this.pumps++
    this.onPump()
  }

  /** Runs the queued requests as the connection's pump does. */
  runQueued(): void {
    while (this.flow.hasQueued && this.flow.mayRunNext()) {
      const item = this.flow.takeQueued()
      this.ran.push(item as number)
    }
  }

  /** Lets the "event loop" turn: tasks scheduled for the next turn run. */
  nextTurn(): void {
    const tasks = this.laterTurns.splice(0)
    for (const task of tasks) task()
  }
}

/** `count` requests, numbered from 0 (mod 256). */
function requests(count: number, first = 0): Uint8Array {
  const bytes = new Uint8Array(count * REQUEST_BYTES)
  for (let i = 0; i < count; i++) bytes[i * REQUEST_BYTES] = (first + i) % 256
  return bytes
}

const numbered = (count: number, first = 0) => Array.from({ length: count }, (_, i) => (first + i) % 256)

describe("a flood arriving in one chunk", () => {
  test("runs RUN_BUDGET requests this turn, decodes only what the turn can hold, keeps the rest and pauses reading", () => {
    const connection = new FakeConnection()
    const count = (4 * FEED_SLICE_BYTES) / REQUEST_BYTES
    connection.flow.receive(requests(count))
    connection.flow.settle()
    expect(connection.ran).toEqual(numbered(RUN_BUDGET))
    // Decoding stopped at a slice boundary once a turn's worth of requests waited.
    expect(connection.flow.queuedRequests).toBe(FEED_SLICE_BYTES / REQUEST_BYTES - RUN_BUDGET)
    expect(connection.flow.hasUnfed).toBe(true)
    expect(connection.flow.heldBytes).toBe((count - RUN_BUDGET) * REQUEST_BYTES)
    expect(connection.paused).toBe(true)
  })

  test("every request runs, once and in order, over later turns; reading resumes when nothing is kept", () => {
    const connection = new FakeConnection()
    const count = (4 * FEED_SLICE_BYTES) / REQUEST_BYTES
    connection.flow.receive(requests(count))
    for (let turn = 0; turn < 100 && connection.ran.length < count; turn++) {
      connection.flow.yieldTurn()
      connection.nextTurn()
      connection.flow.feedKept()
      connection.runQueued()
      connection.flow.feedKept()
      connection.flow.settle()
    }
    expect(connection.ran).toEqual(numbered(count))
    expect(connection.flow.heldBytes).toBe(0)
    expect(connection.paused).toBe(false)
    expect(connection.pumps).toBeGreaterThan(0)
  })

  test("a chunk this large pauses reading for one turn, even when all of it ran", () => {
    const connection = new FakeConnection()
    const chunk = requests(YIELD_AFTER_CHUNK_BYTES / REQUEST_BYTES / 2)
    connection.flow.receive(chunk)
    connection.flow.yieldReadingAfter(YIELD_AFTER_CHUNK_BYTES)
    connection.flow.settle()
    expect(connection.paused).toBe(true)
    connection.nextTurn()
    expect(connection.paused).toBe(false)
  })

  test("a small chunk does not pause reading", () => {
    const connection = new FakeConnection()
    connection.flow.receive(requests(4))
    connection.flow.yieldReadingAfter(4 * REQUEST_BYTES)
    connection.flow.settle()
    expect(connection.paused).toBe(false)
    expect(connection.laterTurns).toHaveLength(0)
  })
})

describe("a steady flood that never lets the inbox empty", () => {
  test("keeps no request it has run: the inbox stays as large as what waits, not as all that came", () => {
    const connection = new FakeConnection()
    // Requests are held (the client does not keep up), one runs and one more comes, turn after turn.
    connection.queuedInTransport = MAX_OUTBOUND
    connection.flow.receive(requests(100))
    connection.queuedInTransport = 0
    for (let turn = 0; turn < 50_000; turn++) {
      expect(connection.flow.takeQueued()).toBe((connection.ran.length + turn) % 256)
      connection.flow.hold((100 + turn) % 256, REQUEST_BYTES)
      connection.flow.settle()
    }
    expect(connection.flow.queuedRequests).toBe(100)
    expect(connection.flow.inboxSlots).toBeLessThanOrEqual(2 * 1024 + 100)
  })
})

describe("the turn's budget", () => {
  test("is spent by RUN_BUDGET requests or TURN_OUTPUT_BYTES of output, and renewed by a yielded turn", () => {
    const connection = new FakeConnection()
    for (let i = 0; i < RUN_BUDGET; i++) connection.flow.countRun()
    expect(connection.flow.hasTurnBudget()).toBe(false)
    connection.flow.yieldTurn()
    // Yielding twice in one turn schedules one continuation.
    connection.flow.yieldTurn()
    expect(connection.laterTurns).toHaveLength(1)
    connection.nextTurn()
    expect(connection.flow.hasTurnBudget()).toBe(true)
    expect(connection.pumps).toBe(1)
    connection.flow.countSent(TURN_OUTPUT_BYTES - 10)
    expect(connection.flow.hasTurnBudget()).toBe(true)
    connection.produced = 10
    expect(connection.flow.hasTurnBudget()).toBe(false)
    expect(connection.flow.backlogBudget()).toBeNull()
  })

  test("a backlog may produce up to what is left of the turn and of the outbound cap, whichever is less", () => {
    const connection = new FakeConnection()
    connection.flow.countSent(1000)
    expect(connection.flow.backlogBudget()).toBe(TURN_OUTPUT_BYTES - 1000)
    connection.queuedInTransport = MAX_OUTBOUND - 100
    expect(connection.flow.backlogBudget()).toBe(100)
  })
})

describe("a client that does not read its replies", () => {
  test("gets nothing more run while its output passes the outbound cap; what it sends is held, then kept", () => {
    const connection = new FakeConnection()
    connection.queuedInTransport = MAX_OUTBOUND
    const perSlice = FEED_SLICE_BYTES / REQUEST_BYTES
    connection.flow.receive(requests(2 * perSlice))
    connection.flow.settle()
    expect(connection.ran).toEqual([])
    expect(connection.flow.queuedRequests).toBe(perSlice)
    expect(connection.flow.hasUnfed).toBe(true)
    expect(connection.paused).toBe(true)
    connection.queuedInTransport = 0
    connection.runQueued()
    expect(connection.ran).toEqual(numbered(RUN_BUDGET))
  })
})

describe("behind a request that holds the session (a get_wait)", () => {
  test("up to PAUSE_AT_QUEUED requests are decoded and reading goes on until HELD_READ_BYTES are kept", () => {
    const connection = new FakeConnection()
    connection.holding = true
    const perSlice = FEED_SLICE_BYTES / REQUEST_BYTES
    let sent = 0
    for (let chunk = 0; chunk < 1000 && !connection.paused; chunk++) {
      connection.flow.receive(requests(perSlice, sent))
      sent += perSlice
      connection.flow.settle()
    }
    expect(connection.paused).toBe(true)
    expect(connection.ran).toEqual([])
    expect(connection.flow.queuedRequests).toBe(PAUSE_AT_QUEUED)
    expect(connection.flow.heldBytes - PAUSE_AT_QUEUED * REQUEST_BYTES).toBe(HELD_READ_BYTES)
    // The wait is answered: everything runs, in order, and reading resumes.
    connection.holding = false
    for (let turn = 0; turn < 10_000 && connection.ran.length < sent; turn++) {
      connection.flow.yieldTurn()
      connection.nextTurn()
      connection.flow.feedKept()
      connection.runQueued()
      connection.flow.settle()
    }
    expect(connection.ran).toEqual(numbered(sent))
    expect(connection.paused).toBe(false)
  })

  test("decoded requests are bounded in bytes by MAX_QUEUED_BYTES, one slice more at most", () => {
    // Few, large requests (one per slice): the count bound is far, the byte bound stops decoding.
    class LargeRequests extends FakeConnection {
      override decode(slice: Uint8Array): void {
        this.flow.hold(this.held.push(0), slice.length)
      }
    }
    const connection = new LargeRequests()
    connection.holding = true
    for (let i = 0; i < 100; i++) connection.flow.receive(new Uint8Array(4 * FEED_SLICE_BYTES))
    expect(connection.flow.heldBytes).toBe(100 * 4 * FEED_SLICE_BYTES)
    expect(connection.flow.queuedRequests * FEED_SLICE_BYTES).toBeLessThanOrEqual(MAX_QUEUED_BYTES + FEED_SLICE_BYTES)
    expect(connection.flow.queuedRequests).toBeLessThan(PAUSE_AT_QUEUED)
  })

  test("bad bytes are queued behind the requests before them", () => {
    const connection = new FakeConnection()
    connection.holding = true
    connection.flow.receive(requests(2))
    connection.flow.holdFailure(new ProtocolError("malformed_frame", "bad"))
    connection.holding = false
    expect(connection.flow.takeQueued()).toBe(0)
    expect(connection.flow.takeQueued()).toBe(1)
    const failure = connection.flow.takeQueued()
    expect(failure).toBeInstanceOf(StreamFailure)
    expect((failure as StreamFailure).error.message).toBe("bad")
    expect(connection.flow.hasQueued).toBe(false)
  })
})

describe("requests that arrive whole (WebSocket text messages)", () => {
  test("pause reading once PAUSE_AT_QUEUED wait, and resume when they have run", () => {
    const connection = new FakeConnection()
    connection.flow.requestsArriveWhole = true
    connection.holding = true
    for (let i = 0; i < PAUSE_AT_QUEUED; i++) connection.flow.hold(i % 256, REQUEST_BYTES)
    connection.flow.settle()
    expect(connection.paused).toBe(true)
    connection.holding = false
    for (let turn = 0; turn < 100 && connection.flow.hasQueued; turn++) {
      connection.runQueued()
      connection.flow.yieldTurn()
      connection.nextTurn()
    }
    connection.flow.settle()
    expect(connection.paused).toBe(false)
    expect(connection.ran).toEqual(numbered(PAUSE_AT_QUEUED))
  })
})

describe("reads of large messages, paced server-wide (bulk-turn.ts)", () => {
  test("once the turn's output is spent, a large read waits, with what is behind it; another connection's small requests do not", () => {
    const first = new FakeConnection()
    const second = new FakeConnection(null, first.bulk)
    first.largeReads.add(1)
    first.bulk.count(BULK_BYTES_PER_TURN)
    first.flow.receive(requests(3))
    // Request 0 is small and runs; 1 is large and waits, and 2 waits behind it (order is kept).
    expect(first.ran).toEqual([0])
    expect(first.flow.queuedRequests).toBe(2)
    expect(first.flow.waitingForBulk).toBe(true)
    second.flow.receive(requests(3, 10))
    expect(second.ran).toEqual([10, 11, 12])

    // The next turn has room: the waiting connection goes on, large read first.
    first.onPump = () => first.runQueued()
    first.nextTurn()
    expect(first.ran).toEqual([0, 1, 2])
    expect(first.flow.waitingForBulk).toBe(false)
  })

  test("connections waiting for room go on in the order they began to wait, as many a turn as there is room for", () => {
    const first = new FakeConnection()
    const waiting = Array.from({ length: 3 }, () => new FakeConnection(null, first.bulk))
    first.bulk.count(BULK_BYTES_PER_TURN)
    for (const [i, connection] of waiting.entries()) {
      connection.largeReads.add(i)
      // Each large read produces a turn's room of output.
      connection.onPump = () => {
        connection.runQueued()
        connection.flow.countSent(BULK_BYTES_PER_TURN)
      }
      connection.flow.receive(requests(1, i))
    }
    expect(waiting.map((connection) => connection.ran.length)).toEqual([0, 0, 0])
    // A newcomer's large read waits behind them even in a turn with room.
    first.nextTurn()
    expect(waiting.map((connection) => connection.ran.length)).toEqual([1, 0, 0])
    first.nextTurn()
    expect(waiting.map((connection) => connection.ran.length)).toEqual([1, 1, 0])
    first.nextTurn()
    expect(waiting.map((connection) => connection.ran.length)).toEqual([1, 1, 1])
    expect(first.bulk.waitingCount).toBe(0)
  })

  test("a subscriber's catch-up waits for a turn with room too, and a connection that closes waits no more", () => {
    const first = new FakeConnection()
    const other = new FakeConnection(null, first.bulk)
    first.bulk.count(BULK_BYTES_PER_TURN)
    expect(first.flow.backlogBudget()).toBeNull()
    expect(first.flow.waitingForBulk).toBe(true)
    other.largeReads.add(0)
    other.flow.receive(requests(1))
    expect(first.bulk.waitingCount).toBe(2)
    other.flow.clear()
    expect(first.bulk.waitingCount).toBe(1)
    first.nextTurn()
    expect(first.pumps).toBe(1)
    expect(other.pumps).toBe(0)
    expect(first.flow.backlogBudget()).toBe(TURN_OUTPUT_BYTES)
  })
})

test("a connection that stops decoding keeps nothing more, and clear() forgets everything held", () => {
  const connection = new FakeConnection()
  connection.flow.receive(requests((2 * FEED_SLICE_BYTES) / REQUEST_BYTES))
  expect(connection.flow.hasUnfed).toBe(true)
  connection.decoding = false
  connection.flow.feedKept()
  expect(connection.flow.hasUnfed).toBe(true)
  connection.flow.dropUnfed()
  expect(connection.flow.hasUnfed).toBe(false)
  connection.flow.clear()
  expect(connection.flow.heldBytes).toBe(0)
  expect(connection.flow.queuedRequests).toBe(0)
})
