/**
 * The end-to-end load generator: the broker in its own process (`bun run src/server.ts --port 0
 * --http-port 0`, a fresh one per scenario and protocol), the load in this one, over loopback
 * only (TCP, and WebSocket on the broker's HTTP port).
 *
 *   bun run bench/load.ts [--quick] [--only SCENARIO] [--protocol PROTOCOL] [--against HOST:PORT]
 *
 * Scenarios (each over every protocol that can run it; see bench/README.md):
 *   rtt     1 writer, 1 reader, sequential: put, wait until the reader has it, put the next (64 B)
 *   khz     10 writers × 1 kHz each (open loop), 10 readers each reading all 10 topics
 *   fanout  1 writer at 1 kHz (open loop), 100 readers
 *   max     1 writer as fast as it can (single puts pipelined, or batches of 100), 1 reader
 *
 * Protocols: json-stream (upstream's bare JSON objects; readers pull with get_wait), binary-pull
 * (GET_WAIT, plus pipelined GETs while there is a backlog), binary-push (SUBSCRIBE), and over the
 * broker's WebSocket endpoint (ws://HOST:HTTP_PORT/, bench/load/websocket.ts): websocket-json
 * (upstream 1.x text messages; readers pull with get_wait) and websocket-binary-push (binary
 * frames in binary messages; SUBSCRIBE).
 * The floors, measured by the same code in the same run: rtt against a bare echo server, khz and
 * fanout against a bare relay that writes every message to every reader (bench/load/echo-server.ts).
 *
 * Readers live on this thread; paced and blasting writers on a Worker (bench/load/sender-worker.ts)
 * so sending on schedule never waits for reading. Every loop is bounded in count and in time.
 */
import { readFileSync } from "node:fs"
import { Op } from "../src/protocol/binary/constants.ts"
import { readU32 } from "../src/protocol/binary/fields.ts"
import { printTable, writeResults } from "./common.ts"
import { spawnBroker, spawnEcho } from "./load/processes.ts"
import {
  checkTargets,
  LOAD_PROTOCOLS,
  LOAD_TABLE_HEADER,
  LOAD_TABLE_NOTES,
  type LoadResults,
  loadTableRows,
  type Protocol,
  parseLoopbackAddress,
  SCENARIOS,
  type ScenarioName,
  type ScenarioResult,
  type ServerCost,
  TARGET_TABLE_HEADER,
  targetTableRows,
} from "./load/results.ts"
import type { FromSender, SenderSetup, ToSender } from "./load/sender-worker.ts"
import { summarize, Tally } from "./load/tally.ts"
import { WebSocketBinaryLink, WebSocketJsonLink } from "./load/websocket.ts"
import {
  type Arrival,
  BinaryLink,
  EchoLink,
  JsonLink,
  type JsonReply,
  PAYLOAD_BYTES,
  PHASE_MEASURED,
  PHASE_WARMUP,
  payloadOffset,
  readJsonPayload,
  readPayload,
  topicBytes,
} from "./load/wire.ts"

const USAGE = `Usage: bun run bench/load.ts [options]

End-to-end load scenarios against a broker spawned from src/server.ts (see bench/README.md).

Options:
  --quick                 shorter phases, for a smoke run
  --only NAME             run only these scenarios (repeatable, or comma-separated):
                          ${SCENARIOS.join(", ")}, or floor (the floors only); a scenario
                          always brings its floor (rtt: echo, khz and fanout: relay)
  --protocol NAME         run only these protocols (repeatable): json-stream, binary-pull,
                          binary-push, websocket-json, websocket-binary-push
  --against HOST:PORT     also run the json-stream scenarios against another dsmq-compatible
                          server at HOST:PORT (loopback addresses only)
  --server-cpu-prof DIR   run each spawned broker under bun --cpu-prof, writing a profile
                          (and its Markdown summary) per scenario into DIR
  -h, --help              show this help

Results go to $BENCH_RESULTS as JSON when it is set (bench/run.ts sets it).
`

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  readonly quick: boolean
  /** Empty: everything. */
  readonly only: ReadonlySet<ScenarioName | "floor">
  readonly protocols: ReadonlySet<Protocol>
  readonly against: { readonly host: string; readonly port: number } | null
  readonly cpuProfileDir: string | null
}

class UsageError extends Error {}

const PROTOCOLS: readonly Protocol[] = LOAD_PROTOCOLS

