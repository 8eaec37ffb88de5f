/**
 * One client connection, on the TCP port or a WebSocket: picks its protocol, decodes frames,
 * runs requests in arrival order through the protocol's session, and sends what the session
 * produces through the transport.
 *
 * Flow control, so one client can never make the server buffer without bound:
 * - what is produced while handling one chunk goes out together; what the peer does not take
 *   waits in the transport until `drain`;
 * - no request runs while more than `maxOutboundBytes` of output wait for the client, nor
 *   beyond RUN_BUDGET requests or TURN_OUTPUT_BYTES of output in one turn of the event loop;
 * - received bytes are decoded a slice at a time, only as far as the turn can run (decoded
 *   requests wait in the inbox, copied off the chunk); the rest is kept undecoded and reading
 *   from the peer pauses, so the client feels TCP backpressure instead of the server
 *   buffering for it (behind a held get_wait, see PAUSE_AT_QUEUED).
 */
import type { Principal } from "../auth/auth.ts"
import type { Reader } from "../broker/broker.ts"
import type { Transport } from "../net/transport.ts"
import { BinaryDecoder } from "../protocol/binary/decoder.ts"
import { ByteBuffer } from "../protocol/byte-buffer.ts"
import type { FrameDecoder, FrameSink } from "../protocol/decoder.ts"
import { detectProtocol, WireProtocol } from "../protocol/detect.ts"
import { ProtocolError } from "../protocol/errors.ts"
import { JsonHeaderDecoder } from "../protocol/json-header.ts"
import { JsonStreamDecoder } from "../protocol/json-stream.ts"
import { BinarySession } from "./binary-session.ts"
import { JsonSession } from "./json-session.ts"
import type { Session, SessionHost } from "./session.ts"

/** What a connection needs from the server that owns it. */
export type ConnectionContext = Omit<SessionHost, "remoteAddress" | "outboundBytes" | "wake" | "closeAfterReplies" | "authenticated">

/** Bad bytes in the stream, queued behind the requests that came before them. */
class StreamFailure {
  constructor(readonly error: ProtocolError) {}
}

/**
 * Requests one connection may run before it lets the event loop serve others. Bun hands over
 * up to 512 KiB at a time (about 9,000 small puts, tens of milliseconds of work); past this
 * budget the rest waits for the next turn, so one flooding client delays the others by a
 * fraction of a millisecond per turn (64 puts, ~0.4 ms), not by its whole chunk. At 256 a
 * flood of small puts held the event loop 1.7 ms per turn per connection and the loop's p99
 * lag was 2-3x higher (bench/isolation.ts); pipelined throughput did not change.
 */
const RUN_BUDGET = 64
/**
 * Output one connection may produce before it lets the event loop serve others: the byte
 * side of RUN_BUDGET. Replies of near-megabyte messages cost about 2 ms per megabyte to read
 * and encode; without this, four readers asking for big messages at once stalled everyone
 * else for 40 ms. Each turn still runs at least one request, however large its reply.
 */
const TURN_OUTPUT_BYTES = 256 * 1024
/**
 * Requests decoded behind a get_wait that holds the session. Past them, what arrives is kept
 * undecoded, up to HELD_READ_BYTES, and only then does reading pause: Bun does not tell a
 * paused socket that its client closed the connection (a FIN is seen only by reading), so a
 * connection held by a long get_wait keeps reading in order to notice its client leave.
 */
const PAUSE_AT_QUEUED = 256
const HELD_READ_BYTES = 1024 * 1024
/**
 * Bytes of decoded requests a connection may hold back (behind a get_wait, or while its client
 * does not read its replies) before it decodes no more: without it, 256 one-megabyte puts
 * behind a long get_wait held 256 MiB for one connection. Checked between slices of
 * FEED_SLICE_BYTES, so one slice or one request more at most.
 */
const MAX_QUEUED_BYTES = 1024 * 1024
/** Passes of the run loop (each up to the outbound cap of output) before yielding a turn. */
const MAX_PASSES_PER_TURN = 4
/**
 * A chunk this large means the client is streaming requests. Reading from it then pauses
 * until the next turn of the event loop, so every other connection is served in between:
 * without this, a flooding client's socket is read again and again while others wait.
 */
