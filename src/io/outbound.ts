/**
 * Bytes on their way to one socket. Bun's `socket.write` does not buffer: it returns how many
 * bytes the kernel took, and the rest must be written again when the socket signals `drain`.
 */
import type { Socket } from "bun"

export class Outbound {
  readonly #socket: Socket<unknown>
  readonly #queued: Uint8Array[] = []
  #queuedBytes = 0

  constructor(socket: Socket<unknown>) {
    this.#socket = socket
  }

  /** Bytes the kernel has not taken yet. */
  get queuedBytes(): number {
    return this.#queuedBytes
  }

  get isIdle(): boolean {
    return this.#queued.length === 0
  }

  /** Writes now if nothing is waiting, else queues behind what is. */
  send(bytes: Uint8Array): void {
    if (bytes.length === 0) return
    this.#queued.push(bytes)
    this.#queuedBytes += bytes.length
    if (this.#queued.length === 1) this.writeQueued()
  }

  /** Writes queued bytes, in one write, until the kernel stops taking them. */
  writeQueued(): void {
    if (this.#queued.length === 0) return
    const bytes = this.#queued.length === 1 ? this.#queued[0]! : Buffer.concat(this.#queued)
    const written = this.#socket.write(bytes)
    if (written < 0) {
      // Closed or shutting down (Bun ends its side itself when the peer's FIN arrives): these
      // bytes can never go out, and no `drain` will come. Closing now makes sure the `close`
      // handler runs: a paused socket in this state was otherwise held open indefinitely.
      this.discard()
      this.#socket.terminate()
      return
    }
    this.#queued.length = 0
    this.#queuedBytes = bytes.length - written
    if (written < bytes.length) this.#queued.push(bytes.subarray(written))
  }

  discard(): void {
    this.#queued.length = 0
    this.#queuedBytes = 0
  }
}