function parseOptions(argv: readonly string[]): Options | "help" {
  let quick = process.env.BENCH_QUICK === "1"
  const only = new Set<ScenarioName | "floor">()
  const protocols = new Set<Protocol>()
  let against: Options["against"] = null
  let cpuProfileDir: string | null = null
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!
    const value = (): string => {
      const next = argv[++i]
      if (next === undefined || next.startsWith("--")) throw new UsageError(`${argument} needs a value`)
      return next
    }
    switch (argument) {
      case "-h":
      case "--help":
        return "help"
      case "--quick":
        quick = true
        break
      case "--only":
        for (const name of value().split(",")) {
          if (!(SCENARIOS as readonly string[]).includes(name) && name !== "floor") {
            throw new UsageError(`--only: unknown scenario "${name}" (have: ${SCENARIOS.join(", ")}, floor)`)
          }
          only.add(name as ScenarioName | "floor")
        }
        break
      case "--protocol":
        for (const name of value().split(",")) {
          if (!(PROTOCOLS as readonly string[]).includes(name)) {
            throw new UsageError(`--protocol: unknown protocol "${name}" (have: ${PROTOCOLS.join(", ")})`)
          }
          protocols.add(name as Protocol)
        }
        break
      case "--against":
        try {
          against = parseLoopbackAddress(value())
        } catch (error) {
          throw new UsageError((error as Error).message)
        }
        break
      case "--server-cpu-prof":
        cpuProfileDir = value()
        break
      default:
        throw new UsageError(`unknown argument ${argument}`)
    }
  }
  return { quick, only, protocols, against, cpuProfileDir }
}

// ---------------------------------------------------------------------------------------------
// Phases and sizes

interface Durations {
  /** rtt: round trips before measuring, measured round trips, time limit for both (ms). */
  readonly rttWarmup: number
  readonly rttIterations: number
  readonly rttTimeLimitMs: number
  /** khz, fanout: warm-up, measured phase, and how long to wait for stragglers after it (ms). */
  readonly pacedWarmupMs: number
  readonly pacedDurationMs: number
  readonly pacedDrainMs: number
  readonly maxWarmupMs: number
  readonly maxDurationMs: number
  readonly maxDrainMs: number
}

const FULL: Durations = {
  rttWarmup: 1000,
  rttIterations: 10_000,
  rttTimeLimitMs: 10_000,
  pacedWarmupMs: 500,
  pacedDurationMs: 3000,
  pacedDrainMs: 2000,
  maxWarmupMs: 300,
  maxDurationMs: 2000,
  maxDrainMs: 3000,
}

const QUICK: Durations = {
  rttWarmup: 300,
  rttIterations: 2000,
  rttTimeLimitMs: 4000,
  pacedWarmupMs: 300,
  pacedDurationMs: 800,
  pacedDrainMs: 1000,
  maxWarmupMs: 200,
  maxDurationMs: 800,
  maxDrainMs: 1500,
}

const KHZ_WRITERS = 10
const KHZ_READERS = 10
const KHZ_RATE_HZ = 1000
/** khz writers are spread over this many send times per millisecond (2 writers each). */
const KHZ_SLOTS = 5
const FANOUT_READERS = 100
const FANOUT_RATE_HZ = 1000
const MAX_BATCH = 100
/** Requests a pull reader keeps in flight per topic when there is a backlog (max). */
const MAX_PULL_WINDOW = 1000
/** Pull readers' wait timeout: long enough never to expire while messages flow. */
const WAIT_TIMEOUT_MS = 5000
/** An rtt round trip that takes longer than this counts as lost; the next one starts. */
const RTT_LOSS_MS = 1000
/**
 * rtt runs in two passes, A-B-B-A (echo, relay, the protocols, then the same backwards), each a
 * fresh process with half the round trips, merged per protocol: round-trip times drift by tens of
 * percent over seconds on a shared VM, and this order cancels a steady drift out of the ratios.
 */
const RTT_PASSES = 2

// ---------------------------------------------------------------------------------------------
// Targets and server stats

interface Target {
  /** "dsmq" for a broker spawned here, or HOST:PORT. */
  readonly label: string
  readonly host: string
  readonly port: number
  /** A binary connection for STATS (spawned brokers only). */
  readonly control: BinaryLink | null
  /** The WebSocket endpoint the broker announced (ws://HOST:HTTP_PORT/); null for the floors and --against. */
  readonly websocketUrl: string | null
  /** The spawned broker's process id, for its user/system CPU split from /proc. */
  readonly pid: number | null
  /** What the spawned process last wrote to stderr (for errors). */
  stderrTail(): string
  close(): Promise<void>
}

async function openFloor(kind: "echo" | "relay"): Promise<Target> {
  const floor = await spawnEcho(kind === "relay")
  return {
    label: kind,
    host: floor.host,
    port: floor.port,
    control: null,
    websocketUrl: null,
    pid: floor.pid,
    stderrTail: floor.stderrTail,
    close: () => floor.stop(),
  }
}

