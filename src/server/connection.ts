/**
 * One client connection, on the TCP port or a WebSocket: picks its protocol (wire-protocols.ts),
 * decodes frames, runs requests in arrival order through the protocol's session, and sends what
 * it produces through the transport (what the peer does not take waits there until `drain`).
 * How much may run, be decoded or held, and when reading pauses, is FlowControl's to decide;
 * how long and how much a client may take to say who it is, the Handshake's.
 */
import type { Principal } from "../auth/auth.ts"
import type { Reader } from "../broker/broker.ts"
import { HttpRelay } from "../net/http-relay.ts"
import type { EndCause, Transport } from "../net/transport.ts"
import { ByteBuffer } from "../protocol/byte-buffer.ts"
import type { FrameDecoder, FrameSink } from "../protocol/decoder.ts"
import { detectProtocol, WireProtocol } from "../protocol/detect.ts"
import { ProtocolError } from "../protocol/errors.ts"
import type { ConnectionContext } from "./connection-context.ts"
import { FlowControl, MAX_PASSES_PER_TURN, StreamFailure } from "./flow-control.ts"
import { Handshake } from "./handshake.ts"
import { ConnectionLifecycle, Lifecycle } from "./lifecycle.ts"
import { type Session, sendOutput, sessionHost } from "./session.ts"
import { webSocketMessageProblem } from "./websocket-message.ts"
import { WIRE_PROTOCOLS } from "./wire-protocols.ts"

export class Connection implements FrameSink {
  readonly #transport: Transport
  readonly #context: ConnectionContext
  readonly #reader: Reader // opened on accept: its cursors start here, before any byte arrives
  readonly #authenticated: Principal | null // who the transport authenticated (a WebSocket upgrade), if anyone
  readonly #flow: FlowControl
  readonly #lifecycle = new ConnectionLifecycle()
  readonly #handshake: Handshake
  /** Decided by the first bytes or message; null until then. Read by the registry, set only here. */
  protocol: WireProtocol | null = null
  #decoder: FrameDecoder | null = null
  #session: Session<unknown> | null = null
  /** Set once the connection turned out to be HTTP: the TCP listener hands its socket's events to it (src/net/http-relay.ts). */
  relay: HttpRelay | null = null
  readonly #undecided = new ByteBuffer() // the first bytes, while the protocol is not decided
  #endCause: EndCause = { kind: "done" } // why the server ends it, for transports that can say (WebSocket)
  lastActivityMs = Date.now() // when the client last sent something, or was sent something

