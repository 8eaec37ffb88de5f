/**
 * Retention: how much a topic and the whole store may hold, and what happens at the limit.
 * Limits are enforced incrementally: a put frees just the room it needs (or is refused), and
 * a timer removes expired messages in small batches, so no sweep ever stalls the event loop.
 * Messages always leave from the old end of a topic.
 */
import { type DroppedMessage, type Store, type TopicState, topicOverheadBytes } from "../store/store.ts"
import { BoundedCache } from "../topic/bounded-cache.ts"
import { PatternError } from "../topic/pattern.ts"
import { SubjectIndex } from "../topic/subject-index.ts"
import { BrokerError, BrokerErrorCode } from "./errors.ts"

export type FullPolicy = "drop-oldest" | "reject"

export interface RetentionLimits {
  /** Oldest message age, in milliseconds; null: no limit. */
  readonly maxAgeMs: number | null
  /** Messages per topic; null: no limit. */
  readonly maxMessages: number | null
  /** Payload bytes per topic; null: no limit. */
  readonly maxBytes: number | null
  /** At a limit: remove the oldest messages (telemetry) or refuse new puts. */
  readonly policy: FullPolicy
}

export interface RetentionRule {
  /** A topic pattern (src/topic/pattern.ts): a topic, `prefix/#` (the prefix and everything below it), or `+` for one level, e.g. `lab/+/temp`. */
  readonly pattern: string
  readonly limits: Partial<RetentionLimits>
}

export interface RetentionConfig {
  readonly defaults: RetentionLimits
  /** First matching rule wins; what it leaves out comes from `defaults`. */
  readonly rules: readonly RetentionRule[]
  /** Stored payload bytes plus STORED_MESSAGE_OVERHEAD per message, for the whole store; null: none. */
  readonly maxStoreBytes: number | null
}

/**
 * What one stored message costs beyond its payload in an in-memory SQLite database (row,
 * index entry, page slack), counted against `maxStoreBytes` so that the cap tracks memory.
 */
export const STORED_MESSAGE_OVERHEAD = 100

export const DEFAULT_RETENTION: RetentionConfig = {
  defaults: { maxAgeMs: null, maxMessages: 100_000, maxBytes: null, policy: "drop-oldest" },
  rules: [],
  maxStoreBytes: 256 * 1024 * 1024,
}

/** Most messages dropped beyond what a put needs, to leave room for the next puts. */
const DROP_SLACK_MAX = 1024
/** Rows looked at, per batch, when freeing room across the whole store. */
const GLOBAL_SCAN_BATCH = 256
/** Rows looked at, at most, for one put: beyond this the store counts as full. */
const GLOBAL_SCAN_LIMIT = 16_384
/**
 * Expired messages removed per sweep step, over all topics, and topics looked at per step:
 * a step costs a millisecond or two, and the event loop serves clients between steps.
 */
const SWEEP_STEP_ROWS = 1000
const SWEEP_TOPICS_PER_STEP = 256
/**
 * Topics whose limits are kept once resolved. Each entry is a map slot (the name is the
 * store's own string), and the sweep asks for every topic each step: a bound well above what
 * a store holds in practice, beyond which a miss costs one walk of the rules' trie (< 1 µs).
 */
export const MAX_CACHED_TOPIC_LIMITS = 65_536

/** What the broker is told of removals. */
export interface RetentionHooks {
  /** Before `dropped` (the oldest messages of `topic`) go: readers count what they lose. */
  beforeDrop(topic: TopicState, dropped: readonly DroppedMessage[]): void
  /** `topic` has no messages left. */
  emptied(topic: TopicState): void
}

export class RetentionError extends Error {
  override readonly name = "RetentionError"
}

export class Retention {
  readonly config: RetentionConfig
  readonly #store: Store
  readonly #hooks: RetentionHooks
  readonly #limitsByTopic = new BoundedCache<string, RetentionLimits>(MAX_CACHED_TOPIC_LIMITS)
  /** Each rule's limits, the defaults filled in, in the rules' order. */
  readonly #ruleLimits: readonly RetentionLimits[]
  /** Rule positions by pattern. Its own cache is off: #limitsByTopic keeps the answers. */
  readonly #rulesByPattern = new SubjectIndex<number>({ maxCachedMatches: 0 })
  /** Messages removed by retention since start. */
  droppedCount = 0

