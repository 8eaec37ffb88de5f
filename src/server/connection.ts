/**
 * One client connection on the TCP port: detects its protocol, decodes requests, runs them in
 * arrival order against the broker, and writes the replies back in the same order.
 *
 * Flow control, so one client can never make the server buffer without bound:
 * - requests are run one after another; a pending get_wait holds back the ones behind it;
 * - replies made while handling one chunk go out in one write; what the kernel does not take
 *   waits for `drain`, and no further request is run while more than `maxOutboundBytes` wait;
 * - while requests are held back, the socket is paused, so the client feels TCP backpressure.
 */
import type { Socket } from "bun"
import type { Broker, Reader } from "../broker/broker.ts"
import type { StoredMessage } from "../store/store.ts"
import { ByteBuffer } from "../protocol/byte-buffer.ts"
import type { FrameDecoder, FrameSink } from "../protocol/decoder.ts"
import { detectProtocol, WireProtocol } from "../protocol/detect.ts"
import { ProtocolError } from "../protocol/errors.ts"
import { JsonHeaderDecoder } from "../protocol/json-header.ts"
import { ackReply, EMPTY_REPLY, errorReply, frameReply, messageReply } from "../protocol/json-reply.ts"
import { parseJsonRequest, type RejectedRequest, type Request } from "../protocol/json-request.ts"
import { JsonStreamDecoder } from "../protocol/json-stream.ts"

export interface ConnectionLimits {
  /** Largest request accepted, in bytes (a JSON object, or a header-framed body). */
  readonly maxFrameBytes: number
  /** Reply bytes that may wait for a slow reader before the server stops running its requests. */
  readonly maxOutboundBytes: number
}

/** What a connection needs from the server that owns it. */
export interface ConnectionContext {
  readonly broker: Broker
  readonly limits: ConnectionLimits
  readonly allowShutdown: boolean
  requestShutdown(): void
  log(line: string): void
}

type InboxItem = Request | RejectedRequest

export class Connection implements FrameSink {
  readonly #socket: Socket<Connection>
  readonly #context: ConnectionContext
  readonly #reader: Reader
  #protocol: WireProtocol | null = null
  #decoder: FrameDecoder | null = null
  /** First bytes of a connection whose protocol is not decided yet. */
  readonly #undecided = new ByteBuffer()
  /** Decoded requests not yet run, oldest at #inboxHead. */
  #inbox: InboxItem[] = []
  #inboxHead = 0
  #waiting = false
  #paused = false
  /** Replies made since the last write, not yet encoded. */
  #replyText = ""
  /** Encoded replies the kernel has not taken yet. */
  readonly #unsent: Uint8Array[] = []
  #unsentBytes = 0
  #closeWhenFlushed = false
  #ended = false
  #closed = false

  constructor(socket: Socket<Connection>, context: ConnectionContext) {
    this.#socket = socket
    this.#context = context
    this.#reader = context.broker.openReader()
  }

  get protocol(): WireProtocol | null {
    return this.#protocol
  }

  /** Bytes this connection holds: an unfinished request plus replies the client has not taken. */
  get bufferedBytes(): number {
    return this.#undecided.length + (this.#decoder?.buffered ?? 0) + this.#unsentBytes + this.#replyText.length
  }

  /** Decoded requests waiting to run (held back by a get_wait or a slow reader). */
  get queuedRequests(): number {
    return this.#inbox.length - this.#inboxHead
  }

