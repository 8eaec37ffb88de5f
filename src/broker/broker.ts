/**
 * The broker's semantics, independent of any wire format:
 * - one-to-many topics: every reader sees every message put after it connected, in put order;
 * - each reader keeps one cursor per topic (the last message it has read), starting at the
 *   store's newest sequence at the moment the reader was opened;
 * - `get` returns the oldest unread message, `getLatest` the newest (everything older counts as
 *   read), `getWait` answers as soon as a message is there or when its timeout passes;
 * - subscribers are told of every put on their topic, synchronously, in put order;
 * - a name with `+` or `#` given for reading is a pattern (src/topic/pattern.ts): a get reads the
 *   oldest unread message among the topics it matches, each topic through its own cursor, so
 *   across topics in put order; subscribers and waiters on a pattern hear of every matching put;
 * - retention may remove messages a reader has not read; the next message it gets says how
 *   many it missed.
 */
import {
  type DroppedMessage,
  NAMED_READER_OVERHEAD_BYTES,
  preciseNow,
  type Store,
  type StoredMessage,
  type TopicState,
} from "../store/store.ts"
import { BoundedCache } from "../topic/bounded-cache.ts"
import { compilePattern, isPattern } from "../topic/pattern.ts"
import { SubjectIndex } from "../topic/subject-index.ts"
import { patternCharacterInCursorName, patternCharacterInTopic } from "../topic/topic-name.ts"
import { BrokerError, BrokerErrorCode } from "./errors.ts"
import { Histogram, LATENCY_BUCKETS_SECONDS } from "./histogram.ts"
import { Reader } from "./reader.ts"
import { DEFAULT_RETENTION, Retention, type RetentionConfig } from "./retention.ts"
import { TopicReclaimer } from "./topic-reclaimer.ts"
import { type Timed, WaitDeadlines } from "./wait-deadlines.ts"

export { Reader }

/** A message handed to a reader, with how many messages before it the reader lost to retention. */
export interface Delivery extends StoredMessage {
  /** The message's topic (for a pattern read, the matching topic it came from). */
  readonly topic: string
  /** Messages removed by retention between the reader's previous message and this one; null when it cannot be known. */
  readonly missed: number | null
}

/**
 * A wait's answer, with the tag the wait was given (a request id: one callback serves every
 * wait of a connection, with no closure per wait). The payload may be a view of the putting
 * connection's input, valid only during the call: a callback that keeps the message past it
 * copies the payload.
 */
export type WaitCallback = (message: Delivery | null, tag: number) => void

export interface Waiter extends Timed {
  readonly reader: Reader
  /** A topic, or a pattern. */
  readonly topic: string
  readonly callback: WaitCallback
  readonly tag: number
  /** For a pattern: which matching topics the reader may be given. */
  readonly readable: TopicFilter | undefined
}

/** Which topics a pattern read may deliver (the reader's permissions); all when absent. */
export type TopicFilter = (topic: string) => boolean

/** Told of each message put on a topic it subscribed to, right after it is stored. */
export interface Subscriber {
  onPut(topic: string, seq: number, ordinal: number, payload: Uint8Array, putAt: number): void
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

/** --max-cursors' default: topics one reader may keep a cursor for. */
export const DEFAULT_MAX_CURSORS = 100_000

/** How often expired messages are looked for. */
const SWEEP_INTERVAL_MS = 1000
/** Patterns whose matching topics are remembered between reads (re-listed when a topic is created). */
const MAX_CACHED_PATTERNS = 1024

export class Broker {
  readonly store: Store
  readonly retention: Retention
  readonly counters = new BrokerCounters()
  /** Takes away topics retention emptied, once no reader keeps a place in them. */
  readonly reclaimer: TopicReclaimer
  /** Readers blocked in getWait, by topic. */
  readonly #waiters = new Map<string, Set<Waiter>>()
  readonly #subscribers = new Map<string, Set<Subscriber>>()
  /** Subscribers and waiters on patterns: a put finds the matching ones in the subject index, not by trying each. */
  readonly #patternSubscribers = new SubjectIndex<Subscriber>()
  readonly #patternWaiters = new SubjectIndex<Waiter>()
  /** The topics each recently read pattern matches, and the store's topic generation when they were listed. */
  readonly #matching = new BoundedCache<string, { readonly generation: number; readonly topics: readonly TopicState[] }>(
    MAX_CACHED_PATTERNS,
  )
  /** Open readers: retention tells them what it removes before they read it. */
  readonly #readers = new Set<Reader>()
  /** Named readers in use, by name (one connection at a time). */
  readonly #named = new Map<string, Reader>()
  readonly #timers: Timer[] = []
  /** When pending waits time out: answered with nothing. */
  readonly #deadlines = new WaitDeadlines<Waiter>((waiter) => this.cancelWait(waiter, true))

  /** The most topic cursors one reader may hold (--max-cursors). */
  readonly maxCursors: number

