/**
 * The broker's semantics, independent of any wire format:
 * - one-to-many topics: every reader sees every message put after it connected, in put order;
 * - each reader keeps one cursor per topic (the last sequence number it has read), starting at
 *   the store's newest sequence at the moment the reader was opened;
 * - `get` returns the oldest unread message, `getLatest` the newest (everything older counts as
 *   read), `getWait` answers as soon as a message is there or when its timeout passes;
 * - subscribers are told of every put on their topic, synchronously, in put order.
 */
import { preciseNow, type Store, type StoredMessage } from "../store/store.ts"
import { Histogram, LATENCY_BUCKETS_SECONDS } from "./histogram.ts"

export type WaitCallback = (message: StoredMessage | null) => void

export interface Waiter {
  readonly reader: Reader
  readonly topic: string
  readonly callback: WaitCallback
  readonly timer: Timer
}

/** Told of each message put on a topic it subscribed to, right after it is stored. */
export interface Subscriber {
  onPut(topic: string, seq: number, payload: Uint8Array, putAt: number): void
}

export interface PutEntry {
  readonly topic: string
  readonly payload: Uint8Array
}

export class BrokerCounters {
  puts = 0
  bytesPut = 0
  /** Messages handed to readers (get replies and pushes) and their payload bytes. */
  deliveries = 0
  bytesDelivered = 0
  /** Seconds from put to delivery, for every delivery. */
  readonly deliveryLatency = new Histogram(LATENCY_BUCKETS_SECONDS)

  countDelivery(bytes: number, putAt: number): void {
    this.deliveries++
    this.bytesDelivered += bytes
    this.deliveryLatency.observe(Math.max(0, preciseNow() - putAt) / 1000)
  }
}

export class Broker {
  readonly store: Store
  readonly counters = new BrokerCounters()
  /** Readers blocked in getWait, by topic. */
  readonly #waiters = new Map<string, Set<Waiter>>()
  readonly #subscribers = new Map<string, Set<Subscriber>>()

  constructor(store: Store) {
    this.store = store
  }

  /** A reader of everything put from now on. */
  openReader(): Reader {
    return new Reader(this, this.store.lastSeq)
  }

  /** A reader whose cursors start after `seq` (stateless HTTP reads, resumed SSE streams). */
  openReaderAt(seq: number): Reader {
    return new Reader(this, seq)
  }

  put(topic: string, payload: Uint8Array): number {
    const putAt = preciseNow()
    const seq = this.store.put(topic, payload, putAt)
    this.counters.puts++
    this.counters.bytesPut += payload.length
    this.#announce(topic, seq, payload, putAt)
    return seq
  }

  /** Stores all entries in one transaction (all or none), then announces them in order. */
  putMany(entries: readonly PutEntry[]): number {
    const putAt = preciseNow()
    const firstSeq = this.store.putMany(entries, putAt)
    this.counters.puts += entries.length
    for (let i = 0; i < entries.length; i++) {
      const { topic, payload } = entries[i]!
      this.counters.bytesPut += payload.length
      this.#announce(topic, firstSeq + i, payload, putAt)
    }
    return firstSeq
  }

  subscribe(topic: string, subscriber: Subscriber): void {
    let subscribers = this.#subscribers.get(topic)
    if (subscribers === undefined) {
      subscribers = new Set()
      this.#subscribers.set(topic, subscribers)
    }
    subscribers.add(subscriber)
  }

  unsubscribe(topic: string, subscriber: Subscriber): void {
    const subscribers = this.#subscribers.get(topic)
    if (subscribers !== undefined && subscribers.delete(subscriber) && subscribers.size === 0) {
      this.#subscribers.delete(topic)
    }
  }

  get subscriberCount(): number {
    let count = 0
    for (const subscribers of this.#subscribers.values()) count += subscribers.size
    return count
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
    waiter.reader.forgetWaiter(waiter)
    const waiting = this.#waiters.get(waiter.topic)
    if (waiting !== undefined && waiting.delete(waiter) && waiting.size === 0) this.#waiters.delete(waiter.topic)
    if (answer) waiter.callback(null)
  }

  #announce(topic: string, seq: number, payload: Uint8Array, putAt: number): void {
    const subscribers = this.#subscribers.get(topic)
    if (subscribers !== undefined) for (const subscriber of subscribers) subscriber.onPut(topic, seq, payload, putAt)
    const waiting = this.#waiters.get(topic)
    if (waiting !== undefined) {
      // Detach first: a woken reader may go on to wait on this topic again.
      this.#waiters.delete(topic)
      for (const waiter of waiting) {
        clearTimeout(waiter.timer)
        waiter.reader.forgetWaiter(waiter)
        waiter.callback(waiter.reader.get(topic))
      }
    }
  }
}

export class Reader {
  readonly #broker: Broker
  /** Cursor for topics this reader has not read yet: the newest sequence when it was opened. */
  readonly #startSeq: number
  readonly #cursors = new Map<string, number>()
  /** Pending getWaits, at most one per topic. */
  readonly #waiters = new Map<string, Waiter>()

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
    if (this.#waiters.has(topic)) throw new Error(`reader is already waiting on ${JSON.stringify(topic)}`)
    const message = this.get(topic)
    if (message === null) this.#waiters.set(topic, this.#broker.addWaiter(this, topic, timeoutMs, callback))
    return message
  }

  isWaiting(topic: string): boolean {
    return this.#waiters.has(topic)
  }

  /** Marks a message as read that was handed over without a look-up (a subscription push). */
  markRead(topic: string, seq: number, bytes: number, putAt: number): void {
    this.#cursors.set(topic, seq)
    this.#broker.counters.countDelivery(bytes, putAt)
  }

  /** The last sequence number this reader has read on `topic`. */
  cursor(topic: string): number {
    return this.#cursors.get(topic) ?? this.#startSeq
  }

  forgetWaiter(waiter: Waiter): void {
    if (this.#waiters.get(waiter.topic) === waiter) this.#waiters.delete(waiter.topic)
  }

  /** Answers pending waits with "nothing" now (the server is stopping). */
  releaseWaits(): void {
    for (const waiter of [...this.#waiters.values()]) this.#broker.cancelWait(waiter, true)
  }

  /** Drops pending waits without answering them (the connection is gone). */
  close(): void {
    for (const waiter of [...this.#waiters.values()]) this.#broker.cancelWait(waiter, false)
  }

  #deliver(topic: string, message: StoredMessage | null): StoredMessage | null {
    if (message !== null) this.markRead(topic, message.seq, message.payload.length, message.putAt)
    return message
  }
}
