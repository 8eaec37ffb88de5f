import { until, withTimeout } from "../lib/wait.ts"
import type { Durations } from "./options.ts"
import { type MqttLink, type NatsLink, openPeerLink, peerTopic, publish } from "./peer-wire.ts"
import { openReaders, openRelayReaders, type Readers } from "./readers.ts"
import { isPeer, type ScenarioResult, type ServerCost } from "./results.ts"
import { type Measured, type Run, topicNames } from "./scenario-run.ts"
import { CpuMeter, costOf, sampleStats, serverCost, withClientCounts } from "./server-cost.ts"
import { RTT_LOSS_MS, RTT_PASSES } from "./shapes.ts"
import { transportNote } from "./stream.ts"
import { summarize, Tally } from "./tally.ts"
import { type Target, TCP_PORT_VARIANT, viaTcpPort, websocketUrlOf } from "./targets.ts"
import { WebSocketBinaryLink, WebSocketJsonLink } from "./websocket.ts"
import { type Arrival, BinaryLink, EchoLink, JsonLink, PAYLOAD_BYTES, PHASE_MEASURED, PHASE_WARMUP, topicBytes } from "./wire.ts"

/** Raw rtt latencies by run id, for merging the passes of one protocol (see `mergeRtt`). */
export const rttSamples = new Map<string, { latencies: Float64Array[]; fromSend: Float64Array[] }>()

export async function runRtt(run: Run, target: Target, durations: Durations): Promise<Measured> {
  const iterations = Math.ceil(durations.rttIterations / RTT_PASSES)
  const tally = new Tally(1, 1, iterations)
  const topic = topicNames(run, 1)[0]!
  const encodedTopic = topicBytes(topic)
  let current = -1
  let currentPhase = PHASE_WARMUP
  let sentAt = 0
  let onNext: () => void = () => {}
  const arrival: Arrival = (writer, index, phase, scheduledAt, sentAt) => {
    const now = performance.now()
    if (phase === PHASE_MEASURED) tally.record(0, writer, index, scheduledAt, sentAt, now)
    if (index === current && phase === currentPhase) onNext()
  }

  let send: (phase: number, index: number, time: number) => void
  let readers: Readers | null = null
  let writer: BinaryLink | JsonLink | EchoLink | WebSocketBinaryLink | WebSocketJsonLink | NatsLink | MqttLink | null = null
  const echo = run.protocol === "echo"
  if (echo) {
    const link = await EchoLink.open(target.host, target.port)
    writer = link
    link.onArrival = arrival
    send = (phase, index, time) => link.send(phase, index, time)
  } else if (run.protocol === "relay") {
    readers = await openRelayReaders(target, 1, [arrival])
    const link = await EchoLink.open(target.host, target.port, "writer")
    writer = link
    send = (phase, index, time) => link.send(phase, index, time)
  } else {
    const broker = run.variant === TCP_PORT_VARIANT ? viaTcpPort(target) : target
    readers = await openReaders(run.protocol, broker, 1, [topic], 1, [arrival])
    if (isPeer(run.protocol)) {
      const link = await openPeerLink(run.protocol, broker.host, broker.port)
      const prepared = peerTopic(run.protocol, topic)
      writer = link
      send = (phase, index, time) => publish(link.out, prepared, phase, 0, index, time)
    } else if (run.protocol === "json-stream") {
      const link = await JsonLink.open(broker.host, broker.port)
      writer = link
      send = (phase, index, time) => link.out.jsonPut(topic, phase, 0, index, time)
    } else if (run.protocol === "websocket-json") {
      const link = await WebSocketJsonLink.open(websocketUrlOf(broker))
      writer = link
      send = (phase, index, time) => link.out.jsonPut(topic, phase, 0, index, time)
    } else if (run.protocol === "websocket-binary-push") {
      const link = await WebSocketBinaryLink.open(websocketUrlOf(broker))
      writer = link
      send = (phase, index, time) => link.out.put(encodedTopic, phase, 0, index, time)
    } else {
      const link = await BinaryLink.open(broker.host, broker.port)
      writer = link
      send = (phase, index, time) => link.out.put(encodedTopic, phase, 0, index, time)
    }
    readers.start()
  }

  const deadline = performance.now() + durations.rttTimeLimitMs
  let lost = 0
  /** Runs `count` sequential round trips of `phase`; resolves with how many were sent. */
  const phaseRun = (phase: number, count: number): Promise<number> =>
    new Promise((resolve) => {
      let sent = 0
      currentPhase = phase
      const watchdog = setInterval(() => {
        if (performance.now() >= deadline) finish()
        else if (performance.now() - sentAt > RTT_LOSS_MS) {
          if (phase === PHASE_MEASURED) lost++
          onNext()
        }
      }, 50)
      const finish = (): void => {
        clearInterval(watchdog)
        onNext = () => {}
        resolve(sent)
      }
      onNext = () => {
        if (sent === count || performance.now() >= deadline) {
          finish()
          return
        }
        current = sent++
        sentAt = performance.now()
        send(phase, current, sentAt)
      }
      onNext()
    })

  await phaseRun(PHASE_WARMUP, durations.rttWarmup)
  const before = await sampleStats(target)
  const cpu = new CpuMeter()
  const started = performance.now()
  const sent = await phaseRun(PHASE_MEASURED, iterations)
  await until(() => tally.unique >= sent, performance.now() + 200)
  const loadCpuPercent = cpu.percent()
  const after = await sampleStats(target)
  readers?.stop()
  await readers?.close()
  await withTimeout(writer.close(), 2000, "closing the writer")

  // A peer counts nothing itself: its CPU per message the load generator put and received.
  const server = isPeer(run.protocol) ? withClientCounts(serverCost(before, after), sent, tally.unique) : serverCost(before, after)
  void started
  const elapsedSeconds = (tally.lastAt - tally.firstAt) / 1000
  const key = rttKey(run.id, target.label)
  const kept = rttSamples.get(key) ?? { latencies: [], fromSend: [] }
  kept.latencies.push(tally.latencies.values().slice())
  kept.fromSend.push(tally.latenciesFromSend.values().slice())
  rttSamples.set(key, kept)
  return {
    description: echo
      ? "echo floor: 1 connection, sequential 64-byte round trips through a minimal Bun.listen echo server"
      : run.protocol === "relay"
        ? "relay floor: 1 writer connection, 1 reader connection, sequential 64-byte messages through a minimal Bun.listen relay (the broker rtt's topology)"
        : `1 writer, 1 reader, sequential: put a 64-byte message, wait until the reader has it, put the next${transportNote(run.protocol)}`,
    config: { warmupRoundTrips: durations.rttWarmup, roundTrips: iterations, payloadBytes: PAYLOAD_BYTES },
    sent,
    expected: sent,
    received: tally.received,
    unique: tally.unique,
    loss: sent - tally.unique,
    duplicates: tally.duplicates,
    outOfOrder: tally.outOfOrder,
    putRate:
      !isPeer(run.protocol) && server !== null && server.puts > 0 && server.wallMs > 0
        ? (server.puts / server.wallMs) * 1000
        : elapsedSeconds > 0
          ? sent / elapsedSeconds
          : 0,
    deliveredRate: elapsedSeconds > 0 ? tally.unique / elapsedSeconds : 0,
    latency: summarize(tally.latencies.values()),
    latencyFromSend: summarize(tally.latenciesFromSend.values()),
    sendLag: null,
    drainMs: null,
    server,
    loadCpuPercent,
    notes: lost > 0 ? [`${lost} round trips took over ${RTT_LOSS_MS} ms and were given up`] : [],
  }
}