  /** Throws RetentionError when a rule's pattern is not a pattern. */
  constructor(config: RetentionConfig, store: Store, hooks: RetentionHooks) {
    this.config = config
    this.#store = store
    this.#hooks = hooks
    this.#ruleLimits = config.rules.map((rule) => ({ ...config.defaults, ...rule.limits }))
    config.rules.forEach((rule, position) => {
      try {
        this.#rulesByPattern.add(rule.pattern, position)
      } catch (error) {
        if (error instanceof PatternError) throw new RetentionError(`retention rule ${position + 1}: ${error.message}`)
        throw error
      }
    })
  }

  get hasAgeLimits(): boolean {
    return this.config.defaults.maxAgeMs !== null || this.#ruleLimits.some((limits) => limits.maxAgeMs !== null)
  }

  /** The limits of the first rule whose pattern matches `topic`, else the defaults. */
  limitsFor(topic: string): RetentionLimits {
    let limits = this.#limitsByTopic.get(topic)
    if (limits === undefined) {
      let first: number | undefined
      for (const position of this.#rulesByPattern.match(topic)) if (first === undefined || position < first) first = position
      limits = first === undefined ? this.config.defaults : this.#ruleLimits[first]!
      this.#limitsByTopic.set(topic, limits)
    }
    return limits
  }

  /**
   * Makes room for `count` new messages of `bytes` payload bytes in all on `topic`, removing
   * old messages where the policy allows; throws BrokerError when the put must be refused.
   */
  admit(topicName: string, count: number, bytes: number): void {
    const limits = this.limitsFor(topicName)
    const topic = this.#store.topic(topicName)
    if (limits.maxBytes !== null && bytes > limits.maxBytes) {
      throw new BrokerError(BrokerErrorCode.topicFull, `${bytes} bytes do not fit the topic's limit of ${limits.maxBytes} bytes`)
    }
    if (limits.maxMessages !== null && count > limits.maxMessages) {
      throw new BrokerError(BrokerErrorCode.topicFull, `${count} messages do not fit the topic's limit of ${limits.maxMessages}`)
    }
    if (topic !== undefined) {
      const excessCount = limits.maxMessages === null ? 0 : topic.count + count - limits.maxMessages
      const excessBytes = limits.maxBytes === null ? 0 : topic.bytes + bytes - limits.maxBytes
      if (excessCount > 0 || excessBytes > 0) {
        if (limits.policy === "reject") {
          throw new BrokerError(
            BrokerErrorCode.topicFull,
            `topic ${JSON.stringify(topicName)} is full (${topic.count} messages, ${topic.bytes} bytes) and its policy is reject`,
          )
        }
        // A little more than needed, so that the next puts need not drop again: a topic at
        // its limit then pays one batched delete per few dozen puts, not one per put.
        const slackCount = limits.maxMessages === null ? 0 : Math.min(DROP_SLACK_MAX, Math.floor(limits.maxMessages / 64))
        const slackBytes = limits.maxBytes === null ? 0 : Math.floor(limits.maxBytes / 64)
        this.#dropFromTopic(topic, excessCount > 0 ? excessCount + slackCount : 0, excessBytes > 0 ? excessBytes + slackBytes : 0)
      }
    }
    this.#admitToStore(topicName, limits, count, bytes)
  }

  /**
   * Removes expired messages: at most SWEEP_STEP_ROWS in all, looking at most at
   * SWEEP_TOPICS_PER_STEP topics. Returns true when there may be more to remove (call again
   * soon); the next call starts where this one stopped.
   */
  sweep(now: number): boolean {
    let rowsLeft = SWEEP_STEP_ROWS
    let visited = 0
    for (const topic of this.#sweepOrder()) {
      const { maxAgeMs } = this.limitsFor(topic.name)
      if (maxAgeMs !== null && topic.count > 0) {
        if (rowsLeft === 0 || ++visited > SWEEP_TOPICS_PER_STEP) return true
        const cutoff = now - maxAgeMs
        const oldest = this.#store.oldestPutAt(topic)
        if (oldest !== null && oldest < cutoff) {
          // Put times grow with seq, so the expired messages are a prefix of the oldest ones.
          const candidates = this.#store.oldestOf(topic, rowsLeft)
          const expired = candidates.filter((message) => message.putAt < cutoff)
          this.#drop(topic, expired)
          rowsLeft -= expired.length
          // Out of rows with this topic perhaps not done: start with it next time.
          if (rowsLeft === 0 && expired.length === candidates.length) return true
        }
      }
      this.#sweepCursor++
    }
    return false
  }

  #sweepCursor = 0

  /** Topics starting where the last step stopped, so a long list is covered over several steps. */
  #sweepOrder(): TopicState[] {
    const topics = [...this.#store.topics()]
    const start = topics.length === 0 ? 0 : this.#sweepCursor % topics.length
    return [...topics.slice(start), ...topics.slice(0, start)]
  }

  #dropFromTopic(topic: TopicState, excessCount: number, excessBytes: number): void {
    while (excessCount > 0 || excessBytes > 0) {
      const candidates = this.#store.oldestOf(topic, Math.max(excessCount, 16))
      if (candidates.length === 0) return
      const dropped: DroppedMessage[] = []
      for (const message of candidates) {
        if (excessCount <= 0 && excessBytes <= 0) break
        dropped.push(message)
        excessCount--
        excessBytes -= message.bytes
      }
      this.#drop(topic, dropped)
    }
  }

