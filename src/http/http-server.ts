/**
 * The HTTP port: Bun.serve for WebSocket clients (upstream 1.x JSON, binary frames) at `/`,
 * and the HTTP API everywhere else.
 */
import type { Server, ServerWebSocket } from "bun"
import { bearerToken } from "../auth/auth.ts"
import dashboardPage from "../dashboard/index.html"
import type { RelayPeer, RelayPeers } from "../net/http-relay.ts"
import { WebSocketTransport } from "../net/websocket-transport.ts"
import type { ConnectionRegistry, SocketData } from "../server/connection-registry.ts"
import { type HttpContext, handleHttp, json, MAX_DISCARDED_BODY_BYTES, requestUrl } from "./http-api.ts"

/**
 * Where Bun itself would start dropping WebSocket output: far above the connection's own
 * outbound cap, which the connection enforces, so Bun never has to.
 */
const WEBSOCKET_BACKPRESSURE_LIMIT = 64 * 1024 * 1024

export interface HttpServerOptions {
  readonly host: string
  readonly port: number
  readonly tls?: { readonly cert: string; readonly key: string }
  readonly maxMessageBytes: number
  readonly log: (line: string) => void
  /**
   * Set for the internal listener that HTTP on the TCP port is piped to (src/net/http-relay.ts):
   * it serves only the relays' connections, as the clients behind them.
   */
  readonly relayPeers?: RelayPeers
}

/** A WebSocket's data: whose connection it is, and who is really at the other end. */
export interface WebSocketData extends SocketData {
  readonly remoteAddress: string
  /** The TCP port's relay this WebSocket came through, if it did. */
  readonly relayPeer: RelayPeer | null
}

export function serveHttp(options: HttpServerOptions, registry: ConnectionRegistry, api: HttpContext): Server<WebSocketData> {
  const { log, relayPeers } = options
  return Bun.serve<WebSocketData>({
    hostname: options.host,
    port: options.port,
    ...(options.tls === undefined ? {} : { tls: { cert: options.tls.cert, key: options.tls.key } }),
    // Bun closes on a larger body; below this the API reads and discards an oversized body and
    // answers 413 in JSON, which clients that send the whole body before reading can see.
    maxRequestBodySize: Math.max(MAX_DISCARDED_BODY_BYTES, options.maxMessageBytes * 2 + 1024),
    // The dashboard page and its bundled assets. A WebSocket upgrade of `/` still reaches `fetch`.
    routes: { "/": dashboardPage },
    // Bundled once and cached, minified, without the development overlay.
    development: false,
    fetch(request, server) {
      const ip = server.requestIP(request)
      const relayPeer = relayPeers === undefined ? null : (relayPeers.find(ip?.port) ?? null)
      // Anyone else on this machine could connect to the internal listener's port: not served.
      if (relayPeers !== undefined && relayPeer === null) return new Response(null, { status: 403 })
      const remoteAddress = relayPeer?.remoteAddress ?? ip?.address ?? "?"
      const url = requestUrl(request)
      if (url.pathname === "/" && request.headers.get("upgrade")?.toLowerCase() === "websocket") {
        // A token may come with the upgrade (browsers cannot set headers: ?token=); without
        // one, the client may still authenticate inside the protocol (HELLO, auth action).
        const token = bearerToken(request, url)
        const principal = token === null ? null : api.auth.authenticate(token)
        if (token !== null && principal === null) {
          api.countError("unauthorized")
          return new Response("the token is not valid", { status: 401, headers: { "WWW-Authenticate": "Bearer" } })
        }
        // A relayed client was admitted, and is counted, as the TCP connection it came on.
        if (relayPeer === null && !registry.admit(remoteAddress)) {
          return json(503, { error: { code: "limit_exceeded", text: "too many connections" } }, { "Retry-After": "1" })
        }
        // The Connection is made in `open`, once the upgrade has succeeded.
        if (server.upgrade(request, { data: { connection: null, principal, remoteAddress, relayPeer } })) return undefined
        return new Response("WebSocket upgrade failed", { status: 400 })
      }
      return handleHttp(request, url, server, api)
    },
    error(error) {
      log(`internal error in the HTTP API: ${String(error)}`)
      return json(500, { error: { code: "internal", text: "internal server error" } })
    },
    websocket: {
      perMessageDeflate: false,
      maxPayloadLength: options.maxMessageBytes,
      backpressureLimit: WEBSOCKET_BACKPRESSURE_LIMIT,
      closeOnBackpressureLimit: false,
      open(socket) {
        const { principal, remoteAddress, relayPeer } = socket.data
        socket.data.connection = registry.open(new WebSocketTransport(socket as ServerWebSocket<unknown>, remoteAddress), principal)
        relayPeer?.onWebSocket()
      },
      message(socket, message) {
        registry.guarded(
          "a WebSocket message",
          socket.data.remoteAddress,
          () => socket.data.connection?.onMessage(message),
          () => socket.terminate(),
        )
      },
      drain(socket) {
        registry.guarded(
          "drain",
          socket.data.remoteAddress,
          () => socket.data.connection?.onDrain(),
          () => socket.terminate(),
        )
      },
      close(socket) {
        if (socket.data.connection !== null) registry.closed(socket.data.connection)
      },
    },
  })
}
