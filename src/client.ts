/**
 * The TypeScript client for the binary protocol (docs/PROTOCOL.md).
 *
 *   const client = await connect({ port: 30008 })
 *   client.put("sensors/temp", "21.5")
 *   for await (const message of await client.subscribe("sensors/temp")) console.log(message.text())
 *
 * Requests are pipelined: each call writes its frame at once (frames written in the same tick
 * go out in one socket write) and returns; replies are matched to requests by request id.
 */
import type { Socket } from "bun"
import type { TopicEntry } from "./broker/catalogue.ts"
import { Outbound } from "./io/outbound.ts"
import { BINARY_VERSION, Flag, MAGIC, Op } from "./protocol/binary/constants.ts"
import { BinaryDecoder } from "./protocol/binary/decoder.ts"
import { FrameWriter } from "./protocol/binary/frame-writer.ts"
import { type BinaryReply, readReply } from "./protocol/binary/reply.ts"
import { ErrorCode, type ErrorName, ProtocolError } from "./protocol/errors.ts"
import { compilePattern, isPattern } from "./topic/pattern.ts"

export interface ConnectOptions {
  /** Default 127.0.0.1. */
  readonly host?: string
  /** Default 30008. */
  readonly port?: number
  /** Further attempts when the server is not there yet (default 10), with exponential back-off. */
  readonly retries?: number
  /** First back-off delay (default 10 ms), doubled each attempt up to `maxRetryDelayMs` (default 1000). */
  readonly retryDelayMs?: number
  readonly maxRetryDelayMs?: number
  /**
   * Errors the server reports for requests nobody awaits (a `put` without acknowledgement).
   * Default: written to stderr.
   */
  readonly onError?: (error: DsmqError) => void
  /**
   * Messages a subscription may hold that the application has not taken yet before the client
   * stops reading from the socket (default 10,000). The server then holds further messages in
   * its store and sends them once the application catches up: nothing is lost.
   */
  readonly subscriptionBuffer?: number
  /**
   * Read through the server's named cursor of this name: reads resume where the last
   * connection with this name stopped (also across restarts of a server with --db).
   */
  readonly cursor?: string
  /**
   * Read the messages after this sequence number (0: everything the server still keeps)
   * instead of those put from now on. Not together with `cursor`.
   */
  readonly from?: number
  /** Ask for each message's put time (`Message.putAt`); off by default, it costs 8 bytes a message. */
  readonly putTimes?: boolean
  /** The token to present in HELLO, when the server requires one. */
  readonly token?: string
  /** TLS: true to verify against the system's CAs, or options (e.g. `{ ca: pem }` for a private CA). */
  readonly tls?: boolean | { readonly ca?: string; readonly rejectUnauthorized?: boolean; readonly serverName?: string }
}

/** An error the server reported, with its stable code (see docs/PROTOCOL.md). */
export class DsmqError extends Error {
  override readonly name = "DsmqError"

  constructor(
    /** Numeric code, as in ERROR frames. */
    readonly code: number,
    /** Stable name of the code, e.g. "bad_field". */
    readonly codeName: string,
    text: string,
    /** True when the server closed the connection after this error. */
    readonly fatal = false,
  ) {
    super(text)
  }
}

/** The connection closed while a request was waiting for its reply. */
export class ConnectionClosedError extends Error {
  override readonly name = "ConnectionClosedError"
}

const codeNames = new Map<number, string>(Object.entries(ErrorCode).map(([name, code]) => [code, name]))
const encoder = new TextEncoder()
const utf8 = new TextDecoder()

/** One page of the topic catalogue (`Client.topics`, `GET /topics`): entries as the broker lists them. */
export interface TopicList {
  readonly topics: readonly TopicEntry[]
  readonly next?: string
}

export class Message {
  constructor(
    readonly seq: number,
    readonly topic: string,
    readonly payload: Uint8Array,
    /** Messages of the topic before this one that retention removed before this reader got them. */
    readonly missed = 0,
    /** When it was put, in milliseconds since the epoch; null unless the client asked for put times. */
    readonly putAt: number | null = null,
  ) {}

  /** The payload decoded as UTF-8. */
  text(): string {
    return utf8.decode(this.payload)
  }
}

export interface PutResult {
  /** Sequence number of the first message; the others follow consecutively. */
  readonly firstSeq: number
  readonly count: number
}

