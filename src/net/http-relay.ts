/**
 * HTTP on the TCP port: the bytes of a connection that starts like an HTTP request are piped,
 * unchanged and in order, to the server's internal HTTP listener (Bun.serve on a loopback port
 * only the server uses), and its answer back, so that WebSocket upgrades, the HTTP API and
 * event streams are served by Bun's own HTTP and WebSocket code, exactly as on the HTTP port.
 *
 * Backpressure holds on both sides: past RELAY_HIGH_WATER bytes waiting for one side, reading
 * from the other pauses until they are taken. A FIN from the client half-closes the internal
 * socket; a close on either side closes the other. The internal listener learns who the real
 * client is from the relay's local port (RelayPeers), so limits, logs and metrics see the
 * client, not the hop.
 */
import type { Socket } from "bun"
import { Outbound } from "../io/outbound.ts"
import type { Transport } from "./transport.ts"

/** Bytes waiting for one side before reading from the other pauses. */
export const RELAY_HIGH_WATER = 256 * 1024

/** Who a relayed connection really is, as the internal listener needs to know. */
export interface RelayPeer {
  readonly remoteAddress: string
  /** Called when the internal listener opens a WebSocket for this client: that connection takes this one's place. */
  readonly onWebSocket: () => void
}

/** The relays' local ports, as the internal listener sees them as its clients' ports. */
export class RelayPeers {
  readonly #byPort = new Map<number, RelayPeer>()

  add(localPort: number, peer: RelayPeer): void {
    this.#byPort.set(localPort, peer)
  }

  remove(localPort: number): void {
    this.#byPort.delete(localPort)
  }

  /** The client behind an internal connection from `port`, or undefined if none of ours. */
  find(port: number | undefined): RelayPeer | undefined {
    return port === undefined ? undefined : this.#byPort.get(port)
  }
}

/** Where the internal HTTP listener is. */
export interface RelayTarget {
  /** A function: the listener starts after the connections' context is made. */
  readonly port: () => number
  readonly peers: RelayPeers
}

const RelayState = { connecting: "connecting", open: "open", closed: "closed" } as const
type RelayState = (typeof RelayState)[keyof typeof RelayState]

export class HttpRelay {
  readonly #client: Transport
  readonly #target: RelayTarget
  readonly #peer: RelayPeer
  #state: RelayState = RelayState.connecting
  #internal: Socket<undefined> | null = null
  #toInternal: Outbound | null = null
  /** Client bytes that arrived before the internal socket was open. */
  readonly #early: Uint8Array[] = []
  #earlyBytes = 0
  #clientEnded = false
  /** The internal side is done: end the client once what is queued for it is out. */
  #endClientWhenIdle = false
  #clientPaused = false
  #internalPaused = false
  #localPort: number | undefined
  /** Told when either side moved bytes, for the idle timeout. */
  readonly #onActivity: () => void

  constructor(client: Transport, target: RelayTarget, peer: RelayPeer, onActivity: () => void) {
    this.#client = client
    this.#target = target
    this.#peer = peer
    this.#onActivity = onActivity
    void this.#connect()
  }

  /** Bytes held for this client: not yet taken by the internal listener, or by the client. */
  get bufferedBytes(): number {
    return this.#earlyBytes + (this.#toInternal?.queuedBytes ?? 0) + this.#client.queuedBytes
  }

  /** Bytes from the client, for the internal listener. */
  fromClient(chunk: Uint8Array): void {
    if (this.#state === RelayState.closed) return
    this.#onActivity()
    // A copy: Bun may reuse a chunk's memory once the handler returns, and these may wait.
    const bytes = new Uint8Array(chunk)
    if (this.#toInternal === null) {
      this.#early.push(bytes)
      this.#earlyBytes += bytes.length
    } else this.#toInternal.send(bytes)
    this.#pauseClientIfFull()
  }

  /** The client took what was queued for it: send the rest, and read the internal side again once it has room. */
  clientDrained(): void {
    this.#client.writeQueued()
    if (this.#endClientWhenIdle && this.#client.isIdle) this.#client.end()
    if (this.#internalPaused && this.#client.queuedBytes < RELAY_HIGH_WATER) {
      this.#internalPaused = false
      this.#internal?.resume()
    }
  }

  /** The client's FIN: the internal listener gets it too, once what came before is through. */
  clientEnded(): void {
    this.#clientEnded = true
    if (this.#toInternal?.isIdle) this.#internal?.shutdown()
  }

  /** The client is gone: so is the internal connection. */
  clientClosed(): void {
    if (this.#state === RelayState.closed) return
    this.#state = RelayState.closed
    this.#early.length = 0
    this.#earlyBytes = 0
    this.#toInternal?.discard()
    this.#internal?.end()
    this.#forget()
  }

  async #connect(): Promise<void> {
    try {
      await Bun.connect({
        hostname: "127.0.0.1",
        port: this.#target.port(),
        allowHalfOpen: true,
        socket: {
          open: (socket) => this.#opened(socket),
          data: (_socket, chunk) => this.#fromInternal(chunk),
          drain: () => this.#internalDrained(),
          end: () => this.#endClient(),
          close: () => this.#internalClosed(),
          error: () => this.#internalClosed(),
        },
      })
    } catch {
      this.#internalClosed()
    }
  }

  #opened(socket: Socket<undefined>): void {
    if (this.#state === RelayState.closed) {
      socket.end()
      return
    }
    this.#state = RelayState.open
    this.#internal = socket
    this.#localPort = socket.localPort
    this.#target.peers.add(socket.localPort, this.#peer)
    this.#toInternal = new Outbound(socket as Socket<unknown>)
    for (const bytes of this.#early.splice(0)) this.#toInternal.send(bytes)
    this.#earlyBytes = 0
    if (this.#clientEnded && this.#toInternal.isIdle) socket.shutdown()
    this.#pauseClientIfFull()
  }

  #fromInternal(chunk: Uint8Array): void {
    this.#onActivity()
    this.#client.send(new Uint8Array(chunk))
    if (!this.#internalPaused && this.#client.queuedBytes >= RELAY_HIGH_WATER) {
      this.#internalPaused = true
      this.#internal?.pause()
    }
  }

  #internalDrained(): void {
    this.#toInternal?.writeQueued()
    if (this.#toInternal?.isIdle && this.#clientEnded) this.#internal?.shutdown()
    if (this.#clientPaused && (this.#toInternal?.queuedBytes ?? 0) < RELAY_HIGH_WATER) {
      this.#clientPaused = false
      this.#client.resume()
    }
  }

  #internalClosed(): void {
    if (this.#state === RelayState.closed) return
    this.#state = RelayState.closed
    this.#forget()
    this.#endClient()
  }

  /** After what the internal listener already sent: at once if the client took it all, else on its drain. */
  #endClient(): void {
    if (this.#client.isIdle) this.#client.end()
    else this.#endClientWhenIdle = true
  }

  #pauseClientIfFull(): void {
    if (!this.#clientPaused && this.#earlyBytes + (this.#toInternal?.queuedBytes ?? 0) >= RELAY_HIGH_WATER) {
      this.#clientPaused = true
      this.#client.pause()
    }
  }

  #forget(): void {
    if (this.#localPort !== undefined) this.#target.peers.remove(this.#localPort)
  }
}
