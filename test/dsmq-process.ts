/** The `dsmq` command as a user runs it: a child process, its stdin a pipe, its output read as lines. */
import { join } from "node:path"

export const DSMQ = join(import.meta.dir, "..", "src", "cli", "dsmq.ts")

export interface Finished {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs `dsmq ...args` to the end, with `input` on its stdin. */
export async function dsmq(
  args: readonly string[],
  options: { input?: string | Uint8Array; env?: Record<string, string> } = {},
): Promise<Finished> {
  const child = Bun.spawn(["bun", DSMQ, ...args], {
    stdin: options.input === undefined ? "ignore" : new Blob([options.input]),
    stdout: "pipe",
    stderr: "pipe",
    env: { ...cleanEnv(), ...options.env },
  })
  const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()])
  return { code, stdout, stderr }
}

/** This process's environment without the DSMQ_ variables a developer's shell may hold. */
function cleanEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("DSMQ_"))) as Record<string, string>
}

/** A line reader over a stream: each call to `next()` gives the next line, or null at the end. */
export class Lines {
  readonly #reader: { read(): Promise<{ value?: Uint8Array | undefined; done: boolean }> }
  readonly #decoder = new TextDecoder()
  #buffer = ""
  #done = false
  /** Every line read so far, for messages on failure. */
  readonly seen: string[] = []

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader()
  }

  async next(): Promise<string | null> {
    for (;;) {
      const end = this.#buffer.indexOf("\n")
      if (end >= 0) {
        const line = this.#buffer.slice(0, end)
        this.#buffer = this.#buffer.slice(end + 1)
        this.seen.push(line)
        return line
      }
      if (this.#done) return null
      const { value, done } = await this.#reader.read()
      if (done) this.#done = true
      else this.#buffer += this.#decoder.decode(value!, { stream: true })
    }
  }

  /** The next `count` lines; fewer only if the stream ended. */
  async take(count: number): Promise<string[]> {
    const lines: string[] = []
    for (let i = 0; i < count; i++) {
      const line = await this.next()
      if (line === null) break
      lines.push(line)
    }
    return lines
  }

  /** What is left, to the end of the stream. */
  async rest(): Promise<string> {
    let text = this.#buffer
    this.#buffer = ""
    for (;;) {
      if (this.#done) return text
      const { value, done } = await this.#reader.read()
      if (done) this.#done = true
      else text += this.#decoder.decode(value!, { stream: true })
    }
  }
}

/** A long-running `dsmq` (serve, sub, get --wait): its output as lines, stopped on dispose. */
export class Running implements AsyncDisposable {
  readonly process: Bun.Subprocess<"pipe", "pipe", "pipe">
  readonly stdout: Lines
  readonly stderr: Lines

  constructor(args: readonly string[], options: { env?: Record<string, string>; command?: readonly string[] } = {}) {
    this.process = Bun.spawn([...(options.command ?? ["bun", DSMQ]), ...args], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...cleanEnv(), ...options.env },
    })
    this.stdout = new Lines(this.process.stdout)
    this.stderr = new Lines(this.process.stderr)
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.process.kill("SIGKILL")
    await this.process.exited
  }
}

/** `dsmq serve` on free ports, resolved once it has printed its address line. */
export async function serve(
  args: readonly string[] = [],
  command?: readonly string[],
): Promise<Running & { readonly port: number; readonly httpPort: number }> {
  const server = new Running(["serve", "--port", "0", ...args], command === undefined ? {} : { command })
  const line = await server.stdout.next()
  if (line === null) throw new Error(`dsmq serve exited: ${await server.stderr.rest()}`)
  const port = Number(/(?:tcp|tls):\/\/[^ ]+:(\d+)/.exec(line)?.[1])
  const httpPort = Number(/https?:\/\/[^ ]+:(\d+)/.exec(line)?.[1])
  return Object.assign(server, { port, httpPort })
}

/** Resolves once the server counts `count` subscribers (read from /metrics), checking after each answer. */
export async function subscribers(httpPort: number, count: number): Promise<void> {
  for (let attempt = 0; attempt < 5000; attempt++) {
    const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
    if (Number(/^dsmq_subscribers (\d+)$/m.exec(text)?.[1]) >= count) return
  }
  throw new Error(`the server never counted ${count} subscribers`)
}
