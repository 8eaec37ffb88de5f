/**
 * One export rule: local messages of a pattern, in put order, to NATS. It reads through its own
 * reader from a position the store keeps (the last sequence number NATS acknowledged), so after a
 * NATS outage or a restart with --db it sends the backlog from the store, in order. A batch is
 * read only once the previous one was acknowledged: a slow or absent NATS pauses the export and
 * the backlog stays in the store (bounded by retention). With a JetStream stream every publish
 * carries Nats-Msg-Id = topic:seq, so what is sent again after a reconnect is dropped by
 * JetStream; with core NATS a flush confirms the batch, and a reconnect may send one again.
 */

import type { JetStreamClient } from "@nats-io/jetstream"
import { headers, type NatsConnection } from "@nats-io/transport-node"
import type { Broker, Delivery, Reader, Subscriber } from "../broker/broker.ts"
import { compilePattern } from "../topic/pattern.ts"
import { type BridgeRule, ORIGIN_HEADER, SEQ_HEADER, TOPIC_HEADER } from "./config.ts"
import { topicToSubject } from "./subjects.ts"

const BATCH_MESSAGES = 256
const BATCH_BYTES = 4 * 1024 * 1024
/** Without a put to wake it, the exporter looks again this often (a missed wake costs no more). */
const IDLE_CHECK_MS = 1000

export interface ExportContext {
  readonly broker: Broker
  readonly prefix: string
  readonly origin: string
  /** Messages this broker imported: never exported back. */
  isImported(seq: number): boolean
  /** Resolves once a connection (and JetStream, for stream rules) is ready; null once the bridge stops. */
  connection(): Promise<{ nc: NatsConnection; js: JetStreamClient } | null>
  failed(error: unknown): void
}

export class Exporter implements Subscriber {
  readonly rule: BridgeRule
  readonly matches: (topic: string) => boolean
  readonly #context: ExportContext
  readonly #markName: string
  #reader: Reader
  /** The last sequence number NATS acknowledged (or that was passed over as imported). */
  position: number
  exported = 0
  #wake: (() => void) | null = null
  #stopped = false

  constructor(rule: BridgeRule, context: ExportContext) {
    this.rule = rule
    this.matches = compilePattern(rule.pattern)
    this.#context = context
    this.#markName = `bridge:export:${rule.pattern}`
    const store = context.broker.store
    // A new rule starts with the messages put from now on, as a new reader does.
    this.position = store.mark(this.#markName) ?? store.lastSeq
    this.#reader = context.broker.openReaderAt(this.position)
  }

  onPut(): void {
    const wake = this.#wake
    this.#wake = null
    wake?.()
  }

  async run(): Promise<void> {
    this.#context.broker.subscribe(this.rule.pattern, this)
    try {
      while (!this.#stopped) {
        const ready = await this.#context.connection()
        if (ready === null || this.#stopped) return
        const batch = this.#readBatch()
        if (batch.length === 0) {
          await this.#idle()
          continue
        }
        if (this.#stopped) return
        // NATS never has a message this broker could still lose.
        this.#context.broker.store.commit()
        try {
          await this.#publish(ready, batch)
          // Stopped meanwhile: the store may be closed; the batch goes again next time (JetStream drops it).
          if (this.#stopped) return
          this.#advance(batch[batch.length - 1]!.seq)
          this.exported += batch.length
        } catch (error) {
          if (this.#stopped) return
          this.#context.failed(error)
          // Read the unacknowledged batch again once NATS is back.
          this.#reader.close()
          this.#reader = this.#context.broker.openReaderAt(this.position)
          await Bun.sleep(200)
        }
      }
    } finally {
      this.#context.broker.unsubscribe(this.rule.pattern, this)
      this.#reader.close()
    }
  }

  stop(): void {
    this.#stopped = true
    this.onPut()
  }

  /** Messages of the rule's pattern that NATS has not acknowledged yet (what the store still holds of them). */
  lag(): number {
    const store = this.#context.broker.store
    let lag = 0
    for (const topic of store.topics()) {
      if (topic.lastSeq <= this.position || !this.matches(topic.name)) continue
      // Asked several times a second (every open dashboard's stats): the ordinal only, never the payload.
      const first = store.ordinalAfter(topic, this.position)
      if (first !== null) lag += topic.lastOrdinal - first + 1
    }
    return lag
  }

  #readBatch(): Delivery[] {
    const batch: Delivery[] = []
    let bytes = 0
    let passed = this.position
    while (batch.length < BATCH_MESSAGES && bytes < BATCH_BYTES) {
      const message = this.#reader.get(this.rule.pattern)
      if (message === null) break
      if (this.#context.isImported(message.seq)) {
        // Came from NATS: sending it back would loop. Passed over, and remembered as passed.
        if (batch.length === 0) passed = message.seq
        continue
      }
      batch.push(message)
      bytes += message.payload.length
    }
    if (batch.length === 0 && passed > this.position) this.#advance(passed)
    return batch
  }

  async #publish(ready: { nc: NatsConnection; js: JetStreamClient }, batch: readonly Delivery[]): Promise<void> {
    const { prefix, origin } = this.#context
    const options = (message: Delivery) => {
      const h = headers()
      h.set(ORIGIN_HEADER, origin)
      h.set(TOPIC_HEADER, message.topic)
      h.set(SEQ_HEADER, String(message.seq))
      return h
    }
    if (this.rule.stream !== null) {
      // Pipelined on one connection: JetStream stores them in this order; all must be acknowledged.
      await Promise.all(
        batch.map((message) =>
          ready.js.publish(topicToSubject(message.topic, prefix), message.payload, {
            msgID: `${message.topic}:${message.seq}`,
            headers: options(message),
            expect: { streamName: this.rule.stream! },
          }),
        ),
      )
      return
    }
    for (const message of batch) ready.nc.publish(topicToSubject(message.topic, prefix), message.payload, { headers: options(message) })
    await ready.nc.flush()
  }

  #advance(seq: number): void {
    this.position = seq
    this.#context.broker.store.setMark(this.#markName, seq)
  }

  #idle(): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>()
    this.#wake = resolve
    const timer = setTimeout(resolve, IDLE_CHECK_MS)
    return promise.finally(() => clearTimeout(timer))
  }
}
