import { withTimeout } from "../lib/wait.ts"
import type { FromSender, SenderSetup, ToSender } from "./sender-worker.ts"

export class Sender {
  readonly #worker = new Worker(new URL("./sender-worker.ts", import.meta.url).href)
  #waiting: { resolve: (message: FromSender) => void; reject: (error: Error) => void } | null = null

  constructor() {
    this.#worker.onmessage = (event: MessageEvent<FromSender>) => {
      const message = event.data
      const waiting = this.#waiting
      this.#waiting = null
      if (message.type === "error") waiting?.reject(new Error(`sender: ${message.message}`))
      else waiting?.resolve(message)
    }
    this.#worker.onerror = (event) => {
      const waiting = this.#waiting
      this.#waiting = null
      waiting?.reject(new Error(`sender worker failed: ${event.message}`))
    }
  }

  async #ask<T extends FromSender["type"]>(message: ToSender, expect: T, timeoutMs: number): Promise<Extract<FromSender, { type: T }>> {
    const reply = withTimeout(
      new Promise<FromSender>((resolve, reject) => (this.#waiting = { resolve, reject })),
      timeoutMs,
      `sender "${message.type}"`,
    )
    this.#worker.postMessage(message)
    const answer = await reply
    if (answer.type !== expect) throw new Error(`sender answered ${answer.type} to ${message.type}`)
    return answer as Extract<FromSender, { type: T }>
  }

  setup(setup: SenderSetup): Promise<unknown> {
    return this.#ask({ type: "setup", setup }, "ready", 10_000)
  }

  /** Resolves once the sender has sent its last message. */
  go(startAt: number, timeoutMs: number): Promise<Extract<FromSender, { type: "done" }>> {
    return this.#ask({ type: "go", startAt }, "done", timeoutMs)
  }

  async close(): Promise<void> {
    try {
      await this.#ask({ type: "close" }, "closed", 5000)
    } finally {
      this.#worker.terminate()
    }
  }

  terminate(): void {
    this.#worker.terminate()
  }
}