  #admitToStore(topicName: string, limits: RetentionLimits, count: number, bytes: number): void {
    const cap = this.config.maxStoreBytes
    if (cap === null) return
    const newTopic = this.#store.topic(topicName) === undefined ? topicOverheadBytes(topicName) : 0
    let toFree = this.usedStoreBytes + bytes + count * STORED_MESSAGE_OVERHEAD + newTopic - cap
    if (toFree <= 0) return
    toFree += Math.floor(cap / 256) // slack, as for topics
    if (limits.policy === "reject") {
      throw new BrokerError(
        BrokerErrorCode.storeFull,
        `the store is at its cap of ${cap} bytes and topic ${JSON.stringify(topicName)}'s policy is reject`,
      )
    }
    // Oldest messages first, from topics whose policy allows dropping. Reading in seq order
    // takes each topic's messages oldest first, so every topic still loses only a prefix.
    const plan = new Map<TopicState, DroppedMessage[]>()
    let after = 0
    for (let scanned = 0; toFree > 0 && scanned < GLOBAL_SCAN_LIMIT; scanned += GLOBAL_SCAN_BATCH) {
      const rows = this.#store.oldestOverall(after, GLOBAL_SCAN_BATCH)
      if (rows.length === 0) break
      for (const row of rows) {
        after = row.seq
        const topic = this.#store.topicById(row.topicId)!
        if (this.limitsFor(topic.name).policy !== "drop-oldest") continue
        let dropped = plan.get(topic)
        if (dropped === undefined) plan.set(topic, (dropped = []))
        dropped.push(row)
        toFree -= row.bytes + STORED_MESSAGE_OVERHEAD
        if (toFree <= 0) break
      }
    }
    if (toFree > 0) {
      throw new BrokerError(
        BrokerErrorCode.storeFull,
        `the store is at its cap of ${cap} bytes and nothing more can be dropped to make room`,
      )
    }
    for (const [topic, dropped] of plan) this.#drop(topic, dropped)
  }

  /** What the store's cap counts: payloads, each message's overhead, and what topics and named cursors take. */
  get usedStoreBytes(): number {
    return this.#store.payloadBytes + this.#store.messageCount * STORED_MESSAGE_OVERHEAD + this.#store.overheadBytes
  }

  /**
   * Refuses (store_full) a record that is not a message, `bytes` long, when it would pass the
   * store's cap: messages are never dropped to make room for one.
   */
  admitRecord(bytes: number, what: string): void {
    const cap = this.config.maxStoreBytes
    if (cap === null || this.usedStoreBytes + bytes <= cap) return
    throw new BrokerError(BrokerErrorCode.storeFull, `the store is at its cap of ${cap} bytes: no room for ${what}`)
  }

  #drop(topic: TopicState, dropped: readonly DroppedMessage[]): void {
    if (dropped.length === 0) return
    // Readers are told first, while what they lose can still be counted.
    this.#hooks.beforeDrop(topic, dropped)
    this.#store.dropOldest(topic, dropped)
    this.droppedCount += dropped.length
    if (topic.count === 0) this.#hooks.emptied(topic)
  }
}
