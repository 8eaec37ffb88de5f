import type { Socket } from "bun"
import { Outbound } from "../io/outbound.ts"
import type { Output, Transport } from "./transport.ts"

const utf8 = new TextEncoder()

export class TcpTransport implements Transport {
  readonly #socket: Socket<unknown>
  readonly #outbound: Outbound

  constructor(socket: Socket<unknown>) {
    this.#socket = socket
    this.#outbound = new Outbound(socket)
  }

  get remoteAddress(): string {
    return this.#socket.remoteAddress
  }

  send(output: Output): void {
    this.#outbound.send(output instanceof Uint8Array ? output : utf8.encode(output.join("")))
  }

  sendLent(bytes: Uint8Array, length: number): void {
    this.#outbound.sendLent(bytes, length)
  }

  get queuedBytes(): number {
    return this.#outbound.queuedBytes
  }

  get isIdle(): boolean {
    return this.#outbound.isIdle
  }

  writeQueued(): void {
    this.#outbound.writeQueued()
  }

  pause(): void {
    this.#socket.pause()
  }

  resume(): void {
    this.#socket.resume()
  }

  end(): void {
    this.#socket.end()
  }

  discard(): void {
    this.#outbound.discard()
  }

  terminate(): void {
    this.#outbound.discard()
    this.#socket.terminate()
  }
}