const YIELD_AFTER_CHUNK_BYTES = 16 * 1024
/**
 * Bytes given to the decoder at a time. Decoding is the part of a request that runs before
 * any budget is checked (a 512 KiB chunk of small puts is 7,000 JSON.parse calls, 15 ms); fed
 * in slices, decoding stops once RUN_BUDGET requests wait, and the rest of the chunk waits,
 * undecoded, until they have run.
 */
const FEED_SLICE_BYTES = 16 * 1024

export class Connection implements FrameSink {
  readonly #transport: Transport
  readonly #context: ConnectionContext
  /** Opened when the connection is accepted: its cursors start here, before any byte arrives. */
  readonly #reader: Reader
  #protocol: WireProtocol | null = null
  #decoder: FrameDecoder | null = null
  #session: Session<unknown> | null = null
  /** First bytes of a connection whose protocol is not decided yet. */
  readonly #undecided = new ByteBuffer()
  /**
   * Received bytes not yet decoded because requests were backing up (see FEED_SLICE_BYTES),
   * oldest first; copies, since Bun may reuse a chunk's memory. A list, not one buffer, so
   * that a client dribbling small chunks costs no copying of what is already kept.
   */
  readonly #unfed: Uint8Array[] = []
  #unfedBytes = 0
  /** Requests held back, oldest at #inboxHead, and the size of each as received. */
  #inbox: unknown[] = []
  #inboxSizes: number[] = []
  #inboxHead = 0
  /** Bytes of the requests held back (see MAX_QUEUED_BYTES). */
  #inboxBytes = 0
  #paused = false
  /** Paused for a turn after a large chunk (see YIELD_AFTER_CHUNK_BYTES). */
  #yielding = false
  #pumpScheduled = false
  /** Requests run since this connection last let the event loop turn (see RUN_BUDGET). */
  #ranSinceYield = 0
  /** Bytes sent since this connection last let the event loop turn (see TURN_OUTPUT_BYTES). */
  #sentSinceYield = 0
  /** When the client last sent something, or the server last sent it something (Date.now()). */
  lastActivityMs = Date.now()
  #turnYielded = false
  #closing = false
  /** The server is stopping: read nothing more, but answer what was already received. */
  #draining = false
  /** Why the server is closing this connection, for transports that can say (WebSocket). */
  #closeReason: string | undefined
  #ended = false
  #closed = false

  readonly #authenticated: Principal | null

  /** `authenticated`: who the transport already authenticated (a WebSocket upgrade), if anyone. */
  constructor(transport: Transport, context: ConnectionContext, authenticated: Principal | null = null) {
    this.#transport = transport
    this.#context = context
    this.#authenticated = authenticated
    this.#reader = context.broker.openReader()
  }

  get protocol(): WireProtocol | null {
    return this.#protocol
  }

