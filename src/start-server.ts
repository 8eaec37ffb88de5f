/**
 * The server: one broker (store, retention, authentication) behind two doors, the TCP port
 * (tcp-listener.ts: upstream JSON and binary protocols) and the HTTP port (http-server.ts:
 * WebSocket, HTTP API, health and metrics); and its lifecycle, from listening to a graceful stop.
 */
import type { Server, TCPSocketListener } from "bun"
import { type AuthConfig, Authenticator } from "./auth/auth.ts"
import type { BridgeConfig } from "./bridge/config.ts"
import type { BridgeState, NatsBridge } from "./bridge/nats-bridge.ts"
import { patternToSubjects } from "./bridge/subjects.ts"
import { Broker, DEFAULT_MAX_CURSORS } from "./broker/broker.ts"
import { DEFAULT_RETENTION, type RetentionConfig } from "./broker/retention.ts"
import {
  DEFAULT_AUTH_TIMEOUT_SECONDS,
  DEFAULT_HOST,
  DEFAULT_MAX_BUFFERED_BYTES,
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_PORT,
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
  MAX_OUTBOUND_BYTES,
} from "./config/settings.ts"
import { DashboardFeed } from "./http/dashboard-feed.ts"
import { serveHttp, type WebSocketData } from "./http/http-server.ts"
import type { StatsSources } from "./http/stats-document.ts"
import { RelayPeers } from "./net/http-relay.ts"
import { BufferBudget, MAX_PAUSE_MS } from "./server/buffer-budget.ts"
import type { ConnectionContext } from "./server/connection-context.ts"
import { ConnectionRegistry, type SocketData } from "./server/connection-registry.ts"
import { type CounterSample, RateMeter, SAMPLE_INTERVAL_MS } from "./server/rate-meter.ts"
import type { ConnectionLimits } from "./server/session.ts"
import { collectStats, ErrorCounts, type ServerStats } from "./server/stats.ts"
import { listenTcp } from "./server/tcp-listener.ts"
import { Store, type SyncLevel } from "./store/store.ts"

export type { ServerStats } from "./server/stats.ts"

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
  /** Topics mirrored to and from NATS (src/bridge/); none when omitted. */
  readonly bridge?: BridgeConfig | null
}

export { DEFAULT_HOST, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PORT, DEFAULT_SHUTDOWN_TIMEOUT_MS, MAX_OUTBOUND_BYTES }
export const DEFAULT_HTTP_PORT = DEFAULT_PORT + 1

export interface ServerLimits {
  /** Open TCP and WebSocket connections; more are refused. */
  readonly maxConnections: number
  /** Output waiting for one slow reader before its requests stop running. */
  readonly maxOutboundBytes: number
  readonly maxSubscriptions: number
  readonly maxPendingWaits: number
  /** Topics one connection (or one HTTP read) may keep a read position for. */
  readonly maxCursors: number
  /** Bytes held for all clients together (src/server/buffer-budget.ts). */
  readonly maxBufferedBytes: number
  /** How long the budget lets a paused connection go without shrinking before it closes it (no flag: tests shorten it). */
  readonly budgetPauseMs: number
  /** Seconds a connection has to authenticate (with tokens) or to finish a started first frame; 0: no limit. */
  readonly authTimeoutSeconds: number
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxConnections: 1024,
  maxOutboundBytes: MAX_OUTBOUND_BYTES,
  maxSubscriptions: 1024,
  maxPendingWaits: 1024,
  maxCursors: DEFAULT_MAX_CURSORS,
  maxBufferedBytes: DEFAULT_MAX_BUFFERED_BYTES,
  budgetPauseMs: MAX_PAUSE_MS,
  authTimeoutSeconds: DEFAULT_AUTH_TIMEOUT_SECONDS,
}

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
  stop(): StopProgress
  /** Stops at once: closes every connection and the store without waiting for slow readers. */
  stopNow(): void
  /** Resolves once the server has stopped, by `stop()` or by an allowed `shutdown` request. */
  readonly stopped: Promise<void>
}

function openStore(options: ServerOptions): Store {
  try {
    return new Store({ ...(options.db === undefined ? {} : { path: options.db }), sync: options.sync ?? "normal" })
  } catch (error) {
    // SQLite says "unable to open database file" for a missing folder or a file it may not write.
    const reason = error instanceof Error ? error.message : String(error)
    throw new StartupError(`cannot open the database ${options.db ?? ":memory:"}: ${reason}`, { cause: error })
  }
}