async function openTarget(options: Options, external: Options["against"], profileName: string): Promise<Target> {
  if (external !== null) {
    return {
      label: `${external.host}:${external.port}`,
      host: external.host,
      port: external.port,
      control: null,
      websocketUrl: null,
      pid: null,
      stderrTail: () => "",
      close: async () => {},
    }
  }
  const server = await spawnBroker(
    options.cpuProfileDir === null ? {} : { cpuProfileDir: options.cpuProfileDir, profileName: profileName.replaceAll("/", "-") },
  )
  try {
    const control = await BinaryLink.open(server.host, server.port)
    return {
      label: "dsmq",
      host: server.host,
      port: server.port,
      control,
      websocketUrl: server.websocketUrl,
      pid: server.pid,
      stderrTail: server.stderrTail,
      close: async () => {
        await withTimeout(control.close(), 2000)
        await server.stop()
      },
    }
  } catch (error) {
    await server.stop()
    throw error
  }
}

/** The target's WebSocket endpoint; throws if it announced none (a floor, --against, a broker without HTTP). */
function websocketUrlOf(target: Target): string {
  if (target.websocketUrl === null) throw new Error(`${target.label} announced no WebSocket endpoint`)
  return target.websocketUrl
}

interface StatsSample {
  readonly at: number
  readonly cpuMicros: number
  readonly puts: number
  readonly deliveries: number
  /** True when the sample is the floor's CPU time from /proc only (10 ms resolution, no counters). */
  readonly fromProc: boolean
  /** From /proc/PID/stat (10 ms resolution): how the CPU time splits into user and system. */
  readonly userMicros: number | null
  readonly systemMicros: number | null
}

/** utime and stime of a process, in µs (Linux; null elsewhere). */
function processTimes(pid: number | null): { user: number; system: number } | null {
  if (pid === null) return null
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // Fields 14 and 15 of the file, counted after "pid (comm)": indexes 11 and 12 here.
    const tick = 1_000_000 / CLOCK_TICKS_PER_SECOND
    return { user: Number(fields[11]) * tick, system: Number(fields[12]) * tick }
  } catch {
    return null
  }
}

/** USER_HZ: 100 on every Linux configuration Bun runs on. */
const CLOCK_TICKS_PER_SECOND = 100

async function sampleStats(target: Target): Promise<StatsSample | null> {
  if (target.control === null) {
    // A floor: its CPU time from /proc; it counts no puts or deliveries.
    const times = processTimes(target.pid)
    if (times === null) return null
    const cpuMicros = times.user + times.system
    return { at: performance.now(), cpuMicros, puts: 0, deliveries: 0, fromProc: true, userMicros: times.user, systemMicros: times.system }
  }
  const asked = performance.now()
  const stats = await withTimeout(target.control.stats(), 5000)
  // The server took its snapshot somewhere in the round trip.
  const at = (asked + performance.now()) / 2
  const times = processTimes(target.pid)
  return {
    at,
    cpuMicros: Number(stats.cpuMicros),
    puts: Number(stats.puts),
    deliveries: Number(stats.deliveries),
    fromProc: false,
    userMicros: times?.user ?? null,
    systemMicros: times?.system ?? null,
  }
}

/** /proc counts CPU time in 10 ms ticks: below this much, its numbers are mostly rounding. */
const MIN_PROC_CPU_MICROS = 200_000

function serverCost(before: StatsSample | null, after: StatsSample | null): ServerCost | null {
  if (before === null || after === null) return null
  const cpuMicros = after.cpuMicros - before.cpuMicros
  if (before.fromProc && (after.at - before.at < 1000 || cpuMicros < MIN_PROC_CPU_MICROS)) return null
  const userAndSystem =
    before.systemMicros === null || after.systemMicros === null || before.userMicros === null || after.userMicros === null
      ? null
      : { system: after.systemMicros - before.systemMicros, user: after.userMicros - before.userMicros }
  const puts = after.puts - before.puts
  const deliveries = after.deliveries - before.deliveries
  const wallMs = after.at - before.at
  return {
    wallMs,
    cpuMicros,
    puts,
    deliveries,
    cpuPerPut: puts > 0 ? cpuMicros / puts : null,
    cpuPerDelivery: deliveries > 0 ? cpuMicros / deliveries : null,
    cpuPerOperation: puts + deliveries > 0 ? cpuMicros / (puts + deliveries) : null,
    cpuPercent: wallMs > 0 ? (cpuMicros / (wallMs * 1000)) * 100 : 0,
    systemShare:
      userAndSystem === null || userAndSystem.system + userAndSystem.user < MIN_PROC_CPU_MICROS
        ? null
        : userAndSystem.system / (userAndSystem.system + userAndSystem.user),
  }
}

