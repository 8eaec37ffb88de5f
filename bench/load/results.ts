/**
 * The results of the load scenarios: their shape (as written to JSON), the table they are
 * printed as, and the targets checked against them. Shared by bench/load.ts and the
 * runner's report.
 */
import type { LatencySummary } from "./tally.ts"

export type ScenarioName = "rtt" | "khz" | "fanout" | "max"
export const SCENARIOS: readonly ScenarioName[] = ["rtt", "khz", "fanout", "max"]

/** What each scenario measures, in one line, for the tables people read. */
export const SCENARIO_DESCRIPTIONS: Readonly<Record<ScenarioName | "floor", string>> = {
  rtt: "1 writer, 1 reader, one message at a time: how long one message takes through the broker",
  khz: "10 writers at 1 kHz each, 10 readers of every topic: latency under a steady lab-sized load",
  fanout: "1 writer at 1 kHz, 100 readers: the cost of handing one message to many",
  max: "1 writer as fast as it can, 1 reader: the most messages per second the broker takes",
  floor: "echo/relay: a bare server that only moves bytes, the best any broker could do on this machine",
}

/** The description lines, each `name  what it measures`. */
export function scenarioLegend(): string[] {
  return Object.entries(SCENARIO_DESCRIPTIONS).map(([name, text]) => `  ${name.padEnd(7)} ${text}`)
}
/**
 * "echo" and "relay" are the floors: minimal servers that only move bytes (bench/load/echo-server.ts).
 * The websocket protocols go through the broker's HTTP port (ws://HOST:HTTP_PORT/): upstream 1.x
 * JSON text messages, and the binary protocol's frames in binary messages; their rtt rows run once
 * more through the TCP port (variant "tcp port"), where HTTP is detected and relayed.
 */
export type Protocol =
  | "echo"
  | "relay"
  | "json-stream"
  | "binary-pull"
  | "binary-push"
  | "websocket-json"
  | "websocket-binary-push"
  | PeerProtocol
/**
 * The peers of `--peers`, other brokers measured by the same code in the same run: nats-server
 * over NATS's core protocol, mosquitto over MQTT 3.1.1 with QoS 0 (bench/load/peer-wire.ts).
 */
export type PeerProtocol = "nats" | "mqtt"
export const PEER_PROTOCOLS: readonly PeerProtocol[] = ["nats", "mqtt"]

export function isPeer(protocol: Protocol): protocol is PeerProtocol {
  return protocol === "nats" || protocol === "mqtt"
}
/** The protocols the broker is measured over (the floors always run with their scenario). */
export const LOAD_PROTOCOLS = ["json-stream", "binary-pull", "binary-push", "websocket-json", "websocket-binary-push"] as const

/**
 * HOST:PORT or [IPv6]:PORT for --against, loopback only: this suite never sends traffic off the
 * machine. Throws an Error with a message for people.
 */
export function parseLoopbackAddress(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text)
  if (match === null) throw new Error(`--against needs HOST:PORT, got "${text}"`)
  const host = (match[1] ?? match[2])!
  const port = Number(match[3])
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`--against: bad port in "${text}"`)
  const loopback = host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
  if (!loopback) {
    throw new Error(`--against: ${host} is not a loopback address; the load generator only talks to 127.0.0.0/8, ::1 or localhost`)
  }
  return { host: host === "localhost" ? "127.0.0.1" : host, port }
}

export const PROTOCOL_LABELS: Readonly<Record<Protocol, string>> = {
  echo: "echo floor",
  relay: "relay floor",
  "json-stream": "json-stream pull",
  "binary-pull": "binary pull",
  "binary-push": "binary push",
  "websocket-json": "websocket json pull",
  "websocket-binary-push": "websocket binary push",
  nats: "NATS core",
  mqtt: "MQTT QoS 0",
}

export interface ServerCost {
  readonly wallMs: number
  readonly cpuMicros: number
  readonly puts: number
  readonly deliveries: number
  /** All server CPU time divided by the messages put. */
  readonly cpuPerPut: number | null
  /** All server CPU time divided by the messages delivered (get replies and pushes). */
  readonly cpuPerDelivery: number | null
  /** All server CPU time divided by puts + deliveries. */
  readonly cpuPerOperation: number | null
  /** Server CPU time as a share of one core, in %. */
  readonly cpuPercent: number
  /** The part of it spent in the kernel (system time), 0-1, from /proc (10 ms resolution). */
  readonly systemShare: number | null
}

