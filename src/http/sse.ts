/**
 * GET /topics/{topic}/events: new messages of a topic as Server-Sent Events. The stream is
 * pulled: each pull reads the next messages from the store through the stream's own cursor,
 * so a reader that falls behind costs the server nothing but its cursor, and a reconnecting
 * browser resumes exactly where it stopped (Last-Event-ID is the last sequence it got).
 */
import type { Broker, Delivery, Reader, Subscriber } from "../broker/broker.ts"

/** A comment line now and then keeps proxies from closing an idle stream and finds dead peers. */
const KEEPALIVE_MS = 15_000
/** Messages per pull: enough to amortize the pull, small enough to keep chunks short. */
const MESSAGES_PER_PULL = 64

const encoder = new TextEncoder()
const utf8 = new TextDecoder()

export function eventStream(broker: Broker, topic: string, afterSeq: number, shutdown: AbortSignal): ReadableStream<Uint8Array> {
  const reader: Reader = broker.openReaderAt(afterSeq)
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

  return new ReadableStream<Uint8Array>({
    start(controller) {
      broker.subscribe(topic, subscriber)
      end = () => {
        if (cancelled) return
        cancelled = true
        clearTimeout(timer)
        broker.unsubscribe(topic, subscriber)
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
      controller.enqueue(encoder.encode(`: stream of ${JSON.stringify(topic)} after ${afterSeq}\n\n`))
    },
    async pull(controller) {
      if (cancelled) return
      let text = ""
      for (let i = 0; i < MESSAGES_PER_PULL; i++) {
        const message = reader.get(topic)
        if (message === null) break
        text += formatDelivery(message)
      }
      if (text === "") {
        // Nothing unread: wait for a put on the topic, or send a keepalive.
        const { promise, resolve } = Promise.withResolvers<void>()
        wake = resolve
        timer = setTimeout(resolve, KEEPALIVE_MS)
        await promise
        clearTimeout(timer)
        wake = null
        if (cancelled) return
        const message = reader.get(topic)
        text = message === null ? ": keepalive\n\n" : formatDelivery(message)
      }
      controller.enqueue(encoder.encode(text))
    },
    cancel() {
      if (end !== null) shutdown.removeEventListener("abort", end)
      cancelled = true
      clearTimeout(timer)
      broker.unsubscribe(topic, subscriber)
      reader.close()
      wake?.()
    },
  })
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