/** CPU time of this process (all threads), for the load generator's share of a core. */
class CpuMeter {
  readonly #startCpu = process.cpuUsage()
  readonly #startWall = performance.now()

  percent(): number {
    const used = process.cpuUsage(this.#startCpu)
    const wall = performance.now() - this.#startWall
    return wall > 0 ? ((used.user + used.system) / (wall * 1000)) * 100 : 0
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what = "operation"): Promise<T> {
  let timer: Timer | undefined
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
    }),
  ])
}

/** Resolves when `done()` holds or `deadline` (performance.now() time) passes; checks every few ms. */
async function until(done: () => boolean, deadline: number): Promise<boolean> {
  while (!done()) {
    if (performance.now() >= deadline) return false
    await Bun.sleep(2)
  }
  return true
}

// ---------------------------------------------------------------------------------------------
// Readers

interface Readers {
  readonly connections: number
  /** Pull readers start asking; push readers are already subscribed. */
  start(): void
  /** No new requests from here on. */
  stop(): void
  close(): Promise<void>
}

/**
 * `count` readers, each reading every topic in `topics`. `arrivals[r]` is told of each message
 * reader r receives. `window`: requests a pull reader keeps in flight per topic.
 */
async function openReaders(
  protocol: Exclude<Protocol, "echo">,
  target: Target,
  count: number,
  topics: readonly string[],
  window: number,
  arrivals: readonly Arrival[],
): Promise<Readers> {
  switch (protocol) {
    case "relay":
      return openRelayReaders(target, count, arrivals)
    case "binary-push":
      return openPushReaders(() => BinaryLink.open(target.host, target.port), count, topics, arrivals)
    case "websocket-binary-push": {
      const url = websocketUrlOf(target)
      return openPushReaders(() => WebSocketBinaryLink.open(url), count, topics, arrivals)
    }
    case "binary-pull":
      return openBinaryPullReaders(target, count, topics, window, arrivals)
    case "json-stream":
      return openJsonPullReaders(tcpJsonPull(target), count, topics, window, arrivals)
    case "websocket-json":
      return openJsonPullReaders(websocketJsonPull(websocketUrlOf(target)), count, topics, window, arrivals)
  }
}

/** The relay floor's readers: each gets every writer's messages, as a reader of all topics would. */
async function openRelayReaders(target: Target, count: number, arrivals: readonly Arrival[]): Promise<Readers> {
  const links = await Promise.all(Array.from({ length: count }, () => EchoLink.open(target.host, target.port, "reader")))
  links.forEach((link, reader) => {
    link.onArrival = arrivals[reader]!
  })
  return {
    connections: links.length,
    start: () => {},
    stop: () => {},
    close: async () => {
      await withTimeout(Promise.all(links.map((link) => link.close())), 5000, "closing readers")
    },
  }
}

/** Binary push: one connection per reader (TCP or WebSocket, from `open`), SUBSCRIBE to each topic. */
async function openPushReaders(
  open: () => Promise<BinaryLink | WebSocketBinaryLink>,
  count: number,
  topics: readonly string[],
  arrivals: readonly Arrival[],
): Promise<Readers> {
  const links = await Promise.all(Array.from({ length: count }, open))
  await Promise.all(
    links.map(async (link, reader) => {
      const arrival = arrivals[reader]!
      link.onFrame = (bytes, start) => {
        if (bytes[start + 4] === Op.deliver) readPayload(bytes, payloadOffset(bytes, start), arrival)
      }
      for (const topic of topics) await link.subscribe(topicBytes(topic))
    }),
  )
  return {
    connections: links.length,
    start: () => {},
    stop: () => {},
    close: async () => {
      await withTimeout(Promise.all(links.map((link) => link.close())), 5000, "closing readers")
    },
  }
}

/**
 * Binary pull: one connection per reader; per topic one GET_WAIT (answered the moment a message
 * is put) and, while GETs keep finding messages, up to `window - 1` pipelined GETs.
 * Request ids: bits 0-10 the topic, bit 11 set for GET_WAIT, bits 12-30 a counter.
 */
