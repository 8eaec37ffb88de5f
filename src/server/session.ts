/**
 * The protocol-specific half of a connection. A session turns frames into requests, runs them
 * against the broker and encodes the replies; the Connection around it owns the socket, the
 * order in which requests run, and flow control.
 */
import type { Authenticator, Principal } from "../auth/auth.ts"
import type { Broker } from "../broker/broker.ts"
import type { Output, Transport } from "../net/transport.ts"
import type { LentBytesSink } from "../protocol/binary/frame-writer.ts"
import type { ErrorName, ProtocolError } from "../protocol/errors.ts"

export interface ConnectionLimits {
  /** Largest request accepted, in bytes (a JSON object, a header-framed body or a binary frame). */
  readonly maxFrameBytes: number
  /** Reply bytes that may wait for a slow reader before the server stops producing more for it. */
  readonly maxOutboundBytes: number
  /** Subscriptions one binary connection may hold. */
  readonly maxSubscriptions: number
  /** GET_WAITs one binary connection may have pending. */
  readonly maxPendingWaits: number
  /** How long a connection has to authenticate, or to finish a started first frame (src/server/handshake.ts); 0: no limit. */
  readonly authTimeoutMs: number
}

/** What a session may ask of the connection and server it belongs to. */
export interface SessionHost {
  readonly broker: Broker
  readonly limits: ConnectionLimits
  readonly allowShutdown: boolean
  readonly auth: Authenticator
  /** Who the transport already authenticated (a WebSocket's upgrade request), if anyone. */
  readonly authenticated: Principal | null
  readonly remoteAddress: string
  /** Reply bytes waiting for this connection's socket, produced or not yet sent. */
  outboundBytes(): number
  /** False while the server-wide budget pauses this connection: pushes wait in the store. */
  mayPush(): boolean
  /** Something happened outside this connection's own handlers (a wait answered, a push): send it soon. */
  wake(): void
  /** The client authenticated (or needs not): its first-frame limit and deadline end. */
  handshakeDone(): void
  /** Sends what is pending, then closes: the stream cannot go on after `error`. */
  closeAfterReplies(error: ProtocolError): void
  requestShutdown(): void
  /** Counts an error reported to a client, by code, for the metrics. */
  countError(name: ErrorName): void
  stats(): object
  log(line: string): void
}

export interface Session<Request> {
  /** Turns one frame into a request. Byte fields may be views of `frame` until `detach`ed. */
  parse(frame: Uint8Array | string): Request
  /** A copy of `request` that no longer shares memory with the chunk it came in. */
  detach(request: Request): Request
  run(request: Request): void
  /** Whether `request` is a read whose reply would be at least `bytes` (src/server/bulk-turn.ts), found without running it. */
  readsAtLeast(request: Request, bytes: number): boolean
  /** The byte stream broke (bad framing): reply with `error` in this protocol's way, then close. */
  failStream(error: ProtocolError): void
  /** True while a request holds back the ones behind it (a JSON get_wait). */
  readonly holding: boolean
  /** Reply bytes produced and not yet taken. */
  readonly pendingBytes: number
  /** Who the client acts as, once it said (null before), and the topics it subscribed to: for /stats/connections. */
  readonly principalName: string | null
  readonly subscriptionCount: number
  takeOutput(): Output | null
  /**
   * Sessions whose output is bytes may lend them instead (see sendOutput): `sink` gets memory
   * that is reused once it returns.
   */
  lendOutput?(sink: LentBytesSink): void
  /** True when it has more to send that it produces itself (a subscriber catching up). */
  readonly hasBacklog: boolean
  /** Produces backlog output within `budget` bytes. */
  produceBacklog(budget: number): void
  /** Answers what can still be answered, before the server stops. */
  shutdown(): void
  /** The connection is gone: drop waits and subscriptions. */
  close(): void
}

/** What a connection lends its session: output accounting, waking, closing, and reading no more. */
export interface ConnectionHooks {
  outboundBytes(): number
  mayPush(): boolean
  handshakeDone(): void
  wake(): void
  closeAfterReplies(error: ProtocolError): void
  /** The client asked the server to stop: run nothing more from it. */
  shutdownRequested(): void
}

/** The SessionHost of one connection: the server's context, the client's identity, the connection's hooks. */
export function sessionHost(
  context: Omit<
    SessionHost,
    "remoteAddress" | "authenticated" | "outboundBytes" | "mayPush" | "handshakeDone" | "wake" | "closeAfterReplies"
  >,
  remoteAddress: string,
  authenticated: Principal | null,
  hooks: ConnectionHooks,
): SessionHost {
  return {
    ...context,
    remoteAddress,
    authenticated,
    outboundBytes: hooks.outboundBytes,
    mayPush: hooks.mayPush,
    handshakeDone: hooks.handshakeDone,
    wake: hooks.wake,
    closeAfterReplies: hooks.closeAfterReplies,
    requestShutdown: () => {
      // The server stops once the handler that asked returns.
      hooks.shutdownRequested()
      context.requestShutdown()
    },
  }
}

/**
 * Sends what `session` produced: lent when the transport is idle (the kernel usually takes it
 * all, and nothing is allocated per write), else taken and queued. Whether anything was sent.
 */
export function sendOutput(session: Session<unknown>, transport: Transport): boolean {
  if (session.lendOutput !== undefined && session.pendingBytes > 0 && transport.isIdle) {
    session.lendOutput(transport)
    return true
  }
  const output = session.takeOutput()
  if (output !== null) transport.send(output)
  return output !== null
}
