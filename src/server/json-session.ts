/**
 * A connection speaking upstream's JSON protocols (bare objects or header-framed). Requests
 * run strictly in order and a pending get_wait holds back the ones behind it, because the
 * replies carry nothing that would let a client match them otherwise.
 */
import type { Reader } from "../broker/broker.ts"
import { WireProtocol } from "../protocol/detect.ts"
import { ProtocolError } from "../protocol/errors.ts"
import { ackReply, EMPTY_REPLY, errorReply, frameReply, messageReply } from "../protocol/json-reply.ts"
import { parseJsonRequest, type RejectedRequest, type Request } from "../protocol/json-request.ts"
import type { StoredMessage } from "../store/store.ts"
import type { Session, SessionHost } from "./session.ts"

type JsonItem = Request | RejectedRequest

export class JsonSession implements Session<JsonItem> {
  readonly #host: SessionHost
  readonly #reader: Reader
  readonly #protocol: WireProtocol
  /** Replies made since the last take, not yet encoded. */
  #replyText = ""
  #waiting = false

  constructor(host: SessionHost, reader: Reader, protocol: WireProtocol) {
    this.#host = host
    this.#reader = reader
    this.#protocol = protocol
  }

  get holding(): boolean {
    return this.#waiting
  }

  get pendingBytes(): number {
    return this.#replyText.length
  }

  readonly hasBacklog = false

  produceBacklog(): void {}

  parse(frame: Uint8Array): JsonItem {
    return parseJsonRequest(frame)
  }

  /** Parsed JSON holds strings only: nothing shares the chunk's memory. */
  detach(request: JsonItem): JsonItem {
    return request
  }

  takeOutput(): Uint8Array | null {
    if (this.#replyText === "") return null
    const bytes = Buffer.from(this.#replyText)
    this.#replyText = ""
    return bytes
  }

  run(request: JsonItem): void {
    const reader = this.#reader
    switch (request.action) {
      case "put": {
        const seq = this.#host.broker.put(request.topic, Buffer.from(request.message))
        if (request.ack) this.#reply(ackReply(seq))
        return
      }
      case "get":
        this.#replyWith(reader.get(request.topic))
        return
      case "get_latest":
        this.#replyWith(reader.getLatest(request.topic))
        return
      case "get_wait": {
        const message = reader.getWait(request.topic, request.timeoutMs, this.#answerWait)
        if (message !== null) this.#replyWith(message)
        else this.#waiting = true
        return
      }
      case "shutdown":
        if (this.#host.allowShutdown) {
          this.#host.log("shutdown requested by a client")
          this.#host.requestShutdown()
        } else {
          this.#reject(
            new ProtocolError("shutdown_refused", "shutdown is disabled; start the server with --allow-shutdown"),
            false,
          )
        }
        return
      case "rejected":
        this.#reject(request.error, request.expectsReply)
        return
    }
  }

  failStream(error: ProtocolError): void {
    this.#reject(error, false)
  }

  shutdown(): void {
    this.#reader.releaseWaits()
  }

  /** Nothing of its own to drop: the connection closes the reader. */
  close(): void {}

  readonly #answerWait = (message: StoredMessage | null): void => {
    this.#waiting = false
    this.#replyWith(message)
    this.#host.wake()
  }

  #reject(error: ProtocolError, expectsReply: boolean): void {
    this.#reply(errorReply(error))
    // A client that sent no get-like request may not read this reply; closing keeps it from
    // being taken as the answer to a later get.
    if (!expectsReply) this.#host.closeAfterReplies(error)
  }

  #replyWith(message: StoredMessage | null): void {
    this.#reply(message === null ? EMPTY_REPLY : messageReply(message.seq, message.payload))
  }

  #reply(body: string): void {
    this.#replyText += frameReply(this.#protocol, body)
  }
}