async function openBinaryPullReaders(
  target: Target,
  count: number,
  topics: readonly string[],
  window: number,
  arrivals: readonly Arrival[],
): Promise<Readers> {
  if (topics.length > 2048) throw new Error("too many topics for the request-id layout")
  const encoded = topics.map(topicBytes)
  const links = await Promise.all(Array.from({ length: count }, () => BinaryLink.open(target.host, target.port)))
  let running = false
  const readers = links.map((link, reader) => {
    const arrival = arrivals[reader]!
    const outstanding = new Int32Array(topics.length)
    const waiting = new Uint8Array(topics.length)
    let counter = 1
    const nextId = (topic: number, isWait: number): number => {
      counter = (counter + 1) & 0x7ffff
      return (counter << 12) | (isWait << 11) | topic
    }
    const refill = (topic: number, afterMessage: boolean): void => {
      while (running && outstanding[topic]! < window) {
        if (waiting[topic] === 0) {
          link.out.getWait(nextId(topic, 1), WAIT_TIMEOUT_MS, encoded[topic]!)
          waiting[topic] = 1
        } else if (afterMessage) {
          link.out.topicRequest(Op.get, nextId(topic, 0), encoded[topic]!)
        } else {
          return
        }
        outstanding[topic]!++
      }
    }
    link.onFrame = (bytes, start) => {
      const op = bytes[start + 4]!
      if (op !== Op.message && op !== Op.empty) return
      const id = readU32(bytes, start + 6)
      const topic = id & 0x7ff
      const isWait = (id >> 11) & 1
      outstanding[topic]!--
      if (isWait === 1) waiting[topic] = 0
      if (op === Op.message) {
        readPayload(bytes, payloadOffset(bytes, start), arrival)
        refill(topic, true)
      } else {
        refill(topic, false)
      }
    }
    return {
      start: () => {
        for (const topic of topics.keys()) refill(topic, false)
      },
    }
  })
  return {
    connections: links.length,
    start: () => {
      running = true
      for (const reader of readers) reader.start()
    },
    stop: () => {
      running = false
    },
    close: async () => {
      await withTimeout(Promise.all(links.map((link) => link.close())), 5000, "closing readers")
    },
  }
}

/** What a JSON pull reader needs of its connections: TCP (JsonLink) or WebSocket (WebSocketJsonLink). */
interface JsonPull<L extends JsonLink | WebSocketJsonLink> {
  open(): Promise<L>
  /** Prepares request `text` once; the result sends it on a link. */
  prepare(text: string): (link: L) => void
}

function tcpJsonPull(target: Target): JsonPull<JsonLink> {
  const encoder = new TextEncoder()
  return {
    open: () => JsonLink.open(target.host, target.port),
    prepare: (text) => {
      const bytes = encoder.encode(text)
      return (link) => link.sendBytes(bytes)
    },
  }
}

/** Upstream 1.x over WebSocket: each request is a text message of its own. */
function websocketJsonPull(url: string): JsonPull<WebSocketJsonLink> {
  return { open: () => WebSocketJsonLink.open(url), prepare: (text) => (link) => link.send(text) }
}

/**
 * JSON pull: a JSON get_wait holds back every request behind it on its connection, so a reader
 * of several topics has one connection per topic, each with `window` get_waits in flight (the
 * server answers them one after another as messages arrive).
 */
async function openJsonPullReaders<L extends JsonLink | WebSocketJsonLink>(
  driver: JsonPull<L>,
  count: number,
  topics: readonly string[],
  window: number,
  arrivals: readonly Arrival[],
): Promise<Readers> {
  const requests = topics.map((topic) => driver.prepare(JSON.stringify({ action: "get_wait", topic, timeout: WAIT_TIMEOUT_MS / 1000 })))
  const links: L[] = []
  const plan: { reader: number; topic: number }[] = []
  for (let reader = 0; reader < count; reader++) for (let topic = 0; topic < topics.length; topic++) plan.push({ reader, topic })
  // Opened a batch at a time: hundreds of simultaneous connects can overflow a small accept backlog.
  for (let i = 0; i < plan.length; i += 50) {
    links.push(...(await Promise.all(plan.slice(i, i + 50).map(() => driver.open()))))
  }
  await Promise.all(links.map((link) => link.ready()))
  let running = false
  let failure: Error | null = null
  links.forEach((link, i) => {
    const { reader, topic } = plan[i]!
    const arrival = arrivals[reader]!
    const ask = requests[topic]!
    link.onReply = (reply: JsonReply) => {
      if (reply.error !== undefined) {
        failure ??= new Error(`server error: ${reply.error.code}: ${reply.error.text}`)
        return
      }
      // A message, or (no seq and empty) a wait that timed out: either way, ask again.
      if (reply.message !== "") readJsonPayload(reply.message, arrival)
      if (running) ask(link)
    }
  })
  return {
    connections: links.length,
    start: () => {
      running = true
      links.forEach((link, i) => {
        const ask = requests[plan[i]!.topic]!
        for (let k = 0; k < window; k++) ask(link)
      })
    },
    stop: () => {
      running = false
      if (failure !== null) throw failure
    },
    close: async () => {
      await withTimeout(Promise.all(links.map((link) => link.close())), 5000, "closing readers")
    },
  }
}