  /** Bytes this connection holds: requests received and not run yet, and output the client has not taken. */
  get bufferedBytes(): number {
    return (
      this.#undecided.length +
      this.#unfedBytes +
      this.#inboxBytes +
      (this.#decoder?.buffered ?? 0) +
      this.#transport.queuedBytes +
      (this.#session?.pendingBytes ?? 0)
    )
  }

  /** Decoded requests waiting to run (held back by a get_wait or a slow reader). */
  get queuedRequests(): number {
    return this.#inbox.length - this.#inboxHead
  }

  /** A chunk of the TCP byte stream; the first bytes decide the protocol. */
  onData(chunk: Uint8Array): void {
    if (this.#closed || this.#closing || this.#draining) return
    this.lastActivityMs = Date.now()
    if (this.#decoder === null) {
      this.#undecided.append(chunk)
      const protocol = detectProtocol(this.#undecided.view())
      if (protocol === null) return
      this.#start(protocol)
      this.#feed(this.#undecided.view(), false)
      this.#undecided.clear()
    } else if (this.#unfed.length > 0) {
      // Bytes still waiting to be decoded come first (reading pauses, but not at once).
      this.#keepUnfed(new Uint8Array(chunk))
    } else {
      this.#feed(chunk, false)
    }
    if (chunk.length >= YIELD_AFTER_CHUNK_BYTES && !this.#yielding) {
      this.#yielding = true
      setImmediate(() => {
        this.#yielding = false
        this.#updatePause()
      })
    }
    this.#pump()
  }

  /**
   * One WebSocket message. The first decides the protocol: text is upstream 1.x JSON (one
   * request per message), binary carries binary frames (one or more per message).
   */
  onMessage(message: string | Uint8Array): void {
    if (this.#closed || this.#closing || this.#draining) return
    if (this.#session === null) this.#start(typeof message === "string" ? WireProtocol.webSocketJson : WireProtocol.webSocketBinary)
    if (typeof message === "string") {
      if (this.#decoder !== null) this.fail(new ProtocolError("malformed_frame", "a text message on a WebSocket that sends binary frames"))
      else this.#acceptJsonMessage(message)
    } else if (this.#decoder === null) {
      this.fail(new ProtocolError("malformed_frame", "a binary message on a WebSocket that sends JSON text"))
    } else if (this.#unfed.length > 0) {
      this.#keepUnfed(new Uint8Array(message))
    } else {
      this.#feed(message, false)
    }
    this.#pump()
  }

  onDrain(): void {
    if (this.#closed) return
    this.#transport.writeQueued()
    if (this.#transport.isIdle) this.#pump()
    this.#endIfDone()
  }

  onClose(): void {
    this.#closed = true
    this.#reader.close()
    this.#session?.close()
    this.#decoder?.stop()
    this.#dropUnfed()
    this.#inbox = []
    this.#inboxSizes = []
    this.#inboxBytes = 0
    this.#transport.discard()
  }

  /**
   * The server is stopping: answer what can still be answered (pending waits get "nothing"),
   * read no more requests, and close once the client has taken every reply.
   */
  beginShutdown(): void {
    if (this.#closed) return
    this.#draining = true
    this.#decoder?.stop()
    // Not decoded yet, so not received as far as the client can tell: like bytes still in the kernel.
    this.#dropUnfed()
    this.#session?.shutdown()
    if (this.#session === null) this.#transport.end()
    else this.#pump()
  }

  // FrameSink: called by the decoder, synchronously, for each complete frame.
  frame(frame: Uint8Array | string): void {
    const session = this.#session!
    const request = session.parse(frame)
    if (this.#canRun()) {
      this.#ranSinceYield++
      session.run(request)
    } else {
      this.#inbox.push(session.detach(request))
      this.#inboxSizes.push(frame.length)
      this.#inboxBytes += frame.length
    }
  }

  /** A WebSocket text message is one request: no decoder, the message is the frame. */
  #acceptJsonMessage(text: string): void {
    if (text.length > this.#context.limits.maxFrameBytes && Buffer.byteLength(text) > this.#context.limits.maxFrameBytes) {
      this.fail(new ProtocolError("too_large", `request is larger than the maximum of ${this.#context.limits.maxFrameBytes} bytes`))
      return
    }
    this.frame(text)
  }

  fail(error: ProtocolError): void {
    // After the replies to requests that arrived before the bad bytes.
    if (this.#inboxHead === this.#inbox.length && !this.#session!.holding) this.#session!.failStream(error)
    else {
      this.#inbox.push(new StreamFailure(error))
      this.#inboxSizes.push(0)
    }
  }

  #start(protocol: WireProtocol): void {
    this.#protocol = protocol
    const maxFrameBytes = this.#context.limits.maxFrameBytes
    const host: SessionHost = {
      ...this.#context,
      remoteAddress: this.#transport.remoteAddress,
      authenticated: this.#authenticated,
      outboundBytes: () => this.#transport.queuedBytes + (this.#session?.pendingBytes ?? 0),
      wake: () => this.#schedulePump(),
      closeAfterReplies: (error) => this.#closeAfterReplies(error),
      requestShutdown: () => {
        // Run nothing more from this client; the server stops once this handler returns.
        this.#stopReading()
        this.#context.requestShutdown()
      },
    }
    switch (protocol) {
      case WireProtocol.binary:
      case WireProtocol.webSocketBinary:
        this.#session = new BinarySession(host, this.#reader)
        this.#decoder = new BinaryDecoder(this, maxFrameBytes)
        return
      case WireProtocol.jsonHeader:
        this.#session = new JsonSession(host, this.#reader, protocol)
        this.#decoder = new JsonHeaderDecoder(this, maxFrameBytes)
        return
      case WireProtocol.jsonStream:
        this.#session = new JsonSession(host, this.#reader, protocol)
        this.#decoder = new JsonStreamDecoder(this, maxFrameBytes)
        return
      case WireProtocol.webSocketJson:
        this.#session = new JsonSession(host, this.#reader, protocol)
        return
    }
  }

  #canRun(): boolean {
    return (
      this.#inboxHead === this.#inbox.length &&
      this.#hasTurnBudget(this.#session!) &&
      !this.#session!.holding &&
      !this.#closing &&
      this.#transport.queuedBytes + this.#session!.pendingBytes < this.#context.limits.maxOutboundBytes
    )
  }

  /** Runs held requests and backlog while the client keeps up, then sends the output. */
  #pump(): void {
    const session = this.#session
    if (session === null || this.#closed) return
    const limit = this.#context.limits.maxOutboundBytes
    for (let pass = 0; ; pass++) {
      this.#feedUnfed(session)
      while (
        this.#inboxHead < this.#inbox.length &&
        this.#hasTurnBudget(session) &&
        !session.holding &&
        !this.#closing &&
        this.#transport.queuedBytes + session.pendingBytes < limit
      ) {
        this.#ranSinceYield++
        this.#inboxBytes -= this.#inboxSizes[this.#inboxHead]!
        const item = this.#inbox[this.#inboxHead++]
        if (item instanceof StreamFailure) session.failStream(item.error)
        else session.run(item)
      }
      if (session.hasBacklog && !this.#closing) {
        const room = limit - this.#transport.queuedBytes - session.pendingBytes
        const turnRoom = TURN_OUTPUT_BYTES - this.#sentSinceYield - session.pendingBytes
        if (turnRoom > 0) session.produceBacklog(Math.min(room, turnRoom))
      }
      const outputBytes = session.pendingBytes
      const output = session.takeOutput()
      if (output !== null) {
        this.#transport.send(output)
        this.#sentSinceYield += outputBytes
        this.lastActivityMs = Date.now()
      }
      // Go on only if the kernel took everything (no `drain` will come) and work is left.
      const moreToRun = (this.#inboxHead < this.#inbox.length || this.#unfed.length > 0) && !session.holding
      const moreWork = !this.#closing && (moreToRun || session.hasBacklog)
      if (!moreWork || !this.#transport.isIdle || this.#closed) break
      if (pass === MAX_PASSES_PER_TURN || !this.#hasTurnBudget(session)) {
        this.#yieldTurn()
        break
      }
    }
    // A get_wait that began holding in this pump: decode what it may, keep reading (PAUSE_AT_QUEUED).
    this.#feedUnfed(session)
    if (this.#inboxHead === this.#inbox.length) {
      this.#inbox.length = 0
      this.#inboxSizes.length = 0
      this.#inboxHead = 0
    }
    this.#updatePause()
    this.#endIfDone()
  }

  /**
   * Gives received bytes to the decoder a slice at a time, as far as #mayDecode allows; the
   * rest is kept (copied, unless `owned`: Bun may reuse a chunk's memory) for a later pump.
   */
  #feed(bytes: Uint8Array, owned: boolean): void {
    for (let offset = 0; offset < bytes.length; offset += FEED_SLICE_BYTES) {
      if (this.#closing || this.#closed || this.#draining) return
      if (!this.#mayDecode(this.#session!)) {
        // new Uint8Array(view) copies (a Buffer's slice would not).
        const rest = owned ? bytes.subarray(offset) : new Uint8Array(bytes.subarray(offset))
        this.#unfed.unshift(rest)
        this.#unfedBytes += rest.length
        return
      }
      this.#decoder!.push(bytes.subarray(offset, Math.min(bytes.length, offset + FEED_SLICE_BYTES)))
    }
  }

  /** Decodes kept bytes, oldest first, as far as #mayDecode allows. */
  #feedUnfed(session: Session<unknown>): void {
    // Bounded: each round takes one chunk off, and puts back at most what it did not decode
    // (only when #mayDecode turned false, which ends the loop).
    while (this.#unfed.length > 0 && !this.#closed && this.#mayDecode(session)) {
      const chunk = this.#unfed.shift()!
      this.#unfedBytes -= chunk.length
      this.#feed(chunk, true)
    }
  }

  #keepUnfed(chunk: Uint8Array): void {
    this.#unfed.push(chunk)
    this.#unfedBytes += chunk.length
  }

  #dropUnfed(): void {
    this.#unfed.length = 0
    this.#unfedBytes = 0
  }

  /**
   * Whether to decode more of what was received: what this turn can still run, or, while a
   * get_wait holds the session, up to PAUSE_AT_QUEUED requests (see there).
   */
  #mayDecode(session: Session<unknown>): boolean {
    const queued = this.queuedRequests
    if (this.#inboxBytes >= MAX_QUEUED_BYTES) return false
    if (session.holding) return queued < PAUSE_AT_QUEUED
    return queued < RUN_BUDGET && (queued === 0 || this.#hasTurnBudget(session))
  }

  /** What is left of this turn's RUN_BUDGET and TURN_OUTPUT_BYTES. */
  #hasTurnBudget(session: Session<unknown>): boolean {
    return this.#ranSinceYield < RUN_BUDGET && this.#sentSinceYield + session.pendingBytes < TURN_OUTPUT_BYTES
  }

  /** Lets the event loop serve other sockets, then goes on with a fresh budget. */
  #yieldTurn(): void {
    if (this.#turnYielded || this.#closed) return
    this.#turnYielded = true
    setImmediate(() => {
      this.#turnYielded = false
      this.#ranSinceYield = 0
      this.#sentSinceYield = 0
      this.#pump()
    })
  }

  #schedulePump(): void {
    if (this.#pumpScheduled || this.#closed) return
    this.#pumpScheduled = true
    // A microtask runs right after the handler that caused it: pushes caused by one chunk of
    // puts go out together, in one write per subscriber.
    queueMicrotask(() => {
      this.#pumpScheduled = false
      this.#pump()
    })
  }

  #closeAfterReplies(error: ProtocolError): void {
    this.#stopReading()
    this.#closeReason = `${error.errorName}: ${error.message}`
    this.#context.countError(error.errorName)
    this.#context.log(`closing connection from ${this.#transport.remoteAddress}: ${this.#closeReason}`)
  }

  #stopReading(): void {
    this.#closing = true
    this.#decoder?.stop()
    this.#dropUnfed()
  }

  #endIfDone(): void {
    const done = this.#closing || (this.#draining && this.#inboxHead === this.#inbox.length && !this.#session?.holding)
    if (done && this.#transport.isIdle && !this.#closed && !this.#ended) {
      this.#ended = true
      this.#transport.end(this.#closeReason)
    }
  }

  #updatePause(): void {
    const holding = this.#session?.holding ?? false
    // A WebSocket's text messages are requests as they come, with no decoder to hold them
    // back: that connection pauses once the inbox is full.
    const inboxFull = this.#decoder === null && (this.queuedRequests >= PAUSE_AT_QUEUED || this.#inboxBytes >= MAX_QUEUED_BYTES)
    const shouldPause = this.#yielding || inboxFull || (this.#unfed.length > 0 && (!holding || this.#unfedBytes >= HELD_READ_BYTES))
    if (shouldPause === this.#paused || this.#closed) return
    this.#paused = shouldPause
    if (shouldPause) this.#transport.pause()
    else this.#transport.resume()
  }
}
