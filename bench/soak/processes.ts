import { withTimeout } from "../lib/wait.ts"
import type { LoadTally } from "./load-process.ts"

/** What this process started, to be killed if it has to give up. */
export const children: import("bun").Subprocess[] = []

export function killAll(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
}

export async function readPort(server: import("bun").Subprocess, log: string[]): Promise<number> {
  const reader = (server.stdout as ReadableStream<Uint8Array>).getReader()
  const decoder = new TextDecoder()
  let text = ""
  const until = Date.now() + 15_000
  while (Date.now() < until) {
    const { value, done } = await withTimeout(reader.read(), Math.max(1, until - Date.now()), "the broker's address line")
    if (done) break
    text += decoder.decode(value, { stream: true })
    const match = /dsmq listening on tcp:\/\/[^\s,]*:(\d+)/.exec(text)
    if (match !== null) {
      reader.releaseLock()
      void (server.stdout as ReadableStream<Uint8Array>).pipeTo(new WritableStream()).catch(() => {})
      return Number(match[1])
    }
  }
  log.push(text)
  throw new Error(`the broker did not print its address: ${JSON.stringify(text)}`)
}

export async function collectLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder()
  let rest = ""
  for await (const chunk of stream) {
    rest += decoder.decode(chunk, { stream: true })
    let newline: number
    while ((newline = rest.indexOf("\n")) >= 0) {
      const line = rest.slice(0, newline)
      rest = rest.slice(newline + 1)
      if (line.trim() !== "") onLine(line)
    }
  }
  if (rest.trim() !== "") onLine(rest)
}

const ROOT = new URL("../..", import.meta.url).pathname
/** The soak script itself, run again as the load process. */
const SOAK_SCRIPT = new URL("../soak.ts", import.meta.url).pathname
/** Lines of the broker's stderr kept for the report. */
const MAX_LOG_LINES = 200

/** The broker under test, in a child process: its port, and the first lines of its stderr. */
export interface BrokerProcess {
  readonly process: import("bun").Subprocess
  readonly port: number
  readonly log: string[]
}

export async function startBroker(args: readonly string[]): Promise<BrokerProcess> {
  const log: string[] = []
  const child = Bun.spawn(["bun", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" })
  children.push(child)
  const port = await readPort(child, log)
  void collectLines(child.stderr as ReadableStream<Uint8Array>, (line) => {
    if (log.length < MAX_LOG_LINES) log.push(line)
  })
  return { process: child, port, log }
}

/** What the load process says on stdout: its tally, and whether it is ready or done. */
export class LoadProcess {
  readonly process: import("bun").Subprocess
  tally: LoadTally | null = null
  ready = false
  done = false
  readonly #lines: Promise<void>

  constructor(loadArgs: readonly string[]) {
    this.process = Bun.spawn(["bun", "run", SOAK_SCRIPT, "--role", "load", ...loadArgs], { cwd: ROOT, stdout: "pipe", stderr: "inherit" })
    children.push(this.process)
    this.#lines = collectLines(this.process.stdout as ReadableStream<Uint8Array>, (line) => {
      try {
        const message = JSON.parse(line) as { type: string; tally: LoadTally }
        this.tally = message.tally
        if (message.type === "ready") this.ready = true
        if (message.type === "done" || message.type === "timeout") this.done = true
      } catch {
        console.error(`load: ${line}`)
      }
    })
  }

  /** Waits (up to `timeoutMs`) for the load's connections to be open; false if they never were. */
  async untilReady(timeoutMs: number): Promise<boolean> {
    for (const until = Date.now() + timeoutMs; !this.ready && Date.now() < until && this.process.exitCode === null; ) await Bun.sleep(20)
    return this.ready
  }

  /** SIGTERM, then waits (boundedly) for its exit and its last lines. */
  async stop(): Promise<void> {
    this.process.kill("SIGTERM")
    await Promise.race([this.process.exited, Bun.sleep(30_000)])
    await Promise.race([this.#lines, Bun.sleep(1000)])
    if (!this.done) console.error("soak: the load process did not report its end")
  }
}