type Payload = string | Uint8Array

interface Pending {
  resolve(reply: BinaryReply): void
  reject(error: Error): void
}

export async function connect(options: ConnectOptions = {}): Promise<Client> {
  if (options.cursor !== undefined && options.from !== undefined) throw new Error("give either cursor or from, not both")
  if (options.from !== undefined && !(Number.isSafeInteger(options.from) && options.from >= 0)) {
    throw new Error(`from must be a sequence number (a whole number from 0), got ${options.from}`)
  }
  const host = options.host ?? "127.0.0.1"
  const port = options.port ?? 30008
  const retries = options.retries ?? 10
  let delay = options.retryDelayMs ?? 10
  for (let attempt = 0; ; attempt++) {
    try {
      const client = new Client(options)
      try {
        await client.open(host, port, options.cursor === undefined ? options.from : options.cursor)
      } catch (error) {
        await client.close()
        throw error
      }
      return client
    } catch (error) {
      const code = (error as { code?: string }).code
      const retryable = code === "ECONNREFUSED" || code === "ECONNRESET" || code === "ETIMEDOUT"
      if (!retryable || attempt >= retries) throw error
      await Bun.sleep(delay)
      delay = Math.min(delay * 2, options.maxRetryDelayMs ?? 1000)
    }
  }
}

export class Client {
  readonly #onError: (error: DsmqError) => void
  readonly #subscriptionBuffer: number
  readonly #token: string | undefined
  readonly #putTimes: boolean
  readonly #tls: ConnectOptions["tls"]
  readonly #writer = new FrameWriter()
  readonly #pending = new Map<number, Pending>()
  readonly #subscriptions = new Map<string, Subscription>()
  readonly #decoder: BinaryDecoder
  #socket: Socket<undefined> | null = null
  #outbound: Outbound | null = null
  #nextRequestId = 1
  #flushScheduled = false
  #maxFrameBytes = 0
  #closedError: Error | null = null
  #readingPaused = false
  readonly #closed = Promise.withResolvers<void>()