/** What a graceful stop waits for: clients still connected and the replies they have not taken. */
export interface StopProgress {
  readonly clients: number
  readonly bufferedBytes: number
  readonly timeoutMs: number
}

export function startServer(options: ServerOptions): RunningServer {
  const store = openStore(options)
  const maxCursors = options.limits?.maxCursors ?? DEFAULT_LIMITS.maxCursors
  const broker = new Broker(store, options.retention ?? DEFAULT_RETENTION, maxCursors)
  const auth = new Authenticator(options.auth ?? null)
  const errors = new ErrorCounts()
  const countError = errors.count.bind(errors)
  const log = options.log ?? (() => {})
  const serverLimits: ServerLimits = { ...DEFAULT_LIMITS, ...options.limits }
  const limits: ConnectionLimits = {
    maxFrameBytes: options.maxMessageBytes,
    maxOutboundBytes: serverLimits.maxOutboundBytes,
    maxSubscriptions: serverLimits.maxSubscriptions,
    maxPendingWaits: serverLimits.maxPendingWaits,
    authTimeoutMs: serverLimits.authTimeoutSeconds * 1000,
  }
  const { promise: stopped, resolve: resolveStopped } = Promise.withResolvers<void>()
  let tcp: TCPSocketListener<SocketData> | null = null
  let http: Server<WebSocketData> | null = null
  /** Where HTTP on the TCP port is served: a loopback listener only the TCP port's relays use. */
  let internalHttp: Server<WebSocketData> | null = null
  const relayPeers = new RelayPeers()
  let running = true

  const budget = new BufferBudget(serverLimits.maxBufferedBytes, serverLimits.budgetPauseMs)
  // The NATS client is loaded only when a bridge is configured: a server without one needs no package.
  const bridgeConfig = options.bridge ?? null
  let bridge: NatsBridge | null = null
  const bridgeState = bridgeConfig === null ? null : () => bridge?.state() ?? bridgeStarting(bridgeConfig)
  const stats = (): ServerStats => collectStats(broker, errors, registry.snapshot(), budget, bridgeState)

  const shutdown = new AbortController()
  const monitor = startMonitor(broker, stats, () => registry.snapshot(), shutdown.signal)
  const dashboard = new DashboardFeed(broker, monitor, shutdown.signal)
  let finish: (() => void) | null = null
  const timeoutMs = options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS
  const progress = (): StopProgress => {
    const connections = registry.snapshot()
    const bufferedBytes = connections.reduce((sum, connection) => sum + connection.bufferedBytes, 0)
    return { clients: connections.length, bufferedBytes, timeoutMs }
  }
  const stop = (): StopProgress => {
    if (!running) return progress()
    running = false
    tcp?.stop(false)
    void http?.stop(false)
    void internalHttp?.stop(false)
    // Event streams end; long polls and pending waits are answered with "nothing".
    shutdown.abort()
    void bridge?.stop()
    bridge = null
    broker.releaseAllWaiters()
    registry.beginShutdown()
    const deadline = setTimeout(() => finish?.(), timeoutMs)
    finish = (): void => {
      finish = null
      registry.onEmpty = null
      clearTimeout(deadline)
      tcp?.stop(true)
      void http?.stop(true)
      void internalHttp?.stop(true)
      budget.close()
      broker.close()
      store.close()
      resolveStopped()
    }
    registry.onEmpty = finish
    const waitingFor = progress()
    if (registry.isEmpty) finish()
    return waitingFor
  }
  const stopNow = (): void => {
    stop()
    finish?.()
  }

  const context: Omit<ConnectionContext, "httpRelay"> = {
    broker,
    budget,
    limits,
    allowShutdown: options.allowShutdown,
    auth,
    // Deferred so the request that asked for it finishes before the store closes.
    requestShutdown: () => void setImmediate(stop),
    countError,
    stats,
    log,
  }
  const registry = new ConnectionRegistry(context, serverLimits.maxConnections, {
    port: () => internalHttp?.port ?? 0,
    peers: relayPeers,
  })
  const tls = options.tls === undefined ? {} : { tls: options.tls }

  try {
    tcp = listenTcp(
      {
        host: options.host,
        port: options.port,
        ...tls,
        log,
        ...(options.idleTimeoutSeconds ? { idleTimeoutSeconds: options.idleTimeoutSeconds } : {}),
      },
      registry,
    )
    const api = {
      auth,
      broker,
      maxMessageBytes: options.maxMessageBytes,
      budget,
      stats,
      countError,
      shutdown: shutdown.signal,
      monitor,
      dashboard,
    }
    const httpOptions = { maxMessageBytes: options.maxMessageBytes, log }
    // Plain HTTP: a TLS client's bytes reach it already decrypted by the TCP port.
    internalHttp = serveHttp({ ...httpOptions, host: "127.0.0.1", port: 0, relayPeers }, registry, api)
    if (options.httpPort !== null) http = serveHttp({ ...httpOptions, host: options.host, port: options.httpPort, ...tls }, registry, api)
  } catch (error) {
    const secure = options.tls !== undefined
    const [listener, host, port] =
      tcp === null
        ? [secure ? "tls" : "tcp", options.host, options.port]
        : internalHttp === null
          ? ["the internal http relay", "127.0.0.1", 0]
          : [secure ? "https" : "http", options.host, options.httpPort ?? 0]
    tcp?.stop(true)
    void internalHttp?.stop(true)
    shutdown.abort()
    broker.close()
    store.close()
    throw StartupError.of(listener, host, port, error)
  }

  // Only once both ports serve: an unreachable NATS never keeps local clients waiting.
  if (bridgeConfig !== null) {
    void import("./bridge/nats-bridge.ts").then(
      ({ NatsBridge }) => {
        if (!running) return
        bridge = new NatsBridge(broker, budget, bridgeConfig, log)
        bridge.start()
      },
      (error: unknown) => log(`bridge: cannot load the NATS client (run bun install): ${String(error)}`),
    )
  }
  return {
    host: options.host,
    port: tcp.port,
    httpPort: http?.port ?? null,
    broker,
    stats,
    stop,
    stopNow,
    stopped,
  }
}

