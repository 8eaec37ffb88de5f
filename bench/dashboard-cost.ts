/**
 * What open dashboards cost the broker: its CPU at a steady kHz load with no dashboard open,
 * then with N open (each following /stats/live with a tail of the busiest pattern, as a page
 * left open on a monitor does), in alternating phases so the machine's drift falls on both.
 *
 *   bun run bench/dashboard-cost.ts [--dashboards N] [--rate PUTS_PER_S] [--seconds N] [--rounds N]
 *
 * The load: one producer putting --rate messages a second (64-byte payloads) over ten topics
 * lab/sensor0..9 (kept at 1,000 messages each), and --subscribers binary subscribers of lab/#
 * (default 5), all in this process; the broker is a
 * fresh `bun run src/server.ts` process, its CPU read from /proc. Not part of `bun test`.
 */
import { type Client, connect } from "../src/client.ts"
import { type OptionSpec, parseOptionsOrExit } from "./lib/args.ts"
import { cpuSecondsOf } from "./lib/proc.ts"
import { median } from "./lib/stats.ts"
import { spawnBroker } from "./load/processes.ts"

const USAGE = `usage: bun run bench/dashboard-cost.ts [--dashboards N] [--rate PUTS_PER_S] [--seconds N] [--rounds N]

  --dashboards N   dashboards open in the measured phases (default 5)
  --rate N         puts per second (default 1000)
  --seconds N      length of each phase, after 2 s of settling (default 15)
  --rounds N       pairs of phases, without and with dashboards (default 3)
  --no-tail        dashboards without a tail (the overview and tables only)
  --subscribers N  binary subscribers of lab/# (default 5; the suite's khz load: --rate 10000 --subscribers 10)
`

const SPECS = {
  dashboards: { type: "number", min: 1, max: 32, integer: true },
  rate: { type: "number", min: 10, max: 100_000, integer: true },
  seconds: { type: "number", min: 2, max: 600 },
  rounds: { type: "number", min: 1, max: 20, integer: true },
  "no-tail": { type: "boolean" },
  subscribers: { type: "number", min: 0, max: 100, integer: true },
} satisfies Record<string, OptionSpec>

const options = parseOptionsOrExit("bench/dashboard-cost.ts", USAGE, Bun.argv.slice(2), SPECS)
const DASHBOARDS = options.dashboards ?? 5
const RATE = options.rate ?? 1000
const SECONDS = options.seconds ?? 15
const ROUNDS = options.rounds ?? 3
const SETTLE_MS = 2000
const TAIL = options["no-tail"] ? "" : `?tail=${encodeURIComponent("lab/#")}`
const TOPICS = 10
const SUBSCRIBERS = options.subscribers ?? 5
/** Puts are sent in batches every TICK_MS, on schedule (open loop). */
const TICK_MS = 10

// A small retention, so the store is at its steady size (dropping as it puts) from the first phase on.
const broker = await spawnBroker({ args: ["--max-messages", "1000"] })
const httpPort = Number(/http:\/\/[^\s:]+:(\d+)/.exec(broker.addressLine)?.[1])
if (!Number.isInteger(httpPort)) throw new Error(`no HTTP port in "${broker.addressLine}"`)
const producer = await connect({ host: broker.host, port: broker.port })
const subscribers: Client[] = []
let received = 0
for (let i = 0; i < SUBSCRIBERS; i++) {
  const client = await connect({ host: broker.host, port: broker.port })
  subscribers.push(client)
  const subscription = await client.subscribe("lab/#")
  void (async () => {
    for await (const _message of subscription) received++
  })()
}

let sent = 0
const payload = new Uint8Array(64).fill(0x61)
const started = performance.now()
const producing = setInterval(() => {
  const due = Math.floor(((performance.now() - started) / 1000) * RATE)
  for (; sent < due; sent++) producer.put(`lab/sensor${sent % TOPICS}`, payload)
}, TICK_MS)

/** One dashboard: the live channel with a tail of lab/#, read and discarded as fast as it comes. */
function openDashboard(signal: AbortSignal): Promise<number> {
  return (async () => {
    let bytes = 0
    try {
      const response = await fetch(`http://${broker.host}:${httpPort}/stats/live${TAIL}`, { signal })
      if (!response.ok) throw new Error(`GET /stats/live: ${response.status}`)
      for await (const chunk of response.body!) bytes += chunk.length
    } catch (error) {
      if (!signal.aborted) throw error
    }
    return bytes
  })()
}

interface Phase {
  readonly dashboards: number
  readonly cpuPercent: number
  readonly putsPerSecond: number
  readonly dashboardBytesPerSecond: number
}

async function phase(dashboards: number): Promise<Phase> {
  const abort = new AbortController()
  const streams = Array.from({ length: dashboards }, () => openDashboard(abort.signal))
  await Bun.sleep(SETTLE_MS)
  const cpuBefore = cpuSecondsOf(broker.pid)
  const sentBefore = sent
  const at = performance.now()
  await Bun.sleep(SECONDS * 1000)
  const seconds = (performance.now() - at) / 1000
  const cpu = cpuSecondsOf(broker.pid) - cpuBefore
  const putsPerSecond = (sent - sentBefore) / seconds
  abort.abort()
  const bytes = (await Promise.all(streams)).reduce((sum, n) => sum + n, 0)
  return { dashboards, cpuPercent: (cpu / seconds) * 100, putsPerSecond, dashboardBytesPerSecond: bytes / (seconds + SETTLE_MS / 1000) }
}

console.log(`broker pid ${broker.pid}; load: ${RATE} puts/s over ${TOPICS} topics, ${SUBSCRIBERS} subscribers of lab/#`)
console.log(
  `phases of ${SECONDS} s (after ${SETTLE_MS / 1000} s settling): 0 and ${DASHBOARDS} dashboards (${TAIL === "" ? "no tail" : "each with a tail of lab/#"}), ${ROUNDS} rounds`,
)
const phases: Phase[] = []
try {
  for (let round = 1; round <= ROUNDS; round++) {
    // Alternating which comes first, so drift of the machine does not fall on one side.
    for (const dashboards of round % 2 === 1 ? [0, DASHBOARDS] : [DASHBOARDS, 0]) {
      const result = await phase(dashboards)
      phases.push(result)
      console.log(
        `  round ${round}, ${dashboards} dashboards: broker CPU ${result.cpuPercent.toFixed(1)} % of a core at ${Math.round(result.putsPerSecond)} puts/s` +
          (dashboards > 0 ? `, ${(result.dashboardBytesPerSecond / 1024).toFixed(0)} KiB/s to the dashboards` : ""),
      )
    }
  }
} finally {
  clearInterval(producing)
  await producer.close().catch(() => {})
  for (const client of subscribers) await client.close().catch(() => {})
  await broker.stop()
}

const without = median(phases.filter((p) => p.dashboards === 0).map((p) => p.cpuPercent))
const withDashboards = median(phases.filter((p) => p.dashboards > 0).map((p) => p.cpuPercent))
const added = withDashboards - without
console.log("")
console.log("| dashboards | broker CPU (median, % of one core) |")
console.log("| --- | --- |")
console.log(`| 0 | ${without.toFixed(1)} |`)
console.log(`| ${DASHBOARDS} | ${withDashboards.toFixed(1)} |`)
console.log("")
console.log(
  `${DASHBOARDS} dashboards added ${added.toFixed(1)} points of a core: ${((added / without) * 100).toFixed(1)} % of the broker's CPU at this load` +
    ` (${received} messages delivered to the subscribers in all)`,
)
