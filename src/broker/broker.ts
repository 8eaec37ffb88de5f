/**
 * The broker's semantics, independent of any wire format:
 * - one-to-many topics: every reader sees every message put after it connected, in put order;
 * - each reader keeps one cursor per topic (the last sequence number it has read), starting at
 *   the store's newest sequence at the moment the reader was opened;
 * - `get` returns the oldest unread message, `getLatest` the newest (everything older counts as
 *   read), `getWait` answers as soon as a message is there or when its timeout passes.
 */
import type { Store, StoredMessage } from "../store/store.ts"

export type WaitCallback = (message: StoredMessage | null) => void

export interface Waiter {
  readonly reader: Reader
  readonly topic: string
  readonly callback: WaitCallback
  readonly timer: Timer
}

export interface BrokerCounters {
  puts: number
  deliveries: number
}

export class Broker {
  readonly store: Store
  readonly counters: BrokerCounters = { puts: 0, deliveries: 0 }
  /** Readers blocked in getWait, by topic. */
  readonly #waiters = new Map<string, Set<Waiter>>()

  constructor(store: Store) {
    this.store = store
  }

  openReader(): Reader {
    return new Reader(this, this.store.lastSeq)
  }

  put(topic: string, payload: Uint8Array): number {
    const seq = this.store.put(topic, payload)
    this.counters.puts++
    const waiting = this.#waiters.get(topic)
    if (waiting !== undefined) {
      // Detach first: a woken reader may go on to wait on this topic again.
      this.#waiters.delete(topic)
      for (const waiter of waiting) {
        clearTimeout(waiter.timer)
        waiter.reader.waiter = null
        waiter.callback(waiter.reader.get(topic))
      }
    }
    return seq
  }

  /** Answers every pending getWait with "nothing" (used when shutting down). */
  releaseAllWaiters(): void {
    for (const waiting of this.#waiters.values()) {
      for (const waiter of waiting) this.cancelWait(waiter, true)
    }
  }

  addWaiter(reader: Reader, topic: string, timeoutMs: number, callback: WaitCallback): Waiter {
    const waiter: Waiter = {
      reader,
      topic,
      callback,
      timer: setTimeout(() => this.cancelWait(waiter, true), timeoutMs),
    }
    let waiting = this.#waiters.get(topic)
    if (waiting === undefined) {
      waiting = new Set()
      this.#waiters.set(topic, waiting)
    }
    waiting.add(waiter)
    return waiter
  }

  cancelWait(waiter: Waiter, answer: boolean): void {
    clearTimeout(waiter.timer)
    waiter.reader.waiter = null
    const waiting = this.#waiters.get(waiter.topic)
    if (waiting !== undefined && waiting.delete(waiter) && waiting.size === 0) this.#waiters.delete(waiter.topic)
    if (answer) waiter.callback(null)
  }
}

export class Reader {
  readonly #broker: Broker
  /** Cursor for topics this reader has not read yet: the newest sequence when it was opened. */
  readonly #startSeq: number
  readonly #cursors = new Map<string, number>()
  /** The pending getWait, if any; a reader waits for at most one thing at a time. */
  waiter: Waiter | null = null

  constructor(broker: Broker, startSeq: number) {
    this.#broker = broker
    this.#startSeq = startSeq
  }

  get(topic: string): StoredMessage | null {
    return this.#deliver(topic, this.#broker.store.oldestAfter(topic, this.cursor(topic)))
  }

  getLatest(topic: string): StoredMessage | null {
    return this.#deliver(topic, this.#broker.store.newestAfter(topic, this.cursor(topic)))
  }

  /**
   * Returns the oldest unread message now if there is one. Otherwise returns null and calls
   * `callback` exactly once: with the message as soon as one is put, or with null on timeout.
   */
  getWait(topic: string, timeoutMs: number, callback: WaitCallback): StoredMessage | null {
    if (this.waiter !== null) throw new Error("reader is already waiting")
    const message = this.get(topic)
    if (message === null) this.waiter = this.#broker.addWaiter(this, topic, timeoutMs, callback)
    return message
  }

  /** The last sequence number this reader has read on `topic`. */
  cursor(topic: string): number {
    return this.#cursors.get(topic) ?? this.#startSeq
  }

  /** Drops a pending wait without answering it (the connection is gone). */
  close(): void {
    if (this.waiter !== null) this.#broker.cancelWait(this.waiter, false)
  }

  #deliver(topic: string, message: StoredMessage | null): StoredMessage | null {
    if (message !== null) {
      this.#cursors.set(topic, message.seq)
      this.#broker.counters.deliveries++
    }
    return message
  }
}
