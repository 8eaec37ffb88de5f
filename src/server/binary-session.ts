/**
 * A connection speaking the binary protocol (docs/PROTOCOL.md). Replies carry request ids, so
 * a pending GET_WAIT does not hold back the requests behind it, and subscriptions push new
 * messages as they are put.
 */
import type { Principal } from "../auth/auth.ts"
import type { Delivery, Reader, Subscriber, TopicFilter } from "../broker/broker.ts"
import { listTopics } from "../broker/catalogue.ts"
import { BrokerError } from "../broker/errors.ts"
import { BINARY_VERSION, Op } from "../protocol/binary/constants.ts"
import { FrameWriter, type LentBytesSink, writeError, writeMessage } from "../protocol/binary/frame-writer.ts"
import { type BinaryRequest, detachRequest, type RejectedFrame, readRequest } from "../protocol/binary/request.ts"
import { ProtocolError, protocolErrorOf } from "../protocol/errors.ts"
import { isPattern } from "../topic/pattern.ts"
import { LARGE_READ_BYTES } from "./bulk-turn.ts"
import { type ReadAccess, readAccess } from "./read-access.ts"
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

  /** `topic` may be a pattern; `readable` then says which of its topics this client may be sent. */
  constructor(
    readonly topic: string,
    readonly session: BinarySession,
    readonly readable: TopicFilter | undefined,
  ) {}

  onPut(topic: string, seq: number, ordinal: number, payload: Uint8Array, putAt: number): void {
    if (this.live && (this.readable === undefined || this.readable(topic))) this.session.push(this, topic, seq, ordinal, payload, putAt)
  }
}

/** Messages a lagging subscription reads from the store per look-up. */
const CATCH_UP_BATCH = 64

export class BinarySession implements Session<BinaryItem> {
  readonly #host: SessionHost
  /** The connection's reader; after CURSOR a named one, after FROM one that starts at a seq. */
  #reader: Reader
  /** Where #reader came from: the connection's own is closed by the connection, the others here. */
  #readerSource: "connection" | "cursor" | "from" = "connection"
  /** Whether anything has read through #reader yet (CURSOR and FROM must come before). */
  #readStarted = false
  /** HELLO asked for put times on MESSAGE and DELIVER. */
  #putTimes = false
  readonly #writer = new FrameWriter()
  readonly #subscriptions = new Map<string, Subscription>()
  /** Subscriptions that are not live: they have messages in the store to catch up on. */
  readonly #lagging = new Set<Subscription>()
  #greeted = false
  #pendingWaits = 0
  /** The server is stopping: a GET_WAIT is answered at once, with what is there. */
  #stopping = false
  /** Who the client acts as, from its HELLO (or the WebSocket upgrade). */
  #principal: Principal | null = null

  constructor(host: SessionHost, reader: Reader) {
    this.#host = host
    this.#reader = reader
  }

  readonly holding = false

  get pendingBytes(): number {
    return this.#writer.length
  }

  get principalName(): string | null {
    return this.#principal?.name ?? null
  }

