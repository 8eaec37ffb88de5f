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
    socket: {
      open(socket) {
        socket.setKeepAlive(true, KEEPALIVE_DELAY_MS)
        if (options.idleTimeoutSeconds) socket.timeout(options.idleTimeoutSeconds)
        if (!registry.admit(socket.remoteAddress)) {
          // No reply: the protocol is not known yet. The client sees the connection close.
          socket.data = { connection: null, principal: null }
          socket.end()
          return
        }
        socket.data = { connection: registry.open(new TcpTransport(socket as Socket<unknown>)), principal: null }
      },
      timeout(socket) {
        log(`closing idle connection from ${socket.remoteAddress}`)
        socket.end()
      },
      data(socket, chunk) {
        registry.guarded("data", socket.remoteAddress, () => socket.data.connection?.onData(chunk), () => socket.terminate())
      },
      drain(socket) {
        registry.guarded("drain", socket.remoteAddress, () => socket.data.connection?.onDrain(), () => socket.terminate())
      },
      close(socket) {
        if (socket.data.connection !== null) registry.closed(socket.data.connection)
      },
      error(socket, error) {
        log(`socket error from ${socket.remoteAddress}: ${error.message}`)
      },
    },
  })
}
