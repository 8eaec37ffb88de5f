/**
 * The NATS bridge's cost: throughput and latency of local puts reaching a NATS subscriber
 * through the bridge (core NATS, and JetStream), beside NATS's own publish → subscribe in the
 * same run, against a real nats-server (Debian's, or DSMQ_NATS_SERVER) on a free loopback port.
 *
 *   bun run bench/bridge.ts [--messages N] [--rate HZ] [--samples N]
 *
 * Throughput: --messages puts pipelined by one binary client (64-byte payloads), timed until the
 * subscriber has them all. Latency: --samples messages at --rate, each carrying its send time;
 * the subscriber's receive time minus it, p50 and p99. The broker is a fresh `bun run
 * src/server.ts` process for each bridged phase. Not part of `bun test`.
 */
import { type NatsConnection, connect as natsConnect } from "@nats-io/transport-node"
import { connect } from "../src/client.ts"
import { NATS_SERVER, NatsServer } from "../test/nats-server.ts"
import { type OptionSpec, parseOptionsOrExit } from "./lib/args.ts"
import { percentile } from "./lib/stats.ts"
import { spawnBroker } from "./load/processes.ts"

const USAGE = `usage: bun run bench/bridge.ts [--messages N] [--rate HZ] [--samples N]

  --messages N   puts for the throughput phases (default 50000)
  --rate HZ      send rate of the latency phases (default 1000)
  --samples N    messages timed in each latency phase (default 3000)
`
const SPECS = {
  messages: { type: "number", min: 100, max: 10_000_000, integer: true },
  rate: { type: "number", min: 1, max: 100_000, integer: true },
  samples: { type: "number", min: 10, max: 1_000_000, integer: true },
} satisfies Record<string, OptionSpec>
const options = parseOptionsOrExit("bench/bridge.ts", USAGE, Bun.argv.slice(2), SPECS)
const MESSAGES = options.messages ?? 50_000
const RATE = options.rate ?? 1000
const SAMPLES = options.samples ?? 3000
const TIMEOUT_MS = 120_000

if (NATS_SERVER === null) {
  console.error("bench/bridge.ts: no nats-server found (apt-get install nats-server, or set DSMQ_NATS_SERVER)")
  process.exit(1)
}

interface Sender {
  send(payload: Uint8Array): void
  flush(): Promise<void>
  close(): Promise<void>
}

interface PhaseResult {
  readonly name: string
  readonly perSecond: number
  readonly p50: number
  readonly p99: number
}

/** Counts and times what arrives on `subject`. */
function receiver(nc: NatsConnection, subject: string) {
  let count = 0
  const latencies: number[] = []
  let waiting: { target: number; resolve: () => void } | null = null
  nc.subscribe(subject, {
    callback: (_error, message) => {
      count++
      const data = message.data
      if (data.length >= 8) {
        const sentAt = new DataView(data.buffer, data.byteOffset, 8).getFloat64(0)
        if (sentAt > 0) latencies.push(performance.timeOrigin + performance.now() - sentAt)
      }
      if (waiting !== null && count >= waiting.target) {
        waiting.resolve()
        waiting = null
      }
    },
  })
  return {
    get count() {
      return count
    },
    latencies,
    reached(target: number): Promise<void> {
      if (count >= target) return Promise.resolve()
      const { promise, resolve, reject } = Promise.withResolvers<void>()
      waiting = { target, resolve }
      const timer = setTimeout(() => reject(new Error(`only ${count} of ${target} messages arrived`)), TIMEOUT_MS)
      return promise.finally(() => clearTimeout(timer))
    },
  }
}

function payload(sentAt: number): Uint8Array {
  const bytes = new Uint8Array(64)
  new DataView(bytes.buffer).setFloat64(0, sentAt)
  return bytes
}

async function phase(name: string, nc: NatsConnection, sender: Sender): Promise<PhaseResult> {
  const received = receiver(nc, "bench.>")
  await nc.flush()
  // Warm-up: a few messages through, so connections and streams exist.
  for (let i = 0; i < 10; i++) sender.send(payload(0))
  await sender.flush()
  await received.reached(10)
  let before = received.count
  const started = performance.now()
  for (let i = 0; i < MESSAGES; i++) {
    sender.send(payload(0))
    if (i % 1000 === 999) await sender.flush()
  }
  await sender.flush()
  await received.reached(before + MESSAGES)
  const perSecond = MESSAGES / ((performance.now() - started) / 1000)
  before = received.count
  received.latencies.length = 0
  const interval = 1000 / RATE
  const begin = performance.now()
  for (let i = 0; i < SAMPLES; i++) {
    const due = begin + i * interval
    const wait = due - performance.now()
    if (wait > 1) await Bun.sleep(wait)
    sender.send(payload(performance.timeOrigin + performance.now()))
    if (i % 10 === 9) await sender.flush()
  }
  await sender.flush()
  await received.reached(before + SAMPLES)
  const sorted = [...received.latencies].sort((a, b) => a - b)
  return { name, perSecond, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) }
}

await using nats = await NatsServer.start()
const nc = await natsConnect({ servers: nats.url })
const results: PhaseResult[] = []

{
  const publisher = await natsConnect({ servers: nats.url })
  results.push(
    await phase("NATS publish → subscribe (no broker)", nc, {
      send: (data) => publisher.publish("bench.direct", data),
      flush: () => publisher.flush(),
      close: () => publisher.close(),
    }),
  )
  await publisher.close()
}

for (const [name, extra] of [
  ["broker put → bridge → NATS subscriber (core)", []],
  ["broker put → bridge → JetStream → subscriber", ["--bridge-stream", "BENCH"]],
] as const) {
  const broker = await spawnBroker({ args: ["--bridge-nats", nats.url, "--bridge-export", "bench/#", ...extra] })
  try {
    const client = await connect({ host: broker.host, port: broker.port })
    // Wait until the bridge is connected before timing anything.
    const httpPort = Number(/http:\/\/[^\s:]+:(\d+)/.exec(broker.addressLine)?.[1])
    for (let i = 0; i < 500; i++) {
      const stats = (await (await fetch(`http://${broker.host}:${httpPort}/stats`)).json()) as { bridge: { connected: boolean } }
      if (stats.bridge.connected) break
      await Bun.sleep(20)
    }
    results.push(
      await phase(name, nc, {
        send: (data) => client.put("bench/t", data),
        flush: () => client.ping(),
        close: () => client.close(),
      }),
    )
    await client.close()
  } finally {
    await broker.stop()
  }
}
await nc.close()

const ms = (value: number) => `${value.toFixed(2)} ms`
console.log(`\n${MESSAGES} messages for throughput; ${SAMPLES} at ${RATE} Hz for latency; 64-byte payloads; loopback\n`)
console.log("| path | throughput (msg/s) | latency p50 | latency p99 |")
console.log("| --- | --- | --- | --- |")
for (const result of results)
  console.log(`| ${result.name} | ${Math.round(result.perSecond).toLocaleString("en")} | ${ms(result.p50)} | ${ms(result.p99)} |`)
const direct = results[0]!
for (const result of results.slice(1)) {
  console.log(`\n${result.name}: +${ms(result.p50 - direct.p50)} at p50, +${ms(result.p99 - direct.p99)} at p99 over NATS alone`)
}
