/**
 * How `dsmq get` and `dsmq sub` print messages, and writing them to stdout at the pace the
 * reader of stdout takes them: a slow pipe slows the subscription down (the client stops
 * reading, the server keeps the messages) instead of filling this process's memory.
 */
import type { Message } from "../client.ts"
import { CommandLineError } from "../config/values.ts"

export type OutputFormat = "raw" | "json"

export interface MessageFormat {
  readonly format: OutputFormat
  /** raw: prefix each payload with its topic and a space, as mosquitto_sub -v. */
  readonly verbose: boolean
}

export function outputFormatOf(text: string | undefined): OutputFormat {
  if (text === undefined || text === "raw" || text === "json") return text ?? "raw"
  throw new CommandLineError(`--format must be raw or json, got ${JSON.stringify(text)}`)
}

const encoder = new TextEncoder()
const strictUtf8 = new TextDecoder("utf-8", { fatal: true })
const NEWLINE = new Uint8Array([0x0a])

/**
 * One line for `message`. raw: the payload's bytes as they are (and the topic first with -v);
 * json: {"topic", "seq", "time", "text"}, or "base64" instead of "text" when the payload is
 * not UTF-8. `time` is the put time (ISO 8601, UTC), present when the server sent it.
 */
export function formatMessage(message: Message, how: MessageFormat): Uint8Array {
  if (how.format === "json") {
    let text: string | undefined
    try {
      text = strictUtf8.decode(message.payload)
    } catch {
      text = undefined
    }
    const line = {
      topic: message.topic,
      seq: message.seq,
      ...(message.putAt === null ? {} : { time: new Date(message.putAt).toISOString() }),
      ...(text === undefined ? { base64: Buffer.from(message.payload).toString("base64") } : { text }),
      ...(message.missed > 0 ? { missed: message.missed } : {}),
    }
    return encoder.encode(`${JSON.stringify(line)}\n`)
  }
  const prefix = how.verbose ? encoder.encode(`${message.topic} `) : new Uint8Array()
  return Buffer.concat([prefix, message.payload, NEWLINE])
}

/** stdout with backpressure; a reader that went away (`| head -1`) ends the command quietly. */
export class Stdout {
  #closed = false
  readonly #onClosed: () => void

  constructor(onClosed: () => void) {
    this.#onClosed = onClosed
    process.stdout.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE") throw error
      this.#closed = true
      this.#onClosed()
    })
  }

  get closed(): boolean {
    return this.#closed
  }

  /** Resolves once stdout can take more (at once unless its buffer is full). */
  async write(bytes: Uint8Array): Promise<void> {
    if (this.#closed) return
    if (process.stdout.write(bytes)) return
    await new Promise<void>((resolve) => {
      const done = (): void => {
        process.stdout.off("drain", done)
        process.stdout.off("close", done)
        resolve()
      }
      process.stdout.on("drain", done)
      process.stdout.on("close", done)
    })
  }
}

/** Rows under a header, each column as wide as its widest cell; numbers right-aligned. */
export function table(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = [header, ...rows.map((row) => row.map(String))]
  const widths = header.map((_, column) => Math.max(...cells.map((row) => row[column]!.length)))
  const numeric = header.map((_, column) => rows.length > 0 && rows.every((row) => typeof row[column] === "number"))
  return cells
    .map((row) =>
      row
        .map((cell, column) => (numeric[column] ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n")
}
