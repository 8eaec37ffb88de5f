/**
 * The writers of a load scenario, on their own thread (a Worker), so that sending on schedule
 * does not wait for the main thread, which is busy reading.
 *
 * - "paced" (khz, fanout): each writer puts one message every 1/rate seconds, open loop: the
 *   schedule is fixed in advance and every message carries its scheduled send time, so a
 *   sender or server that falls behind shows up as latency instead of as a slower rate. The
 *   thread sleeps with Atomics.wait until shortly before each send time (timers in Bun have a
 *   1 ms granularity, too coarse for 1 kHz) and spins the last few tens of microseconds.
 * - "blast" (max): one writer puts as fast as the connection takes the bytes (single PUTs, or
 *   PUT_MANY frames of `batch` messages), written in large chunks, waiting for `drain` when
 *   the kernel's socket buffer is full (over WebSocket: until the client's queue is empty;
 *   JSON over WebSocket sends one text message per put). Each message carries the time its
 *   chunk was built.
 *
 * Times are on the main thread's performance.now() clock: this thread adds the difference of
 * the two threads' timeOrigins (the same clock underneath, so this is exact to well under a
 * microsecond).
 */

import { MqttLink, NatsLink, type PeerTopic, peerTopic, publish } from "./peer-wire.ts"
import { type LatencySummary, Samples, summarize } from "./tally.ts"
import { TextOut, WebSocketBinaryLink, WebSocketJsonLink } from "./websocket.ts"
import { BinaryLink, EchoLink, JsonLink, type Out, PAYLOAD_BYTES, PHASE_MEASURED, PHASE_WARMUP, topicBytes } from "./wire.ts"

declare const self: Worker

export interface SenderSetup {
  readonly host: string
  readonly port: number
  /** The broker's WebSocket endpoint (for the websocket protocols). */
  readonly url: string | null
  /**
   * "raw": 64-byte payloads to the floor's relay (bench/load/echo-server.ts --relay);
   * "websocket-binary": binary frames in WebSocket messages; "websocket-json": upstream 1.x
   * JSON, one put per text message; "nats", "mqtt": a peer's PUB or QoS 0 PUBLISH (--peers).
   */
  readonly protocol: "binary" | "json" | "raw" | "websocket-binary" | "websocket-json" | "nats" | "mqtt"
  /** Writer w puts on topics[w]. */
  readonly topics: readonly string[]
  /** The main thread's performance.timeOrigin. */
  readonly base: number
  readonly mode: "paced" | "blast"
  /** Messages per second per writer (paced). */
  readonly rateHz: number
  /** Writers are spread over this many evenly spaced send times per period (paced). */
  readonly slots: number
  /** Messages per PUT_MANY frame (blast, binary); 1 sends single PUTs. */
  readonly batch: number
  readonly warmupMs: number
  readonly durationMs: number
}

export type ToSender =
  | { readonly type: "setup"; readonly setup: SenderSetup }
  | { readonly type: "go"; readonly startAt: number }
  | { readonly type: "close" }

export type FromSender =
  | { readonly type: "ready" }
  | {
      readonly type: "done"
      /** Measured messages sent per writer (indexes 0 … sent - 1). */
      readonly sent: readonly number[]
      readonly warmupSent: readonly number[]
      /** How late the sends were against their schedule (paced), in µs. */
      readonly lag: LatencySummary | null
      /** Main-clock times the measured phase began and ended. */
      readonly measuredFrom: number
      readonly measuredTo: number
    }
  | { readonly type: "closed" }
  | { readonly type: "error"; readonly message: string }

/** Sleep with Atomics.wait until this long before a send time, then spin (ms). */
const SPIN_MS = 0.08
/** Atomics.wait overshoots by ~0.05-0.07 ms; shorter waits are not worth a system call. */
const MIN_WAIT_MS = 0.1
/** Bytes built per write in blast mode. */
const BLAST_CHUNK_BYTES = 128 * 1024
/** How long to wait for the kernel to take the last bytes. */
const DRAIN_TIMEOUT_MS = 10_000

type Link = BinaryLink | JsonLink | EchoLink | WebSocketBinaryLink | WebSocketJsonLink | NatsLink | MqttLink

let setup: SenderSetup
let links: Link[] = []
let clockOffset = 0
const now = (): number => performance.now() + clockOffset
const sleeper = new Int32Array(new SharedArrayBuffer(4))

function post(message: FromSender): void {
  self.postMessage(message)
}

self.onmessage = (event: MessageEvent<ToSender>) => {
  const message = event.data
  const work = message.type === "setup" ? connect(message.setup) : message.type === "go" ? run(message.startAt) : close()
  work.catch((error: unknown) => post({ type: "error", message: error instanceof Error ? (error.stack ?? error.message) : String(error) }))
}

async function connect(given: SenderSetup): Promise<void> {
  setup = given
  clockOffset = performance.timeOrigin - setup.base
  links = await Promise.all(setup.topics.map(open))
  post({ type: "ready" })
}

function open(): Promise<Link> {
  switch (setup.protocol) {
    case "binary":
      return BinaryLink.open(setup.host, setup.port)
    case "json":
      return JsonLink.open(setup.host, setup.port)
    case "raw":
      return EchoLink.open(setup.host, setup.port, "writer")
    case "nats":
      return NatsLink.open(setup.host, setup.port)
    case "mqtt":
      return MqttLink.open(setup.host, setup.port)
    case "websocket-binary":
    case "websocket-json": {
      const url = setup.url
      if (url === null) return Promise.reject(new Error("no WebSocket address for a websocket protocol"))
      return setup.protocol === "websocket-binary" ? WebSocketBinaryLink.open(url) : WebSocketJsonLink.open(url)
    }
  }
}

