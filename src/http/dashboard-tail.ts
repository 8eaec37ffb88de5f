/**
 * One dashboard's live tail of a topic or pattern: a subscriber that keeps the newest messages
 * in a small ring until the next update takes them. The ring is bounded (messages and preview
 * bytes), so a viewer costs the same at 10 Hz or 10 kHz; older messages between two updates
 * are counted as passed over, not kept. Formatting waits for the update, once per message shown.
 */
import type { Subscriber, TopicFilter } from "../broker/broker.ts"

/** Bytes of each payload shown (and copied); the rest is only counted. */
export const TAIL_PREVIEW_BYTES = 256
export const DEFAULT_TAIL_MESSAGES = 100
export const MAX_TAIL_MESSAGES = 500

export interface TailMessage {
  readonly topic: string
  readonly seq: number
  /** When it was put (ms since the epoch). */
  readonly putAt: number
  /** The payload's full size; `text` or `hex` shows at most TAIL_PREVIEW_BYTES of it. */
  readonly bytes: number
  /** Only the first TAIL_PREVIEW_BYTES are shown. */
  readonly truncated: boolean
  readonly text?: string
  readonly hex?: string
}

export interface TailBatch {
  readonly messages: readonly TailMessage[]
  /** Messages that arrived since the last batch but were pushed out of the ring by newer ones. */
  readonly skipped: number
}

interface Captured {
  readonly topic: string
  readonly seq: number
  readonly putAt: number
  readonly bytes: number
  readonly preview: Uint8Array
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

export class DashboardTail implements Subscriber {
  readonly #ring: (Captured | undefined)[]
  /** Messages captured since the last take; the newest `capacity` of them are in the ring. */
  #captured = 0

  constructor(
    readonly name: string,
    readonly capacity: number,
    readonly readable: TopicFilter | undefined,
  ) {
    this.#ring = new Array<Captured | undefined>(capacity)
  }

  onPut(topic: string, seq: number, _ordinal: number, payload: Uint8Array, putAt: number): void {
    if (this.readable !== undefined && !this.readable(topic)) return
    // A copy: the payload may be a view of the client's input buffer, reused after this call.
    const preview = payload.slice(0, TAIL_PREVIEW_BYTES)
    this.#ring[this.#captured % this.capacity] = { topic, seq, putAt, bytes: payload.length, preview }
    this.#captured++
  }

  /** What arrived since the last take, oldest first. */
  take(): TailBatch {
    const kept = Math.min(this.#captured, this.capacity)
    const messages: TailMessage[] = []
    for (let i = this.#captured - kept; i < this.#captured; i++) messages.push(formatted(this.#ring[i % this.capacity]!))
    const skipped = this.#captured - kept
    this.#captured = 0
    this.#ring.fill(undefined)
    return { messages, skipped }
  }
}

function formatted(message: Captured): TailMessage {
  const { topic, seq, putAt, bytes, preview } = message
  const truncated = bytes > preview.length
  const text = utf8Text(preview, truncated)
  const shown = text === null ? { hex: Buffer.from(preview).toString("hex") } : { text }
  return { topic, seq, putAt, bytes, truncated, ...shown }
}

/** The preview as text if it is UTF-8 (a cut-off preview may end inside a character); null if not. */
function utf8Text(bytes: Uint8Array, cut: boolean): string | null {
  for (let trim = 0; trim <= (cut ? 3 : 0) && trim < bytes.length + 1; trim++) {
    try {
      return strictUtf8.decode(bytes.subarray(0, bytes.length - trim))
    } catch {
      // Not UTF-8 here; a cut preview may be one to three bytes into a character.
    }
  }
  return null
}
