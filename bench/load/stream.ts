import { until } from "../lib/wait.ts"
import type { Durations } from "./options.ts"
import { openReaders } from "./readers.ts"
import { isPeer, type Protocol } from "./results.ts"
import { type Measured, PATTERN_VARIANT, type Run, topicNames, topicPrefix } from "./scenario-run.ts"
import { Sender } from "./sender.ts"
import type { SenderSetup } from "./sender-worker.ts"
import { CpuMeter, sampleStats, serverCost, withClientCounts } from "./server-cost.ts"
import { FANOUT_RATE_HZ, FANOUT_READERS, KHZ_RATE_HZ, KHZ_READERS, KHZ_SLOTS, KHZ_WRITERS, MAX_BATCH, MAX_PULL_WINDOW } from "./shapes.ts"
import { summarize, Tally } from "./tally.ts"
import type { Target } from "./targets.ts"
import { type Arrival, PAYLOAD_BYTES, PHASE_MEASURED } from "./wire.ts"

/** The end of a WebSocket row's description: how its messages travel. */
export function transportNote(protocol: Protocol): string {
  if (protocol === "websocket-json") return "; over the broker's WebSocket endpoint, one JSON request or reply per text message"
  if (protocol === "websocket-binary-push") return "; over the broker's WebSocket endpoint, binary frames in binary messages"
  if (protocol === "nats") return "; nats-server over NATS's core protocol (PUB, SUB), for comparison"
  if (protocol === "mqtt") return "; mosquitto over MQTT 3.1.1 (PUBLISH, SUBSCRIBE at QoS 0), for comparison"
  return ""
}

/** How the writers of each protocol put (bench/load/sender-worker.ts). */
export const SENDER_PROTOCOLS: Readonly<Record<Exclude<Protocol, "echo">, SenderSetup["protocol"]>> = {
  relay: "raw",
  "json-stream": "json",
  "binary-pull": "binary",
  "binary-push": "binary",
  "websocket-json": "websocket-json",
  "websocket-binary-push": "websocket-binary",
  nats: "nats",
  mqtt: "mqtt",
}

