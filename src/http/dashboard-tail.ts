/**
 * One dashboard's live tail of a topic or pattern: a subscriber that notes the newest messages
 * (topic and sequence number only, in a fixed ring: nothing is allocated or copied per put)
 * until the next update takes them, and only then reads their previews from the store. So a
 * viewer costs about the same at 10 Hz or 10 kHz; older messages between two updates are
 * counted as passed over, not kept.
 */
import type { Subscriber, TopicFilter } from "../broker/broker.ts"
import type { MessagePreview } from "../store/store.ts"

/** Bytes of each payload shown (and read from the store); the rest is only counted. */
export const TAIL_PREVIEW_BYTES = 256
/** Messages an update carries at most: the newest of those put since the previous one. */
export const DEFAULT_TAIL_MESSAGES = 20
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
  /** Messages put since the last batch that are not in it: pushed out by newer ones, or already removed by retention. */
  readonly skipped: number
}

/** Reads a stored message's preview (Store.preview). */
export type PreviewReader = (seq: number, maxBytes: number) => MessagePreview | null

const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

export class DashboardTail implements Subscriber {
  readonly #seqs: Float64Array
  readonly #topics: string[]
  readonly #readPreview: PreviewReader
  /** Messages noted since the last take; the newest `capacity` of them are in the ring. */
  #noted = 0

  constructor(
    readonly name: string,
    readonly capacity: number,
    readonly readable: TopicFilter | undefined,
    readPreview: PreviewReader,
  ) {
    this.#seqs = new Float64Array(capacity)
    this.#topics = new Array<string>(capacity).fill("")
    this.#readPreview = readPreview
  }

  onPut(topic: string, seq: number): void {
    if (this.readable !== undefined && !this.readable(topic)) return
    const slot = this.#noted % this.capacity
    this.#seqs[slot] = seq
    this.#topics[slot] = topic
    this.#noted++
  }

  /** What arrived since the last take, oldest first. */
  take(): TailBatch {
    const kept = Math.min(this.#noted, this.capacity)
    const messages: TailMessage[] = []
    for (let i = this.#noted - kept; i < this.#noted; i++) {
      const slot = i % this.capacity
      const seq = this.#seqs[slot]!
      const stored = this.#readPreview(seq, TAIL_PREVIEW_BYTES)
      if (stored !== null) messages.push(formatted(this.#topics[slot]!, seq, stored))
    }
    const skipped = this.#noted - messages.length
    this.#noted = 0
    return { messages, skipped }
  }
}

function formatted(topic: string, seq: number, stored: MessagePreview): TailMessage {
  const { preview, bytes, putAt } = stored
  const truncated = bytes > preview.length
  const text = utf8Text(preview, truncated)
  const shown = text === null ? { hex: Buffer.from(preview).toString("hex") } : { text }
  return { topic, seq, putAt, bytes, truncated, ...shown }
}

/** The preview as text if it is UTF-8 (a cut-off preview may end inside a character); null if not. */
function utf8Text(bytes: Uint8Array, cut: boolean): string | null {
  for (let trim = 0; trim <= (cut ? 3 : 0) && trim <= bytes.length; trim++) {
    try {
      return strictUtf8.decode(bytes.subarray(0, bytes.length - trim))
    } catch {
      // Not UTF-8 here; a cut preview may be one to three bytes into a character.
    }
  }
  return null
}
