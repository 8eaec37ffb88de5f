/**
 * The open connections of both listeners: admission against --max-connections, creation,
 * removal, and a guard so that a bug or a store failure costs one connection, never the server.
 */
import type { Principal } from "../auth/auth.ts"
import type { RelayTarget } from "../net/http-relay.ts"
import type { Transport } from "../net/transport.ts"
import type { ErrorName } from "../protocol/errors.ts"
import { Connection } from "./connection.ts"
import type { ConnectionContext } from "./connection-context.ts"
import type { ConnectionSnapshot } from "./stats.ts"

/** What a Bun socket (TCP or WebSocket) keeps in its `data`. */
export interface SocketData {
  /** null for a connection refused at the connection limit (or a WebSocket not yet open). */
  connection: Connection | null
  /** Who a WebSocket's upgrade request authenticated as (its bearer token), if anyone. */
  principal: Principal | null
}

export class ConnectionRegistry {
  /** Open connections, oldest first, with when each was accepted. */
  readonly #connections = new Map<Connection, number>()
  readonly #context: ConnectionContext
  readonly #maxConnections: number
  /**
   * TCP connections whose relayed client a WebSocket now stands for: not counted against the
   * limit (the WebSocket is), but the server still waits for them, the last hop of its replies.
   */
  readonly #handedOver = new Set<Connection>()
  /** Called when the last connection closes (the server waits for it when stopping). */
  onEmpty: (() => void) | null = null

  /** `httpRelay`: the internal HTTP listener that HTTP on the TCP port is piped to (null: none). */
  constructor(context: Omit<ConnectionContext, "httpRelay">, maxConnections: number, httpRelay: RelayTarget | null = null) {
    const handOver = (connection: Connection): void => {
      // The relayed client's WebSocket is a connection of its own now: count it once, not twice.
      if (this.#connections.delete(connection)) this.#handedOver.add(connection)
    }
    this.#context = { ...context, httpRelay: httpRelay === null ? null : { target: httpRelay, handOver } }
    this.#maxConnections = maxConnections
  }

  /** Connections counted against --max-connections. */
  get size(): number {
    return this.#connections.size
  }

  /** No connection is open at all, relays included. */
  get isEmpty(): boolean {
    return this.#connections.size === 0 && this.#handedOver.size === 0
  }

  /** False (counted and logged) when one more connection would pass the limit, or the buffered-bytes budget is spent. */
  admit(remote: string | undefined): boolean {
    const budget = this.#context.budget
    const full = this.#connections.size >= this.#maxConnections
    if (!full && budget.admits) return true
    this.#context.countError("limit_exceeded" satisfies ErrorName)
    const why = full
      ? `at the limit of ${this.#maxConnections} connections`
      : `the clients hold ${budget.totalBytes} bytes, past --max-buffered-bytes ${budget.maxBytes}`
    this.#context.log(`refusing a connection from ${remote ?? "an unknown address"}: ${why}`)
    return false
  }

  open(transport: Transport, principal: Principal | null = null): Connection {
    const connection = new Connection(transport, this.#context, principal)
    this.#connections.set(connection, Date.now())
    return connection
  }

  closed(connection: Connection): void {
    this.#connections.delete(connection)
    this.#handedOver.delete(connection)
    connection.onClose()
    if (this.isEmpty) this.onEmpty?.()
  }

  /** Runs a socket handler; an exception closes that one connection (`abort`) and is logged. */
  guarded(what: string, remote: string, work: () => void, abort: () => void): void {
    try {
      work()
    } catch (error) {
      this.#context.log(`internal error while handling ${what} from ${remote}: ${String(error)}`)
      abort()
    }
  }

  /** The server is stopping: every connection answers what it can, then closes. */
  beginShutdown(): void {
    for (const connection of this.#connections.keys()) connection.beginShutdown()
  }

  snapshot(): ConnectionSnapshot[] {
    return [...this.#connections].map(([connection, openedAtMs]) => ({
      protocol: connection.protocol ?? "undecided",
      bufferedBytes: connection.bufferedBytes,
      queuedRequests: connection.queuedRequests,
      ...connection.peer,
      openedAtMs,
    }))
  }
}
