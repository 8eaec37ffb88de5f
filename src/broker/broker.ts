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
import { type DroppedMessage, preciseNow, type Store, type StoredMessage, type TopicState } from "../store/store.ts"
import { BoundedCache } from "../topic/bounded-cache.ts"
import { compilePattern, isPattern } from "../topic/pattern.ts"
import { SubjectIndex } from "../topic/subject-index.ts"
import { patternCharacterInCursorName, patternCharacterInTopic } from "../topic/topic-name.ts"
import { BrokerError, BrokerErrorCode } from "./errors.ts"
import { Histogram, LATENCY_BUCKETS_SECONDS } from "./histogram.ts"
import { DEFAULT_RETENTION, Retention, type RetentionConfig } from "./retention.ts"

/** A message handed to a reader, with how many messages before it the reader lost to retention. */
export interface Delivery extends StoredMessage {
  /** The message's topic (for a pattern read, the matching topic it came from). */
  readonly topic: string
  /** Messages removed by retention between the reader's previous message and this one; null when it cannot be known. */
  readonly missed: number | null
}

export type WaitCallback = (message: Delivery | null) => void

export interface Waiter {
  readonly reader: Reader
  /** A topic, or a pattern. */
  readonly topic: string
  readonly callback: WaitCallback
  readonly timer: Timer
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

/** How often expired messages are looked for. */
const SWEEP_INTERVAL_MS = 1000
/** Patterns whose matching topics are remembered between reads (re-listed when a topic is created). */
const MAX_CACHED_PATTERNS = 1024

export class Broker {
  readonly store: Store
  readonly retention: Retention
  readonly counters = new BrokerCounters()
  /** Readers blocked in getWait, by topic. */
  readonly #waiters = new Map<string, Set<Waiter>>()
  readonly #subscribers = new Map<string, Set<Subscriber>>()
  /** Subscribers and waiters on patterns: a put finds the matching ones in the subject index, not by trying each. */
  readonly #patternSubscribers = new SubjectIndex<Subscriber>()
  readonly #patternWaiters = new SubjectIndex<Waiter>()
  /** The topics each recently read pattern matches, and how many topics existed when they were listed. */
  readonly #matching = new BoundedCache<string, { readonly topicCount: number; readonly topics: readonly TopicState[] }>(
    MAX_CACHED_PATTERNS,
  )
  /** Open readers: retention tells them what it removes before they read it. */
  readonly #readers = new Set<Reader>()
  /** Named readers in use, by name (one connection at a time). */
  readonly #named = new Map<string, Reader>()
  readonly #timers: Timer[] = []

