/**
 * The dashboard's live channel, GET /stats/live: one Server-Sent Events stream per open page.
 * Every UPDATE_INTERVAL_MS one shared tick computes the figures once (the /stats document, the
 * latest rate point, and once a second the topics and connections tables) and sends each viewer
 * one `update` event: the shared parts, the topics it may read, and its own tail's batch. The
 * tick runs only while someone watches; per message, a tail only notes its sequence number.
 *
 * Bounds: at most MAX_VIEWERS streams server-wide; a viewer that does not read its stream has
 * updates skipped once MAX_QUEUED_UPDATES wait for it (the next one it reads is whole again).
 */
import type { Principal } from "../auth/auth.ts"
import type { Broker, TopicFilter } from "../broker/broker.ts"
import { type RatePoint, SAMPLE_INTERVAL_MS } from "../server/rate-meter.ts"
import { DashboardTail } from "./dashboard-tail.ts"
import { connectionInfo, type StatsSources, statsDocument } from "./stats-document.ts"

export const UPDATE_INTERVAL_MS = 250
/** Topics and connections change slowly and cost more to list: once a second. */
const TABLES_EVERY_TICKS = SAMPLE_INTERVAL_MS / UPDATE_INTERVAL_MS
export const MAX_VIEWERS = 32
const MAX_QUEUED_UPDATES = 2
/** The most topics (most recently put first) and connections (oldest first) an update lists. */
export const MAX_TOPICS_SHOWN = 500
export const MAX_CONNECTIONS_SHOWN = 100
/** A comment now and then tells proxies and the page that an idle stream is alive. */
const KEEPALIVE_TICKS = 60

export interface TopicRow {
  readonly topic: string
  readonly messages: number
  readonly bytes: number
  /** Puts per second over the last second. */
  readonly perSecond: number
  readonly subscribers: number
  /** ms since the epoch; null when not known (no message stored since the server started). */
  readonly lastPutAt: number | null
}

export interface TailRequest {
  readonly name: string
  readonly limit: number
  readonly readable: TopicFilter | undefined
}

interface Viewer {
  readonly principal: Principal
  readonly controller: ReadableStreamDefaultController<Uint8Array>
  readonly tail: DashboardTail | null
  /** The first update carries the whole rate history; later ones only the newest point. */
  historySent: boolean
}

const encoder = new TextEncoder()

export class DashboardFeed {
  readonly #broker: Broker
  readonly #sources: StatsSources
  readonly #viewers = new Set<Viewer>()
  #timer: Timer | null = null
  #ticks = 0
  /** Each topic's put count at the previous tables tick, for its rate. */
  #previousOrdinals = new Map<string, number>()
  #previousTablesAtMs = 0
  #closed = false

