/**
 * The live channel: GET /stats/live read as Server-Sent Events through fetch (EventSource cannot
 * send an Authorization header). It reconnects after a failure, waiting longer each time up to
 * a few seconds, and says which state it is in.
 */
import { authorized } from "./access.ts"
import type { Update } from "./types.ts"

export type ChannelState = "connecting" | "live" | "reconnecting" | "locked" | "stopped"

export interface ChannelEvents {
  update(update: Update): void
  state(state: ChannelState): void
  /** The tail was refused (a pattern the token may not read, a bad name): the text says why. */
  tailRefused(text: string): void
}

/** Messages of the tail each update carries at most (4 a second): more than anyone reads, far less than a busy topic puts. */
const TAIL_PER_UPDATE = 20
const RETRY_MIN_MS = 500
const RETRY_MAX_MS = 5000

export class LiveChannel {
  readonly #events: ChannelEvents
  #abort: AbortController | null = null
  #tail: string | null = null
  #retryMs = RETRY_MIN_MS
  #retryTimer: ReturnType<typeof setTimeout> | null = null

  constructor(events: ChannelEvents) {
    this.#events = events
  }

  /** (Re)opens the channel, with a tail of `tail` (a topic or pattern) or none. */
  open(tail: string | null): void {
    this.close()
    this.#tail = tail
    const abort = new AbortController()
    this.#abort = abort
    this.#events.state("connecting")
    void this.#run(abort.signal)
  }

  close(): void {
    this.#abort?.abort()
    this.#abort = null
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer)
    this.#retryTimer = null
  }

  async #run(signal: AbortSignal): Promise<void> {
    const query = this.#tail === null ? "" : `?tail=${encodeURIComponent(this.#tail)}&tailLimit=${TAIL_PER_UPDATE}`
    try {
      const response = await fetch(`/stats/live${query}`, authorized({ signal }))
      if (response.status === 401) {
        this.#events.state("locked")
        return
      }
      if ((response.status === 400 || response.status === 403) && this.#tail !== null) {
        const body = (await response.json().catch(() => null)) as { error?: { text?: string } } | null
        this.#events.tailRefused(body?.error?.text ?? `the server refused the tail (${response.status})`)
        if (!signal.aborted) this.open(null)
        return
      }
      if (!response.ok || response.body === null) throw new Error(`status ${response.status}`)
      this.#events.state("live")
      this.#retryMs = RETRY_MIN_MS
      await readEvents(response.body, signal, (name, data) => {
        if (name === "update") this.#events.update(JSON.parse(data) as Update)
      })
    } catch {
      // Refused, cut off or unreachable: try again below.
    }
    if (signal.aborted) return
    this.#events.state("reconnecting")
    this.#retryTimer = setTimeout(() => this.open(this.#tail), this.#retryMs)
    this.#retryMs = Math.min(RETRY_MAX_MS, this.#retryMs * 2)
  }
}

/** Calls `onEvent` for each event of a text/event-stream body until it ends. */
async function readEvents(
  body: ReadableStream<Uint8Array>,
  signal: AbortSignal,
  onEvent: (name: string, data: string) => void,
): Promise<void> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  signal.addEventListener("abort", () => void reader.cancel(), { once: true })
  let buffered = ""
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buffered += decoder.decode(value, { stream: true })
    let end = buffered.indexOf("\n\n")
    while (end !== -1) {
      const block = buffered.slice(0, end)
      buffered = buffered.slice(end + 2)
      let name = "message"
      const data: string[] = []
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim()
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""))
      }
      if (data.length > 0) onEvent(name, data.join("\n"))
      end = buffered.indexOf("\n\n")
    }
  }
}
