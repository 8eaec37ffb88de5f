/**
 * How long, and how much, a connection may take to say who it is. With tokens configured, a
 * connection that has not authenticated may send one first frame of at most
 * HANDSHAKE_FRAME_BYTES, and must authenticate within the auth timeout (counted from accept).
 * Without tokens (or once a WebSocket upgrade authenticated it), the deadline applies only to a
 * first frame that was started and not finished: an idle client that sent nothing costs its slot
 * and nothing more, and upstream clients that connect early and talk later keep working.
 */

import { ProtocolError } from "../protocol/errors.ts"

/** The largest first frame (HELLO or `auth`) a client that must authenticate may send. */
export const HANDSHAKE_FRAME_BYTES = 16 * 1024

const HandshakeState = { waiting: "waiting", done: "done" } as const
type HandshakeState = (typeof HandshakeState)[keyof typeof HandshakeState]

/** What the handshake tells its connection. */
export interface HandshakeEvents {
  /** The deadline passed first (called once): answer `error` and close. */
  expired(error: ProtocolError): void
  /** The handshake is done: frames up to `maxFrameBytes` are accepted from here on. */
  limitRaised(maxFrameBytes: number): void
}

export interface HandshakeLimits {
  readonly authTimeoutMs: number
  readonly maxFrameBytes: number
}

export class Handshake {
  readonly #mustAuthenticate: boolean
  readonly #limits: HandshakeLimits
  readonly #events: HandshakeEvents
  #state: HandshakeState = HandshakeState.waiting
  #timer: Timer | undefined

  /** `limits.authTimeoutMs` 0: no deadline. */
  constructor(mustAuthenticate: boolean, limits: HandshakeLimits, events: HandshakeEvents) {
    this.#mustAuthenticate = mustAuthenticate
    this.#limits = limits
    this.#events = events
    if (mustAuthenticate) this.#arm()
  }

  /** The largest frame the connection may send now. */
  get frameLimit(): number {
    const max = this.#limits.maxFrameBytes
    return this.#mustAuthenticate && this.#state === HandshakeState.waiting ? Math.min(HANDSHAKE_FRAME_BYTES, max) : max
  }

  /** Bytes arrived: without tokens, the first frame's deadline starts now. */
  bytesArrived(): void {
    if (this.#timer === undefined && this.#state === HandshakeState.waiting) this.#arm()
  }

  /** A whole frame arrived: enough, unless the client must still authenticate. */
  frameArrived(): void {
    if (!this.#mustAuthenticate) this.#finish()
  }

  /** The client authenticated (or needs not): for one that had to, no more deadline or first-frame limit. */
  authenticated(): void {
    if (this.#mustAuthenticate) this.#finish()
  }

  /** Nothing more to wait for (a relayed HTTP connection authenticates request by request). */
  done(): void {
    this.#finish()
  }

  #finish(): void {
    if (this.#state === HandshakeState.done) return
    this.#state = HandshakeState.done
    this.cancel()
    if (this.#mustAuthenticate) this.#events.limitRaised(this.#limits.maxFrameBytes)
  }

  cancel(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #arm(): void {
    const timeoutMs = this.#limits.authTimeoutMs
    if (timeoutMs === 0) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      if (this.#state !== HandshakeState.waiting) return
      const within = `within ${timeoutMs / 1000} s`
      this.#events.expired(
        this.#mustAuthenticate
          ? new ProtocolError("unauthorized", `no authentication ${within}`)
          : new ProtocolError("malformed_frame", `the first request did not arrive whole ${within}`),
      )
    }, timeoutMs)
  }
}