export interface ScenarioResult {
  /** e.g. "khz/binary-push", "max/binary-push/batched". */
  readonly id: string
  readonly scenario: ScenarioName
  readonly protocol: Protocol
  readonly variant: string | null
  /**
   * "dsmq" (spawned from src/server.ts), "echo" or "relay" (the floors), a peer's program and
   * version ("nats-server 2.9.10"), or HOST:PORT given with --against.
   */
  readonly target: string
  readonly description: string
  readonly config: Readonly<Record<string, number | string>>
  /** Measured messages put by the writers. */
  readonly sent: number
  /** Deliveries expected: sent × readers of each message. */
  readonly expected: number
  /** Measured deliveries received, duplicates included. */
  readonly received: number
  readonly unique: number
  /** Expected deliveries not received by the end of the drain time. */
  readonly loss: number
  readonly duplicates: number
  readonly outOfOrder: number
  /** Messages put per second (server-side count where available). */
  readonly putRate: number
  /** Unique deliveries per second, from the start of the measured phase to the last one received. */
  readonly deliveredRate: number
  /** From the scheduled (or, for max, the actual) send time to the reader's handler, µs. */
  readonly latency: LatencySummary | null
  /** From the actual send time (the same as `latency` except in khz and fanout, whose writers keep a schedule), µs. */
  readonly latencyFromSend: LatencySummary | null
  /** How late the paced sender was against its schedule, µs. */
  readonly sendLag: LatencySummary | null
  /** After the last send, until the last delivery (ms). */
  readonly drainMs: number | null
  readonly server: ServerCost | null
  /** The load generator's CPU (all its threads) as a share of one core, in %. */
  readonly loadCpuPercent: number
  readonly seconds: number
  readonly notes: readonly string[]
  readonly error: string | null
}

export interface LoadResults {
  readonly quick: boolean
  readonly scenarios: readonly ScenarioResult[]
  /** Scenario × protocol cells that could not be measured, with the reason (none at present). */
  readonly unavailable: readonly { readonly cell: string; readonly reason: string }[]
  readonly targets: readonly TargetCheck[]
}

export interface TargetCheck {
  readonly target: string
  readonly goal: string
  readonly measured: string
  /** null: not measured in this run. */
  readonly met: boolean | null
  readonly note: string
}

// Formatting.

export function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond)) return "-"
  if (perSecond >= 10_000) return `${Math.round(perSecond / 1000).toLocaleString("en-US")}k`
  if (perSecond >= 1000) return `${(perSecond / 1000).toFixed(1)}k`
  return perSecond.toFixed(0)
}

export function formatLatency(micros: number | undefined): string {
  if (micros === undefined || !Number.isFinite(micros)) return "-"
  if (micros >= 100_000) return `${(micros / 1000).toFixed(0)}ms`
  if (micros >= 10_000) return `${(micros / 1000).toFixed(1)}ms`
  if (micros >= 1000) return `${(micros / 1000).toFixed(2)}ms`
  return micros.toFixed(0)
}

function formatCost(micros: number | null | undefined): string {
  return micros === null || micros === undefined ? "-" : micros >= 100 ? micros.toFixed(0) : micros.toFixed(2)
}

export function isFloor(result: Pick<ScenarioResult, "protocol">): boolean {
  return result.protocol === "echo" || result.protocol === "relay"
}

/**
 * The floor measured for a scenario in this run: for rtt the echo server (the floor; the
 * relay, with the broker's two-connection topology, is shown beside it), for khz and fanout the relay.
 */
export function floorOf(
  results: readonly ScenarioResult[],
  scenario: ScenarioName,
  kind: "echo" | "relay" = scenario === "rtt" ? "echo" : "relay",
): ScenarioResult | undefined {
  return results.find(
    (result) => result.scenario === scenario && result.protocol === kind && result.error === null && result.latency !== null,
  )
}

