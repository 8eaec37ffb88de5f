/**
 * The soak test's latency probe, in the coordinating process: a putAck on a probe topic timed
 * to its DELIVER on a second connection, the putAck round trip itself, a ping, and a binary get
 * of a load topic, each on a connection of its own, `--probe-rate` times a second.
 */
import { type Client, connect, type Message, type Subscription } from "../../src/client.ts"
import { newSeries, type Series } from "./sample.ts"

export const PROBE_TOPIC = "soak/probe"
/** Requests of one kind in flight before the probe skips a beat instead of piling up. */
const MAX_OUTSTANDING = 5000
/** A probe message not delivered within this long counts as lost. */
const LOST_AFTER_MS = 30_000

export type SeriesName = "deliver" | "ack" | "ping" | "get"
export type ProbeSeries = Record<SeriesName, Series>

interface ProbeClients {
  readonly put: Client
  readonly subscriber: Client
  readonly ping: Client
  readonly get: Client
}

export class Probe {
  readonly series: ProbeSeries = { deliver: newSeries(), ack: newSeries(), ping: newSeries(), get: newSeries() }
  /** Probe messages put and not delivered yet: their id and when they were sent. */
  readonly sentAt = new Map<number, number>()
  lost = 0
  /** Schedule restarts: this process stalled over 100 ms. */
  late = 0
  /** Beats skipped because too many requests were outstanding. */
  skipped = 0
  readonly #clients: ProbeClients
  readonly #subscription: Subscription
  readonly #onError: (error: Error) => void
  readonly #outstanding = { ack: 0, ping: 0, get: 0 }
  #probing = false
  #loops: Promise<void>[] = []
  #deliverLoop: Promise<void> = Promise.resolve()

  private constructor(clients: ProbeClients, subscription: Subscription, onError: (error: Error) => void) {
    this.#clients = clients
    this.#subscription = subscription
    this.#onError = onError
  }

  /** Opens the probe's connections; the get connection's cursors start before the load's first put. */
  static async open(port: number, onError: (error: Error) => void): Promise<Probe> {
    const subscriber = await connect({ port, onError })
    const put = await connect({ port, onError })
    const ping = await connect({ port, onError })
    const get = await connect({ port, onError })
    const subscription = await subscriber.subscribe(PROBE_TOPIC)
    await get.get("soak/load/0")
    return new Probe({ put, subscriber, ping, get }, subscription, onError)
  }

  /** Probes `rate` times a second over `topics` until `stop`, or until `deadline` (Date.now()) at the latest. */
  start(rate: number, topics: number, deadline: number): void {
    this.#probing = true
    this.#deliverLoop = this.#receiveDeliveries()
    const getTopics = Array.from({ length: topics }, (_, i) => `soak/load/${i}`)
    this.#loops = [
      this.#scheduled(rate, 0, deadline, (id) => {
        if (this.#outstanding.ack < MAX_OUTSTANDING) this.sentAt.set(id, performance.now())
        this.#timed("ack", () => this.#clients.put.putAck(PROBE_TOPIC, String(id)))
        this.#timed("ping", () => this.#clients.ping.ping())
        if (id % 1000 === 0) this.#countLost()
      }),
      // Half a period later, so that gets and pings do not travel together.
      this.#scheduled(rate, 0.5, deadline, (index) =>
        this.#timed("get", () => this.#clients.get.get(getTopics[index % getTopics.length]!)),
      ),
    ]
  }

  /** Stops probing and waits (boundedly) for the loops to end. */
  async stop(): Promise<void> {
    this.#probing = false
    await Promise.race([Promise.all(this.#loops), Bun.sleep(5000)])
  }

  /** Closes the connections, then waits (boundedly) for the delivery loop to end. */
  async close(closeOne: (client: Client) => Promise<void>): Promise<void> {
    for (const client of Object.values(this.#clients)) await closeOne(client)
    await Promise.race([this.#deliverLoop, Bun.sleep(2000)])
  }

  async #receiveDeliveries(): Promise<void> {
    for await (const message of this.#subscription as AsyncIterable<Message>) {
      const id = Number(message.text())
      const t0 = this.sentAt.get(id)
      if (t0 !== undefined) {
        this.sentAt.delete(id)
        record(this.series.deliver, performance.now() - t0)
      }
      if (!this.#probing && this.sentAt.size === 0) break
    }
  }

  /** Calls `probe` `rate` times a second, starting `offset` periods from now, until the probing stops. */
  async #scheduled(rate: number, offset: number, deadline: number, probe: (index: number) => void): Promise<void> {
    const period = 1000 / rate
    let next = performance.now() + offset * period
    for (let index = 1; this.#probing && Date.now() < deadline + 5000; index++) {
      const wait = next - performance.now()
      if (wait > 0) await Bun.sleep(wait)
      if (performance.now() - next > 100) {
        this.late++ // this process stalled; restart the schedule instead of bursting
        next = performance.now()
      }
      next += period
      probe(index)
    }
  }

  #timed(kind: "ack" | "ping" | "get", request: () => Promise<unknown>): void {
    if (this.#outstanding[kind] >= MAX_OUTSTANDING) {
      this.skipped++
      return
    }
    const t0 = performance.now()
    this.#outstanding[kind]++
    request()
      .then(
        () => record(this.series[kind], performance.now() - t0),
        (error: Error) => this.#onError(error),
      )
      .finally(() => this.#outstanding[kind]--)
  }

  /** Probe messages sent over LOST_AFTER_MS ago and not delivered count as lost (the map is in send order). */
  #countLost(): void {
    const cutoff = performance.now() - LOST_AFTER_MS
    for (const [key, at] of this.sentAt) {
      if (at >= cutoff) break
      this.sentAt.delete(key)
      this.lost++
    }
  }
}

function record(series: Series, ms: number): void {
  series.interval.push(ms)
  series.all.push(ms)
}
