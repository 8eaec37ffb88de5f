/**
 * A Bun ServerWebSocket as a transport. Bun queues what the kernel does not take (send()
 * returns -1 then) and fires `drain` when it has sent it; the connection keeps that queue
 * under its own cap, far below the point where Bun would drop or close.
 */
import type { ServerWebSocket } from "bun"
import type { EndCause, Output, Transport } from "./transport.ts"

/** Close code for a peer that broke the protocol (RFC 6455: policy violation). */
const POLICY_VIOLATION = 1008
/**
 * Close code when the server stops (RFC 6455 registry: service restart). Not 1000 or 1001:
 * Python's `websockets`, which upstream 1.x clients use, raises ConnectionClosedOK for those
 * inside the client's get(), an exception upstream's clients never saw and do not catch.
 */
const SERVICE_RESTART = 1012
/** A close reason must fit in a control frame: 123 bytes. */
const MAX_REASON_BYTES = 123

export class WebSocketTransport implements Transport {
  readonly #socket: ServerWebSocket<unknown>
  /** The client's address: the socket's, or the real client's when it came through the TCP port's relay. */
  readonly remoteAddress: string
  #closing = false

  constructor(socket: ServerWebSocket<unknown>, remoteAddress: string = socket.remoteAddress) {
    this.#socket = socket
    this.remoteAddress = remoteAddress
  }

  send(output: Output): void {
    if (this.#closing) return
    if (output instanceof Uint8Array) this.#socket.sendBinary(output)
    else for (const text of output) this.#socket.sendText(text)
  }

  sendLent(bytes: Uint8Array, length: number): void {
    // Bun frames (copies) the message before send returns.
    if (!this.#closing) this.#socket.sendBinary(bytes.subarray(0, length))
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

  end(cause: EndCause = { kind: "done" }): void {
    this.#closing = true
    if (cause.kind === "done") this.#socket.close()
    else if (cause.kind === "server-stopping") this.#socket.close(SERVICE_RESTART, "server stopping")
    else this.#socket.close(POLICY_VIOLATION, truncateUtf8(cause.reason, MAX_REASON_BYTES))
  }

  discard(): void {}

  terminate(cause: EndCause): void {
    // A close frame would wait behind the output the client is not reading.
    this.#closing = true
    if (cause.kind === "refused") this.#socket.terminate()
    else this.end(cause)
  }
}

function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = new TextEncoder().encode(text)
  if (bytes.length <= maxBytes) return text
  return `${new TextDecoder().decode(bytes.subarray(0, maxBytes - 3)).replace(/\uFFFD$/, "")}...`
}