/** Samples the counters once a second (for rates) until the server stops; what /stats reads. */
function startMonitor(
  broker: Broker,
  stats: () => ServerStats,
  connections: StatsSources["connections"],
  shutdown: AbortSignal,
): StatsSources {
  const sample = (): CounterSample => ({
    atMs: Date.now(),
    puts: broker.counters.puts,
    deliveries: broker.counters.deliveries,
    latency: broker.counters.deliveryLatency.cumulative(),
  })
  const meter = new RateMeter(broker.counters.deliveryLatency.bounds, sample())
  const timer = setInterval(() => meter.record(sample()), SAMPLE_INTERVAL_MS)
  // The sampler never keeps the process alive on its own.
  timer.unref()
  shutdown.addEventListener("abort", () => clearInterval(timer), { once: true })
  return { stats, connections, meter, startedAtMs: Date.now(), maxStoreBytes: broker.retention.config.maxStoreBytes }
}

/** The bridge's state while its NATS client is still loading: not connected, nothing sent yet. */
function bridgeStarting(config: BridgeConfig): BridgeState {
  const subjectsOf = (pattern: string) => patternToSubjects(pattern, config.prefix)
  return {
    connected: false,
    server: null,
    lastError: null,
    exported: 0,
    imported: 0,
    exports: config.exports.map((rule) => ({ ...rule, subjects: subjectsOf(rule.pattern), exported: 0, lagMessages: 0, position: 0 })),
    imports: config.imports.map((rule) => ({ ...rule, subjects: subjectsOf(rule.pattern), imported: 0, dropped: 0, redelivered: 0 })),
  }
}

/** A reason the server cannot start, in one line for the person starting it. */
export class StartupError extends Error {
  override readonly name = "StartupError"

  /** `cannot listen on tcp 127.0.0.1:30008: address already in use`. */
  static of(listener: string, host: string, port: number, cause: unknown): StartupError {
    const code = (cause as { code?: string } | null)?.code
    const reason =
      code === "EADDRINUSE"
        ? "address already in use"
        : code === "EACCES"
          ? "permission denied"
          : code === "EADDRNOTAVAIL"
            ? "no such address on this machine"
            : cause instanceof Error
              ? cause.message
              : String(cause)
    const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`
    return new StartupError(`cannot listen on ${listener} ${address}: ${reason}`, { cause })
  }
}
