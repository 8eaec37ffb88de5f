/**
 * Where a connection is in its life, as one state instead of a cluster of flags, and the
 * moves allowed between states. Each state says whether bytes are read, decoded and run.
 */
export const Lifecycle = {
  /** Reading, decoding and running requests. */
  open: "open",
  /** The client sent its last byte (a TCP half-close): decode and run all it sent, reply, then end. */
  inputEnded: "input-ended",
  /** The server is stopping (or the input is all run): run what was decoded, reply, then end. */
  draining: "draining",
  /** The stream cannot go on (bad bytes, a shutdown request): run nothing more, send the replies, end. */
  closing: "closing",
  /** Every reply is out and the transport was told to end: waiting for it to close. */
  ended: "ended",
  closed: "closed",
} as const
export type Lifecycle = (typeof Lifecycle)[keyof typeof Lifecycle]

const NEXT_STATES: Readonly<Record<Lifecycle, readonly Lifecycle[]>> = {
  [Lifecycle.open]: [Lifecycle.inputEnded, Lifecycle.draining, Lifecycle.closing, Lifecycle.ended, Lifecycle.closed],
  [Lifecycle.inputEnded]: [Lifecycle.draining, Lifecycle.closing, Lifecycle.ended, Lifecycle.closed],
  [Lifecycle.draining]: [Lifecycle.closing, Lifecycle.ended, Lifecycle.closed],
  [Lifecycle.closing]: [Lifecycle.ended, Lifecycle.closed],
  [Lifecycle.ended]: [Lifecycle.closed],
  [Lifecycle.closed]: [],
}

export class ConnectionLifecycle {
  #state: Lifecycle = Lifecycle.open

  get state(): Lifecycle {
    return this.#state
  }

  /** Moves to `next` if that move is allowed from here; false, and no change, otherwise. */
  moveTo(next: Lifecycle): boolean {
    if (!NEXT_STATES[this.#state].includes(next)) return false
    this.#state = next
    return true
  }

  /** Whether bytes from the peer are taken. */
  get reads(): boolean {
    return this.#state === Lifecycle.open
  }

  /** Whether received bytes are decoded into requests. */
  get decodes(): boolean {
    return this.#state === Lifecycle.open || this.#state === Lifecycle.inputEnded
  }

  /** Whether decoded requests run. */
  get runs(): boolean {
    return this.decodes || this.#state === Lifecycle.draining
  }

  get isClosed(): boolean {
    return this.#state === Lifecycle.closed
  }
}