  constructor(store: Store, retention: RetentionConfig = DEFAULT_RETENTION, maxCursors = DEFAULT_MAX_CURSORS) {
    this.store = store
    this.maxCursors = maxCursors
    this.reclaimer = new TopicReclaimer(store)
    this.retention = new Retention(retention, store, {
      beforeDrop: (topic, dropped) => this.#beforeDrop(topic, dropped),
      emptied: (topic) => this.reclaimer.emptied(topic),
    })
    if (this.retention.hasAgeLimits) this.#timers.push(setInterval(() => this.#sweep(), SWEEP_INTERVAL_MS).unref())
  }

  /** A reader of everything put from now on. */
  openReader(): Reader {
    return this.#register(new Reader(this, this.store.lastSeq, null, this.maxCursors, true))
  }

  /** A reader whose cursors start after `seq` (stateless HTTP reads, resumed SSE streams). */
  openReaderAt(seq: number): Reader {
    return this.#register(new Reader(this, seq, null, this.maxCursors, false))
  }

  /**
   * The reader called `name`: new ones start now; known ones resume where they stopped, even
   * across restarts of a server with a database file. One user at a time.
   */
  openNamedReader(name: string): Reader {
    refuseIf(patternCharacterInCursorName(name))
    if (this.#named.has(name))
      throw new BrokerError(BrokerErrorCode.cursorBusy, `cursor ${JSON.stringify(name)} is in use by another connection`)
    const start = this.store.namedReaderStart(name) ?? this.#createNamedReader(name)
    const reader = new Reader(this, start, name, this.maxCursors, false)
    for (const cursor of this.store.namedCursors(name)) reader.restoreCursor(cursor.topic, cursor.seq, cursor.ordinal)
    this.#named.set(name, reader)
    return this.#register(reader)
  }

  /** Open readers: one per connection, plus named, FROM and HTTP readers while they are in use. */
  get readerCount(): number {
    return this.#readers.size
  }

  /** Cursor entries held by every open reader. */
  get cursorCount(): number {
    let count = 0
    for (const reader of this.#readers) count += reader.cursorCount
    return count
  }

  /** @internal Called by Reader.close. */
  forgetReader(reader: Reader): void {
    if (!this.#readers.delete(reader)) return
    if (reader.name !== null && this.#named.get(reader.name) === reader) this.#named.delete(reader.name)
    this.reclaimer.placesReleased(reader.heldTopics())
  }

  put(topic: string, payload: Uint8Array): number {
    refuseIf(patternCharacterInTopic(topic))
    this.retention.admit(topic, 1, payload.length)
    const putAt = preciseNow()
    const seq = this.store.put(topic, payload, putAt)
    this.counters.puts++
    this.counters.bytesPut += payload.length
    this.#announce(topic, seq, this.store.topic(topic)!.lastOrdinal, payload, putAt)
    return seq
  }

  /** Stores all entries in one transaction (all or none), then announces them in order. */
  putMany(entries: readonly PutEntry[]): number {
    const perTopic = new Map<string, { count: number; bytes: number }>()
    for (const { topic, payload } of entries) {
      refuseIf(patternCharacterInTopic(topic))
      const totals = perTopic.get(topic) ?? { count: 0, bytes: 0 }
      totals.count++
      totals.bytes += payload.length
      perTopic.set(topic, totals)
    }
    for (const [topic, { count, bytes }] of perTopic) this.retention.admit(topic, count, bytes)
    const putAt = preciseNow()
    const firstSeq = this.store.putMany(entries, putAt)
    this.counters.puts += entries.length
    // Each topic's ordinals were given out in order, ending at its lastOrdinal now.
    const nextOrdinal = new Map<string, number>()
    for (const [topic, { count }] of perTopic) nextOrdinal.set(topic, this.store.topic(topic)!.lastOrdinal - count + 1)
    for (let i = 0; i < entries.length; i++) {
      const { topic, payload } = entries[i]!
      const ordinal = nextOrdinal.get(topic)!
      nextOrdinal.set(topic, ordinal + 1)
      this.counters.bytesPut += payload.length
      this.#announce(topic, firstSeq + i, ordinal, payload, putAt)
    }
    return firstSeq
  }

  /** `topic` may be a pattern (valid: the caller checked it): then every matching put is announced. */
  subscribe(topic: string, subscriber: Subscriber): void {
    if (isPattern(topic)) {
      this.#patternSubscribers.add(topic, subscriber)
      return
    }
    let subscribers = this.#subscribers.get(topic)
    if (subscribers === undefined) {
      subscribers = new Set()
      this.#subscribers.set(topic, subscribers)
    }
    subscribers.add(subscriber)
  }

  unsubscribe(topic: string, subscriber: Subscriber): void {
    if (isPattern(topic)) {
      this.#patternSubscribers.remove(topic, subscriber)
      return
    }
    const subscribers = this.#subscribers.get(topic)
    if (subscribers?.delete(subscriber) && subscribers.size === 0) {
      this.#subscribers.delete(topic)
    }
  }

  /** Subscriptions a put on `topic` would reach: on the topic itself, and on patterns that match it. */
  subscribersOf(topic: string): number {
    return (this.#subscribers.get(topic)?.size ?? 0) + this.#patternSubscribers.match(topic).length
  }

  get subscriberCount(): number {
    let count = 0
    for (const subscribers of this.#subscribers.values()) count += subscribers.size
    return count + this.#patternSubscribers.size
  }

  /** Answers every pending getWait, on a topic or a pattern, with "nothing" (used when shutting down). */
  releaseAllWaiters(): void {
    // Every waiter belongs to an open reader.
    for (const reader of this.#readers) reader.releaseWaits()
  }

  /** The topics `pattern` matches, in the order they were created (listed again once a topic is added or reclaimed). */
  matchingTopics(pattern: string): readonly TopicState[] {
    const generation = this.store.topicGeneration
    const cached = this.#matching.get(pattern)
    if (cached !== undefined && cached.generation === generation) return cached.topics
    const matches = compilePattern(pattern)
    const topics = [...this.store.topics()].filter((topic) => matches(topic.name))
    this.#matching.set(pattern, { generation, topics })
    return topics
  }

  /** Stops the timers; the store stays open for its owner to close. */
  close(): void {
    for (const timer of this.#timers) clearInterval(timer)
    this.#deadlines.clear()
  }

  addWaiter(reader: Reader, topic: string, timeoutMs: number, callback: WaitCallback, readable?: TopicFilter, tag = 0): Waiter {
    const deadline = performance.now() + timeoutMs
    const waiter: Waiter = { reader, topic, callback, tag, readable, timeoutMs, deadline, settled: false }
    this.#deadlines.add(waiter)
    if (isPattern(topic)) {
      this.#patternWaiters.add(topic, waiter)
      return waiter
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
    this.#deadlines.settle(waiter)
    waiter.reader.forgetWaiter(waiter)
    if (isPattern(waiter.topic)) this.#patternWaiters.remove(waiter.topic, waiter)
    else {
      const waiting = this.#waiters.get(waiter.topic)
      if (waiting?.delete(waiter) && waiting.size === 0) this.#waiters.delete(waiter.topic)
    }
    if (answer) waiter.callback(null, waiter.tag)
  }

  /** A new named reader is a record the store keeps for good: it must fit the store's cap. */
  #createNamedReader(name: string): number {
    this.retention.admitRecord(NAMED_READER_OVERHEAD_BYTES + Buffer.byteLength(name), `a new named cursor ${JSON.stringify(name)}`)
    return this.store.createNamedReader(name)
  }

  #register(reader: Reader): Reader {
    this.#readers.add(reader)
    return reader
  }

  #beforeDrop(topic: TopicState, dropped: readonly DroppedMessage[]): void {
    for (const reader of this.#readers) reader.beforeDrop(topic, dropped)
  }

  #sweep(): void {
    // Small steps, each its own turn of the event loop, until nothing expired is left.
    // setTimeout, not setImmediate: sockets that became readable are served first.
    if (this.retention.sweep(preciseNow())) setTimeout(() => this.#sweep(), 0)
  }

  #announce(topic: string, seq: number, ordinal: number, payload: Uint8Array, putAt: number): void {
    const subscribers = this.#subscribers.get(topic)
    if (subscribers !== undefined) for (const subscriber of subscribers) subscriber.onPut(topic, seq, ordinal, payload, putAt)
    const waiting = this.#waiters.get(topic)
    if (waiting !== undefined) {
      // Detach first: a woken reader may go on to wait on this topic again.
      this.#waiters.delete(topic)
      // The message in hand is each waiter's answer: no look-up in the store per waiter.
      const message: StoredMessage = { seq, ordinal, payload, putAt }
      for (const waiter of waiting) {
        this.#deadlines.settle(waiter)
        waiter.reader.forgetWaiter(waiter)
        waiter.callback(readOrNothing(waiter, message), waiter.tag)
      }
    }
    if (this.#patternSubscribers.size > 0) {
      for (const subscriber of this.#patternSubscribers.match(topic)) subscriber.onPut(topic, seq, ordinal, payload, putAt)
    }
    if (this.#patternWaiters.size > 0) {
      // A copy: answering removes the waiter, and its reader may wait on the pattern again.
      for (const waiter of [...this.#patternWaiters.match(topic)]) {
        this.cancelWait(waiter, false)
        waiter.callback(readOrNothing(waiter, null), waiter.tag)
      }
    }
  }
}

/**
 * A waiting reader's answer. A read refused for lack of cursor room (another read took the
 * room the wait was checked against) answers "nothing" rather than failing the put.
 */
function readOrNothing(waiter: Waiter, handed: StoredMessage | null): Delivery | null {
  try {
    // The message just put, for a wait on its topic; a pattern's wait reads its topics.
    return handed === null ? waiter.reader.get(waiter.topic, waiter.readable) : waiter.reader.handOff(waiter.topic, handed)
  } catch (error) {
    if (error instanceof BrokerError && error.code === BrokerErrorCode.tooManyCursors) return null
    throw error
  }
}

/**
 * Writes and named cursors refuse names with `+` or `#`, on every protocol, so that no
 * pattern is ever a topic's or a cursor's name; reads of such names (a --db file may hold
 * them, from before) go on as before.
 */
function refuseIf(problem: string | null): void {
  if (problem !== null) throw new BrokerError(BrokerErrorCode.invalidArgument, problem)
}