  constructor(store: Store, retention: RetentionConfig = DEFAULT_RETENTION) {
    this.store = store
    this.retention = new Retention(retention, store, (topic, dropped) => this.#beforeDrop(topic, dropped))
    if (this.retention.hasAgeLimits) this.#timers.push(setInterval(() => this.#sweep(), SWEEP_INTERVAL_MS).unref())
  }

  /** A reader of everything put from now on. */
  openReader(): Reader {
    return this.#register(new Reader(this, this.store.lastSeq, null))
  }

  /** A reader whose cursors start after `seq` (stateless HTTP reads, resumed SSE streams). */
  openReaderAt(seq: number): Reader {
    return this.#register(new Reader(this, seq, null))
  }

  /**
   * The reader called `name`: new ones start now; known ones resume where they stopped, even
   * across restarts of a server with a database file. One user at a time.
   */
  openNamedReader(name: string): Reader {
    refuseIf(patternCharacterInCursorName(name))
    if (this.#named.has(name))
      throw new BrokerError(BrokerErrorCode.cursorBusy, `cursor ${JSON.stringify(name)} is in use by another connection`)
    const reader = new Reader(this, this.store.namedReaderStart(name), name)
    for (const cursor of this.store.namedCursors(name)) reader.restoreCursor(cursor.topic, cursor.seq, cursor.ordinal)
    this.#named.set(name, reader)
    return this.#register(reader)
  }

  /** @internal Called by Reader.close. */
  forgetReader(reader: Reader): void {
    this.#readers.delete(reader)
    if (reader.name !== null && this.#named.get(reader.name) === reader) this.#named.delete(reader.name)
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

  /** Answers every pending getWait with "nothing" (used when shutting down). */
  releaseAllWaiters(): void {
    for (const waiting of [...this.#waiters.values()]) {
      for (const waiter of [...waiting]) this.cancelWait(waiter, true)
    }
    for (const reader of this.#readers) reader.releaseWaits()
  }

  /** The topics `pattern` matches, in the order they were created (listed again once a topic is added). */
  matchingTopics(pattern: string): readonly TopicState[] {
    const topicCount = this.store.topicCount
    const cached = this.#matching.get(pattern)
    if (cached !== undefined && cached.topicCount === topicCount) return cached.topics
    const matches = compilePattern(pattern)
    const topics = [...this.store.topics()].filter((topic) => matches(topic.name))
    this.#matching.set(pattern, { topicCount, topics })
    return topics
  }

  /** Stops the timers; the store stays open for its owner to close. */
  close(): void {
    for (const timer of this.#timers) clearInterval(timer)
  }

  addWaiter(reader: Reader, topic: string, timeoutMs: number, callback: WaitCallback, readable?: TopicFilter): Waiter {
    const waiter: Waiter = {
      reader,
      topic,
      callback,
      readable,
      timer: setTimeout(() => this.cancelWait(waiter, true), timeoutMs),
    }
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
    clearTimeout(waiter.timer)
    waiter.reader.forgetWaiter(waiter)
    if (isPattern(waiter.topic)) this.#patternWaiters.remove(waiter.topic, waiter)
    else {
      const waiting = this.#waiters.get(waiter.topic)
      if (waiting?.delete(waiter) && waiting.size === 0) this.#waiters.delete(waiter.topic)
    }
    if (answer) waiter.callback(null)
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
      for (const waiter of waiting) {
        clearTimeout(waiter.timer)
        waiter.reader.forgetWaiter(waiter)
        waiter.callback(waiter.reader.get(topic))
      }
    }
    if (this.#patternSubscribers.size > 0) {
      for (const subscriber of this.#patternSubscribers.match(topic)) subscriber.onPut(topic, seq, ordinal, payload, putAt)
    }
    if (this.#patternWaiters.size > 0) {
      // A copy: answering removes the waiter, and its reader may wait on the pattern again.
      for (const waiter of [...this.#patternWaiters.match(topic)]) {
        this.cancelWait(waiter, false)
        waiter.callback(waiter.reader.get(waiter.topic, waiter.readable))
      }
    }
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

/** Where a reader is in one topic: the last message read (seq, and ordinal when known). */
interface Cursor {
  seq: number
  /** Ordinal of the message at `seq`, or -1 when the cursor is still the reader's start. */
  ordinal: number
}

const UNKNOWN_ORDINAL = -1

export class Reader {
  readonly #broker: Broker
  /** Cursor for topics this reader has not read yet: the newest sequence when it was opened. */
  readonly #startSeq: number
  readonly #cursors = new Map<string, Cursor>()
  /** Pending getWaits, at most one per topic. */
  readonly #waiters = new Map<string, Waiter>()
  /** Named readers write each cursor move to the store, so they resume exactly. */
  readonly name: string | null

  constructor(broker: Broker, startSeq: number, name: string | null) {
    this.#broker = broker
    this.#startSeq = startSeq
    this.name = name
  }

  /** The oldest unread message of `topic`, or, for a pattern, of the (readable) topics it matches. */
  get(topic: string, readable?: TopicFilter): Delivery | null {
    if (isPattern(topic)) return this.#oldestMatching(topic, readable)
    return this.#deliver(topic, this.#broker.store.oldestAfter(topic, this.cursor(topic)))
  }

  /** The newest unread message (everything older in the topic, or in every matching topic, counts as read). */
  getLatest(topic: string, readable?: TopicFilter): Delivery | null {
    if (isPattern(topic)) return this.#newestMatching(topic, readable)
    return this.#deliver(topic, this.#broker.store.newestAfter(topic, this.cursor(topic)))
  }

  /**
   * Returns the oldest unread message now if there is one. Otherwise returns null and calls
   * `callback` exactly once: with the message as soon as one is put, or with null on timeout.
   */
  getWait(topic: string, timeoutMs: number, callback: WaitCallback, readable?: TopicFilter): Delivery | null {
    if (this.#waiters.has(topic)) throw new Error(`reader is already waiting on ${JSON.stringify(topic)}`)
    const message = this.get(topic, readable)
    if (message === null) this.#waiters.set(topic, this.#broker.addWaiter(this, topic, timeoutMs, callback, readable))
    return message
  }

  isWaiting(topic: string): boolean {
    return this.#waiters.has(topic)
  }

  /** Marks a message as read that was handed over without a look-up (a subscription push). */
  markRead(topic: string, seq: number, ordinal: number, bytes: number, putAt: number): void {
    this.#setCursor(topic, seq, ordinal)
    this.#broker.counters.countDelivery(bytes, putAt)
  }

  /** The last sequence number this reader has read on `topic`. */
  cursor(topic: string): number {
    return this.#cursors.get(topic)?.seq ?? this.#startSeq
  }

  /** @internal A named reader's saved position. */
  restoreCursor(topic: string, seq: number, ordinal: number): void {
    this.#cursors.set(topic, { seq, ordinal })
  }

  /**
   * @internal Retention is about to remove `dropped` (the oldest messages of `topic`). If this
   * reader has not read the topic yet, note how many of the topic's messages were at or before
   * its start, while the removed rows can still tell.
   */
  beforeDrop(topic: TopicState, dropped: readonly DroppedMessage[]): void {
    const cursor = this.#cursors.get(topic.name)
    if (cursor !== undefined && cursor.ordinal !== UNKNOWN_ORDINAL) return
    const start = cursor?.seq ?? this.#startSeq
    if (start >= dropped[dropped.length - 1]!.seq) return
    let ordinal = dropped[0]!.ordinal - 1
    for (const message of dropped) {
      if (message.seq > start) break
      ordinal = message.ordinal
    }
    this.#cursors.set(topic.name, { seq: start, ordinal })
  }

  forgetWaiter(waiter: Waiter): void {
    if (this.#waiters.get(waiter.topic) === waiter) this.#waiters.delete(waiter.topic)
  }

  /** Answers pending waits with "nothing" now (the server is stopping). */
  releaseWaits(): void {
    for (const waiter of [...this.#waiters.values()]) this.#broker.cancelWait(waiter, true)
  }

  /** Drops pending waits without answering them, and stops being told of retention. */
  close(): void {
    for (const waiter of [...this.#waiters.values()]) this.#broker.cancelWait(waiter, false)
    this.#broker.forgetReader(this)
  }

  #deliver(topic: string, message: StoredMessage | null): Delivery | null {
    if (message === null) {
      this.#caughtUp(topic)
      return null
    }
    const missed = this.#missedBefore(topic, message)
    this.markRead(topic, message.seq, message.ordinal, message.payload.length, message.putAt)
    return { ...message, missed, topic }
  }

  /**
   * The oldest unread message among the topics `pattern` matches: one look-up per matching
   * topic that has something past this reader's cursor, none for the others.
   */
  #oldestMatching(pattern: string, readable: TopicFilter | undefined): Delivery | null {
    let oldest: StoredMessage | null = null
    let oldestTopic = ""
    for (const topic of this.#unreadMatching(pattern, readable)) {
      const message = this.#broker.store.oldestAfter(topic, this.cursor(topic))
      if (message === null) this.#caughtUp(topic)
      else if (oldest === null || message.seq < oldest.seq) {
        oldest = message
        oldestTopic = topic
      }
    }
    return oldest === null ? null : this.#deliver(oldestTopic, oldest)
  }

  /** The newest unread matching message; every other matching topic's unread messages are older, and count as read. */
  #newestMatching(pattern: string, readable: TopicFilter | undefined): Delivery | null {
    let newest: StoredMessage | null = null
    let newestTopic = ""
    const unread = this.#unreadMatching(pattern, readable)
    for (const topic of unread) {
      const message = this.#broker.store.newestAfter(topic, this.cursor(topic))
      if (message !== null && (newest === null || message.seq > newest.seq)) {
        newest = message
        newestTopic = topic
      }
    }
    for (const topic of unread) if (topic !== newestTopic) this.#caughtUp(topic)
    return newest === null ? null : this.#deliver(newestTopic, newest)
  }

  /** Matching, readable topics with a message put after this reader's cursor. */
  #unreadMatching(pattern: string, readable: TopicFilter | undefined): string[] {
    const unread: string[] = []
    for (const topic of this.#broker.matchingTopics(pattern)) {
      if (topic.lastSeq > this.cursor(topic.name) && (readable === undefined || readable(topic.name))) unread.push(topic.name)
    }
    return unread
  }

  /** Messages of `topic` between this reader's cursor and `message` that retention removed. */
  #missedBefore(topic: string, message: StoredMessage): number | null {
    const state = this.#broker.store.topic(topic)!
    const cursor = this.#cursors.get(topic)
    const cursorSeq = cursor?.seq ?? this.#startSeq
    if (state.droppedThroughSeq <= cursorSeq) return 0
    // Unknown only for a start cursor that retention passed while this reader was not open
    // (an HTTP read after an old sequence, a named reader away while its topic expired).
    const ordinal = cursor?.ordinal ?? UNKNOWN_ORDINAL
    return ordinal === UNKNOWN_ORDINAL ? null : Math.max(0, message.ordinal - ordinal - 1)
  }

  /**
   * Nothing of `topic` is unread: move the cursor to the end of the store, with the topic's
   * last ordinal, so that what retention removes later can be counted exactly even when this
   * reader is not open then (an HTTP named cursor between requests).
   */
  #caughtUp(topic: string): void {
    // A topic that does not exist yet has had no message: ordinal 0.
    const lastOrdinal = this.#broker.store.topic(topic)?.lastOrdinal ?? 0
    const cursor = this.#cursors.get(topic)
    if (cursor !== undefined && cursor.ordinal === lastOrdinal) return
    this.#setCursor(topic, this.#broker.store.lastSeq, lastOrdinal)
  }

  #setCursor(topic: string, seq: number, ordinal: number): void {
    const cursor = this.#cursors.get(topic)
    if (cursor === undefined) this.#cursors.set(topic, { seq, ordinal })
    else {
      cursor.seq = seq
      cursor.ordinal = ordinal
    }
    if (this.name !== null) this.#broker.store.saveNamedCursor(this.name, topic, seq, ordinal)
  }
}