export function rowLabel(result: ScenarioResult): string {
  const protocol = isPeer(result.protocol) ? `${PROTOCOL_LABELS[result.protocol]} (${result.target})` : PROTOCOL_LABELS[result.protocol]
  const variant = result.variant === null ? "" : ` (${result.variant})`
  const target = result.target === "dsmq" || isFloor(result) || isPeer(result.protocol) ? "" : ` @ ${result.target}`
  return `${result.scenario} · ${protocol}${variant}${target}`
}

export const LOAD_TABLE_HEADER = [
  "scenario · protocol",
  "sent",
  "put/s",
  "deliv/s",
  "loss",
  "dup",
  "ooo",
  "p50 µs",
  "p90",
  "p99",
  "p99.9",
  "max",
  "p50/floor",
  "srv µs/put",
  "srv µs/deliv",
  "srv CPU",
  "srv sys",
  "load CPU",
] as const

export function loadTableRows(results: readonly ScenarioResult[]): string[][] {
  return results.map((result) => {
    const floor = floorOf(results, result.scenario)?.latency?.p50
    if (result.error !== null) {
      return [rowLabel(result), `failed: ${result.error.split("\n")[0]!.slice(0, 100)}`, ...LOAD_TABLE_HEADER.slice(2).map(() => "")]
    }
    const latency = result.latency
    return [
      rowLabel(result),
      result.sent.toLocaleString("en-US"),
      result.protocol === "echo" ? "-" : formatRate(result.putRate),
      formatRate(result.deliveredRate),
      String(result.loss),
      String(result.duplicates),
      String(result.outOfOrder),
      formatLatency(latency?.p50),
      formatLatency(latency?.p90),
      formatLatency(latency?.p99),
      formatLatency(latency?.p999),
      formatLatency(latency?.max),
      floor === undefined || latency === null ? "-" : `${(latency.p50 / floor).toFixed(2)}x`,
      formatCost(result.server?.cpuPerPut),
      formatCost(result.server?.cpuPerDelivery),
      result.server === null ? "-" : `${result.server.cpuPercent.toFixed(0)}%`,
      result.server?.systemShare === null || result.server?.systemShare === undefined
        ? "-"
        : `${(result.server.systemShare * 100).toFixed(0)}%`,
      `${result.loadCpuPercent.toFixed(0)}%`,
    ]
  })
}

export const LOAD_TABLE_NOTES = [
  "sent: measured messages put; put/s: server-side rate where the server reports it; deliv/s: unique",
  "deliveries received per second, from the first measured delivery to the last;",
  "loss: expected deliveries missing at the end of the drain time; dup: received twice; ooo: received",
  "after a later message of the same writer. Latency in µs (ms where marked) from the scheduled send",
  "time (khz, fanout: open loop) or the send time (rtt, max) to the reader's handler. p50/floor: the",
  "median over the median of the same scenario's floor (rtt: a bare echo server, one connection; khz,",
  "fanout: a bare relay that writes every message to every reader; the rtt relay floor has the broker",
  "rtt's two-connection topology, for comparison). srv µs/put, srv µs/deliv: ALL server CPU time",
  "(user + system, from its STATS) over the measured phase divided by the puts, resp. by the",
  "deliveries, in it; srv CPU, load CPU: share of one core used by the server (for the floors: the",
  "floor's process), resp. by the load generator (all its threads); srv sys: the part of the server's",
  "CPU time spent in the kernel (system calls, loopback TCP), from /proc at 10 ms resolution.",
]

export const PEER_TABLE_NOTES = [
  "Peers (--peers): nats-server (NATS core protocol) and mosquitto (MQTT 3.1.1, QoS 0, max_queued_messages 0",
  "so that a slow reader's messages are queued, not dropped), each a fresh process per row, driven by raw-protocol",
  "clients written like the broker's (bench/load/peer-wire.ts): the same payloads, pacing, readers and percentile",
  "code. Their server CPU comes from /proc (10 ms ticks; '-' when the row used too little to measure) over the",
  "measured phase, divided by the messages the load generator put, resp. received. MQTT and NATS have no batch",
  "frame: max is compared with single pipelined puts.",
]

export const PEER_TABLE_HEADER = [
  "scenario · protocol",
  "p50 µs",
  "÷ NATS",
  "p99",
  "÷ NATS",
  "deliv/s",
  "÷ NATS",
  "srv µs/msg",
  "÷ NATS",
  "loss",
] as const

