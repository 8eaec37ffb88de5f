/**
 * GET /stats and GET /stats/connections: the server's numbers as JSON, for scripts and for the
 * dashboard, which reads the same documents (every field is described in the README).
 */
import { VERSION } from "../config/version.ts"
import type { RateMeter } from "../server/rate-meter.ts"
import type { ConnectionSnapshot, ServerStats } from "../server/stats.ts"

/** The window /stats reports delivery-latency percentiles over. */
export const LATENCY_WINDOW_MS = 60_000

export interface StatsSources {
  stats(): ServerStats
  connections(): ConnectionSnapshot[]
  readonly meter: RateMeter
  readonly startedAtMs: number
  /** --max-memory: the store's cap in bytes; null when there is none. */
  readonly maxStoreBytes: number | null
}

export function statsDocument(sources: StatsSources): object {
  const stats = sources.stats()
  const memory = process.memoryUsage()
  const rates = sources.meter.latest()
  return {
    version: VERSION,
    pid: process.pid,
    startedAt: new Date(sources.startedAtMs).toISOString(),
    uptimeSeconds: Math.round((Date.now() - sources.startedAtMs) / 100) / 10,
    memory: { rss: memory.rss, heapUsed: memory.heapUsed, storeBytes: stats.storeUsedBytes, maxMemory: sources.maxStoreBytes },
    connections: { total: stats.connections, byProtocol: stats.connectionsByProtocol },
    subscribers: stats.subscribers,
    puts: { total: stats.puts, bytes: stats.bytesPut, perSecond: rates.putsPerSecond },
    deliveries: { total: stats.deliveries, bytes: stats.bytesDelivered, perSecond: rates.deliveriesPerSecond },
    deliveryLatency: sources.meter.latency(LATENCY_WINDOW_MS),
    store: {
      messages: stats.storedMessages,
      payloadBytes: stats.storedBytes,
      topics: stats.topics,
      topicsReclaimed: stats.topicsReclaimed,
      lastSeq: stats.lastSeq,
      cursors: stats.cursors,
    },
    retention: { dropped: stats.droppedByRetention },
    errors: stats.errors,
    buffers: {
      bytes: stats.bufferedBytes,
      maxBytes: stats.maxBufferedBytes,
      pausedConnections: stats.budgetPausedConnections,
      maxConnectionBytes: stats.maxConnectionBufferedBytes,
      queuedRequests: stats.queuedRequests,
    },
    cpuSeconds: stats.cpuMicros / 1e6,
    bridge: stats.bridge,
  }
}

/** One connection as /stats/connections and the dashboard show it. */
export interface ConnectionInfo {
  readonly protocol: string
  readonly address: string
  readonly principal: string | null
  readonly subscriptions: number
  readonly bufferedBytes: number
  readonly queuedRequests: number
  readonly connectedAt: string
  readonly ageSeconds: number
}

export const DEFAULT_CONNECTIONS_PAGE = 100
export const MAX_CONNECTIONS_PAGE = 1000

/** A page of the open connections, oldest first. */
export function connectionsPage(sources: StatsSources, offset: number, limit: number): object {
  const all = sources.connections()
  const now = Date.now()
  return { total: all.length, offset, limit, connections: all.slice(offset, offset + limit).map((c) => connectionInfo(c, now)) }
}

export function connectionInfo(connection: ConnectionSnapshot, nowMs: number): ConnectionInfo {
  return {
    protocol: connection.protocol,
    address: connection.remoteAddress,
    principal: connection.principal,
    subscriptions: connection.subscriptions,
    bufferedBytes: connection.bufferedBytes,
    queuedRequests: connection.queuedRequests,
    connectedAt: new Date(connection.openedAtMs).toISOString(),
    ageSeconds: Math.round((nowMs - connection.openedAtMs) / 100) / 10,
  }
}
