/**
 * The server: a TCP listener (Bun.listen) for the JSON and binary protocols, and an HTTP
 * listener (Bun.serve) for upstream 1.x WebSocket clients, binary frames over WebSocket, the
 * HTTP API, health and metrics. Both serve one broker. Socket handlers are declared once; each
 * socket's state is a Connection in its `data`.
 */
import type { Server, ServerWebSocket, Socket, TCPSocketListener } from "bun"
import { Authenticator, bearerToken, type AuthConfig, type Principal } from "../auth/auth.ts"
import { Broker } from "../broker/broker.ts"
import { handleHttp } from "../http/http-api.ts"
import { TcpTransport } from "../net/tcp-transport.ts"
import { WebSocketTransport } from "../net/websocket-transport.ts"
import { DEFAULT_RETENTION, type RetentionConfig } from "../broker/retention.ts"
import { Store, type SyncLevel } from "../store/store.ts"
import { Connection, type ConnectionContext } from "./connection.ts"
import type { ConnectionLimits } from "./session.ts"
import { collectStats, ErrorCounts, type ServerStats } from "./stats.ts"

export type { ServerStats } from "./stats.ts"

export interface ServerOptions {
  readonly host: string
  /** TCP port; 0 picks a free port, the chosen one is in `RunningServer.port`. */
  readonly port: number
  /** HTTP/WebSocket port; 0 picks a free port; null: no HTTP listener. */
  readonly httpPort: number | null
  readonly maxMessageBytes: number
  readonly allowShutdown: boolean
  /** How much the store keeps (DEFAULT_RETENTION when omitted). */
  readonly retention?: RetentionConfig
  /** A database file for durable storage; in memory when omitted. */
  readonly db?: string
  readonly sync?: SyncLevel
  /** How long stopping may wait for clients to take their last replies (default 5 s). */
  readonly shutdownTimeoutMs?: number
  /** Close TCP connections that send nothing for this long; 0 or omitted: never. */
  readonly idleTimeoutSeconds?: number
  /** Tokens and their topic permissions; omitted or null: no authentication. */
  readonly auth?: AuthConfig | null
  /** PEM certificate and key: TLS on the TCP port, HTTPS and WSS on the HTTP port. */
  readonly tls?: { readonly cert: string; readonly key: string }
  /** Per-connection and server-wide limits; each defaults to DEFAULT_LIMITS. */
  readonly limits?: Partial<ServerLimits>
  /** Where the server reports closed connections and other events; silent when omitted. */
  readonly log?: (line: string) => void
}

export const DEFAULT_HOST = "127.0.0.1"
export const DEFAULT_PORT = 30008
export const DEFAULT_HTTP_PORT = 30009
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 5000

export interface ServerLimits {
  /** Open TCP and WebSocket connections; more are refused. */
  readonly maxConnections: number
  /** Output waiting for one slow reader before its requests stop running. */
  readonly maxOutboundBytes: number
  readonly maxSubscriptions: number
  readonly maxPendingWaits: number
}
/** TCP keepalive probes start after this much silence, so half-open connections are found. */
const KEEPALIVE_DELAY_MS = 30_000
/** Output waiting for one slow reader before its requests stop running: a few large replies. */
export const MAX_OUTBOUND_BYTES = 4 * 1024 * 1024

export const DEFAULT_LIMITS: ServerLimits = {
  maxConnections: 1024,
  maxOutboundBytes: MAX_OUTBOUND_BYTES,
  maxSubscriptions: 1024,
  maxPendingWaits: 1024,
}
/**
 * Where Bun itself would start dropping WebSocket output: far above MAX_OUTBOUND_BYTES, which
 * the connection enforces, so Bun never has to.
 */
const WEBSOCKET_BACKPRESSURE_LIMIT = 64 * 1024 * 1024

export interface RunningServer {
  readonly host: string
  readonly port: number
  /** The HTTP/WebSocket port, or null when it is off. */
  readonly httpPort: number | null
  readonly broker: Broker
  stats(): ServerStats
  /**
   * Stops accepting, answers pending waits with "nothing", lets clients take their last
   * replies (up to the shutdown timeout), then closes every connection and the store.
   */
  stop(): void
  /** Resolves once the server has stopped, by `stop()` or by an allowed `shutdown` request. */
  readonly stopped: Promise<void>
}