/**
 * Every measured row of each scenario a NATS row exists for, beside that NATS row: latency,
 * delivery rate and server CPU per message (puts + deliveries) as ratios to NATS's.
 */
export function peerTableRows(results: readonly ScenarioResult[]): string[][] {
  const rows: string[][] = []
  const ratio = (value: number | null | undefined, base: number | null | undefined): string =>
    value === null || value === undefined || base === null || base === undefined || base <= 0 ? "-" : `${(value / base).toFixed(2)}x`
  for (const scenario of SCENARIOS) {
    const nats = results.find((result) => result.scenario === scenario && result.protocol === "nats" && result.error === null)
    if (nats === undefined) continue
    const rowsOf = results.filter(
      (result) =>
        result.scenario === scenario &&
        result.error === null &&
        !isFloor(result) &&
        (result.target === "dsmq" || isPeer(result.protocol)) &&
        result.variant !== "tcp port",
    )
    for (const result of rowsOf) {
      const cost = result.server?.cpuPerOperation
      const natsCost = nats.server?.cpuPerOperation
      rows.push([
        rowLabel(result),
        formatLatency(result.latency?.p50),
        ratio(result.latency?.p50, nats.latency?.p50),
        formatLatency(result.latency?.p99),
        ratio(result.latency?.p99, nats.latency?.p99),
        formatRate(result.deliveredRate),
        ratio(result.deliveredRate, nats.deliveredRate),
        formatCost(cost),
        ratio(cost, natsCost),
        String(result.loss),
      ])
    }
  }
  return rows
}

// The targets.

function find(results: readonly ScenarioResult[], id: string): ScenarioResult | undefined {
  // The broker spawned by the suite, not a server given with --against.
  return results.find((result) => result.id === id && result.target === "dsmq" && result.error === null)
}

const micros = (value: number): string => `${value >= 100 ? value.toFixed(0) : value.toFixed(2)} µs`

function floorNote(results: readonly ScenarioResult[], scenario: ScenarioName): string {
  const floor = floorOf(results, scenario)?.latency
  return floor === undefined || floor === null ? "" : `; the relay floor's p99 in this run: ${micros(floor.p99)}`
}

function fromSendNote(result: ScenarioResult): string {
  const fromSend = result.latencyFromSend
  const lag = result.sendLag
  if (fromSend === null || lag === null) return ""
  return `; p99 from the actual send time ${micros(fromSend.p99)} (the writer thread was up to ${micros(lag.p99)} late at p99)`
}
const rate = (value: number): string => `${Math.round(value).toLocaleString("en-US")}/s`

/** "; NATS in this run: …" for a target's note, when --peers measured NATS in the scenario. */
function natsNote(results: readonly ScenarioResult[], scenario: ScenarioName, describe: (nats: ScenarioResult) => string): string {
  const nats = results.find((result) => result.scenario === scenario && result.protocol === "nats" && result.error === null)
  return nats === undefined ? "" : `; NATS in this run: ${describe(nats)}`
}

const natsCost = (nats: ScenarioResult): string =>
  nats.server?.cpuPerOperation === null || nats.server?.cpuPerOperation === undefined
    ? "CPU too small to measure"
    : `${micros(nats.server.cpuPerOperation)} per operation (put or delivery)`

