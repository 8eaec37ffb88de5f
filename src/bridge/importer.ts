/**
 * One import rule: NATS messages of a pattern's subjects, put on the local topics they stand
 * for. A message this broker exported itself (its Dsmq-Origin header) is dropped, so a rule that
 * imports what another exports through the same subjects does not loop. Core NATS: a plain
 * subscription (what arrives while the broker is down is not seen). JetStream: a durable
 * consumer, each message acknowledged after the local put, and not pulled while the broker's
 * buffered-bytes budget is spent.
 */
import { AckPolicy, type ConsumerMessages, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream"
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node"
import type { Broker } from "../broker/broker.ts"
import { BrokerError } from "../broker/errors.ts"
import { compilePattern } from "../topic/pattern.ts"
import { topicProblem } from "../topic/topic-name.ts"
import { type BridgeRule, ORIGIN_HEADER } from "./config.ts"
import { patternToSubjects, subjectToTopic } from "./subjects.ts"

/** JetStream messages pulled at a time: the most an import holds before putting them. */
const PULL_BATCH = 256
const BUDGET_RETRY_MS = 100

export interface ImportContext {
  readonly broker: Broker
  /** The server-wide buffered-bytes budget (src/server/buffer-budget.ts): whether it admits more. */
  readonly budget: { readonly admits: boolean }
  readonly prefix: string
  readonly origin: string
  /** A message was put locally from NATS (its sequence number, its topic). */
  imported(seq: number, topic: string): void
  failed(error: unknown): void
}

/** A durable consumer's name for a rule's `index`th subject: stable across restarts, valid in NATS. */
export function consumerName(origin: string, pattern: string, index: number): string {
  return `dsmq-${origin}-${pattern}-${index}`.replace(/[^A-Za-z0-9_-]/g, (c) => `_${c.charCodeAt(0).toString(16)}`)
}

export class Importer {
  readonly rule: BridgeRule
  readonly subjects: readonly string[]
  readonly #matches: (topic: string) => boolean
  readonly #context: ImportContext
  imported = 0
  /** Messages dropped: this broker's own, subjects that are no topic, puts the broker refused. */
  dropped = 0
  /** JetStream deliveries of messages already put here, skipped. */
  redelivered = 0
  #subscriptions: Subscription[] = []
  #consuming: ConsumerMessages[] = []
  #stopped = false

  constructor(rule: BridgeRule, context: ImportContext) {
    this.rule = rule
    this.subjects = patternToSubjects(rule.pattern, context.prefix)
    this.#matches = compilePattern(rule.pattern)
    this.#context = context
  }

  /** Starts receiving on a (re)established connection. */
  async start(nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager): Promise<void> {
    this.stop()
    if (this.rule.stream === null) {
      this.#subscriptions = this.subjects.map((subject) => nc.subscribe(subject, { callback: (error, msg) => this.#onCore(error, msg) }))
      return
    }
    // One durable consumer per subject (a `#` rule has two): servers before 2.10 take one filter
    // each. A topic maps to one subject, so each topic's order is kept.
    this.#consuming = []
    for (const [i, subject] of this.subjects.entries()) {
      const durable = consumerName(this.#context.origin, this.rule.pattern, i)
      await jsm.consumers.add(this.rule.stream, { durable_name: durable, ack_policy: AckPolicy.Explicit, filter_subject: subject })
      const consumer = await js.consumers.get(this.rule.stream, durable)
      const messages = await consumer.consume({ max_messages: PULL_BATCH })
      this.#consuming.push(messages)
      void this.#drain(messages, `bridge:import:${this.rule.pattern}:${i}`)
    }
  }

  /**
   * Puts what a consumer delivers, in stream order. JetStream may deliver again what was
   * acknowledged (its consumer state is written lazily: a NATS crash forgets recent acks), so
   * the last stream sequence put here is kept in the store under `mark` and anything at or
   * below it is acknowledged and skipped: each message is put once.
   */
  async #drain(messages: ConsumerMessages, mark: string): Promise<void> {
    const store = this.#context.broker.store
    let last = store.mark(mark) ?? 0
    try {
      for await (const message of messages) {
        while (!this.#context.budget.admits && !this.#stopped) await Bun.sleep(BUDGET_RETRY_MS)
        if (this.#stopped) return
        const streamSeq = message.info.streamSequence
        if (streamSeq > last) {
          this.#put(message.subject, message.data, message.headers?.get(ORIGIN_HEADER) ?? null)
          last = streamSeq
          store.setMark(mark, last)
        } else this.redelivered++
        // The put and the position are durable before JetStream forgets the message.
        store.commit()
        message.ack()
      }
    } catch (error) {
      this.#context.failed(error)
    }
  }

  /** For good: nothing is put after this (the store may be closing). */
  close(): void {
    this.#stopped = true
    this.stop()
  }

  stop(): void {
    for (const subscription of this.#subscriptions) subscription.unsubscribe()
    this.#subscriptions = []
    for (const messages of this.#consuming) void messages.close()
    this.#consuming = []
  }

  #onCore(error: Error | null, msg: Msg): void {
    if (error !== null) {
      this.#context.failed(error)
      return
    }
    this.#put(msg.subject, msg.data, msg.headers?.get(ORIGIN_HEADER) ?? null)
  }

  #put(subject: string, payload: Uint8Array, origin: string | null): void {
    if (this.#stopped) return
    if (origin === this.#context.origin) {
      this.dropped++
      return
    }
    const topic = subjectToTopic(subject, this.#context.prefix)
    if (topic === null || topicProblem(topic) !== null || !this.#matches(topic)) {
      this.dropped++
      return
    }
    try {
      const seq = this.#context.broker.put(topic, payload)
      this.imported++
      this.#context.imported(seq, topic)
    } catch (error) {
      // The store refused it (a reject policy at its limit): counted, and the import goes on.
      if (!(error instanceof BrokerError)) throw error
      this.dropped++
      this.#context.failed(error)
    }
  }
}
