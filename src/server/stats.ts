/**
 * The server's numbers, in one object: what the binary STATS request returns and what
 * GET /metrics exposes in the Prometheus text format.
 */
import type { BridgeState } from "../bridge/nats-bridge.ts"
import type { Broker } from "../broker/broker.ts"
import { ErrorCode, type ErrorName } from "../protocol/errors.ts"
import type { BufferBudget } from "./buffer-budget.ts"

export interface ServerStats {
  readonly connections: number
  readonly connectionsByProtocol: Readonly<Record<string, number>>
  /** Binary subscriptions and SSE streams. */
  readonly subscribers: number
  readonly puts: number
  readonly bytesPut: number
  /** Messages handed to readers (get replies, pushes, HTTP and SSE) and their payload bytes. */
  readonly deliveries: number
  readonly bytesDelivered: number
  readonly storedMessages: number
  readonly storedBytes: number
  /** Messages removed by retention since the server started. */
  readonly droppedByRetention: number
  readonly lastSeq: number
  readonly topics: number
  /** Topics retention emptied and the server then removed (src/broker/topic-reclaimer.ts). */
  readonly topicsReclaimed: number
  /** What the store's cap (--max-memory) counts: payloads, per-message overhead, topics and named cursors. */
  readonly storeUsedBytes: number
  /** Topic cursor entries all open readers hold (each at most --max-cursors). */
  readonly cursors: number
  /** Errors reported to clients, by code name. */
  readonly errors: Readonly<Record<ErrorName, number>>
  /** Seconds from put to delivery: bucket upper bounds and cumulative counts (the last is +Inf). */
  readonly deliveryLatency: {
    readonly bounds: readonly number[]
    readonly cumulative: readonly number[]
    readonly sum: number
    readonly count: number
  }
  /** Bytes held for all clients (the server-wide budget's figure), the budget, and the connections it pauses. */
  readonly bufferedBytes: number
  readonly maxBufferedBytes: number
  readonly budgetPausedConnections: number
  /** The most bytes any one connection holds right now (unfinished request + unsent output). */
  readonly maxConnectionBufferedBytes: number
  readonly queuedRequests: number
  /** CPU time the server process has used (user + system), for cost-per-operation figures. */
  readonly cpuMicros: number
  /** The NATS bridge (src/bridge/), when one is configured. */
  readonly bridge: BridgeState | null
}

export interface ConnectionSnapshot {
  readonly protocol: string
  readonly bufferedBytes: number
  readonly queuedRequests: number
  readonly remoteAddress: string
  /** The principal's name once the client authenticated (with tokens), "anyone" without tokens; null until known. */
  readonly principal: string | null
  readonly subscriptions: number
  /** When the connection was accepted (ms since the epoch). */
  readonly openedAtMs: number
}

export class ErrorCounts {
  readonly #counts = Object.fromEntries(Object.keys(ErrorCode).map((name) => [name, 0])) as Record<ErrorName, number>

  count(name: ErrorName): void {
    this.#counts[name]++
  }

  snapshot(): Record<ErrorName, number> {
    return { ...this.#counts }
  }
}

export function collectStats(
  broker: Broker,
  errors: ErrorCounts,
  connections: Iterable<ConnectionSnapshot>,
  budget: BufferBudget,
  bridge: (() => BridgeState) | null = null,
): ServerStats {
  let count = 0
  let maxConnectionBufferedBytes = 0
  let queuedRequests = 0
  const connectionsByProtocol: Record<string, number> = {}
  for (const connection of connections) {
    count++
    maxConnectionBufferedBytes = Math.max(maxConnectionBufferedBytes, connection.bufferedBytes)
    queuedRequests += connection.queuedRequests
    connectionsByProtocol[connection.protocol] = (connectionsByProtocol[connection.protocol] ?? 0) + 1
  }
  const { counters, store } = broker
  const latency = counters.deliveryLatency
  const cpu = process.cpuUsage()
  return {
    connections: count,
    connectionsByProtocol,
    subscribers: broker.subscriberCount,
    puts: counters.puts,
    bytesPut: counters.bytesPut,
    deliveries: counters.deliveries,
    bytesDelivered: counters.bytesDelivered,
    storedMessages: store.messageCount,
    storedBytes: store.payloadBytes,
    droppedByRetention: broker.retention.droppedCount,
    lastSeq: store.lastSeq,
    topics: store.topicCount,
    topicsReclaimed: broker.reclaimer.reclaimedCount,
    storeUsedBytes: broker.retention.usedStoreBytes,
    cursors: broker.cursorCount,
    errors: errors.snapshot(),
    deliveryLatency: { bounds: latency.bounds, cumulative: latency.cumulative(), sum: latency.sum, count: latency.count },
    bufferedBytes: budget.totalBytes,
    maxBufferedBytes: budget.maxBytes,
    budgetPausedConnections: budget.pausedCount,
    maxConnectionBufferedBytes,
    queuedRequests,
    cpuMicros: cpu.user + cpu.system,
    bridge: bridge === null ? null : bridge(),
  }
}
