/**
 * The TCP listener: Bun.listen with one set of handlers for all sockets (no closures per
 * connection); each socket's state is a Connection kept in `socket.data`.
 */
import type { Socket, TCPSocketListener } from "bun"
import { Broker } from "../broker/broker.ts"
import { Store } from "../store/store.ts"
import { Connection, type ConnectionContext } from "./connection.ts"
import type { ConnectionLimits } from "./session.ts"

export interface ServerOptions {
  readonly host: string
  /** 0 picks a free port; the chosen one is in `RunningServer.port`. */
  readonly port: number
  readonly maxMessageBytes: number
  readonly allowShutdown: boolean
  /** Where the server reports closed connections and other events; silent when omitted. */
  readonly log?: (line: string) => void
}

export const DEFAULT_HOST = "127.0.0.1"
export const DEFAULT_PORT = 30008
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
/** Replies waiting for one slow reader before its requests stop running: a few large replies. */
export const MAX_OUTBOUND_BYTES = 4 * 1024 * 1024

export interface ServerStats {
  readonly connections: number
  readonly connectionsByProtocol: Readonly<Record<string, number>>
  readonly subscribers: number
  readonly puts: number
  /** Messages handed to readers: get replies and subscription pushes. */
  readonly deliveries: number
  readonly storedMessages: number
  readonly lastSeq: number
  readonly topics: number
  /** The most bytes any one connection holds right now (unfinished request + unsent replies). */
  readonly maxConnectionBufferedBytes: number
  readonly queuedRequests: number
  /** CPU time the server process has used (user + system), for cost-per-operation figures. */
  readonly cpuMicros: number
}

export interface RunningServer {
  readonly host: string
  readonly port: number
  readonly broker: Broker
  stats(): ServerStats
  /** Stops accepting, answers pending waits with "nothing", closes every connection and the store. */
  stop(): void
  /** Resolves once the server has stopped, by `stop()` or by an allowed `shutdown` request. */
  readonly stopped: Promise<void>
}

export function startServer(options: ServerOptions): RunningServer {
  const broker = new Broker(new Store())
  const connections = new Set<Connection>()
  const log = options.log ?? (() => {})
  const limits: ConnectionLimits = {
    maxFrameBytes: options.maxMessageBytes,
    maxOutboundBytes: MAX_OUTBOUND_BYTES,
  }
  const { promise: stopped, resolve: resolveStopped } = Promise.withResolvers<void>()
  let listener: TCPSocketListener<Connection> | null = null

  const stop = (): void => {
    if (listener === null) return
    const closing = listener
    listener = null
    for (const connection of connections) connection.flushForShutdown()
    closing.stop(true)
    broker.releaseAllWaiters()
    broker.store.close()
    resolveStopped()
  }

  const collectStats = (): ServerStats => {
    let maxConnectionBufferedBytes = 0
    let queuedRequests = 0
    const connectionsByProtocol: Record<string, number> = {}
    for (const connection of connections) {
      maxConnectionBufferedBytes = Math.max(maxConnectionBufferedBytes, connection.bufferedBytes)
      queuedRequests += connection.queuedRequests
      const protocol = connection.protocol ?? "undecided"
      connectionsByProtocol[protocol] = (connectionsByProtocol[protocol] ?? 0) + 1
    }
    const cpu = process.cpuUsage()
    return {
      connections: connections.size,
      connectionsByProtocol,
      subscribers: broker.subscriberCount,
      puts: broker.counters.puts,
      deliveries: broker.counters.deliveries,
      storedMessages: broker.store.messageCount,
      lastSeq: broker.store.lastSeq,
      topics: broker.store.topicCount,
      maxConnectionBufferedBytes,
      queuedRequests,
      cpuMicros: cpu.user + cpu.system,
    }
  }

  const context: ConnectionContext = {
    broker,
    limits,
    allowShutdown: options.allowShutdown,
    // Deferred so the request that asked for it finishes before the store closes.
    requestShutdown: () => void setImmediate(stop),
    stats: collectStats,
    log,
  }

  const guarded = (socket: Socket<Connection>, what: string, work: () => void): void => {
    try {
      work()
    } catch (error) {
      // A bug or a store failure must cost one connection, never the server.
      log(`internal error while handling ${what} from ${socket.remoteAddress}: ${String(error)}`)
      socket.terminate()
    }
  }

  try {
    listener = Bun.listen<Connection>({
      hostname: options.host,
      port: options.port,
      socket: {
        open(socket) {
          const connection = new Connection(socket, context)
          socket.data = connection
          connections.add(connection)
        },
        data(socket, chunk) {
          guarded(socket, "data", () => socket.data.onData(chunk))
        },
        drain(socket) {
          guarded(socket, "drain", () => socket.data.onDrain())
        },
        close(socket) {
          connections.delete(socket.data)
          socket.data.onClose()
        },
        error(socket, error) {
          log(`socket error from ${socket.remoteAddress}: ${error.message}`)
        },
      },
    })
  } catch (error) {
    broker.store.close()
    throw new ListenError(options.host, options.port, error)
  }

  return {
    host: options.host,
    port: listener.port,
    broker,
    stats: collectStats,
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
