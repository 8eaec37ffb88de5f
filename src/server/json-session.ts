/**
 * A connection speaking upstream's JSON protocols: bare objects or header-framed on TCP, or
 * one object per WebSocket text message (upstream 1.x). Requests run strictly in order and a
 * pending get_wait holds back the ones behind it, because the replies carry nothing that would
 * let a client match them otherwise.
 */
import type { Principal } from "../auth/auth.ts"
import type { Delivery, Reader, TopicFilter } from "../broker/broker.ts"
import { BrokerError } from "../broker/errors.ts"
import type { Output } from "../net/transport.ts"
import { WireProtocol } from "../protocol/detect.ts"
import { ProtocolError, protocolErrorOf } from "../protocol/errors.ts"
import {
  ackReply,
  EMPTY_REPLY,
  errorReply,
  frameReply,
  messageReply,
  UPSTREAM_EMPTY_REPLY,
  upstreamMessageReply,
} from "../protocol/json-reply.ts"
import { parseJsonRequest, type RejectedRequest, type Request } from "../protocol/json-request.ts"
import { isPattern } from "../topic/pattern.ts"
import { readAccess } from "./read-access.ts"
import type { Session, SessionHost } from "./session.ts"

type JsonItem = Request | RejectedRequest
type JsonProtocol = typeof WireProtocol.jsonStream | typeof WireProtocol.jsonHeader | typeof WireProtocol.webSocketJson

export class JsonSession implements Session<JsonItem> {
  readonly #host: SessionHost
  readonly #reader: Reader
  readonly #protocol: JsonProtocol
  /** WebSocket replies go out one message each, exactly as upstream 1.x writes them. */
  readonly #webSocket: boolean
  /** Replies made since the last take. */
  #replies: string[] = []
  #pendingBytes = 0
  /** The topic or pattern of the get_wait that holds the requests behind it; null when none does. */
  #waitingFor: string | null = null
  /** The server is stopping: a get_wait is answered at once, with what is there. */
  #stopping = false
  /** Who the client acts as; null until it authenticates, when tokens are required. */
  #principal: Principal | null