async function run(startAt: number): Promise<void> {
  const outs = links.map((link) => link.out)
  const result = setup.mode === "paced" ? paced(startAt, outs) : await blast(startAt, outs[0]!)
  for (const out of outs) out.flush()
  await Promise.race([Promise.all(outs.map((out) => out.whenDrained())), Bun.sleep(DRAIN_TIMEOUT_MS)])
  post({ type: "done", ...result })
}

interface SendResult {
  readonly sent: number[]
  readonly warmupSent: number[]
  readonly lag: LatencySummary | null
  readonly measuredFrom: number
  readonly measuredTo: number
}

function waitUntil(time: number): void {
  const remaining = time - now()
  if (remaining > MIN_WAIT_MS + SPIN_MS) Atomics.wait(sleeper, 0, 0, remaining - SPIN_MS)
  while (now() < time) {
    // spin: the last few tens of microseconds
  }
}

/** Sends on schedule; blocks this thread until the last message is sent. */
function paced(startAt: number, outs: (Out | TextOut)[]): SendResult {
  const writers = outs.length
  const topics = setup.topics.map(topicBytes)
  const period = 1000 / setup.rateHz
  const slots = Math.max(1, Math.min(setup.slots, writers))
  const gap = period / slots
  const measuredFrom = startAt + setup.warmupMs
  const end = measuredFrom + setup.durationMs
  const sent = new Array<number>(writers).fill(0)
  const warmupSent = new Array<number>(writers).fill(0)
  const lag = new Samples()
  const protocol = setup.protocol
  const binary = protocol === "binary" || protocol === "websocket-binary"
  const peerTopics = peerTopicsOf(setup)
  for (let tick = 0; ; tick++) {
    const tickStart = startAt + tick * period
    if (tickStart >= end) break
    for (let slot = 0; slot < slots; slot++) {
      const time = tickStart + slot * gap
      if (time >= end) break
      waitUntil(time)
      const measured = time >= measuredFrom
      const phase = measured ? PHASE_MEASURED : PHASE_WARMUP
      for (let writer = slot; writer < writers; writer += slots) {
        const index = measured ? sent[writer]!++ : warmupSent[writer]!++
        const out = outs[writer]!
        const sentAt = now()
        // A TextOut: websocket-json, one text message per put.
        if (out instanceof TextOut) out.jsonPut(setup.topics[writer]!, phase, writer, index, time, sentAt)
        else if (peerTopics !== null) publish(out, peerTopics[writer]!, phase, writer, index, time, sentAt)
        else if (binary) out.put(topics[writer]!, phase, writer, index, time, sentAt)
        else if (protocol === "json") out.jsonPut(setup.topics[writer]!, phase, writer, index, time, sentAt)
        else out.payloadAt(out.reserve(PAYLOAD_BYTES), phase, writer, index, time, sentAt)
        out.flush()
      }
      if (measured) lag.push(now() - time)
    }
  }
  return { sent, warmupSent, lag: summarize(lag.values()), measuredFrom, measuredTo: end }
}

/** Sends as fast as the connection takes it, until the measured phase ends. */
async function blast(startAt: number, out: Out | TextOut): Promise<SendResult> {
  const topic = topicBytes(setup.topics[0]!)
  const binary = setup.protocol === "binary" || setup.protocol === "websocket-binary"
  // JSON has no batch frame: JSON puts are always single.
  const batch = binary ? Math.max(1, setup.batch) : 1
  const peer = peerTopicsOf(setup)?.[0] ?? null
  const measuredFrom = startAt + setup.warmupMs
  const end = measuredFrom + setup.durationMs
  let sent = 0
  let warmupSent = 0
  while (now() < startAt) {
    // the start time is a few milliseconds away
  }
  for (;;) {
    const time = now()
    if (time >= end) break
    const measured = time >= measuredFrom
    const phase = measured ? PHASE_MEASURED : PHASE_WARMUP
    while (out.length < BLAST_CHUNK_BYTES) {
      const index = measured ? sent : warmupSent
      if (out instanceof TextOut) out.jsonPut(setup.topics[0]!, phase, 0, index, time)
      else if (setup.protocol === "json") out.jsonPut(setup.topics[0]!, phase, 0, index, time)
      else if (setup.protocol === "raw") out.payloadAt(out.reserve(PAYLOAD_BYTES), phase, 0, index, time)
      else if (peer !== null) publish(out, peer, phase, 0, index, time)
      else if (batch === 1) out.put(topic, phase, 0, index, time)
      else out.putMany(topic, phase, 0, index, batch, time)
      if (measured) sent += batch
      else warmupSent += batch
    }
    out.flush()
    if (out.backlog > 0) await Promise.race([out.whenDrained(), Bun.sleep(Math.max(1, end - now()))])
  }
  return { sent: [sent], warmupSent: [warmupSent], lag: null, measuredFrom, measuredTo: end }
}

/** The bytes around each payload of writer w for the peers; null for the broker's protocols. */
function peerTopicsOf(given: SenderSetup): PeerTopic[] | null {
  const kind = given.protocol
  return kind === "nats" || kind === "mqtt" ? given.topics.map((topic) => peerTopic(kind, topic)) : null
}

async function close(): Promise<void> {
  await Promise.all(links.map((link) => link.close()))
  post({ type: "closed" })
}
