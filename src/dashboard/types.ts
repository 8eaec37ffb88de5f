/**
 * The JSON the page reads: GET /stats and the `update` events of GET /stats/live (see the README).
 * Written out here rather than imported from src/http/: the page is type-checked on its own, with
 * the DOM's types and without Bun's, which the server's modules need.
 */

export interface StatsDocument {
  readonly version: string
  readonly pid: number
  readonly startedAt: string
  readonly uptimeSeconds: number
  readonly memory: { readonly rss: number; readonly heapUsed: number; readonly storeBytes: number; readonly maxMemory: number | null }
  readonly connections: { readonly total: number; readonly byProtocol: Readonly<Record<string, number>> }
  readonly subscribers: number
  readonly puts: Totals
  readonly deliveries: Totals
  readonly deliveryLatency: {
    readonly windowSeconds: number
    readonly count: number
    readonly p50: number | null
    readonly p90: number | null
    readonly p99: number | null
  }
  readonly store: { readonly messages: number; readonly payloadBytes: number; readonly topics: number }
  readonly retention: { readonly dropped: number }
  readonly errors: Readonly<Record<string, number>>
  readonly bridge: BridgeState | null
}

export interface BridgeState {
  readonly connected: boolean
  readonly server: string | null
  readonly lastError: string | null
  readonly exported: number
  readonly imported: number
  readonly exports: readonly { readonly pattern: string; readonly lagMessages: number }[]
}

export interface Totals {
  readonly total: number
  readonly bytes: number
  readonly perSecond: number
}

export interface RatePoint {
  readonly atMs: number
  readonly putsPerSecond: number
  readonly deliveriesPerSecond: number
}

export interface TopicRow {
  readonly topic: string
  readonly messages: number
  readonly bytes: number
  readonly perSecond: number
  readonly subscribers: number
  readonly lastPutAt: number | null
}

export interface ConnectionRow {
  readonly protocol: string
  readonly address: string
  readonly principal: string | null
  readonly subscriptions: number
  readonly bufferedBytes: number
  readonly ageSeconds: number
}

export interface TailMessage {
  readonly topic: string
  readonly seq: number
  readonly putAt: number
  readonly bytes: number
  readonly truncated: boolean
  readonly text?: string
  readonly hex?: string
}

export interface Update {
  readonly atMs: number
  readonly overview: StatsDocument
  readonly rate: RatePoint
  readonly history?: readonly RatePoint[]
  readonly topics?: { readonly total: number; readonly list: readonly TopicRow[] }
  readonly connections?: { readonly total: number; readonly list: readonly ConnectionRow[] }
  readonly tail?: { readonly name: string; readonly messages: readonly TailMessage[]; readonly skipped: number }
}