  get subscriptionCount(): number {
    return this.#subscriptions.size
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
    if (this.#writer.length === 0) return null
    // What the replies tell of (acknowledged puts, delivered cursors) is durable before they leave.
    this.#host.broker.store.commit()
    return this.#writer.take()
  }

  lendOutput(sink: LentBytesSink): void {
    if (this.#writer.length === 0) return
    // As in takeOutput: durable before the replies leave.
    this.#host.broker.store.commit()
    this.#writer.lend(sink)
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
        this.#hello(requestId, request.version, request.token)
        if (this.#greeted) this.#putTimes = request.putTimes
        return
      case Op.put:
      case Op.putMany:
        if (this.#mayWrite(request)) this.#put(request)
        return
      case Op.get:
      case Op.getLatest:
      case Op.getWait:
      case Op.subscribe: {
        const access = this.#mayRead(requestId, request.topic)
        if (access === null) return
        this.#readStarted = true
        try {
          if (request.op === Op.get) this.#writeMessage(requestId, this.#reader.get(request.topic, access.readable))
          else if (request.op === Op.getLatest) this.#writeMessage(requestId, this.#reader.getLatest(request.topic, access.readable))
          else if (request.op === Op.getWait) this.#getWait(requestId, request.topic, request.timeoutMs, access.readable)
          else this.#subscribe(requestId, request.topic, access.readable)
        } catch (error) {
          // A read past --max-cursors: this request is refused, the connection goes on.
          if (!(error instanceof BrokerError)) throw error
          this.#reportError(requestId, protocolErrorOf(error))
        }
        return
      }
      case Op.cursor:
        this.#replaceReader(requestId, "cursor", () => this.#host.broker.openNamedReader(request.name))
        return
      case Op.from:
        this.#replaceReader(requestId, "from", () => this.#host.broker.openReaderAt(request.seq))
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
      case Op.topics: {
        const page = listTopics(this.#host.broker, { ...request, readable: (topic) => this.#principal!.canRead(topic) })
        const reply = page.next === null ? { topics: page.topics } : page
        writer
          .begin(Op.topicsReply, 0, requestId)
          .bytes(encoder.encode(JSON.stringify(reply)))
          .end()
        return
      }
      case Op.stats:
        writer
          .begin(Op.statsReply, 0, requestId)
          .bytes(encoder.encode(JSON.stringify(this.#host.stats())))
          .end()
        return
      case "rejected":
        if (request.fatal) this.#fail(requestId, request.error)
        else this.#reportError(requestId, request.error)
        return
    }
  }

  readsAtLeast(request: BinaryItem, bytes: number): boolean {
    if (request.op !== Op.get && request.op !== Op.getLatest && request.op !== Op.getWait) return false
    return this.#reader.wouldRead(request.topic, bytes, request.op === Op.getLatest)
  }

  /**
   * A live subscription's new message: encoded now unless the connection is backed up. A large
   * one is read back from the store by catch-up, which is paced across connections (bulk-turn.ts).
   */
  push(subscription: Subscription, topic: string, seq: number, ordinal: number, payload: Uint8Array, putAt: number): void {
    // Already sent through another subscription that matches the same topic (`lab/a` and `lab/#`).
    if (this.#reader.cursor(topic) >= seq) return
    const large = payload.length >= LARGE_READ_BYTES
    if (large || this.#host.outboundBytes() >= this.#host.limits.maxOutboundBytes || !this.#host.mayPush()) {
      subscription.live = false
      this.#lagging.add(subscription)
      if (large) this.#host.wake()
      return
    }
    if (!this.#reader.hasRoomFor(topic)) {
      this.#endSubscription(subscription, topic)
      return
    }
    writeMessage(this.#writer, Op.deliver, 0, seq, 0, topic, payload, this.#putTimes ? putAt : null)
    this.#reader.markRead(topic, seq, ordinal, payload.length, putAt)
    this.#host.wake()
  }

  produceBacklog(budget: number): void {
    const stopAt = this.#writer.length + budget
    for (const subscription of this.#lagging) {
      while (this.#writer.length < stopAt) {
        let messages: Delivery[]
        try {
          // A batch per look-up, as much as the budget leaves room for.
          messages = this.#reader.getMany(subscription.topic, CATCH_UP_BATCH, stopAt - this.#writer.length, subscription.readable)
        } catch (error) {
          if (!(error instanceof BrokerError)) throw error
          this.#endSubscription(subscription, subscription.topic)
          break
        }
        if (messages.length === 0) {
          // Nothing left in the store: from here on, each put is pushed as it happens.
          subscription.live = true
          this.#lagging.delete(subscription)
          break
        }
        for (const message of messages) {
          writeMessage(this.#writer, Op.deliver, 0, message.seq, message.missed, message.topic, message.payload, this.#putTimeOf(message))
        }
      }
      if (this.#writer.length >= stopAt) return
    }
  }

  failStream(error: ProtocolError): void {
    this.#fail(0, error)
  }

  shutdown(): void {
    this.#stopping = true
    this.#reader.releaseWaits()
    this.close()
  }

  /** Drops subscriptions and a named reader; the connection closes its own reader. */
  close(): void {
    for (const subscription of [...this.#subscriptions.values()]) this.#drop(subscription)
    if (this.#readerSource !== "connection") this.#reader.close()
  }

  #put(request: Extract<BinaryRequest, { op: typeof Op.put | typeof Op.putMany }>): void {
    const broker = this.#host.broker
    let first: number
    let count: number
    try {
      if (request.op === Op.put) {
        first = broker.put(request.topic, request.payload)
        count = 1
      } else {
        count = request.entries.length
        first = count === 0 ? broker.store.lastSeq + 1 : broker.putMany(request.entries)
      }
    } catch (error) {
      // A full topic or store (or a bad entry): the frame is refused whole, the connection goes on.
      if (!(error instanceof BrokerError)) throw error
      this.#reportError(request.requestId, protocolErrorOf(error))
      return
    }
    if (request.ack) this.#writer.begin(Op.putAck, 0, request.requestId).u64(first).u32(count).end()
  }

  /**
   * CURSOR: read through a named cursor from now on, resuming where that name last stopped.
   * FROM: read the messages after a seq. Either one, once, before anything is read.
   */
  #replaceReader(requestId: number, source: "cursor" | "from", open: () => Reader): void {
    if (this.#readStarted || this.#readerSource !== "connection") {
      const error = new ProtocolError("bad_field", "CURSOR or FROM must come before any read or subscription, once")
      this.#reportError(requestId, error)
      return
    }
    try {
      const replacement = open()
      this.#reader.close()
      this.#reader = replacement
      this.#readerSource = source
    } catch (error) {
      if (!(error instanceof BrokerError)) throw error
      this.#reportError(requestId, protocolErrorOf(error))
      return
    }
    this.#writer.begin(Op.ok, 0, requestId).end()
  }

  /** What this client may read of `topic` (a pattern: of its topics), or null after reporting `forbidden`. */
  #mayRead(requestId: number, topic: string): ReadAccess | null {
    const access = readAccess(this.#principal!, topic)
    if (access.allowed) return access
    const what = isPattern(topic) ? "any topic matching" : "topic"
    this.#reportError(requestId, new ProtocolError("forbidden", `${this.#principal!.name} may not read ${what} ${JSON.stringify(topic)}`))
    return null
  }

  /** A PUT_MANY is refused whole if any of its topics may not be written. */
  #mayWrite(request: Extract<BinaryRequest, { op: typeof Op.put | typeof Op.putMany }>): boolean {
    // No array or closure per put: this runs for every frame on the put path.
    const principal = this.#principal!
    let denied: string | undefined
    if (request.op === Op.put) {
      if (!principal.canWrite(request.topic)) denied = request.topic
    } else {
      for (const entry of request.entries) {
        if (principal.canWrite(entry.topic)) continue
        denied = entry.topic
        break
      }
    }
    if (denied === undefined) return true
    this.#reportError(
      request.requestId,
      new ProtocolError("forbidden", `${this.#principal!.name} may not write topic ${JSON.stringify(denied)}`),
    )
    return false
  }

  #hello(requestId: number, version: number, token: string | null): void {
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
    const principal = token === null ? (this.#host.authenticated ?? this.#host.auth.initial) : this.#host.auth.authenticate(token)
    if (principal === null) {
      this.#fail(requestId, new ProtocolError("unauthorized", token === null ? "a token is required in HELLO" : "the token is not valid"))
      return
    }
    this.#principal = principal
    this.#greeted = true
    this.#host.handshakeDone()
    this.#writer.begin(Op.welcome, 0, requestId).u8(BINARY_VERSION).u32(this.#host.limits.maxFrameBytes).end()
  }

  #getWait(requestId: number, topic: string, timeoutMs: number, readable: TopicFilter | undefined): void {
    if (this.#stopping) {
      this.#writeMessage(requestId, this.#reader.get(topic, readable))
      return
    }
    if (this.#reader.isWaiting(topic)) {
      const error = new ProtocolError("bad_field", `a GET_WAIT on ${JSON.stringify(topic)} is already pending`)
      this.#reportError(requestId, error)
      return
    }
    if (this.#pendingWaits >= this.#host.limits.maxPendingWaits) {
      const limit = this.#host.limits.maxPendingWaits
      this.#reportError(requestId, new ProtocolError("limit_exceeded", `a connection may have at most ${limit} GET_WAITs pending`))
      return
    }
    this.#pendingWaits++
    const message = this.#reader.getWait(topic, timeoutMs, this.#answerWait, readable, requestId)
    if (message !== null) {
      this.#pendingWaits--
      this.#writeMessage(requestId, message)
    }
  }

  /** A GET_WAIT's answer; the wait's tag is its request id. */
  readonly #answerWait = (answer: Delivery | null, requestId: number): void => {
    this.#pendingWaits--
    this.#writeMessage(requestId, answer)
    this.#host.wake()
  }

  #subscribe(requestId: number, topic: string, readable: TopicFilter | undefined): void {
    if (!this.#subscriptions.has(topic) && this.#subscriptions.size >= this.#host.limits.maxSubscriptions) {
      const limit = this.#host.limits.maxSubscriptions
      this.#reportError(requestId, new ProtocolError("limit_exceeded", `a connection may hold at most ${limit} subscriptions`))
      return
    }
    if (!this.#subscriptions.has(topic)) {
      const subscription = new Subscription(topic, this, readable)
      this.#subscriptions.set(topic, subscription)
      this.#host.broker.subscribe(topic, subscription)
      // Unread messages come from the store first; it goes live once they are sent.
      this.#lagging.add(subscription)
    }
    this.#writer.begin(Op.ok, 0, requestId).end()
  }

  /**
   * A subscription whose next message is of one topic more than the connection may keep a
   * cursor for: it ends, with an ERROR (request id 0) that names it, rather than growing.
   */
  #endSubscription(subscription: Subscription, topic: string): void {
    this.#drop(subscription)
    const limit = this.#host.broker.maxCursors
    const text = `subscription ${JSON.stringify(subscription.topic)} ended: a message of ${JSON.stringify(topic)} would keep cursors for more than ${limit} topics on this connection (--max-cursors)`
    this.#reportError(0, new ProtocolError("too_many_cursors", text))
    this.#host.wake()
  }

  #drop(subscription: Subscription): void {
    this.#host.broker.unsubscribe(subscription.topic, subscription)
    this.#subscriptions.delete(subscription.topic)
    this.#lagging.delete(subscription)
  }

  /** MESSAGE names the message's own topic: for a read of a pattern, the matching topic it came from. */
  #writeMessage(requestId: number, message: Delivery | null): void {
    if (message === null) this.#writer.begin(Op.empty, 0, requestId).end()
    else
      writeMessage(
        this.#writer,
        Op.message,
        requestId,
        message.seq,
        message.missed,
        message.topic,
        message.payload,
        this.#putTimeOf(message),
      )
  }

  #putTimeOf(message: Delivery): number | null {
    return this.#putTimes ? message.putAt : null
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