interface SocketData {
  /** null for a connection refused at the connection limit. */
  connection: Connection | null
  /** Who a WebSocket's upgrade request authenticated as (its bearer token), if anyone. */
  principal: Principal | null
}

export function startServer(options: ServerOptions): RunningServer {
  const store = new Store({ ...(options.db === undefined ? {} : { path: options.db }), sync: options.sync ?? "normal" })
  const broker = new Broker(store, options.retention ?? DEFAULT_RETENTION)
  const auth = new Authenticator(options.auth ?? null)
  const connections = new Set<Connection>()
  const errors = new ErrorCounts()
  const log = options.log ?? (() => {})
  const serverLimits: ServerLimits = { ...DEFAULT_LIMITS, ...options.limits }
  const limits: ConnectionLimits = {
    maxFrameBytes: options.maxMessageBytes,
    maxOutboundBytes: serverLimits.maxOutboundBytes,
    maxSubscriptions: serverLimits.maxSubscriptions,
    maxPendingWaits: serverLimits.maxPendingWaits,
  }
  /** True (and counted, logged) when a new connection would pass --max-connections. */
  const atConnectionLimit = (remote: string): boolean => {
    if (connections.size < serverLimits.maxConnections) return false
    countError("limit_exceeded")
    log(`refusing a connection from ${remote}: at the limit of ${serverLimits.maxConnections} connections`)
    return true
  }
  const { promise: stopped, resolve: resolveStopped } = Promise.withResolvers<void>()
  let tcp: TCPSocketListener<SocketData> | null = null
  let http: Server<SocketData> | null = null
  let running = true

  const stats = (): ServerStats =>
    collectStats(
      broker,
      errors,
      [...connections].map((connection) => ({
        protocol: connection.protocol ?? "undecided",
        bufferedBytes: connection.bufferedBytes,
        queuedRequests: connection.queuedRequests,
      })),
    )

  const shutdown = new AbortController()
  let finishStop: (() => void) | null = null
  const stop = (): void => {
    if (!running) return
    running = false
    tcp?.stop(false)
    void http?.stop(false)
    // Event streams end; long polls and pending waits are answered with "nothing".
    shutdown.abort()
    broker.releaseAllWaiters()
    for (const connection of connections) connection.beginShutdown()
    const deadline = setTimeout(() => finish(), options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS)
    const finish = (): void => {
      finishStop = null
      clearTimeout(deadline)
      tcp?.stop(true)
      void http?.stop(true)
      broker.close()
      store.close()
      resolveStopped()
    }
    finishStop = finish
    if (connections.size === 0) finish()
  }

  const countError = errors.count.bind(errors)
  const context: ConnectionContext = {
    broker,
    limits,
    allowShutdown: options.allowShutdown,
    auth,
    // Deferred so the request that asked for it finishes before the store closes.
    requestShutdown: () => void setImmediate(stop),
    countError,
    stats,
    log,
  }

  /** A bug or a store failure costs one connection, never the server. */
  const guarded = (what: string, remote: string, work: () => void, abort: () => void): void => {
    try {
      work()
    } catch (error) {
      log(`internal error while handling ${what} from ${remote}: ${String(error)}`)
      abort()
    }
  }
  const open = (transport: ConstructorParameters<typeof Connection>[0], principal: Principal | null = null): Connection => {
    const connection = new Connection(transport, context, principal)
    connections.add(connection)
    return connection
  }
  const closed = (connection: Connection): void => {
    connections.delete(connection)
    connection.onClose()
    if (connections.size === 0) finishStop?.()
  }

  try {
    tcp = Bun.listen<SocketData>({
      hostname: options.host,
      port: options.port,
      ...(options.tls === undefined ? {} : { tls: { cert: options.tls.cert, key: options.tls.key } }),
      socket: {
        open(socket) {
          socket.setKeepAlive(true, KEEPALIVE_DELAY_MS)
          if (options.idleTimeoutSeconds) socket.timeout(options.idleTimeoutSeconds)
          if (atConnectionLimit(socket.remoteAddress)) {
            // No reply: the protocol is not known yet. The client sees the connection close.
            socket.data = { connection: null, principal: null }
            socket.end()
            return
          }
          socket.data = { connection: open(new TcpTransport(socket as Socket<unknown>)), principal: null }
        },
        timeout(socket) {
          log(`closing idle connection from ${socket.remoteAddress}`)
          socket.end()
        },
        data(socket, chunk) {
          guarded("data", socket.remoteAddress, () => socket.data.connection?.onData(chunk), () => socket.terminate())
        },
        drain(socket) {
          guarded("drain", socket.remoteAddress, () => socket.data.connection?.onDrain(), () => socket.terminate())
        },
        close(socket) {
          if (socket.data.connection !== null) closed(socket.data.connection)
        },
        error(socket, error) {
          log(`socket error from ${socket.remoteAddress}: ${error.message}`)
        },
      },
    })
    if (options.httpPort !== null) {
      http = Bun.serve<SocketData>({
        hostname: options.host,
        port: options.httpPort,
        ...(options.tls === undefined ? {} : { tls: { cert: options.tls.cert, key: options.tls.key } }),
        // Bun answers a larger body with an empty 413; below this the API answers in JSON.
        maxRequestBodySize: options.maxMessageBytes * 2 + 1024,
        fetch(request, server) {
          const url = new URL(request.url)
          if (url.pathname === "/" && request.headers.get("upgrade")?.toLowerCase() === "websocket") {
            // A token may come with the upgrade (browsers cannot set headers: ?token=); without
            // one, the client may still authenticate inside the protocol (HELLO, auth action).
            const token = bearerToken(request, url)
            const principal = token === null ? null : auth.authenticate(token)
            if (token !== null && principal === null) {
              countError("unauthorized")
              return new Response("the token is not valid", { status: 401, headers: { "WWW-Authenticate": "Bearer" } })
            }
            if (atConnectionLimit(server.requestIP(request)?.address ?? "?")) {
              return new Response(JSON.stringify({ error: { code: "limit_exceeded", text: "too many connections" } }), {
                status: 503,
                headers: { "Content-Type": "application/json; charset=utf-8", "Retry-After": "1" },
              })
            }
            // The Connection is made in `open`, once the upgrade has succeeded.
            if (server.upgrade(request, { data: { connection: null, principal } })) return undefined
            return new Response("WebSocket upgrade failed", { status: 400 })
          }
          return handleHttp(request, server, {
            auth,
            broker,
            maxMessageBytes: options.maxMessageBytes,
            stats,
            countError,
            shutdown: shutdown.signal,
          })
        },
        error(error) {
          log(`internal error in the HTTP API: ${String(error)}`)
          return new Response(JSON.stringify({ error: { code: "internal", text: "internal server error" } }), {
            status: 500,
            headers: { "Content-Type": "application/json; charset=utf-8" },
          })
        },
        websocket: {
          perMessageDeflate: false,
          maxPayloadLength: options.maxMessageBytes,
          backpressureLimit: WEBSOCKET_BACKPRESSURE_LIMIT,
          closeOnBackpressureLimit: false,
          open(socket) {
            socket.data.connection = open(new WebSocketTransport(socket as ServerWebSocket<unknown>), socket.data.principal)
          },
          message(socket, message) {
            guarded("a WebSocket message", socket.remoteAddress, () => socket.data.connection?.onMessage(message), () => socket.terminate())
          },
          drain(socket) {
            guarded("drain", socket.remoteAddress, () => socket.data.connection?.onDrain(), () => socket.terminate())
          },
          close(socket) {
            if (socket.data.connection !== null) closed(socket.data.connection)
          },
        },
      })
    }
  } catch (error) {
    const failedPort = tcp === null ? options.port : (options.httpPort ?? 0)
    tcp?.stop(true)
    broker.close()
    store.close()
    throw new ListenError(options.host, failedPort, error)
  }

  return {
    host: options.host,
    port: tcp.port,
    httpPort: http?.port ?? null,
    broker,
    stats,
    stop,
    stopped,
  }
}

export class ListenError extends Error {
  override readonly name = "ListenError"

  constructor(host: string, port: number, cause: unknown) {
    const code = (cause as { code?: string } | null)?.code
    const reason = code === "EADDRINUSE" ? "address already in use" : code === "EACCES" ? "permission denied" : String(cause)
    super(`cannot listen on ${host}:${port}: ${reason}`, { cause })
  }
}
