/** Reads Server-Sent Events from a streaming response, one parsed event per call. */
export interface ServerSentEvent {
  readonly id: string | undefined
  readonly event: string | undefined
  /** The event's `data:` lines joined with "\n"; undefined when it has none. */
  readonly data: string | undefined
}

export class EventStreamReader {
  readonly #reader: { read(): Promise<{ value?: Uint8Array; done: boolean }>; cancel(): Promise<void> }
  readonly #decoder = new TextDecoder()
  #text = ""

  constructor(response: Response) {
    this.#reader = response.body!.getReader()
  }

  /** The next event, skipping comment lines (the stream's greeting, keepalives). */
  async next(): Promise<ServerSentEvent> {
    // Bounded: each pass reads a chunk, and the stream ends when the server closes it.
    for (;;) {
      const end = this.#text.indexOf("\n\n")
      if (end >= 0) {
        const block = this.#text.slice(0, end)
        this.#text = this.#text.slice(end + 2)
        const fields: Record<string, string[]> = {}
        for (const line of block.split("\n")) {
          const colon = line.indexOf(":")
          if (colon === 0) continue
          // A line without a colon is a field with an empty value.
          const [name, value] = colon < 0 ? [line, ""] : [line.slice(0, colon), line.slice(colon + 1).replace(/^ /, "")]
          ;(fields[name] ??= []).push(value)
        }
        if (Object.keys(fields).length === 0) continue
        return { id: fields.id?.[0], event: fields.event?.[0], data: fields.data?.join("\n") }
      }
      const { value, done } = await this.#reader.read()
      if (done) throw new Error("the event stream ended")
      this.#text += this.#decoder.decode(value, { stream: true })
    }
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {})
  }
}
