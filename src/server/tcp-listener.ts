/**
 * The TCP port: Bun.listen with one set of handlers for all sockets (no closures per
 * connection); each socket's Connection is in its `data`.
 */
import type { Socket, TCPSocketListener } from "bun"
import { TcpTransport } from "../net/tcp-transport.ts"
import type { ConnectionRegistry, SocketData } from "./connection-registry.ts"

/** TCP keepalive probes start after this much silence, so half-open connections are found. */
const KEEPALIVE_DELAY_MS = 30_000

export interface TcpListenerOptions {
  readonly host: string
  readonly port: number
  readonly tls?: { readonly cert: string; readonly key: string }
  /** Close connections silent for this long; 0 or omitted: never. */
  readonly idleTimeoutSeconds?: number
  readonly log: (line: string) => void
}

export function listenTcp(options: TcpListenerOptions, registry: ConnectionRegistry): TCPSocketListener<SocketData> {
  const { log } = options
  return Bun.listen<SocketData>({
    hostname: options.host,
    port: options.port,
    ...(options.tls === undefined ? {} : { tls: { cert: options.tls.cert, key: options.tls.key } }),
    // A client may send its requests and then half-close (`nc -N`, a script's shutdown(SHUT_WR)):
    // the socket stays open for the replies, and the connection ends it once they are out.
    allowHalfOpen: true,
    socket: {
      open(socket) {
        if (!registry.admit(socket.remoteAddress)) {
          // No reply: the protocol is not known yet. The client sees the connection close.
          socket.data = { connection: null, principal: null }
          socket.end()
          return
        }
        socket.setKeepAlive(true, KEEPALIVE_DELAY_MS)
        // Bun arms a 120 s timeout on every socket, which traffic does not reset: without
        // --idle-timeout it must be off, or every connection would be cut after two minutes.
        socket.timeout(options.idleTimeoutSeconds ?? 0)
        socket.data = { connection: registry.open(new TcpTransport(socket as Socket<unknown>)), principal: null }
      },
      timeout(socket) {
        // Bun's timer fires a fixed time after it was armed, busy or not: re-arm it for what is
        // left when the connection has been active since, and close only a silent one.
        const limitMs = (options.idleTimeoutSeconds ?? 0) * 1000
        const idleMs = Date.now() - (socket.data.connection?.lastActivityMs ?? 0)
        if (limitMs > 0 && idleMs < limitMs) {
          socket.timeout(Math.max(1, Math.ceil((limitMs - idleMs) / 1000)))
          return
        }
        log(`closing idle connection from ${socket.remoteAddress}`)
        socket.end()
      },
      data(socket, chunk) {
        registry.guarded(
          "data",
          socket.remoteAddress,
          () => {
            const connection = socket.data.connection
            // HTTP on this port: after its first bytes, the connection's relay takes the socket's events.
            if (connection?.relay) connection.relay.fromClient(chunk)
            else connection?.onData(chunk)
          },
          () => socket.terminate(),
        )
      },
      drain(socket) {
        registry.guarded(
          "drain",
          socket.remoteAddress,
          () => {
            const connection = socket.data.connection
            if (connection?.relay) connection.relay.clientDrained()
            else connection?.onDrain()
          },
          () => socket.terminate(),
        )
      },
      end(socket) {
        registry.guarded(
          "end",
          socket.remoteAddress,
          () => {
            const connection = socket.data.connection
            if (connection === null) socket.end()
            else if (connection.relay) connection.relay.clientEnded()
            else connection.onEnd()
          },
          () => socket.terminate(),
        )
      },
      close(socket) {
        socket.data.connection?.relay?.clientClosed()
        if (socket.data.connection !== null) registry.closed(socket.data.connection)
      },
      error(socket, error) {
        log(`socket error from ${socket.remoteAddress}: ${error.message}`)
      },
    },
  })
}