  constructor(host: SessionHost, reader: Reader, protocol: JsonProtocol) {
    this.#host = host
    this.#reader = reader
    this.#protocol = protocol
    this.#webSocket = protocol === WireProtocol.webSocketJson
    this.#principal = host.authenticated ?? host.auth.initialLegacy
    // No tokens, or anonymous legacy access: the client has nothing to prove.
    if (this.#principal !== null) host.handshakeDone()
  }

  get holding(): boolean {
    return this.#waitingFor !== null
  }

  get pendingBytes(): number {
    return this.#pendingBytes
  }

  readonly hasBacklog = false
  /** Upstream's JSON has no subscriptions: every read is a request. */
  readonly subscriptionCount = 0

  get principalName(): string | null {
    return this.#principal?.name ?? null
  }

  produceBacklog(): void {}

  parse(frame: Uint8Array | string): JsonItem {
    return parseJsonRequest(frame)
  }

  /** Parsed JSON holds strings only: nothing shares the chunk's memory. */
  detach(request: JsonItem): JsonItem {
    return request
  }

  takeOutput(): Output | null {
    if (this.#replies.length === 0) return null
    // What the replies tell of (puts, delivered cursors) is durable before they leave.
    this.#host.broker.store.commit()
    const replies = this.#replies
    this.#replies = []
    this.#pendingBytes = 0
    return this.#webSocket ? replies : Buffer.from(replies.length === 1 ? replies[0]! : replies.join(""))
  }

  run(request: JsonItem): void {
    if (request.action === "rejected") {
      this.#reject(request.error, request.expectsReply)
      return
    }
    if (request.action === "auth") {
      this.#authenticate(request.token)
      return
    }
    const principal = this.#principal
    if (principal === null) {
      this.#reject(new ProtocolError("unauthorized", 'authenticate first: send {"action": "auth", "token": ...}'), false)
      return
    }
    const access = request.action === "put" || request.action === "shutdown" ? null : readAccess(principal, request.topic)
    if (request.action !== "shutdown" && !(request.action === "put" ? principal.canWrite(request.topic) : access!.allowed)) {
      const what = request.action === "put" ? "write" : "read"
      const error = new ProtocolError("forbidden", `${principal.name} may not ${what} topic ${JSON.stringify(request.topic)}`)
      this.#reject(error, request.action !== "put" || request.ack)
      return
    }
    switch (request.action) {
      case "put": {
        let seq: number
        try {
          seq = this.#host.broker.put(request.topic, Buffer.from(request.message))
        } catch (error) {
          // A full topic or store: refused like any other bad put.
          if (!(error instanceof BrokerError)) throw error
          this.#reject(protocolErrorOf(error), request.ack)
          return
        }
        if (request.ack) this.#reply(ackReply(seq))
        return
      }
      case "get":
      case "get_latest":
      case "get_wait":
        try {
          this.#read(request.action, request.topic, request.action === "get_wait" ? request.timeoutMs : 0, access!.readable)
        } catch (error) {
          // A read past --max-cursors: answered with the error, the connection goes on.
          if (!(error instanceof BrokerError)) throw error
          this.#reject(protocolErrorOf(error), true)
        }
        return
      case "shutdown":
        if (this.#host.allowShutdown) {
          this.#host.log("shutdown requested by a client")
          this.#host.requestShutdown()
        } else {
          this.#reject(new ProtocolError("shutdown_refused", "shutdown is disabled; start the server with --allow-shutdown"), false)
        }
        return
    }
  }

  readsAtLeast(request: JsonItem, bytes: number): boolean {
    if (request.action !== "get" && request.action !== "get_latest" && request.action !== "get_wait") return false
    return this.#reader.wouldRead(request.topic, bytes, request.action === "get_latest")
  }

  #read(action: "get" | "get_latest" | "get_wait", topic: string, timeoutMs: number, readable: TopicFilter | undefined): void {
    const reader = this.#reader
    if (action === "get_latest") this.#replyWith(reader.getLatest(topic, readable), topic)
    else if (action === "get" || this.#stopping) this.#replyWith(reader.get(topic, readable), topic)
    else {
      const message = reader.getWait(topic, timeoutMs, this.#answerWait, readable)
      if (message !== null) this.#replyWith(message, topic)
      else this.#waitingFor = topic
    }
  }

  #authenticate(token: string): void {
    const principal = this.#host.auth.authenticate(token)
    if (principal === null) {
      this.#reject(new ProtocolError("unauthorized", "the token is not valid"), false)
      return
    }
    this.#principal = principal
    this.#host.handshakeDone()
    this.#reply(`{"message":"","auth":${JSON.stringify(principal.name)}}`)
  }

  failStream(error: ProtocolError): void {
    this.#reject(error, false)
  }

  shutdown(): void {
    this.#stopping = true
    this.#reader.releaseWaits()
  }

  /** Nothing of its own to drop: the connection closes the reader. */
  close(): void {}

  readonly #answerWait = (message: Delivery | null): void => {
    const asked = this.#waitingFor
    this.#waitingFor = null
    this.#replyWith(message, asked)
    this.#host.wake()
  }

  #reject(error: ProtocolError, expectsReply: boolean): void {
    this.#reply(errorReply(error))
    // A client that sent no get-like request may not read this reply; closing keeps it from
    // being taken as the answer to a later get.
    if (expectsReply) this.#host.countError(error.errorName)
    else this.#host.closeAfterReplies(error)
  }

  /** A message, naming its topic when the read was of a pattern (the message's topic is not the name asked for). */
  #replyWith(message: Delivery | null, asked: string | null = null): void {
    const topic = message !== null && asked !== null && isPattern(asked) ? message.topic : null
    if (this.#webSocket) this.#reply(message === null ? UPSTREAM_EMPTY_REPLY : upstreamMessageReply(message.payload, topic))
    else this.#reply(message === null ? EMPTY_REPLY : messageReply(message.seq, message.payload, message.missed, topic))
  }

  #reply(body: string): void {
    const framed = this.#webSocket ? body : frameReply(this.#protocol, body)
    this.#replies.push(framed)
    this.#pendingBytes += framed.length
  }
}