  onData(chunk: Uint8Array): void {
    if (this.#closed || this.#closeWhenFlushed) return
    if (this.#decoder === null) {
      this.#undecided.append(chunk)
      const protocol = detectProtocol(this.#undecided.view())
      if (protocol === null) return
      this.#protocol = protocol
      const maxFrameBytes = this.#context.limits.maxFrameBytes
      this.#decoder =
        protocol === WireProtocol.jsonHeader
          ? new JsonHeaderDecoder(this, maxFrameBytes)
          : new JsonStreamDecoder(this, maxFrameBytes)
      chunk = this.#undecided.view()
      this.#decoder.push(chunk)
      this.#undecided.clear()
    } else {
      this.#decoder.push(chunk)
    }
    this.#runInbox()
  }

  onDrain(): void {
    if (this.#closed) return
    this.#writeUnsent()
    if (this.#unsent.length === 0) this.#runInbox()
    this.#endIfDone()
  }

  onClose(): void {
    this.#closed = true
    this.#reader.close()
    this.#decoder?.stop()
    this.#inbox = []
    this.#unsent.length = 0
    this.#unsentBytes = 0
  }

  /** Answers a pending get_wait with "nothing" and sends what is queued (server shutdown). */
  flushForShutdown(): void {
    if (this.#closed) return
    this.#reader.close()
    if (this.#waiting) this.#answerWait(null)
    this.#flush()
  }

  // FrameSink: called by the decoder, synchronously, for each complete request.
  frame(body: Uint8Array): void {
    const request = parseJsonRequest(body)
    // After an error that ends the connection, later requests must not run.
    if (request.action === "rejected" && !request.expectsReply) this.#decoder?.stop()
    this.#inbox.push(request)
  }

  fail(error: ProtocolError): void {
    this.#inbox.push({ action: "rejected", error, expectsReply: false })
  }

  #runInbox(): void {
    const limit = this.#context.limits.maxOutboundBytes
    for (;;) {
      while (
        this.#inboxHead < this.#inbox.length &&
        !this.#waiting &&
        !this.#closeWhenFlushed &&
        this.#unsentBytes + this.#replyText.length < limit
      ) {
        const item = this.#inbox[this.#inboxHead]!
        this.#inboxHead++
        this.#run(item)
      }
      this.#flush()
      // Stopped at the outbound limit, but the kernel took it all: no `drain` will come, go on.
      const blockedOnlyByLimit = this.#inboxHead < this.#inbox.length && !this.#waiting && !this.#closeWhenFlushed
      if (!blockedOnlyByLimit || this.#unsent.length > 0 || this.#closed) break
    }
    if (this.#inboxHead === this.#inbox.length) {
      this.#inbox.length = 0
      this.#inboxHead = 0
    }
    this.#updatePause()
  }

  #run(request: InboxItem): void {
    const reader = this.#reader
    switch (request.action) {
      case "put": {
        const seq = this.#context.broker.put(request.topic, Buffer.from(request.message))
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
        if (this.#context.allowShutdown) {
          this.#context.log("shutdown requested by a client")
          // Run nothing more from this client; the server stops once this handler returns.
          this.#closeWhenFlushed = true
          this.#context.requestShutdown()
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

  readonly #answerWait = (message: StoredMessage | null): void => {
    this.#waiting = false
    this.#replyWith(message)
    if (!this.#closed) this.#runInbox()
  }

  #reject(error: ProtocolError, expectsReply: boolean): void {
    this.#reply(errorReply(error))
    if (!expectsReply) {
      // The client may not read this reply; closing keeps it from being taken as a later answer.
      this.#closeWhenFlushed = true
      this.#decoder?.stop()
      this.#context.log(`closing connection from ${this.#socket.remoteAddress}: ${error.errorName}: ${error.message}`)
    }
  }

  #replyWith(message: StoredMessage | null): void {
    this.#reply(message === null ? EMPTY_REPLY : messageReply(message.seq, message.payload))
  }

  #reply(body: string): void {
    this.#replyText += frameReply(this.#protocol ?? WireProtocol.jsonStream, body)
  }

  #flush(): void {
    if (this.#replyText !== "") {
      const bytes = Buffer.from(this.#replyText)
      this.#replyText = ""
      this.#unsent.push(bytes)
      this.#unsentBytes += bytes.length
      // With older bytes still queued, this waits for `drain` behind them.
      if (this.#unsent.length === 1) this.#writeUnsent()
    }
    this.#endIfDone()
  }

  /** Writes queued bytes until the kernel stops taking them; the rest waits for `drain`. */
  #writeUnsent(): void {
    if (this.#unsent.length === 0) return
    const bytes = this.#unsent.length === 1 ? this.#unsent[0]! : Buffer.concat(this.#unsent)
    const written = Math.max(0, this.#socket.write(bytes))
    this.#unsent.length = 0
    this.#unsentBytes = bytes.length - written
    if (written < bytes.length) this.#unsent.push(bytes.subarray(written))
  }

  #endIfDone(): void {
    if (this.#closeWhenFlushed && this.#unsent.length === 0 && !this.#closed && !this.#ended) {
      this.#ended = true
      this.#socket.end()
    }
  }

  #updatePause(): void {
    const shouldPause = this.#inboxHead < this.#inbox.length
    if (shouldPause === this.#paused || this.#closed) return
    this.#paused = shouldPause
    if (shouldPause) this.#socket.pause()
    else this.#socket.resume()
  }
}
