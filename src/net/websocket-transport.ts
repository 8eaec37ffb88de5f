/**
 * A Bun ServerWebSocket as a transport. Bun queues what the kernel does not take (send()
 * returns -1 then) and fires `drain` when it has sent it; the connection keeps that queue
 * under its own cap, far below the point where Bun would drop or close.
 */
import type { ServerWebSocket } from "bun"
import type { Output, Transport } from "./transport.ts"

/** Close code for a peer that broke the protocol (RFC 6455: policy violation). */
const POLICY_VIOLATION = 1008
/** A close reason must fit in a control frame: 123 bytes. */
const MAX_REASON_BYTES = 123

export class WebSocketTransport implements Transport {
  readonly #socket: ServerWebSocket<unknown>
  #closing = false

  constructor(socket: ServerWebSocket<unknown>) {
    this.#socket = socket
  }

  get remoteAddress(): string {
    return this.#socket.remoteAddress
  }

  send(output: Output): void {
    if (this.#closing) return
    if (output instanceof Uint8Array) this.#socket.sendBinary(output)
    else for (const text of output) this.#socket.sendText(text)
  }

  get queuedBytes(): number {
    return this.#socket.getBufferedAmount()
  }

  get isIdle(): boolean {
    return this.#socket.getBufferedAmount() === 0
  }

  writeQueued(): void {}

  pause(): void {
    this.#socket.pause()
  }

  resume(): void {
    this.#socket.resume()
  }

  end(reason?: string): void {
    this.#closing = true
    if (reason === undefined) this.#socket.close()
    else this.#socket.close(POLICY_VIOLATION, truncateUtf8(reason, MAX_REASON_BYTES))
  }

  discard(): void {}
}

function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = new TextEncoder().encode(text)
  if (bytes.length <= maxBytes) return text
  return `${new TextDecoder().decode(bytes.subarray(0, maxBytes - 3)).replace(/\uFFFD$/, "")}...`
}
