/**
 * A connection speaking the binary protocol (docs/PROTOCOL.md). Replies carry request ids, so
 * a pending GET_WAIT does not hold back the requests behind it, and subscriptions push new
 * messages as they are put.
 */
import type { Reader, Subscriber } from "../broker/broker.ts"
import {
  BINARY_VERSION,
  detachRequest,
  FrameWriter,
  Op,
  readRequest,
  writeError,
  type BinaryRequest,
  type RejectedFrame,
} from "../protocol/binary.ts"
import { ProtocolError } from "../protocol/errors.ts"
import type { StoredMessage } from "../store/store.ts"
import type { Session, SessionHost } from "./session.ts"

type BinaryItem = BinaryRequest | RejectedFrame

const encoder = new TextEncoder()

/**
 * One topic this connection subscribed to. While `live`, each put is encoded straight into the
 * reply buffer; once the connection is backed up it stops being live, and the session catches
 * it up from the store (same cursor as GET) when the socket drains.
 */
class Subscription implements Subscriber {
  live = false

  constructor(
    readonly topic: string,
    readonly session: BinarySession,
  ) {}

  onPut(topic: string, seq: number, payload: Uint8Array, putAt: number): void {
    if (this.live) this.session.push(this, topic, seq, payload, putAt)
  }
}

export class BinarySession implements Session<BinaryItem> {
  readonly #host: SessionHost
  readonly #reader: Reader
  readonly #writer = new FrameWriter()
  readonly #subscriptions = new Map<string, Subscription>()
  /** Subscriptions that are not live: they have messages in the store to catch up on. */
  readonly #lagging = new Set<Subscription>()
  #greeted = false

  constructor(host: SessionHost, reader: Reader) {
    this.#host = host
    this.#reader = reader
  }

  readonly holding = false

  get pendingBytes(): number {
    return this.#writer.length
  }

  get hasBacklog(): boolean {
    return this.#lagging.size > 0
  }

  parse(frame: Uint8Array): BinaryItem {
    return readRequest(frame)
  }

  detach(request: BinaryItem): BinaryItem {
    return detachRequest(request)
  }

  takeOutput(): Uint8Array | null {
    return this.#writer.length === 0 ? null : this.#writer.take()
  }

