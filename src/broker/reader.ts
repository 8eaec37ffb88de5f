/**
 * One reader of the broker: a cursor per topic (the last message read), starting at the
 * store's newest sequence when the reader was opened, or at a named cursor's saved place.
 * Reads of exact topics and of patterns, waits, and exact missed counts when retention
 * removed messages before the reader got them.
 *
 * A topic costs a cursor entry only once the reader has read something of it (or retention
 * removed messages it had not read): until then its cursor is the reader's start, which
 * needs no entry. So reads of topics that do not exist hold nothing, and the entries a reader
 * may hold are bounded (--max-cursors): a read that needs one more is refused.
 */
import type { DroppedMessage, StoredMessage, TopicState } from "../store/store.ts"
import { isPattern } from "../topic/pattern.ts"
import type { Broker, Delivery, TopicFilter, WaitCallback, Waiter } from "./broker.ts"
import { BrokerError, BrokerErrorCode } from "./errors.ts"

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

  /** The most cursor entries this reader may hold. */
  readonly #maxCursors: number
  /**
   * Told of every removal since its start, so no topic it has not read can have been reclaimed
   * behind its back. False for readers that start at an older place (a named cursor, an HTTP
   * read after a sequence number), and once a removal could not be noted (no room for an entry).
   */
  #toldOfEveryRemoval: boolean

  constructor(broker: Broker, startSeq: number, name: string | null, maxCursors: number, openSinceStart: boolean) {
    this.#broker = broker
    this.#startSeq = startSeq
    this.name = name
    this.#maxCursors = maxCursors
    this.#toldOfEveryRemoval = openSinceStart
  }

  /** Topics this reader keeps a place in (which are not reclaimed while it is open). */
  heldTopics(): IterableIterator<string> {
    return this.#cursors.keys()
  }

  /** Cursor entries held: topics read (or passed by retention) since the reader opened. */
  get cursorCount(): number {
    return this.#cursors.size
  }

  /** The oldest unread message of `topic`, or, for a pattern, of the (readable) topics it matches. */
  get(topic: string, readable?: TopicFilter): Delivery | null {
    if (isPattern(topic)) return this.#oldestMatching(topic, readable)
    return this.#deliver(topic, this.#broker.store.oldestAfter(topic, this.cursor(topic)))
  }

  /**
   * The oldest unread messages of `topic` (or of the readable topics a pattern matches, merged in
   * put order), as many `get`s in a row would give them, but with one look-up per topic rather
   * than per message: at most `maxMessages`, and no more once `maxBytes` of payload are given (at
   * least one is). Empty when nothing is unread. For catch-up and event streams.
   */
  getMany(topic: string, maxMessages: number, maxBytes: number, readable?: TopicFilter): Delivery[] {
    const names = isPattern(topic) ? this.#unreadMatching(topic, readable) : [topic]
    // A share of the batch from each topic (twice the even share: traffic is rarely even).
    const perTopic = names.length === 1 ? maxMessages : Math.max(8, Math.ceil((2 * maxMessages) / names.length))
    const found: { topic: string; message: StoredMessage }[] = []
    /** Per topic: how many of its unread messages were found, and whether that is all of them. */
    const left = new Map<string, { found: number; all: boolean }>()
    // Put order holds only up to the first topic cut short: its next message may be older than others' found ones.
    let bound = Number.POSITIVE_INFINITY
    for (const name of names) {
      const cursor = this.cursor(name)
      // Large messages: no more of them read than the byte budget can give.
      const limit = this.#broker.store.messagesWithin(name, cursor, perTopic, maxBytes)
      const rows = this.#broker.store.messagesAfter(name, cursor, limit)
      const all = rows.length < limit
      left.set(name, { found: rows.length, all })
      if (!all) bound = Math.min(bound, rows[rows.length - 1]!.seq)
      for (const message of rows) found.push({ topic: name, message })
    }
    if (names.length > 1) found.sort((a, b) => a.message.seq - b.message.seq)
    const given: Delivery[] = []
    let bytes = 0
    for (const { topic: name, message } of found) {
      if (given.length === maxMessages || message.seq > bound || (given.length > 0 && bytes >= maxBytes)) break
      let delivery: Delivery | null
      try {
        delivery = this.#deliver(name, message)
      } catch (error) {
        // No room for one more topic's cursor: what was given stands; the refusal comes on the next read.
        if (given.length > 0 && error instanceof BrokerError) break
        throw error
      }
      given.push(delivery!)
      bytes += message.payload.length
      left.get(name)!.found--
    }
    // A topic whose every unread message was given is caught up, as a get finding nothing would note.
    for (const [name, { found: remaining, all }] of left) if (all && remaining === 0) this.#caughtUp(name)
    return given
  }

  /** The newest unread message (everything older in the topic, or in every matching topic, counts as read). */
  getLatest(topic: string, readable?: TopicFilter): Delivery | null {
    if (isPattern(topic)) return this.#newestMatching(topic, readable)
    return this.#deliver(topic, this.#broker.store.newestAfter(topic, this.cursor(topic)))
  }

  /**
   * Whether a `get` (or, `latest`, a `getLatest`) of `topic` now would return a message of at
   * least `bytes`, found without reading it: from the topic's size when that is smaller, else
   * by one look-up. False for patterns (their answer is not known without looking at each
   * matching topic).
   */
  wouldRead(topic: string, bytes: number, latest: boolean): boolean {
    if (isPattern(topic)) return false
    const state = this.#broker.store.topic(topic)
    if (state === undefined || state.bytes < bytes) return false
    return this.#broker.store.payloadBytesAfter(topic, this.cursor(topic), latest) >= bytes
  }

  /**
   * Returns the oldest unread message now if there is one. Otherwise returns null and calls
   * `callback` exactly once: with the message as soon as one is put, or with null on timeout.
   */
  getWait(topic: string, timeoutMs: number, callback: WaitCallback, readable?: TopicFilter, tag = 0): Delivery | null {
    if (this.#waiters.has(topic)) throw new Error(`reader is already waiting on ${JSON.stringify(topic)}`)
    const message = this.get(topic, readable)
    // The answer will need an entry: refuse now rather than when the put comes.
    if (message === null && (isPattern(topic) || !this.#cursors.has(topic))) this.#needRoom(topic)
    if (message === null) this.#waiters.set(topic, this.#broker.addWaiter(this, topic, timeoutMs, callback, readable, tag))
    return message
  }

  /**
   * @internal A wait's answer from the message just put on `topic`, without a look-up. A waiter
   * is woken by the topic's first put after it found nothing unread, so that message is the
   * oldest unread; should this reader have read it meanwhile, or retention removed it, the
   * store is asked as for any get.
   */
  handOff(topic: string, message: StoredMessage): Delivery | null {
    const state = this.#broker.store.topic(topic)
    const stillNext = state !== undefined && this.cursor(topic) < message.seq && state.droppedThroughSeq < message.seq
    return stillNext ? this.#deliver(topic, message) : this.get(topic)
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
    if (!this.#cursors.has(topic)) this.#broker.reclaimer.placeTaken(topic)
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
    // No room for the note: the reader will be told its missed count is unknown instead.
    if (cursor === undefined && this.#cursors.size >= this.#maxCursors) {
      this.#toldOfEveryRemoval = false
      return
    }
    let ordinal = dropped[0]!.ordinal - 1
    for (const message of dropped) {
      if (message.seq > start) break
      ordinal = message.ordinal
    }
    this.#setCursor(topic.name, start, ordinal)
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
    if (!this.#cursors.has(topic)) this.#needRoom(topic)
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
    if (state.droppedThroughSeq <= cursorSeq) {
      // A reader that was away may have missed a whole earlier life of the topic, reclaimed
      // meanwhile: unknown, unless the topic is older than the reader's place or nothing was reclaimed since.
      const mayHaveMissedEarlierLife =
        cursor === undefined &&
        !this.#toldOfEveryRemoval &&
        state.createdAfterSeq > cursorSeq &&
        this.#broker.store.reclaimedThroughSeq > cursorSeq
      return mayHaveMissedEarlierLife ? null : 0
    }
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
    const state = this.#broker.store.topic(topic)
    const cursor = this.#cursors.get(topic)
    if (cursor === undefined) {
      // A topic that does not exist needs no entry (and a read must not create its row). Nor, for
      // an open reader, does one with nothing after the start: retention tells it what it drops.
      // A named reader is away between uses (HTTP ?cursor=), so it notes where it caught up.
      if (state === undefined) return
      const untouched = state.lastSeq <= this.#startSeq && state.droppedThroughSeq <= this.#startSeq
      if (untouched && this.name === null) return
    }
    const lastOrdinal = state?.lastOrdinal ?? 0
    if (cursor !== undefined && cursor.ordinal === lastOrdinal) return
    if (cursor === undefined && this.#cursors.size >= this.#maxCursors) return
    this.#setCursor(topic, this.#broker.store.lastSeq, lastOrdinal)
  }

  /** Whether a message of `topic` can be marked read (a push): it has an entry, or there is room for one. */
  hasRoomFor(topic: string): boolean {
    return this.#cursors.has(topic) || this.#cursors.size < this.#maxCursors
  }

  /** Refuses a read that would need one more entry than the reader may hold. */
  #needRoom(topic: string): void {
    if (this.#cursors.size < this.#maxCursors) return
    throw new BrokerError(
      BrokerErrorCode.tooManyCursors,
      `reading ${JSON.stringify(topic)} would keep cursors for more than ${this.#maxCursors} topics on this connection (--max-cursors)`,
    )
  }

  #setCursor(topic: string, seq: number, ordinal: number): void {
    const cursor = this.#cursors.get(topic)
    if (cursor === undefined) {
      this.#cursors.set(topic, { seq, ordinal })
      this.#broker.reclaimer.placeTaken(topic)
    } else {
      cursor.seq = seq
      cursor.ordinal = ordinal
    }
    if (this.name !== null) this.#broker.store.saveNamedCursor(this.name, topic, seq, ordinal, cursor === undefined)
  }
}