  constructor(broker: Broker, sources: StatsSources, shutdown: AbortSignal) {
    this.#broker = broker
    this.#sources = sources
    shutdown.addEventListener("abort", () => this.#close(), { once: true })
  }

  get viewerCount(): number {
    return this.#viewers.size
  }

  get isFull(): boolean {
    return this.#viewers.size >= MAX_VIEWERS
  }

  /** A new viewer's stream; its first update goes out at once. */
  open(principal: Principal, tail: TailRequest | null): ReadableStream<Uint8Array> {
    let viewer: Viewer | null = null
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        if (this.#closed) return controller.close()
        const store = this.#broker.store
        const tailOf = tail === null ? null : new DashboardTail(tail.name, tail.limit, tail.readable, (seq, max) => store.preview(seq, max))
        viewer = { principal, controller, tail: tailOf, historySent: false }
        if (tailOf !== null) this.#broker.subscribe(tailOf.name, tailOf)
        this.#viewers.add(viewer)
        this.#send(viewer, this.#shared(true))
        this.#timer ??= setInterval(() => this.#tick(), UPDATE_INTERVAL_MS)
      },
      cancel: () => {
        if (viewer !== null) this.#remove(viewer)
      },
    })
  }

  #remove(viewer: Viewer): void {
    if (!this.#viewers.delete(viewer)) return
    if (viewer.tail !== null) this.#broker.unsubscribe(viewer.tail.name, viewer.tail)
    if (this.#viewers.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer)
      this.#timer = null
    }
  }

  #tick(): void {
    this.#ticks++
    const shared = this.#shared(this.#ticks % TABLES_EVERY_TICKS === 0)
    for (const viewer of this.#viewers) this.#send(viewer, shared)
  }

  /** What every viewer's update shares, computed (and serialized) once per tick. */
  #shared(withTables: boolean): SharedUpdate {
    const overview = JSON.stringify(statsDocument(this.#sources))
    const point = JSON.stringify(this.#sources.meter.latest())
    const topics = withTables ? this.#topicRows() : null
    let connections: string | null = null
    if (withTables) {
      const all = this.#sources.connections()
      const now = Date.now()
      const shown = all.slice(0, MAX_CONNECTIONS_SHOWN).map((connection) => connectionInfo(connection, now))
      connections = JSON.stringify({ total: all.length, list: shown })
    }
    return { overview, point, topics, topicsJson: new Map(), connections }
  }

  #send(viewer: Viewer, shared: SharedUpdate): void {
    const { controller } = viewer
    if ((controller.desiredSize ?? 0) <= -MAX_QUEUED_UPDATES) return
    let body = `{"atMs":${Date.now()},"overview":${shared.overview},"rate":${shared.point}`
    if (!viewer.historySent) {
      body += `,"history":${JSON.stringify(this.#sources.meter.points() satisfies RatePoint[])}`
      viewer.historySent = true
    }
    if (shared.topics !== null) body += `,"topics":${topicsFor(viewer.principal, shared)}`
    if (shared.connections !== null) body += `,"connections":${shared.connections}`
    if (viewer.tail !== null) body += `,"tail":${JSON.stringify({ name: viewer.tail.name, ...viewer.tail.take() })}`
    const keepalive = this.#ticks > 0 && this.#ticks % KEEPALIVE_TICKS === 0 ? ": keepalive\n\n" : ""
    try {
      controller.enqueue(encoder.encode(`${keepalive}event: update\ndata: ${body}}\n\n`))
    } catch {
      // The stream is closed: the page went away between ticks.
      this.#remove(viewer)
    }
  }

  /** Topics, the most recently put first, with each one's rate since the previous tables tick. */
  #topicRows(): TopicRow[] {
    const now = Date.now()
    const seconds = this.#previousTablesAtMs === 0 ? 0 : (now - this.#previousTablesAtMs) / 1000
    const ordinals = new Map<string, number>()
    const rows: TopicRow[] = []
    const states = [...this.#broker.store.topics()].sort((a, b) => b.lastSeq - a.lastSeq)
    for (const state of states) {
      ordinals.set(state.name, state.lastOrdinal)
      const before = this.#previousOrdinals.get(state.name)
      const perSecond = before === undefined || seconds === 0 ? 0 : (state.lastOrdinal - before) / seconds
      rows.push({
        topic: state.name,
        messages: state.count,
        bytes: state.bytes,
        perSecond,
        subscribers: this.#broker.subscribersOf(state.name),
        lastPutAt: state.lastPutAt === 0 ? null : state.lastPutAt,
      })
    }
    this.#previousOrdinals = ordinals
    this.#previousTablesAtMs = now
    return rows
  }

  #close(): void {
    this.#closed = true
    for (const viewer of [...this.#viewers]) {
      this.#remove(viewer)
      try {
        viewer.controller.close()
      } catch {
        // Already closed by the page going away.
      }
    }
  }
}

interface SharedUpdate {
  readonly overview: string
  readonly point: string
  /** All topics, for each viewer to filter by what it may read; null on ticks without tables. */
  readonly topics: readonly TopicRow[] | null
  /** The filtered topics table, serialized once per principal. */
  readonly topicsJson: Map<string, string>
  readonly connections: string | null
}

function topicsFor(principal: Principal, shared: SharedUpdate): string {
  let json = shared.topicsJson.get(principal.name)
  if (json === undefined) {
    const readable = shared.topics!.filter((row) => principal.canRead(row.topic))
    json = JSON.stringify({ total: readable.length, list: readable.slice(0, MAX_TOPICS_SHOWN) })
    shared.topicsJson.set(principal.name, json)
  }
  return json
}