  /** Use `connect()`. */
  constructor(options: ConnectOptions) {
    this.#onError = options.onError ?? ((error) => console.error(`dsmq: ${error.codeName}: ${error.message}`))
    this.#subscriptionBuffer = options.subscriptionBuffer ?? 10_000
    this.#token = options.token
    this.#putTimes = options.putTimes ?? false
    this.#tls = options.tls
    this.#decoder = new BinaryDecoder(
      {
        frame: (frame) => this.#onFrame(frame),
        fail: (error) => this.#fail(new DsmqError(error.code, error.errorName, `bad frame from server: ${error.message}`, true)),
      },
      2 ** 31,
    )
  }

  /** Resolves when the connection has closed, for whatever reason. */
  get closed(): Promise<void> {
    return this.#closed.promise
  }

  /** Largest frame the server accepts, from its WELCOME. */
  get maxFrameBytes(): number {
    return this.#maxFrameBytes
  }

  /** @internal Connects, exchanges HELLO / WELCOME, and picks the named cursor (a name) or the start (a seq) if asked. */
  async open(host: string, port: number, start?: string | number): Promise<void> {
    this.#socket = await Bun.connect({
      hostname: host,
      port,
      ...(this.#tls === undefined || this.#tls === false ? {} : { tls: this.#tls === true ? true : { ...this.#tls } }),
      socket: {
        data: (_socket, chunk) => this.#decoder.push(chunk),
        drain: () => this.#outbound?.writeQueued(),
        close: () => this.#fail(new ConnectionClosedError("connection closed")),
        error: (_socket, error) => this.#fail(error),
      },
    })
    this.#outbound = new Outbound(this.#socket)
    const id = this.#write(Op.hello, this.#putTimes ? Flag.putTimes : 0, (writer) => {
      writer.bytes(MAGIC).u8(BINARY_VERSION)
      if (this.#token !== undefined) writer.topic(this.#token)
    })
    const welcome = await this.#await(id)
    if (welcome.op !== Op.welcome) throw unexpected(welcome)
    this.#maxFrameBytes = welcome.maxFrameBytes
    if (start !== undefined) {
      const id =
        typeof start === "string"
          ? this.#write(Op.cursor, 0, (writer) => writer.topic(start))
          : this.#write(Op.from, 0, (writer) => writer.u64(start))
      const ok = await this.#await(id)
      if (ok.op !== Op.ok) throw unexpected(ok)
    }
  }

  /** Puts a message without waiting: errors go to `onError`. Use `putAck` to learn its sequence number. */
  put(topic: string, payload: Payload): void {
    this.#write(Op.put, 0, (writer) => writer.topic(topic).bytes(bytesOf(payload)))
  }

  /** Puts a message and resolves with its sequence number once the server has stored it. */
  async putAck(topic: string, payload: Payload): Promise<number> {
    const id = this.#write(Op.put, Flag.ack, (writer) => writer.topic(topic).bytes(bytesOf(payload)))
    const reply = await this.#await(id)
    if (reply.op !== Op.putAck) throw unexpected(reply)
    return reply.seq
  }

  /** Puts many messages in one frame, stored in one transaction, without waiting. */
  putMany(messages: readonly { topic: string; payload: Payload }[]): void {
    this.#writePutMany(messages, 0)
  }

  /** Puts many messages in one frame and resolves once all are stored. */
  async putManyAck(messages: readonly { topic: string; payload: Payload }[]): Promise<PutResult> {
    const reply = await this.#await(this.#writePutMany(messages, Flag.ack))
    if (reply.op !== Op.putAck) throw unexpected(reply)
    return { firstSeq: reply.seq, count: reply.count }
  }

  /** Where a pushed message of `topic` goes: its exact subscription, else the first pattern that matches. */
  #subscriptionFor(topic: string): Subscription | undefined {
    const exact = this.#subscriptions.get(topic)
    if (exact !== undefined) return exact
    for (const [name, subscription] of this.#subscriptions) if (isPattern(name) && compilePattern(name)(topic)) return subscription
    return undefined
  }

  /** The oldest message on `topic` this connection has not read, or null (a pattern: of the matching topics). */
  get(topic: string): Promise<Message | null> {
    return this.#topicRequest(Op.get, topic)
  }

  /** The newest unread message on `topic` (older ones count as read), or null. */
  getLatest(topic: string): Promise<Message | null> {
    return this.#topicRequest(Op.getLatest, topic)
  }

  /** Like `get`, but waits up to `timeoutMs` for a message to be put; null on timeout. */
  async getWait(topic: string, timeoutMs: number): Promise<Message | null> {
    const timeout = Math.max(0, Math.round(timeoutMs))
    const id = this.#write(Op.getWait, 0, (writer) => writer.u32(timeout).topic(topic))
    return messageOf(await this.#await(id))
  }

  /**
   * Subscribes to `topic`: the result yields every message of the topic this connection has
   * not read yet, then each new one as it is put, in order, until unsubscribed or closed.
   * `topic` may be a pattern (`lab/#`, `lab/+/temp`): then it yields the messages of every
   * matching topic, in put order, each with its `.topic`. A connection gets each message once:
   * where subscriptions overlap, the exact topic's subscription has it, else the pattern
   * subscribed first.
   */
  async subscribe(topic: string): Promise<Subscription> {
    if (this.#subscriptions.has(topic)) throw new Error(`already subscribed to ${JSON.stringify(topic)}`)
    const subscription = new Subscription(topic, this)
    this.#subscriptions.set(topic, subscription)
    try {
      const id = this.#write(Op.subscribe, 0, (writer) => writer.topic(topic))
      const reply = await this.#await(id)
      if (reply.op !== Op.ok) throw unexpected(reply)
    } catch (error) {
      this.#subscriptions.delete(topic)
      throw error
    }
    return subscription
  }

  /** Round trip to the server; resolves once every request sent before it has been handled. */
  async ping(): Promise<void> {
    const reply = await this.#await(this.#write(Op.ping, 0, () => {}))
    if (reply.op !== Op.pong) throw unexpected(reply)
  }

  /**
   * The topics that exist (and this client may read), by name, with their counts: one page of
   * at most `limit`, after the name `after`; `next` is the `after` of the next page, absent on
   * the last. `pattern` narrows the list to the topics it matches.
   */
  async topics(pattern?: string, page: { limit?: number; after?: string } = {}): Promise<TopicList> {
    const id = this.#write(Op.topics, 0, (writer) => {
      writer.u32(page.limit ?? 1000).topic(page.after ?? "")
      if (pattern !== undefined) writer.topic(pattern)
    })
    const reply = await this.#await(id)
    if (reply.op !== Op.topicsReply) throw unexpected(reply)
    return JSON.parse(utf8.decode(reply.body)) as TopicList
  }

  /** The server's counters (see the README). */
  async stats(): Promise<Record<string, unknown>> {
    const reply = await this.#await(this.#write(Op.stats, 0, () => {}))
    if (reply.op !== Op.statsReply) throw unexpected(reply)
    return JSON.parse(utf8.decode(reply.body)) as Record<string, unknown>
  }

  /** Sends what is queued and closes. Pending requests fail; subscriptions end. */
  async close(): Promise<void> {
    if (this.#socket === null) this.#fail(new ConnectionClosedError("closed before connecting"))
    else if (this.#closedError === null) {
      this.#flush()
      this.#socket.end()
    }
    await this.#closed.promise
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /** @internal Called by a Subscription. */
  async unsubscribe(subscription: Subscription): Promise<void> {
    if (this.#subscriptions.get(subscription.topic) !== subscription) return
    this.#subscriptions.delete(subscription.topic)
    subscription.end()
    this.#updateReading()
    if (this.#closedError !== null) return
    const reply = await this.#await(this.#write(Op.unsubscribe, 0, (writer) => writer.topic(subscription.topic)))
    if (reply.op !== Op.ok) throw unexpected(reply)
  }

  /** @internal A subscription's buffer changed size: stop or resume reading from the socket. */
  updateReading(): void {
    this.#updateReading()
  }

  #writePutMany(messages: readonly { topic: string; payload: Payload }[], flags: number): number {
    return this.#write(Op.putMany, flags, (writer) => {
      writer.u32(messages.length)
      for (const { topic, payload } of messages) {
        const bytes = bytesOf(payload)
        writer.topic(topic).u32(bytes.length).bytes(bytes)
      }
    })
  }

  async #topicRequest(op: number, topic: string): Promise<Message | null> {
    return messageOf(await this.#await(this.#write(op, 0, (writer) => writer.topic(topic))))
  }

  /**
   * Appends one request frame to the outgoing buffer (sent at the end of this tick) and returns
   * its request id. A frame the server would refuse (too large, bad topic) is refused here, with
   * nothing sent, instead of costing the connection.
   */
  #write(op: number, flags: number, body: (writer: FrameWriter) => unknown): number {
    if (this.#closedError !== null) throw this.#closedError
    const id = this.#nextRequestId
    const writer = this.#writer.begin(op, flags, id)
    try {
      body(writer)
      if (this.#maxFrameBytes > 0 && writer.frameLength > this.#maxFrameBytes) {
        throw new DsmqError(
          ErrorCode.too_large,
          "too_large",
          `frame of ${writer.frameLength} bytes is larger than the server's maximum of ${this.#maxFrameBytes}`,
        )
      }
    } catch (error) {
      writer.abandon()
      if (error instanceof ProtocolError) throw new DsmqError(error.code, error.errorName, error.message)
      throw error
    }
    writer.end()
    this.#nextRequestId = id === 0xffffffff ? 1 : id + 1
    this.#scheduleFlush()
    return id
  }

  #await(id: number): Promise<BinaryReply> {
    const { promise, resolve, reject } = Promise.withResolvers<BinaryReply>()
    this.#pending.set(id, { resolve, reject })
    this.#scheduleFlush()
    return promise
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    queueMicrotask(() => this.#flush())
  }

  #flush(): void {
    this.#flushScheduled = false
    if (this.#writer.length === 0 || this.#outbound === null || this.#closedError !== null) return
    this.#outbound.send(this.#writer.take())
  }

  #onFrame(frame: Uint8Array): void {
    let reply: BinaryReply
    try {
      reply = readReply(frame)
    } catch (error) {
      const text = error instanceof ProtocolError ? error.message : String(error)
      this.#fail(new DsmqError(ErrorCode.malformed_frame, "malformed_frame", `bad frame from server: ${text}`, true))
      return
    }
    if (reply.op === Op.deliver) {
      const subscription = this.#subscriptionFor(reply.topic)
      // After unsubscribe, pushes already on the wire are dropped.
      subscription?.add(new Message(reply.seq, reply.topic, reply.payload.slice(), reply.missed, reply.putAt))
      this.#updateReading()
      return
    }
    if (reply.op === Op.error) {
      const error = new DsmqError(reply.code, codeNames.get(reply.code) ?? "unknown", reply.text, reply.fatal)
      const pending = this.#pending.get(reply.requestId)
      if (pending !== undefined) {
        this.#pending.delete(reply.requestId)
        pending.reject(error)
      } else {
        this.#onError(error)
      }
      if (reply.fatal) this.#fail(error)
      return
    }
    const pending = this.#pending.get(reply.requestId)
    if (pending === undefined) return
    this.#pending.delete(reply.requestId)
    // MESSAGE payloads are views of the socket's chunk: copy what outlives this call.
    pending.resolve(reply.op === Op.message ? { ...reply, payload: reply.payload.slice() } : reply)
  }

  #updateReading(): void {
    if (this.#socket === null || this.#closedError !== null) return
    let buffered = 0
    for (const subscription of this.#subscriptions.values()) buffered += subscription.buffered
    const shouldPause = buffered >= this.#subscriptionBuffer
    const shouldResume = buffered <= this.#subscriptionBuffer / 2
    if (shouldPause && !this.#readingPaused) {
      this.#readingPaused = true
      this.#socket.pause()
    } else if (shouldResume && this.#readingPaused) {
      this.#readingPaused = false
      this.#socket.resume()
    }
  }

  #fail(error: Error): void {
    if (this.#closedError !== null) return
    this.#closedError =
      error instanceof ConnectionClosedError ? error : new ConnectionClosedError(`connection closed: ${error.message}`, { cause: error })
    this.#decoder.stop()
    this.#outbound?.discard()
    for (const pending of this.#pending.values()) pending.reject(this.#closedError)
    this.#pending.clear()
    for (const subscription of this.#subscriptions.values()) subscription.end()
    this.#subscriptions.clear()
    this.#socket?.end()
    this.#closed.resolve()
  }
}

/**
 * Messages of one subscribed topic, as an async iterator. Ends when unsubscribed or when the
 * connection closes (after the messages already received).
 */
export class Subscription implements AsyncIterableIterator<Message> {
  readonly topic: string
  readonly #client: Client
  #queue: Message[] = []
  #head = 0
  #ended = false
  #waiting: ((result: IteratorResult<Message>) => void) | null = null

  constructor(topic: string, client: Client) {
    this.topic = topic
    this.#client = client
  }

  /** Messages received and not yet taken. */
  get buffered(): number {
    return this.#queue.length - this.#head
  }

  next(): Promise<IteratorResult<Message>> {
    if (this.#head < this.#queue.length) {
      const message = this.#queue[this.#head++]!
      if (this.#head === this.#queue.length) {
        this.#queue = []
        this.#head = 0
      }
      this.#client.updateReading()
      return Promise.resolve({ value: message, done: false })
    }
    if (this.#ended) return Promise.resolve({ value: undefined, done: true })
    return new Promise((resolve) => (this.#waiting = resolve))
  }

  /** Unsubscribes; `for await` calls this when the loop is left early. */
  async return(): Promise<IteratorResult<Message>> {
    await this.unsubscribe()
    return { value: undefined, done: true }
  }

  unsubscribe(): Promise<void> {
    return this.#client.unsubscribe(this)
  }

  [Symbol.asyncIterator](): this {
    return this
  }

  /** @internal */
  add(message: Message): void {
    if (this.#ended) return
    const waiting = this.#waiting
    if (waiting !== null) {
      this.#waiting = null
      waiting({ value: message, done: false })
    } else {
      this.#queue.push(message)
    }
  }

  /** @internal */
  end(): void {
    this.#ended = true
    const waiting = this.#waiting
    this.#waiting = null
    waiting?.({ value: undefined, done: true })
  }
}

function bytesOf(payload: Payload): Uint8Array {
  return typeof payload === "string" ? encoder.encode(payload) : payload
}

function messageOf(reply: BinaryReply): Message | null {
  if (reply.op === Op.empty) return null
  if (reply.op !== Op.message) throw unexpected(reply)
  return new Message(reply.seq, reply.topic, reply.payload, reply.missed, reply.putAt)
}

function unexpected(reply: BinaryReply): Error {
  return new DsmqError(ErrorCode.malformed_frame, "malformed_frame", `unexpected reply opcode 0x${reply.op.toString(16)}`)
}

export type { ErrorName }