/** Each target of issue 4 against this run's results; `met` is null where the run did not measure it. */
export function checkTargets(results: readonly ScenarioResult[]): TargetCheck[] {
  const checks: TargetCheck[] = []
  const missing = (target: string, goal: string): void => {
    checks.push({ target, goal, measured: "not measured in this run", met: null, note: "" })
  }

  // Server CPU per put and per get: pull scenarios, where every delivery is a get.
  for (const id of ["khz/binary-pull", "khz/json-stream", "max/binary-pull/single", "max/json-stream/single"]) {
    const target = `server CPU per put and per get (${id})`
    const goal = "≤ 5 µs"
    const result = find(results, id)
    const cost = result?.server?.cpuPerOperation
    if (result === undefined || cost === null || cost === undefined) {
      missing(target, goal)
      continue
    }
    checks.push({
      target,
      goal,
      measured: `${micros(cost)} per operation`,
      met: cost <= 5,
      note:
        `all server CPU ÷ (puts + gets): ${result.server!.puts.toLocaleString("en-US")} puts, ${result.server!.deliveries.toLocaleString("en-US")} gets; per put alone: ${micros(result.server!.cpuPerPut ?? Number.NaN)}` +
        natsNote(results, result.scenario, natsCost),
    })
  }
  {
    const target = "server CPU per message, batched binary put (max/binary-push/batched)"
    const goal = "≤ 2 µs"
    const result = find(results, "max/binary-push/batched")
    const cost = result?.server?.cpuPerPut
    if (result === undefined || cost === null || cost === undefined) missing(target, goal)
    else {
      checks.push({
        target,
        goal,
        measured: `${micros(cost)} per message`,
        met: cost <= 2,
        note:
          `all server CPU ÷ messages put, which includes pushing each one to the subscriber (÷ puts + deliveries: ${micros(result.server!.cpuPerOperation ?? Number.NaN)})` +
          natsNote(results, "max", (nats) => `single puts, ${rate(nats.putRate)}; ${natsCost(nats)}`),
      })
    }
  }

  // rtt against the floor.
  const floor = floorOf(results, "rtt")?.latency?.p50
  const relayFloor = floorOf(results, "rtt", "relay")?.latency?.p50
  for (const [id, limit] of [
    ["rtt/binary-push", 1.2],
    ["rtt/json-stream", 2],
  ] as const) {
    const target = `${id} p50 ÷ echo floor p50`
    const goal = `≤ ${limit}×`
    const p50 = find(results, id)?.latency?.p50
    if (p50 === undefined || floor === undefined) {
      missing(target, goal)
      continue
    }
    const ratio = p50 / floor
    checks.push({
      target,
      goal,
      measured: `${ratio.toFixed(2)}×`,
      met: ratio <= limit,
      note:
        `p50 ${micros(p50)}, echo floor p50 ${micros(floor)}` +
        (relayFloor === undefined
          ? ""
          : `; against the relay floor (same two-connection topology, p50 ${micros(relayFloor)}): ${(p50 / relayFloor).toFixed(2)}×`) +
        natsNote(results, "rtt", (nats) =>
          nats.latency === null ? "-" : `p50 ${micros(nats.latency.p50)}, ${(nats.latency.p50 / floor).toFixed(2)}× the echo floor`,
        ),
    })
  }

  // A pattern subscriber at the khz load, beside the exact-topic subscribers.
  {
    const target = "khz/binary-push/pattern (readers subscribe to PREFIX/#): loss; p99 beside exact topics"
    const goal = "0; p99 ≈ khz/binary-push's"
    const pattern = find(results, "khz/binary-push/pattern")
    const exact = find(results, "khz/binary-push")
    if (pattern === undefined || pattern.latency === null) missing(target, goal)
    else {
      const beside =
        exact?.latency === null || exact === undefined
          ? ""
          : ` (exact topics: p50 ${micros(exact.latency.p50)}, p99 ${micros(exact.latency.p99)})`
      checks.push({
        target,
        goal,
        measured: `${pattern.loss}; p50 ${micros(pattern.latency.p50)}, p99 ${micros(pattern.latency.p99)}`,
        met: pattern.loss === 0 && pattern.duplicates === 0 && pattern.outOfOrder === 0,
        note: `loss, duplicates, reordering: ${pattern.loss}, ${pattern.duplicates}, ${pattern.outOfOrder}${beside}`,
      })
    }
  }

  // WebSocket through the TCP port's relay, against the HTTP port.
  for (const protocol of ["websocket-json", "websocket-binary-push"] as const) {
    const target = `rtt/${protocol}: p50 on the TCP port ÷ on the HTTP port`
    const goal = "≤ 1.3×"
    const direct = find(results, `rtt/${protocol}`)?.latency?.p50
    const relayed = find(results, `rtt/${protocol}/tcp port`)?.latency?.p50
    if (direct === undefined || relayed === undefined) {
      missing(target, goal)
      continue
    }
    const ratio = relayed / direct
    checks.push({ target, goal, measured: `${ratio.toFixed(2)}×`, met: ratio <= 1.3, note: `p50 ${micros(relayed)} vs ${micros(direct)}` })
  }

  // khz.
  {
    const target = "khz/binary-push: loss, duplicates, reordering; p99"
    const goal = "0, 0, 0; ≤ 1 ms"
    const result = find(results, "khz/binary-push")
    if (result === undefined || result.latency === null) missing(target, goal)
    else {
      checks.push({
        target,
        goal,
        measured: `${result.loss}, ${result.duplicates}, ${result.outOfOrder}; p99 ${micros(result.latency.p99)}`,
        met: result.loss === 0 && result.duplicates === 0 && result.outOfOrder === 0 && result.latency.p99 <= 1000,
        note:
          `${result.unique.toLocaleString("en-US")} deliveries at ${rate(result.deliveredRate)}` +
          floorNote(results, "khz") +
          fromSendNote(result) +
          natsNote(results, "khz", (nats) =>
            nats.latency === null ? "-" : `loss ${nats.loss}, p99 ${micros(nats.latency.p99)}; ${natsCost(nats)}`,
          ),
      })
    }
  }
  {
    const target = "khz/json-stream pull: loss"
    const goal = "0"
    const result = find(results, "khz/json-stream")
    if (result === undefined) missing(target, goal)
    else {
      checks.push({
        target,
        goal,
        measured: String(result.loss),
        met: result.loss === 0,
        note: `${result.unique.toLocaleString("en-US")} of ${result.expected.toLocaleString("en-US")} deliveries; p99 ${micros(result.latency?.p99 ?? Number.NaN)}`,
      })
    }
  }

  // fanout (binary push: the protocol meant for it).
  {
    const target = "fanout/binary-push: deliveries/s, loss, p99"
    const goal = "≥ 100,000/s, 0, ≤ 2 ms"
    const result = find(results, "fanout/binary-push")
    if (result === undefined || result.latency === null) missing(target, goal)
    else {
      checks.push({
        target,
        goal,
        measured: `${rate(result.deliveredRate)}, ${result.loss}, ${micros(result.latency.p99)}`,
        // The offered load is exactly 100,000/s: allow 1 % for where the measured phase's ends fall.
        met: result.deliveredRate >= 99_000 && result.loss === 0 && result.latency.p99 <= 2000,
        note:
          `offered: 100 subscribers × 1,000/s; server CPU ${result.server?.cpuPercent.toFixed(0) ?? "-"}% of a core` +
          floorNote(results, "fanout") +
          fromSendNote(result) +
          natsNote(results, "fanout", (nats) =>
            nats.latency === null ? "-" : `${rate(nats.deliveredRate)}, loss ${nats.loss}, p99 ${micros(nats.latency.p99)}`,
          ),
      })
    }
  }

  // max.
  for (const [id, goalRate, what] of [
    ["max/binary-push/single", 200_000, "single puts pipelined"],
    ["max/binary-push/batched", 1_000_000, "batched puts"],
  ] as const) {
    const target = `max/binary-push, ${what}: put rate, subscriber keeping up`
    const goal = `≥ ${goalRate.toLocaleString("en-US")}/s, delivered ≥ 95 % of it, no loss`
    const result = find(results, id)
    if (result === undefined) {
      missing(target, goal)
      continue
    }
    const keptUp = result.deliveredRate >= 0.95 * result.putRate && result.loss === 0
    checks.push({
      target,
      goal,
      measured: `${rate(result.putRate)} put, ${rate(result.deliveredRate)} delivered, loss ${result.loss}`,
      met: result.putRate >= goalRate && keptUp,
      note: `server CPU ${result.server?.cpuPercent.toFixed(0) ?? "-"}% of a core, ${micros(result.server?.cpuPerPut ?? Number.NaN)} per message; drain ${result.drainMs?.toFixed(0) ?? "-"} ms`,
    })
  }
  return checks
}

export const TARGET_TABLE_HEADER = ["target (issue 4)", "goal", "measured", "met"] as const

export function targetTableRows(checks: readonly TargetCheck[]): string[][] {
  return checks.map((check) => [check.target, check.goal, check.measured, check.met === null ? "-" : check.met ? "yes" : "NO"])
}