  run(request: BinaryItem): void {
    if (!this.#greeted && request.op !== Op.hello) {
      const why = request.op === "rejected" ? `: ${request.error.message}` : ""
      this.#fail(request.requestId, new ProtocolError("malformed_frame", `the first frame must be a valid HELLO${why}`))
      return
    }
    const writer = this.#writer
    const { requestId } = request
    switch (request.op) {
      case Op.hello:
        this.#hello(requestId, request.version)
        return
      case Op.put: {
        const seq = this.#host.broker.put(request.topic, request.payload)
        if (request.ack) writer.begin(Op.putAck, 0, requestId).u64(seq).u32(1).end()
        return
      }
      case Op.putMany: {
        if (request.entries.length === 0) {
          if (request.ack) writer.begin(Op.putAck, 0, requestId).u64(this.#host.broker.store.lastSeq + 1).u32(0).end()
          return
        }
        const first = this.#host.broker.putMany(request.entries)
        if (request.ack) writer.begin(Op.putAck, 0, requestId).u64(first).u32(request.entries.length).end()
        return
      }
      case Op.get:
        this.#writeMessage(requestId, request.topic, this.#reader.get(request.topic))
        return
      case Op.getLatest:
        this.#writeMessage(requestId, request.topic, this.#reader.getLatest(request.topic))
        return
      case Op.getWait:
        this.#getWait(requestId, request.topic, request.timeoutMs)
        return
      case Op.subscribe:
        this.#subscribe(requestId, request.topic)
        return
      case Op.unsubscribe: {
        const subscription = this.#subscriptions.get(request.topic)
        if (subscription !== undefined) this.#drop(subscription)
        writer.begin(Op.ok, 0, requestId).end()
        return
      }
      case Op.ping:
        writer.begin(Op.pong, 0, requestId).bytes(request.body).end()
        return
      case Op.stats:
        writer.begin(Op.statsReply, 0, requestId).bytes(encoder.encode(JSON.stringify(this.#host.stats()))).end()
        return
      case "rejected":
        if (request.fatal) this.#fail(requestId, request.error)
        else this.#reportError(requestId, request.error)
        return
    }
  }

  /** A live subscription's new message: encoded now unless the connection is backed up. */
  push(subscription: Subscription, topic: string, seq: number, payload: Uint8Array, putAt: number): void {
    if (this.#host.outboundBytes() >= this.#host.limits.maxOutboundBytes) {
      subscription.live = false
      this.#lagging.add(subscription)
      return
    }
    this.#writer.begin(Op.deliver, 0, 0).u64(seq).topic(topic).bytes(payload).end()
    this.#reader.markRead(topic, seq, payload.length, putAt)
    this.#host.wake()
  }

  produceBacklog(budget: number): void {
    const stopAt = this.#writer.length + budget
    for (const subscription of this.#lagging) {
      while (this.#writer.length < stopAt) {
        const message = this.#reader.get(subscription.topic)
        if (message === null) {
          // Nothing left in the store: from here on, each put is pushed as it happens.
          subscription.live = true
          this.#lagging.delete(subscription)
          break
        }
        this.#writer.begin(Op.deliver, 0, 0).u64(message.seq).topic(subscription.topic).bytes(message.payload).end()
      }
      if (this.#writer.length >= stopAt) return
    }
  }

  failStream(error: ProtocolError): void {
    this.#fail(0, error)
  }

  shutdown(): void {
    this.#reader.releaseWaits()
    this.close()
  }

  /** Drops subscriptions; the connection closes the reader. */
  close(): void {
    for (const subscription of [...this.#subscriptions.values()]) this.#drop(subscription)
  }

  #hello(requestId: number, version: number): void {
    if (this.#greeted) {
      this.#reportError(requestId, new ProtocolError("bad_field", "HELLO was already received"))
      return
    }
    if (version !== BINARY_VERSION) {
      this.#fail(
        requestId,
        new ProtocolError("unsupported_version", `protocol version ${version} is not supported; this server speaks ${BINARY_VERSION}`),
      )
      return
    }
    this.#greeted = true
    this.#writer.begin(Op.welcome, 0, requestId).u8(BINARY_VERSION).u32(this.#host.limits.maxFrameBytes).end()
  }

  #getWait(requestId: number, topic: string, timeoutMs: number): void {
    if (this.#reader.isWaiting(topic)) {
      const error = new ProtocolError("bad_field", `a GET_WAIT on ${JSON.stringify(topic)} is already pending`)
      this.#reportError(requestId, error)
      return
    }
    const message = this.#reader.getWait(topic, timeoutMs, (answer) => {
      this.#writeMessage(requestId, topic, answer)
      this.#host.wake()
    })
    if (message !== null) this.#writeMessage(requestId, topic, message)
  }

  #subscribe(requestId: number, topic: string): void {
    if (!this.#subscriptions.has(topic)) {
      const subscription = new Subscription(topic, this)
      this.#subscriptions.set(topic, subscription)
      this.#host.broker.subscribe(topic, subscription)
      // Unread messages come from the store first; it goes live once they are sent.
      this.#lagging.add(subscription)
    }
    this.#writer.begin(Op.ok, 0, requestId).end()
  }

  #drop(subscription: Subscription): void {
    this.#host.broker.unsubscribe(subscription.topic, subscription)
    this.#subscriptions.delete(subscription.topic)
    this.#lagging.delete(subscription)
  }

  #writeMessage(requestId: number, topic: string, message: StoredMessage | null): void {
    if (message === null) this.#writer.begin(Op.empty, 0, requestId).end()
    else this.#writer.begin(Op.message, 0, requestId).u64(message.seq).topic(topic).bytes(message.payload).end()
  }

  /** A non-fatal error: the reply to this request, and the connection goes on. */
  #reportError(requestId: number, error: ProtocolError): void {
    writeError(this.#writer, requestId, error, false)
    this.#host.countError(error.errorName)
  }

  #fail(requestId: number, error: ProtocolError): void {
    writeError(this.#writer, requestId, error, true)
    this.#host.closeAfterReplies(error)
  }
}
