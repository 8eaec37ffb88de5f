/**
 * What a connection writes through: a TCP socket or a WebSocket. Both take output, report
 * how much of it still waits for the peer, and can stop reading from the peer.
 */

/**
 * Why the server ends a connection: its work is done, the server is stopping, or the client
 * broke the stream (with the reason). Transports that can say so tell the client (WebSocket
 * close codes); a TCP socket just closes.
 */
export type EndCause =
  | { readonly kind: "done" }
  | { readonly kind: "server-stopping" }
  | { readonly kind: "refused"; readonly reason: string }

/** Bytes for stream transports; one string per message for WebSocket text replies. */
export type Output = Uint8Array | readonly string[]

export interface Transport {
  readonly remoteAddress: string
  /** Sends now, or queues behind what waits; never drops. */
  send(output: Output): void
  /** Sends the first `length` bytes of `bytes`, which are reused once this returns (what must wait is copied). */
  sendLent(bytes: Uint8Array, length: number): void
  /** Output the peer has not taken yet, in bytes. */
  readonly queuedBytes: number
  readonly isIdle: boolean
  /** The peer can take more (the `drain` event): send what is queued. */
  writeQueued(): void
  /** Stop and restart reading from the peer, so it feels backpressure. */
  pause(): void
  resume(): void
  /** Closes; the connection calls it once what is queued has been sent. */
  end(cause?: EndCause): void
  /** The connection is gone: drop what is queued. */
  discard(): void
  /** Closes now, dropping what is queued (a client that does not read its replies). */
  terminate(cause: EndCause): void
}