/** One row per scenario, protocol and target (a server given with --against, a peer, is a row of its own). */
function rttKey(id: string, target: string): string {
  return target === "dsmq" || target === "echo" || target === "relay" ? id : `${id}@${target}`
}

/** Merges the rtt passes of each protocol into one result, in place (at the first pass's position). */
export function mergeRtt(results: ScenarioResult[]): void {
  const concat = (parts: readonly Float64Array[]): Float64Array => {
    const all = new Float64Array(parts.reduce((total, part) => total + part.length, 0))
    let at = 0
    for (const part of parts) {
      all.set(part, at)
      at += part.length
    }
    return all
  }
  const keyOf = (result: ScenarioResult): string => rttKey(result.id, result.target)
  const keys = [...new Set(results.filter((result) => result.scenario === "rtt").map(keyOf))]
  for (const key of keys) {
    const passes = results.filter((result) => keyOf(result) === key)
    if (passes.length < 2) continue
    const ok = passes.filter((result) => result.error === null)
    const failed = passes.find((result) => result.error !== null)
    const first = passes[0]!
    const sum = (pick: (result: ScenarioResult) => number): number => ok.reduce((total, result) => total + pick(result), 0)
    const samples = rttSamples.get(key)
    const servers = ok.map((result) => result.server)
    const server: ServerCost | null =
      ok.length === 0 || servers.some((cost) => cost === null)
        ? null
        : (() => {
            const costs = servers as ServerCost[]
            const cpuMicros = costs.reduce((total, cost) => total + cost.cpuMicros, 0)
            const puts = costs.reduce((total, cost) => total + cost.puts, 0)
            const deliveries = costs.reduce((total, cost) => total + cost.deliveries, 0)
            const wallMs = costs.reduce((total, cost) => total + cost.wallMs, 0)
            const shares = costs.filter((cost) => cost.systemShare !== null)
            const systemShare =
              shares.length === costs.length && cpuMicros > 0
                ? shares.reduce((total, cost) => total + cost.systemShare! * cost.cpuMicros, 0) / cpuMicros
                : null
            return costOf(wallMs, cpuMicros, puts, deliveries, systemShare)
          })()
    const seconds = passes.reduce((total, result) => total + result.seconds, 0)
    const elapsed = sum((result) => (result.deliveredRate > 0 ? result.unique / result.deliveredRate : 0))
    const putElapsed = sum((result) => (result.putRate > 0 ? result.sent / result.putRate : 0))
    const merged: ScenarioResult = {
      ...first,
      config: {
        ...first.config,
        passes: passes.length,
        order: "A-B-B-A",
        roundTrips: sum((result) => Number(result.config.roundTrips ?? 0)),
      },
      sent: sum((result) => result.sent),
      expected: sum((result) => result.expected),
      received: sum((result) => result.received),
      unique: sum((result) => result.unique),
      loss: sum((result) => result.loss),
      duplicates: sum((result) => result.duplicates),
      outOfOrder: sum((result) => result.outOfOrder),
      putRate: putElapsed > 0 ? sum((result) => result.sent) / putElapsed : 0,
      deliveredRate: elapsed > 0 ? sum((result) => result.unique) / elapsed : 0,
      latency: samples === undefined ? null : summarize(concat(samples.latencies)),
      latencyFromSend: samples === undefined ? null : summarize(concat(samples.fromSend)),
      server,
      loadCpuPercent: seconds > 0 ? passes.reduce((total, result) => total + result.loadCpuPercent * result.seconds, 0) / seconds : 0,
      seconds,
      notes: [...new Set(passes.flatMap((result) => result.notes))],
      error: failed?.error ?? null,
    }
    const at = results.indexOf(first)
    for (const pass of passes.slice(1)) results.splice(results.indexOf(pass), 1)
    results[at] = merged
  }
}