// ---------------------------------------------------------------------------------------------
// The sender worker

class Sender {
  readonly #worker = new Worker(new URL("./load/sender-worker.ts", import.meta.url).href)
  #waiting: { resolve: (message: FromSender) => void; reject: (error: Error) => void } | null = null

  constructor() {
    this.#worker.onmessage = (event: MessageEvent<FromSender>) => {
      const message = event.data
      const waiting = this.#waiting
      this.#waiting = null
      if (message.type === "error") waiting?.reject(new Error(`sender: ${message.message}`))
      else waiting?.resolve(message)
    }
    this.#worker.onerror = (event) => {
      const waiting = this.#waiting
      this.#waiting = null
      waiting?.reject(new Error(`sender worker failed: ${event.message}`))
    }
  }

  async #ask<T extends FromSender["type"]>(message: ToSender, expect: T, timeoutMs: number): Promise<Extract<FromSender, { type: T }>> {
    const reply = withTimeout(
      new Promise<FromSender>((resolve, reject) => (this.#waiting = { resolve, reject })),
      timeoutMs,
      `sender "${message.type}"`,
    )
    this.#worker.postMessage(message)
    const answer = await reply
    if (answer.type !== expect) throw new Error(`sender answered ${answer.type} to ${message.type}`)
    return answer as Extract<FromSender, { type: T }>
  }

  setup(setup: SenderSetup): Promise<unknown> {
    return this.#ask({ type: "setup", setup }, "ready", 10_000)
  }

  /** Resolves once the sender has sent its last message. */
  go(startAt: number, timeoutMs: number): Promise<Extract<FromSender, { type: "done" }>> {
    return this.#ask({ type: "go", startAt }, "done", timeoutMs)
  }

  async close(): Promise<void> {
    try {
      await this.#ask({ type: "close" }, "closed", 5000)
    } finally {
      this.#worker.terminate()
    }
  }

  terminate(): void {
    this.#worker.terminate()
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

interface Run {
  readonly id: string
  readonly scenario: ScenarioName
  readonly protocol: Protocol
  readonly variant: string | null
  /** null: the broker spawned for this run. */
  readonly external: Options["against"]
}

type Measured = Omit<ScenarioResult, "id" | "scenario" | "protocol" | "variant" | "target" | "seconds" | "error">

function failedResult(run: Run, target: string, error: unknown, seconds: number): ScenarioResult {
  return {
    id: run.id,
    scenario: run.scenario,
    protocol: run.protocol,
    variant: run.variant,
    target,
    description: "",
    config: {},
    sent: 0,
    expected: 0,
    received: 0,
    unique: 0,
    loss: 0,
    duplicates: 0,
    outOfOrder: 0,
    putRate: 0,
    deliveredRate: 0,
    latency: null,
    latencyFromSend: null,
    sendLag: null,
    drainMs: null,
    server: null,
    loadCpuPercent: 0,
    seconds,
    notes: [],
    error: error instanceof Error ? error.message : String(error),
  }
}

/** Topic names unique to this run, so runs against a long-lived --against server do not mix. */
function topicNames(run: Run, count: number): string[] {
  const prefix = `bench-${run.id.replaceAll("/", "-")}-${process.pid}-${Date.now().toString(36)}`
  return Array.from({ length: count }, (_, i) => `${prefix}-${i}`)
}

/**
 * rtt (and the floor): one message at a time; the next is put the moment the reader has the
 * previous one. Latency: from just before the put is handed to the socket to the reader's handler.
 */
/** Raw rtt latencies by run id, for merging the passes of one protocol (see `mergeRtt`). */
const rttSamples = new Map<string, { latencies: Float64Array[]; fromSend: Float64Array[] }>()

async function runRtt(run: Run, target: Target, durations: Durations): Promise<Measured> {
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
  let writer: BinaryLink | JsonLink | EchoLink | WebSocketBinaryLink | WebSocketJsonLink | null = null
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
    const broker = target
    readers = await openReaders(run.protocol, broker, 1, [topic], 1, [arrival])
    if (run.protocol === "json-stream") {
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

  const server = serverCost(before, after)
  void started
  const elapsedSeconds = (tally.lastAt - tally.firstAt) / 1000
  const key = run.external === null ? run.id : `${run.id}@${run.external.host}:${run.external.port}`
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
      server !== null && server.puts > 0 && server.wallMs > 0
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

/** The end of a WebSocket row's description: how its messages travel. */
function transportNote(protocol: Protocol): string {
  if (protocol === "websocket-json") return "; over the broker's WebSocket endpoint, one JSON request or reply per text message"
  if (protocol === "websocket-binary-push") return "; over the broker's WebSocket endpoint, binary frames in binary messages"
  return ""
}

/** How the writers of each protocol put (bench/load/sender-worker.ts). */
const SENDER_PROTOCOLS: Readonly<Record<Exclude<Protocol, "echo">, SenderSetup["protocol"]>> = {
  relay: "raw",
  "json-stream": "json",
  "binary-pull": "binary",
  "binary-push": "binary",
  "websocket-json": "websocket-json",
  "websocket-binary-push": "websocket-binary",
}

/** khz, fanout (paced writers) and max (one blasting writer). */
async function runStream(run: Run, target: Target, durations: Durations): Promise<Measured> {
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
  const topics = topicNames(run, shape.writers)
  const expectedPerWriter = paced ? (shape.rateHz * durationMs) / 1000 : 500_000
  const tally = new Tally(shape.readers, shape.writers, expectedPerWriter)
  const arrivals: Arrival[] = Array.from({ length: shape.readers }, (_, reader) => (writer, index, phase, scheduledAt, sentAt) => {
    if (phase === PHASE_MEASURED) tally.record(reader, writer, index, scheduledAt, sentAt, performance.now())
  })
  const window = run.scenario === "max" ? MAX_PULL_WINDOW : 1

  const readers = await openReaders(protocol, target, shape.readers, topics, window, arrivals)
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

    const server = serverCost(before, paced ? after : windowEnd)
    // From the first measured delivery to the last: the rate the readers actually received at
    // (for max, independent of how long messages queued before the first one arrived).
    const deliveredSeconds = (tally.lastAt - tally.firstAt) / 1000
    const notes: string[] = []
    if (tally.foreign > 0) notes.push(`${tally.foreign} messages named an unknown writer`)
    if (!paced && server !== null) {
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
      putRate: server !== null && server.puts > 0 && server.wallMs > 0 ? (server.puts / server.wallMs) * 1000 : (sent / durationMs) * 1000,
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

async function execute(run: Run, options: Options, durations: Durations): Promise<ScenarioResult> {
  const started = performance.now()
  let label =
    run.protocol === "echo" || run.protocol === "relay"
      ? run.protocol
      : run.external === null
        ? "dsmq"
        : `${run.external.host}:${run.external.port}`
  let measured: Measured
  try {
    const target =
      run.protocol === "echo" || run.protocol === "relay" ? await openFloor(run.protocol) : await openTarget(options, run.external, run.id)
    label = target.label
    try {
      measured = run.scenario === "rtt" ? await runRtt(run, target, durations) : await runStream(run, target, durations)
    } catch (error) {
      const tail = target.stderrTail().trim()
      throw tail === "" ? error : new Error(`${(error as Error).message}; the server said: ${tail.split("\n").slice(-3).join(" | ")}`)
    } finally {
      await target.close()
    }
  } catch (error) {
    return failedResult(run, label, error, (performance.now() - started) / 1000)
  }
  return {
    id: run.id,
    scenario: run.scenario,
    protocol: run.protocol,
    variant: run.variant,
    target: label,
    ...measured,
    seconds: (performance.now() - started) / 1000,
    error: null,
  }
}

function plan(options: Options): Run[] {
  const runs: Run[] = []
  const wanted = (scenario: ScenarioName): boolean => options.only.size === 0 || options.only.has(scenario)
  const floorWanted = (scenario: ScenarioName): boolean => wanted(scenario) || options.only.has("floor")
  const protocolWanted = (protocol: Protocol): boolean => options.protocols.size === 0 || options.protocols.has(protocol)
  const add = (scenario: ScenarioName, protocol: Protocol, variant: string | null = null, external: Options["against"] = null): void => {
    const floor = protocol === "echo" || protocol === "relay"
    if (floor ? !floorWanted(scenario) : !wanted(scenario) || !protocolWanted(protocol)) return
    const id = [scenario, protocol, ...(variant === null ? [] : [variant])].join("/")
    runs.push({ id, scenario, protocol, variant, external })
  }
  const rttOrder: Protocol[] = ["echo", "relay", ...PROTOCOLS]
  for (let pass = 0; pass < RTT_PASSES; pass++) {
    for (const protocol of pass % 2 === 0 ? rttOrder : [...rttOrder].reverse()) add("rtt", protocol)
  }
  for (const scenario of ["khz", "fanout"] as const) {
    add(scenario, "relay")
    for (const protocol of PROTOCOLS) add(scenario, protocol)
  }
  add("max", "binary-push", "single")
  add("max", "binary-push", "batched")
  add("max", "binary-pull", "single")
  add("max", "json-stream", "single")
  add("max", "websocket-binary-push", "single")
  add("max", "websocket-json", "single")
  if (options.against !== null) {
    for (let pass = 0; pass < RTT_PASSES; pass++) add("rtt", "json-stream", null, options.against)
    for (const scenario of ["khz", "fanout"] as const) add(scenario, "json-stream", null, options.against)
    add("max", "json-stream", "single", options.against)
  }
  return runs
}

/** Merges the rtt passes of each protocol into one result, in place (at the first pass's position). */
function mergeRtt(results: ScenarioResult[]): void {
  const concat = (parts: readonly Float64Array[]): Float64Array => {
    const all = new Float64Array(parts.reduce((total, part) => total + part.length, 0))
    let at = 0
    for (const part of parts) {
      all.set(part, at)
      at += part.length
    }
    return all
  }
  // One row per scenario, protocol and target (a server given with --against is a row of its own).
  const keyOf = (result: ScenarioResult): string =>
    result.target === "dsmq" || result.target === "echo" || result.target === "relay" ? result.id : `${result.id}@${result.target}`
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
            return {
              wallMs,
              cpuMicros,
              puts,
              deliveries,
              cpuPerPut: puts > 0 ? cpuMicros / puts : null,
              cpuPerDelivery: deliveries > 0 ? cpuMicros / deliveries : null,
              cpuPerOperation: puts + deliveries > 0 ? cpuMicros / (puts + deliveries) : null,
              cpuPercent: wallMs > 0 ? (cpuMicros / (wallMs * 1000)) * 100 : 0,
              systemShare:
                shares.length === costs.length && cpuMicros > 0
                  ? shares.reduce((total, cost) => total + cost.systemShare! * cost.cpuMicros, 0) / cpuMicros
                  : null,
            }
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

async function main(): Promise<number> {
  let options: Options | "help"
  try {
    options = parseOptions(process.argv.slice(2))
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    console.error(`load: ${error.message}\n\n${USAGE}`)
    return 2
  }
  if (options === "help") {
    console.log(USAGE)
    return 0
  }
  const durations = options.quick ? QUICK : FULL
  const runs = plan(options)
  if (runs.length === 0) {
    console.error("load: nothing to run for these --only / --protocol choices")
    return 2
  }
  console.log(
    `Load scenarios${options.quick ? " (quick)" : ""}: ${runs.length} runs, each against a fresh broker process (bun run src/server.ts --port 0 --http-port 0) on 127.0.0.1`,
  )
  const results: ScenarioResult[] = []
  for (const run of runs) {
    const line = `  ${run.id}${run.external === null ? "" : ` @ ${run.external.host}:${run.external.port}`}`
    process.stdout.write(line.padEnd(44))
    const result = await execute(run, options, durations)
    results.push(result)
    if (result.error !== null) {
      console.log(`failed after ${result.seconds.toFixed(1)} s: ${result.error}`)
    } else {
      const latency = result.latency
      console.log(
        `${result.seconds.toFixed(1).padStart(5)} s  ${result.unique.toLocaleString("en-US").padStart(9)} delivered, loss ${result.loss}` +
          (latency === null ? "" : `, p50 ${latency.p50.toFixed(0)} µs, p99 ${latency.p99.toFixed(0)} µs`) +
          (result.sendLag === null || result.latencyFromSend === null
            ? ""
            : `; from actual send p50 ${result.latencyFromSend.p50.toFixed(0)} µs, p99 ${result.latencyFromSend.p99.toFixed(0)} µs; send lag p99 ${result.sendLag.p99.toFixed(0)} µs`) +
          (result.notes.length === 0 ? "" : `  (${result.notes.join("; ")})`),
      )
    }
  }

  mergeRtt(results)
  printTable("Load scenarios (loopback; one fresh broker process per row)", [...LOAD_TABLE_HEADER], loadTableRows(results))
  console.log()
  for (const line of LOAD_TABLE_NOTES) console.log(line)

  const targets = checkTargets(results)
  printTable(
    "Targets of issue 4 (this run; the issue asks for medians over repeated runs)",
    [...TARGET_TABLE_HEADER],
    targetTableRows(targets),
  )

  // Every protocol has a driver: a cell that cannot run is a failed row with its error, none is "unavailable".
  const loadResults: LoadResults = { quick: options.quick, scenarios: results, unavailable: [], targets }
  await writeResults("load", { load: loadResults })
  return results.some((result) => result.error !== null) ? 1 : 0
}

process.exit(await main())
