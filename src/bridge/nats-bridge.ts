/**
 * The bridge to NATS: one connection (reconnecting for as long as the broker runs), the export
 * rules (exporter.ts) and the import rules (importer.ts), and the state /stats, /metrics and
 * the dashboard show. NATS being unreachable, or refusing the credentials, never stops the
 * broker from serving its own clients: the bridge keeps trying and says why it is not connected.
 */
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream"
import { type ConnectionOptions, connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node"
import type { Broker } from "../broker/broker.ts"
import type { BridgeConfig } from "./config.ts"
import { Exporter } from "./exporter.ts"
import { Importer } from "./importer.ts"
import { patternToSubjects } from "./subjects.ts"

/** How long to wait before trying again when no connection could be made (unreachable, credentials, TLS). */
const RETRY_AFTER_REFUSAL_MS = 1000

export interface BridgeRuleState {
  readonly pattern: string
  readonly subjects: readonly string[]
  readonly stream: string | null
}

export interface BridgeState {
  readonly connected: boolean
  /** The server connected to, or last tried. */
  readonly server: string | null
  readonly lastError: string | null
  readonly exported: number
  readonly imported: number
  readonly exports: readonly (BridgeRuleState & { readonly exported: number; readonly lagMessages: number; readonly position: number })[]
  readonly imports: readonly (BridgeRuleState & { readonly imported: number; readonly dropped: number; readonly redelivered: number })[]
}

interface Ready {
  readonly nc: NatsConnection
  readonly js: JetStreamClient
  readonly jsm: JetStreamManager
}

export class NatsBridge {
  readonly #config: BridgeConfig
  readonly #log: (line: string) => void
  readonly #exporters: Exporter[]
  readonly #importers: Importer[]
  #nc: NatsConnection | null = null
  #ready: Ready | null = null
  /** Waiting for a connection: the exporters' loops. */
  #waiters: ((ready: Ready | null) => void)[] = []
  #connected = false
  #server: string | null = null
  #lastError: string | null = null
  #stopped = false
  /** Sequence numbers put from NATS that an export rule would send back, oldest first, until every exporter passed them. */
  readonly #importedSeqs = new Set<number>()
  #importedOrder: number[] = []

  constructor(broker: Broker, budget: { readonly admits: boolean }, config: BridgeConfig, log: (line: string) => void) {
    this.#config = config
    this.#log = log
    const failed = (error: unknown) => this.#failed(error)
    this.#exporters = config.exports.map(
      (rule) =>
        new Exporter(rule, {
          broker,
          prefix: config.prefix,
          origin: config.name,
          isImported: (seq) => this.#importedSeqs.has(seq),
          connection: () => this.#connection(),
          failed,
        }),
    )
    this.#importers = config.imports.map(
      (rule) =>
        new Importer(rule, {
          broker,
          budget,
          prefix: config.prefix,
          origin: config.name,
          imported: (seq, topic) => this.#noteImported(seq, topic),
          failed,
        }),
    )
  }

  /** Connects in the background and starts the rules; returns at once. */
  start(): void {
    for (const exporter of this.#exporters) void exporter.run()
    void this.#connectLoop()
  }

  async stop(): Promise<void> {
    this.#stopped = true
    for (const exporter of this.#exporters) exporter.stop()
    for (const importer of this.#importers) importer.close()
    this.#resolveWaiters(null)
    const nc = this.#nc
    this.#nc = null
    await nc?.close().catch(() => {})
  }

  state(): BridgeState {
    const rule = (r: { pattern: string; stream: string | null }) => ({
      pattern: r.pattern,
      subjects: patternToSubjects(r.pattern, this.#config.prefix),
      stream: r.stream,
    })
    return {
      connected: this.#connected,
      server: this.#server,
      lastError: this.#lastError,
      exported: this.#exporters.reduce((sum, e) => sum + e.exported, 0),
      imported: this.#importers.reduce((sum, i) => sum + i.imported, 0),
      exports: this.#exporters.map((e) => ({ ...rule(e.rule), exported: e.exported, lagMessages: e.lag(), position: e.position })),
      imports: this.#importers.map((i) => ({ ...rule(i.rule), imported: i.imported, dropped: i.dropped, redelivered: i.redelivered })),
    }
  }

  async #connectLoop(): Promise<void> {
    while (!this.#stopped) {
      try {
        const nc = await connect(this.#options())
        if (this.#stopped) {
          await nc.close()
          return
        }
        this.#nc = nc
        await this.#onConnected(nc, true)
        this.#watch(nc)
        // Reconnects are the client's own work from here; closed() resolves only for good.
        const closedWith = await nc.closed()
        this.#connected = false
        this.#ready = null
        if (closedWith instanceof Error) this.#failed(closedWith)
      } catch (error) {
        this.#failed(error, `cannot connect to NATS at ${this.#config.servers.join(", ")}`)
        this.#connected = false
        await Bun.sleep(RETRY_AFTER_REFUSAL_MS)
      }
    }
  }

  #options(): ConnectionOptions {
    const { servers, auth, tls, name } = this.#config
    const options: ConnectionOptions = {
      servers: [...servers],
      name: `dsmq ${name}`,
      // Keep trying for as long as the broker runs; messages wait in the store meanwhile.
      reconnect: true,
      maxReconnectAttempts: -1,
      // The first attempt fails loudly (and is retried here, with the reason in lastError).
      waitOnFirstConnect: false,
      reconnectTimeWait: 500,
    }
    if (auth?.kind === "token") options.token = auth.token
    if (auth?.kind === "user") Object.assign(options, { user: auth.user, pass: auth.pass })
    if (auth?.kind === "creds") options.authenticator = credsAuthenticator(auth.creds)
    if (tls !== null) options.tls = { ...tls }
    return options
  }

  /**
   * Streams checked (created if missing), imports started (the first time: the client keeps
   * subscriptions across reconnects itself), exporters released.
   */
  async #onConnected(nc: NatsConnection, first: boolean): Promise<void> {
    this.#server = nc.getServer()
    const usesJetStream = [...this.#config.exports, ...this.#config.imports].some((rule) => rule.stream !== null)
    const js = jetstream(nc)
    const jsm = usesJetStream ? await jetstreamManager(nc) : (null as unknown as JetStreamManager)
    if (usesJetStream) await this.#ensureStreams(jsm)
    if (first) for (const importer of this.#importers) await importer.start(nc, js, jsm)
    this.#connected = true
    this.#lastError = null
    this.#log(`bridge: connected to NATS at ${this.#server}`)
    this.#ready = { nc, js, jsm }
    this.#resolveWaiters(this.#ready)
  }

  /** An existing stream is used as it is; a missing one is made for the subjects of the rules that name it. */
  async #ensureStreams(jsm: JetStreamManager): Promise<void> {
    const wanted = new Map<string, Set<string>>()
    for (const rule of [...this.#config.exports, ...this.#config.imports]) {
      if (rule.stream === null) continue
      const subjects = wanted.get(rule.stream) ?? new Set<string>()
      for (const subject of patternToSubjects(rule.pattern, this.#config.prefix)) subjects.add(subject)
      wanted.set(rule.stream, subjects)
    }
    for (const [name, subjects] of wanted) {
      const exists = await jsm.streams.info(name).then(
        () => true,
        () => false,
      )
      if (!exists) {
        await jsm.streams.add({ name, subjects: [...subjects] })
        this.#log(`bridge: created JetStream stream ${name} for ${[...subjects].join(", ")}`)
      }
    }
  }

  /** Follows the connection's status: while it reconnects, exporters wait; once back, imports resubscribe. */
  #watch(nc: NatsConnection): void {
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === "disconnect") {
          this.#connected = false
          this.#ready = null
          this.#lastError = `disconnected from ${status.server}`
          this.#log(`bridge: disconnected from NATS at ${status.server}; reconnecting`)
        } else if (status.type === "reconnect") {
          try {
            await this.#onConnected(nc, false)
          } catch (error) {
            this.#failed(error)
          }
        } else if (status.type === "error") this.#failed(status.error)
      }
    })()
  }

  #connection(): Promise<Ready | null> {
    if (this.#stopped) return Promise.resolve(null)
    if (this.#ready !== null) return Promise.resolve(this.#ready)
    const { promise, resolve } = Promise.withResolvers<Ready | null>()
    this.#waiters.push(resolve)
    return promise
  }

  #resolveWaiters(ready: Ready | null): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const resolve of waiters) resolve(ready)
  }

  #noteImported(seq: number, topic: string): void {
    if (!this.#exporters.some((exporter) => exporter.matches(topic))) return
    this.#importedSeqs.add(seq)
    this.#importedOrder.push(seq)
    // Forget what every exporter has passed: the set stays as small as the export lag.
    const passed = Math.min(...this.#exporters.map((exporter) => exporter.position))
    let drop = 0
    while (drop < this.#importedOrder.length && this.#importedOrder[drop]! <= passed)
      this.#importedSeqs.delete(this.#importedOrder[drop++]!)
    if (drop > 0) this.#importedOrder = this.#importedOrder.slice(drop)
  }

  #failed(error: unknown, context?: string): void {
    const reason = error instanceof Error ? error.message : String(error)
    const text = context === undefined ? reason : `${context}: ${reason}`
    if (text !== this.#lastError) this.#log(`bridge: ${text}`)
    this.#lastError = text
  }
}