  constructor(transport: Transport, context: ConnectionContext, authenticated: Principal | null = null) {
    this.#transport = transport
    this.#context = context
    this.#authenticated = authenticated
    this.#reader = context.broker.openReader()
    this.#handshake = new Handshake(context.auth.required && authenticated === null, context.limits, {
      // Too slow to say who it is, or to finish its first frame: an error in its protocol's way, then close.
      expired: (error) => {
        if (this.#session === null) this.#closeAfterReplies(error)
        else this.fail(error)
        this.#pump()
        this.#endIfDone()
      },
      limitRaised: (bytes) => this.#decoder?.setMaxFrameBytes(bytes),
    })
    this.#flow = new FlowControl(
      {
        producedBytes: () => this.#session?.pendingBytes ?? 0,
        outboundBytes: () => this.#outboundBytes(),
        bufferedBytes: () => this.bufferedBytes,
        isHolding: () => this.#session?.holding ?? false,
        readsAtLeast: (request, bytes) => this.#session?.readsAtLeast(request, bytes) ?? false,
        isDecoding: () => this.#lifecycle.decodes,
        decode: (slice) => this.#decoder!.push(slice),
        pauseReading: () => this.#transport.pause(),
        resumeReading: () => this.#transport.resume(),
        pump: () => this.#pump(),
        budgetStalled: () => this.#budgetStalled(),
      },
      context.limits.maxOutboundBytes,
      context.budget,
    )
  }

  /** Bytes this connection holds: requests received and not run yet, and output the client has not taken. */
  get bufferedBytes(): number {
    const held = this.#undecided.length + this.#flow.heldBytes + (this.#decoder?.buffered ?? 0)
    return held + this.#outboundBytes() + (this.relay?.bufferedBytes ?? 0)
  }

  /** Output the client has not taken: produced by the session, or queued in the transport. */
  #outboundBytes(): number {
    return this.#transport.queuedBytes + (this.#session?.pendingBytes ?? 0)
  }

  /** For /stats/connections: where the client is, who it said it is, and what it subscribed to. */
  get peer(): { readonly remoteAddress: string; readonly principal: string | null; readonly subscriptions: number } {
    const principal = this.#session?.principalName ?? this.#authenticated?.name ?? null
    return { remoteAddress: this.#transport.remoteAddress, principal, subscriptions: this.#session?.subscriptionCount ?? 0 }
  }

  /** Decoded requests waiting to run (held back by a get_wait or a slow reader). */
  get queuedRequests(): number {
    return this.#flow.queuedRequests
  }

  /** A chunk of the TCP byte stream; the first bytes decide the protocol. */
  onData(chunk: Uint8Array): void {
    if (!this.#lifecycle.reads) return
    this.lastActivityMs = Date.now()
    this.#handshake.bytesArrived()
    if (this.#decoder !== null) this.#receive(chunk, chunk.length)
    else if (this.relay === null) this.#detect(chunk)
  }

  #detect(chunk: Uint8Array): void {
    this.#undecided.append(chunk)
    const protocol = detectProtocol(this.#undecided.view())
    if (protocol === null) return
    if (WIRE_PROTOCOLS[protocol].relayed) this.#startRelay(protocol)
    else this.#start(protocol)
    if (this.relay === null) this.#receive(this.#undecided.view(), chunk.length)
    this.#undecided.clear()
  }

  #receive(bytes: Uint8Array, chunkBytes: number): void {
    this.#flow.receive(bytes)
    this.#flow.yieldReadingAfter(chunkBytes)
    this.#pump()
  }

  /** One WebSocket message; the first decides the protocol: text is upstream 1.x JSON (a message is a request), binary carries binary frames. */
  onMessage(message: string | Uint8Array): void {
    if (!this.#lifecycle.reads) return
    if (this.#session === null) this.#start(typeof message === "string" ? WireProtocol.webSocketJson : WireProtocol.webSocketBinary)
    const problem = webSocketMessageProblem(message, this.#decoder !== null, this.#handshake.frameLimit)
    if (problem !== null) this.fail(problem)
    else if (typeof message === "string") this.frame(message)
    else this.#flow.receive(message)
    this.#pump()
  }

  /** A TCP half-close: run all it sent, then end; waits are answered at once (a FIN cannot be told from a client that left). */
  onEnd(): void {
    if (this.#lifecycle.moveTo(Lifecycle.inputEnded)) this.#shutDownSession()
  }

  onDrain(): void {
    if (this.#lifecycle.isClosed) return
    this.#transport.writeQueued()
    if (this.#transport.isIdle) this.#pump()
    this.#endIfDone()
  }

  onClose(): void {
    this.#lifecycle.moveTo(Lifecycle.closed)
    this.#handshake.cancel()
    this.#reader.close()
    this.#session?.close()
    this.#decoder?.stop()
    this.#flow.clear()
    this.#transport.discard()
  }

  /** The server is stopping: read nothing more, answer what came (waits get "nothing"), then close. */
  beginShutdown(): void {
    // A relayed client is served by the internal HTTP listener, which stops on its own.
    if (this.#lifecycle.isClosed || this.relay !== null) return
    if (this.#endCause.kind === "done") this.#endCause = { kind: "server-stopping" }
    this.#lifecycle.moveTo(Lifecycle.draining)
    this.#decoder?.stop()
    // Not decoded yet, so not received as far as the client can tell: like bytes still in the kernel.
    this.#flow.dropUnfed()
    this.#shutDownSession()
  }

  /** Waits answered with "nothing", subscriptions dropped; the connection ends once the replies are out. */
  #shutDownSession(): void {
    this.#session?.shutdown()
    if (this.#session === null) this.#end()
    else this.#pump()
  }

  // FrameSink: called by the decoder, synchronously, for each complete frame.
  frame(frame: Uint8Array | string): void {
    const session = this.#session!
    this.#handshake.frameArrived()
    const request = session.parse(frame)
    if (this.#lifecycle.runs && this.#flow.mayRunNow(request)) {
      this.#flow.countRun()
      session.run(request)
    } else {
      this.#flow.hold(session.detach(request), frame.length)
    }
  }

  fail(error: ProtocolError): void {
    // After the replies to requests that arrived before the bad bytes.
    if (!this.#flow.hasQueued && !this.#session!.holding) this.#session!.failStream(error)
    else this.#flow.holdFailure(error)
  }

  #start(protocol: WireProtocol): void {
    this.protocol = protocol
    const host = sessionHost(this.#context, this.#transport.remoteAddress, this.#authenticated, {
      outboundBytes: () => this.#outboundBytes(),
      mayPush: () => !this.#flow.budgetPaused,
      handshakeDone: () => this.#handshake.authenticated(),
      wake: () => this.#flow.wake(),
      closeAfterReplies: (error) => this.#closeAfterReplies(error),
      shutdownRequested: () => this.#stopReading({ kind: "server-stopping" }),
    })
    const entry = WIRE_PROTOCOLS[protocol]
    if (entry.relayed) throw new Error(`${protocol} is relayed, not run`)
    this.#session = entry.session(host, this.#reader)
    this.#decoder = entry.decoder?.(this, this.#handshake.frameLimit) ?? null
    this.#flow.requestsArriveWhole = entry.decoder === null
  }

  /** Runs held requests and backlog while the client keeps up, then sends the output. */
  #pump(): void {
    const session = this.#session
    if (session === null || this.#lifecycle.isClosed) return
    for (let pass = 0; ; pass++) {
      this.#flow.feedKept()
      while (this.#flow.hasQueued && this.#lifecycle.runs && this.#flow.mayRunNext()) {
        const item = this.#flow.takeQueued()
        if (item instanceof StreamFailure) session.failStream(item.error)
        else session.run(item)
      }
      if (session.hasBacklog && this.#lifecycle.runs) {
        const budget = this.#flow.backlogBudget()
        if (budget !== null) session.produceBacklog(budget)
      }
      const outputBytes = session.pendingBytes
      if (sendOutput(session, this.#transport)) {
        this.#flow.countSent(outputBytes)
        this.lastActivityMs = Date.now()
      }
      // Go on only if the kernel took everything (no `drain` will come) and work is left.
      const moreToRun = (this.#flow.hasQueued || this.#flow.hasUnfed) && !session.holding
      const moreWork = this.#lifecycle.runs && !this.#flow.waitingForBulk && (moreToRun || session.hasBacklog)
      // Sending may have closed the connection (the peer reset it).
      if (!moreWork || !this.#transport.isIdle || this.#lifecycle.isClosed) break
      if (pass === MAX_PASSES_PER_TURN || !this.#flow.hasTurnBudget()) {
        this.#flow.yieldTurn()
        break
      }
    }
    // A get_wait that began holding in this pump: decode what it may, keep reading (PAUSE_AT_QUEUED).
    this.#flow.feedKept()
    this.#flow.settle()
    if (this.#lifecycle.state === Lifecycle.inputEnded) this.#finishInput()
    else this.#endIfDone()
  }

  /** After a half-close, once all the client sent has been decoded: a cut-off frame is an error. */
  #finishInput(): void {
    if (this.#flow.hasUnfed) return
    if ((this.#decoder?.buffered ?? 0) > 0) this.fail(new ProtocolError("malformed_frame", "the connection ended in the middle of a frame"))
    this.#decoder?.stop()
    this.#lifecycle.moveTo(Lifecycle.draining)
    this.#pump()
  }

  #closeAfterReplies(error: ProtocolError): void {
    const reason = `${error.errorName}: ${error.message}`
    this.#stopReading({ kind: "refused", reason })
    this.#context.countError(error.errorName)
    this.#context.log(`closing connection from ${this.#transport.remoteAddress}: ${reason}`)
  }

  /** Paused by the budget and not shrinking: closed now, since its output may never be read. */
  #budgetStalled(): void {
    this.#closeAfterReplies(new ProtocolError("limit_exceeded", `held ${this.bufferedBytes} bytes, unread, past --max-buffered-bytes`))
    if (this.#lifecycle.moveTo(Lifecycle.ended)) this.#transport.terminate(this.#endCause)
  }

  #stopReading(cause: EndCause): void {
    this.#endCause = cause
    this.#lifecycle.moveTo(Lifecycle.closing)
    this.#decoder?.stop()
    this.#flow.dropUnfed()
  }

  #endIfDone(): void {
    if (!this.#transport.isIdle) return
    const drained = this.#lifecycle.state === Lifecycle.draining && !this.#flow.hasQueued && !this.#session?.holding
    if (this.#lifecycle.state === Lifecycle.closing || drained) this.#end()
  }

  #end(): void {
    if (this.#lifecycle.moveTo(Lifecycle.ended)) this.#transport.end(this.#endCause)
  }

  /** HTTP on the TCP port: from here on this connection only pipes bytes (src/net/http-relay.ts). */
  #startRelay(protocol: WireProtocol): void {
    const relay = this.#context.httpRelay
    if (relay === null) throw new Error("HTTP on a connection that has no HTTP relay")
    this.protocol = protocol
    const peer = { remoteAddress: this.#transport.remoteAddress, onWebSocket: () => relay.handOver(this) }
    this.relay = new HttpRelay(this.#transport, relay.target, peer, () => void (this.lastActivityMs = Date.now()))
    // HTTP authenticates in Bun.serve's handlers, request by request.
    this.#handshake.done()
    this.relay.fromClient(this.#undecided.view())
  }
}