/** khz, fanout (paced writers) and max (one blasting writer). */
export async function runStream(run: Run, target: Target, durations: Durations): Promise<Measured> {
  if (run.protocol === "echo") throw new Error("the echo floor has no streaming scenario")
  const protocol = run.protocol
  const shape =
    run.scenario === "khz"
      ? { writers: KHZ_WRITERS, readers: KHZ_READERS, rateHz: KHZ_RATE_HZ, slots: KHZ_SLOTS, mode: "paced" as const, batch: 1 }
      : run.scenario === "fanout"
        ? { writers: 1, readers: FANOUT_READERS, rateHz: FANOUT_RATE_HZ, slots: 1, mode: "paced" as const, batch: 1 }
        : { writers: 1, readers: 1, rateHz: 0, slots: 1, mode: "blast" as const, batch: run.variant === "batched" ? MAX_BATCH : 1 }
  const paced = shape.mode === "paced"
  const warmupMs = paced ? durations.pacedWarmupMs : durations.maxWarmupMs
  const durationMs = paced ? durations.pacedDurationMs : durations.maxDurationMs
  const drainMs = paced ? durations.pacedDrainMs : durations.maxDrainMs
  const prefix = topicPrefix(run)
  const topics = topicNames(run, shape.writers, prefix)
  // The pattern variant: each reader holds one subscription, PREFIX/#, for every writer's topic.
  const subscribed = run.variant === PATTERN_VARIANT ? [`${prefix}/#`] : topics
  const expectedPerWriter = paced ? (shape.rateHz * durationMs) / 1000 : 500_000
  const tally = new Tally(shape.readers, shape.writers, expectedPerWriter)
  const arrivals: Arrival[] = Array.from({ length: shape.readers }, (_, reader) => (writer, index, phase, scheduledAt, sentAt) => {
    if (phase === PHASE_MEASURED) tally.record(reader, writer, index, scheduledAt, sentAt, performance.now())
  })
  const window = run.scenario === "max" ? MAX_PULL_WINDOW : 1

  const readers = await openReaders(protocol, target, shape.readers, subscribed, window, arrivals)
  const sender = new Sender()
  try {
    readers.start()
    await sender.setup({
      host: target.host,
      port: target.port,
      url: target.websocketUrl,
      protocol: SENDER_PROTOCOLS[protocol],
      topics,
      base: performance.timeOrigin,
      mode: shape.mode,
      rateHz: shape.rateHz,
      slots: shape.slots,
      batch: shape.batch,
      warmupMs,
      durationMs,
    })
    // Every reader's requests are in before the first put.
    if (target.control !== null) await target.control.ping()
    else await Bun.sleep(5)
    const startAt = performance.now() + 20
    const measuredFrom = startAt + warmupMs
    const measuredTo = measuredFrom + durationMs

    // Server stats at the start of the measured phase, and (max) at its end.
    let cpu: CpuMeter | null = null
    const beforePromise = (async () => {
      await Bun.sleep(Math.max(0, measuredFrom - performance.now()))
      cpu = new CpuMeter()
      return sampleStats(target)
    })()
    const windowEndPromise = paced
      ? Promise.resolve(null)
      : (async () => {
          await Bun.sleep(Math.max(0, measuredTo - performance.now()))
          return sampleStats(target)
        })()
    const done = await sender.go(startAt, warmupMs + durationMs + 30_000)
    const before = await beforePromise
    const windowEnd = await windowEndPromise

    const sent = done.sent.reduce((total, count) => total + count, 0)
    const expected = sent * shape.readers
    const lastSendAt = performance.now()
    await until(() => tally.unique >= expected, Math.max(done.measuredTo, lastSendAt) + drainMs)
    const loadCpuPercent = (cpu as CpuMeter | null)?.percent() ?? 0
    const after = await sampleStats(target)
    readers.stop()

    const measuredCost = serverCost(before, paced ? after : windowEnd)
    // A peer counts nothing itself: its CPU per message the load generator put and received.
    const server = isPeer(protocol) ? withClientCounts(measuredCost, sent, tally.unique) : measuredCost
    // From the first measured delivery to the last: the rate the readers actually received at
    // (for max, independent of how long messages queued before the first one arrived).
    const deliveredSeconds = (tally.lastAt - tally.firstAt) / 1000
    const notes: string[] = []
    if (tally.foreign > 0) notes.push(`${tally.foreign} messages named an unknown writer`)
    if (!paced && server !== null && !isPeer(protocol)) {
      const total = serverCost(before, after)
      if (total !== null)
        notes.push(
          `server deliveries during the put window: ${server.deliveries.toLocaleString("en-US")}; ${total.deliveries.toLocaleString("en-US")} by the end of the drain`,
        )
    }
    const floorNote = protocol === "relay" ? "the floor: a bare relay process writing every message to every reader; " : ""
    const description =
      floorNote +
      (run.scenario === "khz"
        ? `${shape.writers} writers × ${shape.rateHz} Hz (open loop, 64-byte messages, one topic each), ${shape.readers} readers each reading all ${shape.writers} topics`
        : run.scenario === "fanout"
          ? `1 writer at ${shape.rateHz} Hz (open loop, 64-byte messages) → ${shape.readers} readers of its topic`
          : `1 writer putting as fast as the connection takes it (${shape.batch === 1 ? "single PUTs, pipelined" : `PUT_MANY of ${shape.batch}`}; 64-byte messages) → 1 reader`) +
      transportNote(protocol)
    return {
      description,
      config: {
        writers: shape.writers,
        readers: shape.readers,
        readerConnections: readers.connections,
        rateHzPerWriter: shape.rateHz,
        batch: shape.batch,
        pullWindow: protocol === "binary-pull" || protocol === "json-stream" || protocol === "websocket-json" ? window : 0,
        warmupMs,
        durationMs,
        drainMs,
        payloadBytes: PAYLOAD_BYTES,
      },
      sent,
      expected,
      received: tally.received,
      unique: tally.unique,
      loss: expected - tally.unique,
      duplicates: tally.duplicates,
      outOfOrder: tally.outOfOrder,
      putRate:
        !isPeer(protocol) && server !== null && server.puts > 0 && server.wallMs > 0
          ? (server.puts / server.wallMs) * 1000
          : (sent / durationMs) * 1000,
      deliveredRate: deliveredSeconds > 0 ? tally.unique / deliveredSeconds : 0,
      latency: summarize(tally.latencies.values()),
      latencyFromSend: summarize(tally.latenciesFromSend.values()),
      sendLag: done.lag,
      drainMs: tally.unique > 0 ? Math.max(0, tally.lastAt - done.measuredTo) : null,
      server,
      loadCpuPercent,
      notes,
    }
  } finally {
    try {
      readers.stop()
    } catch {
      // reported above when it matters
    }
    await readers.close().catch(() => {})
    await sender.close().catch(() => sender.terminate())
  }
}
