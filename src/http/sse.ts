/**
 * GET /topics/{topic}/events and GET /events?topic=...: new messages of topics as Server-Sent
 * Events. The stream is pulled: each pull reads the next messages from the store through the
 * stream's own cursor, so a reader that falls behind costs the server nothing but its cursor,
 * and a reconnecting browser resumes exactly where it stopped (Last-Event-ID is the last
 * sequence it got). A stream of one exact topic sends each payload as `data:` lines; a stream
 * of a pattern, or of several names, sends one JSON object per event that names the topic.
 */
import type { Broker, Delivery, Reader, Subscriber, TopicFilter } from "../broker/broker.ts"
import { BrokerError } from "../broker/errors.ts"
import { ERROR_NAME_BY_BROKER_CODE } from "../protocol/errors.ts"
import { isPattern } from "../topic/pattern.ts"

/** A comment line now and then keeps proxies from closing an idle stream and finds dead peers. */
const KEEPALIVE_MS = 15_000
/** Messages per pull: enough to amortize the pull, small enough to keep chunks short. */
const MESSAGES_PER_PULL = 64

const encoder = new TextEncoder()
const utf8 = new TextDecoder()
const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * The stream of `names` (topics or patterns) after `afterSeq`, merged in put order; `readable`
 * limits what patterns deliver to the topics the client may read.
 */
export function eventStream(
  broker: Broker,
  names: readonly string[],
  afterSeq: number,
  shutdown: AbortSignal,
  readable?: TopicFilter,
): ReadableStream<Uint8Array> {
  const reader: Reader = broker.openReaderAt(afterSeq)
  const next = mergedReads(reader, names, readable)
  const format = names.length === 1 && !isPattern(names[0]!) ? formatDelivery : formatTopicDelivery
  let wake: (() => void) | null = null
  const subscriber: Subscriber = {
    onPut() {
      const resolve = wake
      wake = null
      resolve?.()
    },
  }
  let timer: Timer | undefined
  let cancelled = false
  let end: (() => void) | null = null

  /** One pull's worth of events: up to MESSAGES_PER_PULL unread messages, or, after waiting, one (or a keepalive). */
  const produce = async (controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> => {
    if (cancelled) return
    let text = ""
    for (const message of next(MESSAGES_PER_PULL)) text += format(message)
    if (text === "") {
      // Nothing unread: wait for a put on the topic, or send a keepalive.
      const { promise, resolve } = Promise.withResolvers<void>()
      wake = resolve
      timer = setTimeout(resolve, KEEPALIVE_MS)
      await promise
      clearTimeout(timer)
      wake = null
      if (cancelled) return
      const messages = next(MESSAGES_PER_PULL)
      text = messages.length === 0 ? ": keepalive\n\n" : messages.map(format).join("")
    }
    // No event tells of a message before it is durable.
    broker.store.commit()
    controller.enqueue(encoder.encode(text))
  }

  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const name of names) broker.subscribe(name, subscriber)
      end = () => {
        if (cancelled) return
        cancelled = true
        clearTimeout(timer)
        for (const name of names) broker.unsubscribe(name, subscriber)
        reader.close()
        wake?.()
        try {
          controller.close()
        } catch {
          // Already closed by the client going away.
        }
      }
      if (shutdown.aborted) end()
      else shutdown.addEventListener("abort", end, { once: true })
      // A first chunk at once, so the response's headers go out now, not with the first event.
      controller.enqueue(encoder.encode(`: stream of ${names.map((name) => JSON.stringify(name)).join(", ")} after ${afterSeq}\n\n`))
    },
    async pull(controller) {
      try {
        await produce(controller)
      } catch (error) {
        // A read past --max-cursors ends the stream with an error event that says why.
        if (!(error instanceof BrokerError)) throw error
        const data = JSON.stringify({ code: ERROR_NAME_BY_BROKER_CODE[error.code], text: error.message })
        controller.enqueue(encoder.encode(`event: error\ndata: ${data}\n\n`))
        end?.()
      }
    },
    cancel() {
      if (end !== null) shutdown.removeEventListener("abort", end)
      cancelled = true
      clearTimeout(timer)
      for (const name of names) broker.unsubscribe(name, subscriber)
      reader.close()
      wake?.()
    },
  })
}

/** Bytes of payload one pull reads at most (at least one message). */
const BYTES_PER_PULL = 256 * 1024

/**
 * The next messages of the stream, up to `max`. One name: a batch per look-up (Reader.getMany).
 * Several: merged in put order, the next message of each name held as its head and the oldest
 * head going first; overlapping names share the reader's cursors, so no message comes twice.
 */
function mergedReads(reader: Reader, names: readonly string[], readable: TopicFilter | undefined): (max: number) => Delivery[] {
  if (names.length === 1) return (max) => reader.getMany(names[0]!, max, BYTES_PER_PULL, readable)
  const next = mergedNext(reader, names, readable)
  return (max) => {
    const messages: Delivery[] = []
    for (let message = next(); message !== null; message = messages.length < max ? next() : null) messages.push(message)
    return messages
  }
}

function mergedNext(reader: Reader, names: readonly string[], readable: TopicFilter | undefined): () => Delivery | null {
  const heads = new Map<string, Delivery>()
  return () => {
    let oldest: [string, Delivery] | null = null
    for (const name of names) {
      let head = heads.get(name)
      if (head === undefined) {
        const message = reader.get(name, readable)
        if (message === null) continue
        head = message
        heads.set(name, head)
      }
      if (oldest === null || head.seq < oldest[1].seq) oldest = [name, head]
    }
    if (oldest === null) return null
    heads.delete(oldest[0])
    return oldest[1]
  }
}

/** For a pattern stream: each event's data is one JSON line naming the topic; bytes that are not UTF-8 go as base64. */
function formatTopicDelivery(message: Delivery): string {
  const missed =
    message.missed !== null && message.missed > 0
      ? `event: missed\ndata: ${JSON.stringify({ topic: message.topic, missed: message.missed })}\n\n`
      : ""
  let body: { topic: string; seq: number; text?: string; base64?: string }
  try {
    body = { topic: message.topic, seq: message.seq, text: strictUtf8.decode(message.payload) }
  } catch {
    body = { topic: message.topic, seq: message.seq, base64: Buffer.from(message.payload).toString("base64") }
  }
  return `${missed}id: ${message.seq}\nevent: message\ndata: ${JSON.stringify(body)}\n\n`
}

/** A message event, after a `missed` event when retention removed messages before it. */
function formatDelivery(message: Delivery): string {
  const missed = message.missed !== null && message.missed > 0 ? `event: missed\ndata: ${message.missed}\n\n` : ""
  return missed + formatEvent(message.seq, message.payload)
}

/** One event: `id` is the sequence number; each line of the payload is a `data:` line. */
export function formatEvent(seq: number, payload: Uint8Array): string {
  const lines = utf8.decode(payload).split(/\r\n|\r|\n/)
  return `id: ${seq}\nevent: message\n${lines.map((line) => `data: ${line}\n`).join("")}\n`
}
