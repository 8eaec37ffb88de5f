/**
 * Reading HTTP request bodies within the server-wide budget (src/server/buffer-budget.ts): a
 * body being read counts what it holds, and stops being read (so TCP pushes back on the client)
 * while the budget pauses it. While the budget is spent, a new body is read and discarded and
 * the request answered 503, so that clients that send the whole body first can read the answer.
 */
import type { BudgetHolder, BufferBudget } from "../server/buffer-budget.ts"

/** The budget paused a body, and its client sent nothing more for MAX_PAUSE_MS: it is not read further. */
export class BodyStalledError extends Error {
  override readonly name = "BodyStalledError"
}

/** What a body is read through (a ReadableStream's reader). */
interface ChunkReader {
  read(): Promise<{ done: true; value?: undefined } | { done: false; value: Uint8Array }>
  cancel(): Promise<void>
}

/** One body being read, as the budget sees it. */
class BodyReading implements BudgetHolder {
  readonly #stream: ChunkReader
  #paused = false
  #stalled = false
  #waiting: PromiseWithResolvers<void> | null = null

  constructor(stream: ChunkReader) {
    this.#stream = stream
  }

  budgetPause(paused: boolean): void {
    this.#paused = paused
    if (!paused) this.#waiting?.resolve()
  }

  budgetStalled(): void {
    this.#stalled = true
    // Ends a read waiting for bytes the client does not send, and a wait for the budget.
    void this.#stream.cancel().catch(() => {})
    this.#waiting?.resolve()
  }

  /** The next chunk, null at the end; waits first while the budget pauses this body. */
  async next(): Promise<Uint8Array | null> {
    if (this.#paused && !this.#stalled) {
      this.#waiting = Promise.withResolvers<void>()
      await this.#waiting.promise
      this.#waiting = null
    }
    const chunk = this.#stalled ? { done: true as const } : await this.#stream.read()
    if (this.#stalled) throw new BodyStalledError("the request body was paused past --max-buffered-bytes for too long")
    return chunk.done ? null : chunk.value
  }
}

/** The whole body, or null when it is longer than `max` (the rest is read and dropped). */
export async function readBody(request: Request, max: number, budget: BufferBudget): Promise<Uint8Array | null> {
  if (request.body === null) return new Uint8Array()
  const reading = new BodyReading(request.body.getReader())
  const chunks: Uint8Array[] = []
  let length = 0
  try {
    for (let chunk = await reading.next(); chunk !== null; chunk = await reading.next()) {
      length += chunk.length
      if (length > max) {
        chunks.length = 0
        budget.report(reading, 0)
        continue
      }
      chunks.push(chunk)
      budget.report(reading, length)
    }
  } finally {
    budget.forget(reading)
  }
  return length > max ? null : Buffer.concat(chunks)
}

/** Reads what the client sends and keeps none of it, so that it can read the answer. */
export async function discardBody(request: Request): Promise<void> {
  if (request.body === null) return
  for await (const _chunk of request.body) {
    // Bounded by MAX_DISCARDED_BODY_BYTES: Bun closes a connection whose body goes past it.
  }
}
