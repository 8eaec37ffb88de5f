/**
 * Soak test: a bounded mixed load against a broker child process for N minutes, sampling its
 * memory, counters and latencies every interval, then a verdict on whether memory stayed flat
 * under the retention cap and whether latency spiked while retention was dropping messages.
 *
 *   bun run bench/soak.ts [--minutes N] [--max-memory SIZE] [--max-age AGE] [--rate N]
 *                         [--payload BYTES] [--topics N] [--json FILE]
 *
 * Not part of `bun test` and not run by bench/run.ts: it takes minutes and wants the machine.
 * `--help` lists every option. Processes:
 *
 * - the broker: `bun run src/server.ts --port 0 --no-http [retention flags]`;
 * - the load (this script again, `--role load`): writer connections putting pipelined small
 *   messages round-robin over the load topics (as fast as the server takes them, at most
 *   `--window` batches of `--batch` puts unconfirmed per writer, or at `--rate` puts/s in all),
 *   one binary subscriber to every load topic, and one JSON-protocol poller (raw TCP, bare
 *   `{"action": "get", ...}` objects, pipelined in batches);
 * - this process: the latency probe (putAck on a probe topic timed to its DELIVER on a second
 *   connection, and the putAck round trip; ping and a binary `get` of a load topic, each on a
 *   connection of its own) and the sampler (VmRSS / VmHWM and CPU time of the broker from /proc,
 *   its STATS counters, and the CPU the rest of the machine used, to tell contention apart).
 *
 * The verdict: RSS is flat when the last third of the samples lie within --rss-tolerance of each
 * other, and bounded when its peak stays below cap x --rss-factor + --rss-slack; latency spiked
 * when an interval in which retention removed messages has a p99.9 over --spike-factor times the
 * baseline (intervals where other processes used the CPU are reported apart, as inconclusive).
 * The server's STATS count retention drops (droppedByRetention); puts − storedMessages stands in for
 * it (exact for the in-memory store, which removes messages only through retention).
 *
 * Every loop is bounded by a deadline; the script stops by itself, and kills what it started if
 * anything overruns.
 */
import { readFileSync, writeFileSync } from "node:fs"
import os from "node:os"
import { DEFAULT_RETENTION, STORED_MESSAGE_OVERHEAD } from "../src/broker/retention.ts"
import { type Client, connect, type Message, type Subscription } from "../src/client.ts"
import { parseAge, parseSize } from "../src/config/values.ts"
import { Outbound } from "../src/io/outbound.ts"

const MiB = 1024 * 1024
const ROOT = new URL("..", import.meta.url).pathname
const PROBE_TOPIC = "soak/probe"
/** How long the JSON poller waits after a round trip that found nothing. */
const POLL_IDLE_MS = 10

const USAGE = `Usage: bun run bench/soak.ts [options]

Load:
  --minutes N          how long the load runs (default 10; fractions allowed)
  --rate N             puts per second over all writers; 0: as fast as the server takes them (default 0)
  --payload BYTES      payload size of the load's puts (default 100)
  --topics N           load topics, written round-robin (default 16)
  --writers N          writer connections (default 3)
  --batch N            puts per pipelined batch, each followed by a ping (default 100)
  --window N           batches a writer may have unconfirmed (default 4)
  --poll-batch N       JSON gets per pipelined round trip of the poller (default 50)
  --probe-rate N       latency probes per second, per series (default 200)
  --interval SECS      sampling interval (default 10)

Server (passed to src/server.ts; omitted ones keep the server's defaults):
  --max-memory SIZE    store cap, e.g. 64MiB (server default ${DEFAULT_RETENTION.maxStoreBytes! / MiB}MiB)
  --max-age AGE        age limit, e.g. 5s: turns on the age sweep (server default none)
  --max-messages N     messages per topic (server default ${DEFAULT_RETENTION.defaults.maxMessages})
  --idle-timeout SECS  passed on as is. Under Bun 1.4.5, Bun.listen gives every socket a one-shot
                       120 s timeout that traffic does not reset, and the server ends the connection
                       when it fires, so without this a soak loses all its connections at 120 s;
                       --idle-timeout 86400 moves that deadline out of the way (server default none)

Verdict:
  --rss-tolerance PCT  the last third of the RSS samples must lie within PCT % of each other (default 10)
  --rss-factor K       RSS must stay below cap x K + slack (default 1.25)
  --rss-slack SIZE     ... (default 128MiB)
  --spike-factor F     an interval's p99.9 is a spike when over F x baseline and baseline + 10 ms (default 3)
  --contention PCT     an interval is contended when other processes used more than PCT % of one core
                       (from /proc/stat); its spikes are reported as inconclusive (default 50)

Output:
  --json FILE          write the configuration, samples and verdict as JSON
  -h, --help           show this help
`

// ---------------------------------------------------------------------------------------------
// Options

interface SoakOptions {
  minutes: number
  rate: number
  payload: number
  topics: number
  writers: number
  batch: number
  window: number
  pollBatch: number
  probeRate: number
  intervalSeconds: number
  maxMemory: string | null
  maxAge: string | null
  maxMessages: string | null
  idleTimeout: string | null
  rssTolerance: number
  rssFactor: number
  rssSlack: number
  spikeFactor: number
  contention: number
  json: string | null
}

function parseOptions(argv: readonly string[]): SoakOptions {
  const options: SoakOptions = {
    minutes: 10,
    rate: 0,
    payload: 100,
    topics: 16,
    writers: 3,
    batch: 100,
    window: 4,
    pollBatch: 50,
    probeRate: 200,
    intervalSeconds: 10,
    maxMemory: null,
    maxAge: null,
    maxMessages: null,
    idleTimeout: null,
    rssTolerance: 10,
    rssFactor: 1.25,
    rssSlack: 128 * MiB,
    spikeFactor: 3,
    contention: 50,
    json: null,
  }
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!
    const [flag, inline] = argument.includes("=")
      ? [argument.slice(0, argument.indexOf("=")), argument.slice(argument.indexOf("=") + 1)]
      : [argument, undefined]
    const value = (): string => {
      const text = inline ?? argv[++i]
      if (text === undefined) fail(`${flag} needs a value`)
      return text
    }
    const number = (min: number, max: number): number => {
      const text = value()
      const parsed = Number(text)
      if (text.trim() === "" || !Number.isFinite(parsed) || parsed < min || parsed > max)
        fail(`${flag} must be a number from ${min} to ${max}, got ${JSON.stringify(text)}`)
      return parsed
    }
    const integer = (min: number, max: number): number => {
      const parsed = number(min, max)
      if (!Number.isInteger(parsed)) fail(`${flag} must be a whole number`)
      return parsed
    }
    switch (flag) {
      case "-h":
      case "--help":
        process.stdout.write(USAGE)
        return process.exit(0)
      case "--minutes":
        options.minutes = number(0.05, 24 * 60)
        break
      case "--rate":
        options.rate = number(0, 10_000_000)
        break
      case "--payload":
        options.payload = integer(1, 65_536)
        break
      case "--topics":
        options.topics = integer(1, 10_000)
        break
      case "--writers":
        options.writers = integer(1, 64)
        break
      case "--batch":
        options.batch = integer(1, 10_000)
        break
      case "--window":
        options.window = integer(1, 1000)
        break
      case "--poll-batch":
        options.pollBatch = integer(1, 10_000)
        break
      case "--probe-rate":
        options.probeRate = number(1, 2000)
        break
      case "--interval":
        options.intervalSeconds = number(1, 3600)
        break
      case "--max-memory":
        options.maxMemory = checked(value(), (text) => parseSize("--max-memory", text))
        break
      case "--max-age":
        options.maxAge = checked(value(), (text) => parseAge("--max-age", text))
        break
      case "--max-messages":
        options.maxMessages = value()
        break
      case "--idle-timeout":
        options.idleTimeout = String(integer(0, 86_400))
        break
      case "--rss-tolerance":
        options.rssTolerance = number(0, 1000)
        break
      case "--rss-factor":
        options.rssFactor = number(0.1, 100)
        break
      case "--rss-slack":
        options.rssSlack =
          parseSize(
            "--rss-slack",
            checked(value(), (text) => parseSize("--rss-slack", text)),
          ) ?? 0
        break
      case "--spike-factor":
        options.spikeFactor = number(1, 1000)
        break
      case "--contention":
        options.contention = number(0, 10_000)
        break
      case "--json":
        options.json = value()
        break
      default:
        fail(`unknown option ${flag}`)
    }
  }
  return options
}

/** Validates `text` with the server's own parser; returns it unchanged for the command line. */
function checked(text: string, parse: (text: string) => unknown): string {
  try {
    parse(text)
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error))
  }
  return text
}

function fail(message: string): never {
  console.error(`soak: ${message}\n\n${USAGE}`)
  process.exit(2)
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!
}

interface LatencySummary {
  readonly n: number
  readonly p50: number
  readonly p99: number
  readonly p999: number
  readonly max: number
}

function summarize(values: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(values).sort()
  const list = Array.from(sorted)
  return {
    n: list.length,
    p50: percentile(list, 0.5),
    p99: percentile(list, 0.99),
    p999: percentile(list, 0.999),
    max: list.length === 0 ? Number.NaN : list[list.length - 1]!,
  }
}

function median(values: readonly number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    0.5,
  )
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: Timer | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** VmRSS and VmHWM of a process, in bytes; null once it is gone. */
function memoryOf(pid: number): { rss: number; hwm: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN) * 1024
    return { rss: field("VmRSS"), hwm: field("VmHWM") }
  } catch {
    return null
  }
}

const CLOCK_TICKS_PER_SECOND = 100 // USER_HZ on Linux

/** CPU seconds (user + system) a process has used; NaN once it is gone. */
function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND
  } catch {
    return Number.NaN
  }
}

/** CPU seconds the whole machine has been busy (all cores, everything but idle and iowait). */
function machineBusySeconds(): number {
  try {
    const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
    const total = fields.reduce((sum, value) => sum + value, 0)
    return (total - fields[3]! - fields[4]!) / CLOCK_TICKS_PER_SECOND
  } catch {
    return Number.NaN
  }
}

interface CpuReading {
  readonly at: number
  readonly server: number
  readonly load: number
  readonly self: number
  readonly machine: number
}

function loadAverage(): number {
  return os.loadavg()[0] ?? Number.NaN
}

const fmt = {
  mib: (bytes: number): string => (Number.isFinite(bytes) ? (bytes / MiB).toFixed(1) : "-"),
  ms: (value: number): string =>
    !Number.isFinite(value) ? "-" : value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2),
  pct: (value: number): string => (Number.isFinite(value) ? value.toFixed(0) : "-"),
  int: (value: number): string => (Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "-"),
  rate: (value: number): string =>
    !Number.isFinite(value)
      ? "-"
      : value >= 10_000
        ? `${(value / 1000).toFixed(0)}k`
        : value >= 1000
          ? `${(value / 1000).toFixed(1)}k`
          : value.toFixed(0),
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)))
  const line = (cells: readonly string[]): string => cells.map((cell, column) => cell.padStart(widths[column]!)).join("  ")
  return [line(header), line(widths.map((width) => "-".repeat(width))), ...rows.map(line)].join("\n")
}

// ---------------------------------------------------------------------------------------------
// The load process (`--role load`): writers, a binary subscriber and a JSON poller

interface LoadTally {
  putsSent: number
  putsConfirmed: number
  subscriberReceived: number
  subscriberMissed: number
  /** Messages whose sequence number was not above the previous one of their topic. */
  subscriberOutOfOrder: number
  pollReplies: number
  pollMessages: number
  pollEmpty: number
  pollMissed: number
  pollErrors: number
  clientErrors: number
  closedConnections: number
  lastError: string | null
}

async function loadMain(argv: readonly string[]): Promise<void> {
  const args = new Map<string, string>()
  for (let i = 0; i + 1 < argv.length; i += 2) args.set(argv[i]!, argv[i + 1]!)
  const num = (name: string): number => Number(args.get(name))
  const port = num("--port")
  const topics = Array.from({ length: num("--topics") }, (_, i) => `soak/load/${i}`)
  const payload = new Uint8Array(num("--payload")).fill(0x61)
  const writers = num("--writers")
  const batch = num("--batch")
  const window = num("--window")
  const pollBatch = num("--poll-batch")
  const rate = num("--rate")
  const deadline = num("--deadline") // epoch ms
  const tally: LoadTally = {
    putsSent: 0,
    putsConfirmed: 0,
    subscriberReceived: 0,
    subscriberMissed: 0,
    subscriberOutOfOrder: 0,
    pollReplies: 0,
    pollMessages: 0,
    pollEmpty: 0,
    pollMissed: 0,
    pollErrors: 0,
    clientErrors: 0,
    closedConnections: 0,
    lastError: null,
  }
  let stopping = false
  const stop = (): void => {
    stopping = true
  }
  process.on("SIGTERM", stop)
  process.on("SIGINT", stop)
  const shouldStop = (): boolean => stopping || Date.now() >= deadline
  // A last resort: never outlive the deadline by much.
  setTimeout(
    () => {
      report("timeout")
      process.exit(3)
    },
    Math.max(0, deadline - Date.now()) + 30_000,
  ).unref()

  const report = (type: string): void => {
    process.stdout.write(`${JSON.stringify({ type, tally })}\n`)
  }
  const onError = (error: { message: string }): void => {
    tally.clientErrors++
    tally.lastError = error.message
  }

  // Readers first, so that they see every put.
  const subscriber = await connect({ port, onError })
  const subscriptions: Subscription[] = []
  for (const topic of topics) subscriptions.push(await subscriber.subscribe(topic))
  const poller = await JsonPoller.open(port, topics)
  await poller.roundTrip(1, tally) // the poller's cursors exist before the first put
  const writerClients: Client[] = []
  for (let i = 0; i < writers; i++) writerClients.push(await connect({ port, onError }))
  report("ready")
  const tallyTimer = setInterval(() => report("tally"), 1000)

  // Reads until the subscriber's connection is closed at the end (leaving the loop early would
  // send an UNSUBSCRIBE whose reply the close then cuts off).
  const readSubscription = async (subscription: Subscription): Promise<void> => {
    let lastSeq = 0
    try {
      for (;;) {
        const next = await subscription.next()
        if (next.done === true) return
        tally.subscriberReceived++
        tally.subscriberMissed += next.value.missed
        if (next.value.seq <= lastSeq) tally.subscriberOutOfOrder++
        lastSeq = next.value.seq
      }
    } catch (error) {
      onError(error as Error)
    }
  }

  const write = async (client: Client, index: number): Promise<void> => {
    const perWriterRate = rate / writers
    const started = performance.now()
    let sent = 0
    let topic = index
    const inFlight: Promise<void>[] = []
    // In-flight batches never reject (no unhandled rejections when the connection drops); the
    // first failure ends this writer.
    let failed: Error | null = null
    try {
      while (!shouldStop() && failed === null) {
        let count = batch
        if (perWriterRate > 0) {
          const due = Math.floor(((performance.now() - started) / 1000) * perWriterRate) - sent
          if (due <= 0) {
            await Bun.sleep(Math.max(1, Math.min(50, 1000 / perWriterRate)))
            continue
          }
          count = Math.min(due, batch)
        }
        for (let i = 0; i < count; i++) {
          client.put(topics[topic]!, payload)
          topic = (topic + 1) % topics.length
        }
        sent += count
        tally.putsSent += count
        inFlight.push(
          client.ping().then(
            () => void (tally.putsConfirmed += count),
            (error: Error) => void (failed ??= error),
          ),
        )
        if (inFlight.length >= window) await withTimeout(inFlight.shift()!, 60_000, "writer batch")
      }
      await withTimeout(Promise.all(inFlight), 60_000, "writer drain")
      if (failed !== null) throw failed
    } catch (error) {
      onError(error as Error)
      tally.closedConnections++
    }
  }

  const readers = [...subscriptions.map(readSubscription), poller.run(pollBatch, tally, shouldStop)]
  await Promise.all(writerClients.map(write))
  stopping = true
  await Promise.all(writerClients.map((client) => client.close()))
  await Promise.race([Promise.all(readers.slice(-1)), Bun.sleep(10_000)])
  // Every confirmed put is pushed to the subscriber before the confirmation: wait for the last
  // pushes to be read, so that received + missed = confirmed checks delivery.
  for (const until = Date.now() + 10_000; tally.subscriberReceived + tally.subscriberMissed < tally.putsConfirmed && Date.now() < until; )
    await Bun.sleep(10)
  await subscriber.close()
  poller.close()
  await Promise.race([Promise.all(readers), Bun.sleep(5_000)])
  clearInterval(tallyTimer)
  report("done")
  process.exit(0)
}

/**
 * A reader speaking upstream's bare-JSON protocol over raw TCP: pipelines `pollBatch` gets,
 * round-robin over the topics, and reads the concatenated reply objects back.
 */
class JsonPoller {
  readonly #topics: readonly string[]
  readonly #decoder = new TextDecoder()
  #socket: import("bun").Socket<undefined> | null = null
  #outbound: Outbound | null = null
  #text = ""
  #scan = 0
  #depth = 0
  #inString = false
  #escaped = false
  #objectStart = 0
  #awaiting = 0
  #tally: LoadTally | null = null
  #done: (() => void) | null = null
  #closed = false
  #closing = false
  #next = 0

  private constructor(topics: readonly string[]) {
    this.#topics = topics
  }

  static async open(port: number, topics: readonly string[]): Promise<JsonPoller> {
    const poller = new JsonPoller(topics)
    poller.#socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_socket, chunk) => poller.#onData(chunk),
        drain: () => poller.#outbound?.writeQueued(),
        close: () => poller.#onClose(),
        error: () => poller.#onClose(),
      },
    })
    poller.#outbound = new Outbound(poller.#socket)
    return poller
  }

  async run(pollBatch: number, tally: LoadTally, shouldStop: () => boolean): Promise<void> {
    try {
      while (!shouldStop() && !this.#closed) {
        const before = tally.pollMessages
        await this.roundTrip(pollBatch, tally)
        // Nothing new: poll again a little later, as a polling client would, instead of spinning.
        if (tally.pollMessages === before) await Bun.sleep(POLL_IDLE_MS)
      }
    } catch (error) {
      tally.pollErrors++
      tally.lastError = (error as Error).message
    }
  }

  /** Sends `count` gets and waits for their replies. */
  roundTrip(count: number, tally: LoadTally): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("JSON poller connection closed"))
    this.#tally = tally
    let requests = ""
    for (let i = 0; i < count; i++) {
      requests += `{"action": "get", "topic": ${JSON.stringify(this.#topics[this.#next]!)}}`
      this.#next = (this.#next + 1) % this.#topics.length
    }
    this.#awaiting = count
    const { promise, resolve } = Promise.withResolvers<void>()
    this.#done = resolve
    this.#outbound!.send(Buffer.from(requests))
    return withTimeout(promise, 60_000, "JSON poller")
  }

  close(): void {
    this.#closing = true
    this.#socket?.end()
  }

  #onClose(): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#tally !== null && !this.#closing) this.#tally.closedConnections++
    this.#done?.()
  }

  /** Finds complete top-level objects (braces outside strings); payloads here are plain ASCII. */
  #onData(chunk: Uint8Array): void {
    this.#text += this.#decoder.decode(chunk, { stream: true })
    const text = this.#text
    for (let i = this.#scan; i < text.length; i++) {
      const c = text.charCodeAt(i)
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false
        else if (c === 0x5c) this.#escaped = true
        else if (c === 0x22) this.#inString = false
      } else if (c === 0x22) this.#inString = true
      else if (c === 0x7b) {
        if (this.#depth++ === 0) this.#objectStart = i
      } else if (c === 0x7d && --this.#depth === 0) this.#onReply(text.slice(this.#objectStart, i + 1))
    }
    if (this.#depth === 0) {
      this.#text = ""
      this.#scan = 0
    } else {
      this.#text = text.slice(this.#objectStart)
      this.#scan = this.#text.length
      this.#objectStart = 0
    }
  }

  #onReply(body: string): void {
    const tally = this.#tally!
    tally.pollReplies++
    const reply = JSON.parse(body) as { message?: string; seq?: number; missed?: number; error?: { code: string; text: string } }
    if (reply.error !== undefined) {
      tally.pollErrors++
      tally.lastError = `${reply.error.code}: ${reply.error.text}`
    } else if (reply.seq === undefined) tally.pollEmpty++
    else {
      tally.pollMessages++
      tally.pollMissed += reply.missed ?? 0
    }
    if (--this.#awaiting === 0) {
      const done = this.#done
      this.#done = null
      done?.()
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The coordinator: broker, load process, probe, sampler, report

/** What this process started, to be killed if it has to give up. */
const children: import("bun").Subprocess[] = []

function killAll(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
}

interface ServerStatsSnapshot {
  puts: number
  deliveries: number
  storedMessages: number
  storedBytes: number
  cpuMicros: number
  topics: number
  subscribers: number
  connections: number
  maxConnectionBufferedBytes: number
  queuedRequests: number
  errors: Record<string, number>
  /** Not in the server's stats: see the note in the report. */
  retentionDropped?: number
}

interface Sample {
  /** Seconds since the load started. */
  t: number
  /** "fill": the extra sample taken when retention first removed something (within 250 ms). */
  phase: "fill" | "load"
  /** Retention removed messages during this interval (never for the fill sample). */
  dropping: boolean
  rss: number
  hwm: number
  loadRss: number
  storedMessages: number
  storedBytes: number
  /** Bytes the cap counts: payload + STORED_MESSAGE_OVERHEAD per message. */
  countedBytes: number
  putsPerSecond: number
  deliveriesPerSecond: number
  /** puts − stored (the in-memory store removes messages only through retention). */
  dropped: number
  droppedPerSecond: number
  serverCpuPercent: number
  /** From STATS: the most bytes one connection holds, and requests queued behind flow control. */
  maxConnectionBufferedBytes: number
  queuedRequests: number
  /** Percent of one core over the interval, from /proc: the load process, this process, and everything else on the machine. */
  loadCpuPercent: number
  selfCpuPercent: number
  otherCpuPercent: number
  errors: number
  loadAverage: number
  statsRttMs: number
  deliver: LatencySummary
  ack: LatencySummary
  ping: LatencySummary
  get: LatencySummary
  probeLost: number
  load: LoadTally | null
}

interface Series {
  interval: number[]
  all: number[]
  /** Samples taken while retention was dropping (decided per interval, after the fact). */
  dropping: number[]
  quiet: number[]
}

const newSeries = (): Series => ({ interval: [], all: [], dropping: [], quiet: [] })

async function coordinatorMain(options: SoakOptions): Promise<number> {
  const cap = options.maxMemory === null ? DEFAULT_RETENTION.maxStoreBytes : parseSize("--max-memory", options.maxMemory)
  const serverArgs = ["run", "src/server.ts", "--port", "0", "--no-http"]
  if (options.maxMemory !== null) serverArgs.push("--max-memory", options.maxMemory)
  if (options.maxAge !== null) serverArgs.push("--max-age", options.maxAge)
  if (options.maxMessages !== null) serverArgs.push("--max-messages", options.maxMessages)
  if (options.idleTimeout !== null) serverArgs.push("--idle-timeout", options.idleTimeout)
  const durationMs = options.minutes * 60_000
  const hardDeadline = Date.now() + durationMs + 120_000

  const serverLog: string[] = []
  const hardTimer = setTimeout(() => {
    console.error("soak: overran its deadline by 2 minutes; killing what it started")
    killAll()
    process.exit(1)
  }, hardDeadline - Date.now())
  hardTimer.unref()

  console.log(
    `soak: ${options.minutes} min, ${options.writers} writers x ${options.topics} topics, ${options.payload}-byte payloads, ` +
      `${options.rate > 0 ? `${options.rate} puts/s` : "as fast as the server takes them"} ` +
      `(batches of ${options.batch}, window ${options.window}); probe ${options.probeRate}/s per series; sample every ${options.intervalSeconds} s`,
  )
  console.log(
    `soak: server: bun ${serverArgs.join(" ")}   (cap ${cap === null ? "none" : `${fmt.mib(cap)} MiB`}, counted as payload + ${STORED_MESSAGE_OVERHEAD} B/message)`,
  )
  console.log(
    `soak: ${os.cpus().length} cores, load average ${os
      .loadavg()
      .map((v) => v.toFixed(2))
      .join(" ")} before start`,
  )

  const server = Bun.spawn(["bun", ...serverArgs], { cwd: ROOT, stdout: "pipe", stderr: "pipe" })
  children.push(server)
  const port = await readPort(server, serverLog)
  void collectLines(server.stderr as ReadableStream<Uint8Array>, (line) => {
    if (serverLog.length < 200) serverLog.push(line)
  })
  await Bun.sleep(500)
  const idle = memoryOf(server.pid)
  console.log(`soak: broker pid ${server.pid} on port ${port}, idle RSS ${fmt.mib(idle?.rss ?? Number.NaN)} MiB`)

  const clientErrors: string[] = []
  const onError = (error: { message: string }): void => {
    if (clientErrors.length < 50) clientErrors.push(error.message)
  }
  const statsClient = await connect({ port, onError })
  const probeSub = await connect({ port, onError })
  const probePut = await connect({ port, onError })
  const probePing = await connect({ port, onError })
  const probeGet = await connect({ port, onError })
  const probeSubscription = await probeSub.subscribe(PROBE_TOPIC)
  await probeGet.get("soak/load/0") // its cursors start before the load's first put

  const loadStart = Date.now()
  const loadDeadline = loadStart + durationMs
  const load = Bun.spawn(
    [
      "bun",
      "run",
      import.meta.path,
      "--role",
      "load",
      "--port",
      String(port),
      "--topics",
      String(options.topics),
      "--payload",
      String(options.payload),
      "--writers",
      String(options.writers),
      "--batch",
      String(options.batch),
      "--window",
      String(options.window),
      "--poll-batch",
      String(options.pollBatch),
      "--rate",
      String(options.rate),
      "--deadline",
      String(loadDeadline),
    ],
    { cwd: ROOT, stdout: "pipe", stderr: "inherit" },
  )
  children.push(load)
  let loadTally: LoadTally | null = null
  let loadReady = false
  let loadDone = false
  const loadLines = collectLines(load.stdout as ReadableStream<Uint8Array>, (line) => {
    try {
      const message = JSON.parse(line) as { type: string; tally: LoadTally }
      loadTally = message.tally
      if (message.type === "ready") loadReady = true
      if (message.type === "done" || message.type === "timeout") loadDone = true
    } catch {
      console.error(`load: ${line}`)
    }
  })
  for (const until = Date.now() + 30_000; !loadReady && Date.now() < until && load.exitCode === null; ) await Bun.sleep(20)
  if (!loadReady) {
    console.error("soak: the load process did not get ready")
    killAll()
    return 1
  }

  // --- the probe -----------------------------------------------------------------------------
  const series = { deliver: newSeries(), ack: newSeries(), ping: newSeries(), get: newSeries() }
  const record = (s: Series, ms: number): void => {
    s.interval.push(ms)
    s.all.push(ms)
  }
  const sentAt = new Map<number, number>()
  let probeLost = 0
  let probeLate = 0
  let probeSkipped = 0
  let probing = true
  const outstanding = { ack: 0, ping: 0, get: 0 }
  const MAX_OUTSTANDING = 5000

  const deliverLoop = (async () => {
    for await (const message of probeSubscription as AsyncIterable<Message>) {
      const id = Number(message.text())
      const t0 = sentAt.get(id)
      if (t0 !== undefined) {
        sentAt.delete(id)
        record(series.deliver, performance.now() - t0)
      }
      if (!probing && sentAt.size === 0) break
    }
  })()

  /** Calls `probe` `options.probeRate` times a second, starting `offset` periods from now, until the probing stops. */
  const scheduled = async (offset: number, probe: (index: number) => void): Promise<void> => {
    const period = 1000 / options.probeRate
    let next = performance.now() + offset * period
    for (let index = 1; probing && Date.now() < loadDeadline + 5000; index++) {
      const wait = next - performance.now()
      if (wait > 0) await Bun.sleep(wait)
      if (performance.now() - next > 100) {
        probeLate++ // this process stalled; restart the schedule instead of bursting
        next = performance.now()
      }
      next += period
      probe(index)
    }
  }
  const timed = (kind: "ack" | "ping" | "get", request: () => Promise<unknown>): void => {
    if (outstanding[kind] >= MAX_OUTSTANDING) {
      probeSkipped++
      return
    }
    const t0 = performance.now()
    outstanding[kind]++
    request()
      .then(
        () => record(series[kind], performance.now() - t0),
        (error: Error) => onError(error),
      )
      .finally(() => outstanding[kind]--)
  }
  const getTopics = Array.from({ length: options.topics }, (_, i) => `soak/load/${i}`)
  const probeLoops = [
    scheduled(0, (id) => {
      if (outstanding.ack < MAX_OUTSTANDING) sentAt.set(id, performance.now())
      timed("ack", () => probePut.putAck(PROBE_TOPIC, String(id)))
      timed("ping", () => probePing.ping())
      // Probes not delivered within 30 s count as lost.
      if (id % 1000 === 0) {
        const cutoff = performance.now() - 30_000
        for (const [key, at] of sentAt) {
          if (at >= cutoff) break
          sentAt.delete(key)
          probeLost++
        }
      }
    }),
    // Half a period later, so that gets and pings do not travel together.
    scheduled(0.5, (index) => timed("get", () => probeGet.get(getTopics[index % getTopics.length]!))),
  ]

  // --- the sampler ---------------------------------------------------------------------------
  const samples: Sample[] = []
  let previous: { at: number; stats: ServerStatsSnapshot } | null = null
  const first = (await withTimeout(statsClient.stats(), 30_000, "stats")) as unknown as ServerStatsSnapshot
  previous = { at: performance.now(), stats: first }
  const startedAt = performance.now()
  const droppedExposed = "droppedByRetention" in first

  type SeriesName = "deliver" | "ack" | "ping" | "get"
  /**
   * `quietMark`, for the fill sample: how many of each series' interval values were recorded
   * before the last stats reply that showed nothing dropped yet. Only those make up the fill
   * sample; the rest (the moments around the first drop) carry over into the next interval.
   */
  const readCpu = (): CpuReading => ({
    at: performance.now(),
    server: cpuSecondsOf(server.pid),
    load: cpuSecondsOf(load.pid),
    self: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    machine: machineBusySeconds(),
  })
  let previousCpu = readCpu()
  // Until retention first removes something, the loop below looks every 250 ms and takes a
  // sample the moment it does: that sample ("fill") is the latency baseline without dropping.
  let sawDrop = false
  const noMark = (): Record<SeriesName, number> => ({ deliver: 0, ack: 0, ping: 0, get: 0 })
  let quietMark = noMark()
  const takeSample = async (): Promise<void> => {
    const t0 = performance.now()
    const memory = memoryOf(server.pid)
    const loadMemory = memoryOf(load.pid)
    const cpu = readCpu()
    const cpuSeconds = (cpu.at - previousCpu.at) / 1000
    const percent = (used: number): number => (used / cpuSeconds) * 100
    const serverUsed = cpu.server - previousCpu.server
    const loadUsed = cpu.load - previousCpu.load
    const selfUsed = cpu.self - previousCpu.self
    const otherUsed = cpu.machine - previousCpu.machine - serverUsed - (Number.isFinite(loadUsed) ? loadUsed : 0) - selfUsed
    previousCpu = cpu
    const stats = (await withTimeout(statsClient.stats(), 30_000, "stats")) as unknown as ServerStatsSnapshot
    const now = performance.now()
    const seconds = (now - previous!.at) / 1000
    const prev = previous!.stats
    const dropped = stats.puts - stats.storedMessages
    const prevDropped = prev.puts - prev.storedMessages
    const errors = Object.values(stats.errors).reduce((sum, count) => sum + count, 0)
    const droppedPerSecond = (dropped - prevDropped) / seconds
    // The first sample to see a drop is the fill sample: only the latency values recorded before
    // the last look that saw none are in it; the rest carry over into the next interval.
    const phase = !sawDrop && dropped > 0 ? "fill" : "load"
    if (phase === "fill") sawDrop = true
    const dropping = phase === "load" && droppedPerSecond > 0
    const taken = (name: SeriesName): number[] =>
      phase === "load" ? series[name].interval : series[name].interval.slice(0, quietMark[name])
    const sample: Sample = {
      t: (now - startedAt) / 1000,
      phase,
      dropping,
      rss: memory?.rss ?? Number.NaN,
      hwm: memory?.hwm ?? Number.NaN,
      loadRss: loadMemory?.rss ?? Number.NaN,
      storedMessages: stats.storedMessages,
      storedBytes: stats.storedBytes,
      countedBytes: stats.storedBytes + stats.storedMessages * STORED_MESSAGE_OVERHEAD,
      putsPerSecond: (stats.puts - prev.puts) / seconds,
      deliveriesPerSecond: (stats.deliveries - prev.deliveries) / seconds,
      dropped,
      droppedPerSecond,
      serverCpuPercent: ((stats.cpuMicros - prev.cpuMicros) / 1e6 / seconds) * 100,
      maxConnectionBufferedBytes: stats.maxConnectionBufferedBytes,
      queuedRequests: stats.queuedRequests,
      loadCpuPercent: percent(loadUsed),
      selfCpuPercent: percent(selfUsed),
      otherCpuPercent: Math.max(0, percent(otherUsed)),
      errors,
      loadAverage: loadAverage(),
      statsRttMs: now - t0,
      deliver: summarize(taken("deliver")),
      ack: summarize(taken("ack")),
      ping: summarize(taken("ping")),
      get: summarize(taken("get")),
      probeLost,
      load: loadTally,
    }
    for (const name of ["deliver", "ack", "ping", "get"] as const) {
      const s = series[name]
      const values = taken(name)
      ;(dropping ? s.dropping : s.quiet).push(...values)
      s.interval = s.interval.slice(values.length)
    }
    samples.push(sample)
    previous = { at: now, stats }
    quietMark = noMark()
    printLive(sample, cap)
  }

  console.log("")
  console.log(liveHeader())
  let failure: string | null = null
  let nextSampleAt = startedAt + options.intervalSeconds * 1000
  while (Date.now() < loadDeadline) {
    const wait = Math.min(nextSampleAt - performance.now(), loadDeadline - Date.now())
    if (wait > 0) await Bun.sleep(Math.min(wait, sawDrop ? 1000 : 250))
    if (!sawDrop && server.exitCode === null) {
      try {
        const stats = (await withTimeout(statsClient.stats(), 30_000, "stats")) as unknown as ServerStatsSnapshot
        if (stats.puts > stats.storedMessages) {
          await takeSample()
          nextSampleAt = performance.now() + options.intervalSeconds * 1000
          continue
        }
        quietMark = {
          deliver: series.deliver.interval.length,
          ack: series.ack.interval.length,
          ping: series.ping.interval.length,
          get: series.get.interval.length,
        }
      } catch (error) {
        failure = `sampling failed: ${(error as Error).message}`
        break
      }
    }
    if (server.exitCode !== null || server.signalCode !== null) {
      failure = `the broker exited (code ${server.exitCode}, signal ${server.signalCode})`
      break
    }
    if (load.exitCode !== null && Date.now() < loadDeadline - 2000) {
      const tally = loadTally as LoadTally | null
      failure =
        `the load process exited early (code ${load.exitCode}` +
        (tally === null || tally.closedConnections === 0
          ? ")"
          : `; ${tally.closedConnections} of its connections were lost, last error: ${tally.lastError})`)
      break
    }
    if (performance.now() >= nextSampleAt && Date.now() < loadDeadline - 1000) {
      try {
        await takeSample()
      } catch (error) {
        failure = `sampling failed: ${(error as Error).message}`
        break
      }
      nextSampleAt += options.intervalSeconds * 1000
      if (performance.now() > nextSampleAt) nextSampleAt = performance.now() + options.intervalSeconds * 1000
    }
  }
  if (failure === null) {
    try {
      await takeSample() // the end, load still running
    } catch (error) {
      failure = `sampling failed: ${(error as Error).message}`
    }
  }

  // --- stop ----------------------------------------------------------------------------------
  probing = false
  load.kill("SIGTERM")
  await Promise.race([load.exited, Bun.sleep(30_000)])
  await Promise.race([loadLines, Bun.sleep(1000)])
  if (!loadDone) console.error("soak: the load process did not report its end")
  await Promise.race([Promise.all(probeLoops), Bun.sleep(5000)])
  await Bun.sleep(2000)
  const afterLoad = server.exitCode === null ? memoryOf(server.pid) : null
  let finalStats: ServerStatsSnapshot | null = null
  try {
    finalStats = (await withTimeout(statsClient.stats(), 10_000, "stats")) as unknown as ServerStatsSnapshot
  } catch (error) {
    failure ??= `final stats failed: ${(error as Error).message}`
  }
  for (const client of [statsClient, probeSub, probePut, probePing, probeGet])
    await withTimeout(client.close(), 5000, "close").catch(() => {})
  await Promise.race([deliverLoop, Bun.sleep(2000)])
  server.kill("SIGTERM")
  const serverExit = await Promise.race([server.exited, Bun.sleep(15_000).then(() => null)])
  if (serverExit === null) {
    failure ??= "the broker did not stop within 15 s of SIGTERM"
    server.kill("SIGKILL")
  } else if (serverExit !== 0 && failure === null) failure = `the broker exited with code ${serverExit} on SIGTERM`
  killAll()
  clearTimeout(hardTimer)

  // --- report --------------------------------------------------------------------------------
  const verdict = judge(samples, series, options, cap, idle?.rss ?? Number.NaN)
  printReport(samples, series, verdict, options, cap, idle?.rss ?? Number.NaN, afterLoad?.rss ?? Number.NaN)
  console.log(
    `  probes: ${series.ack.all.length} putAck, ${series.deliver.all.length} delivered, ${probeLost} lost (not delivered within 30 s), ` +
      `${sentAt.size} still unanswered at the end, ${probeSkipped} skipped (too many outstanding), ${probeLate} schedule restarts (this process stalled > 100 ms)`,
  )
  const lastLoad = loadTally as LoadTally | null
  if (lastLoad !== null) {
    console.log(
      `  load: ${fmt.int(lastLoad.putsSent)} puts sent (${fmt.int(lastLoad.putsConfirmed)} confirmed), subscriber got ${fmt.int(lastLoad.subscriberReceived)} ` +
        `(+${fmt.int(lastLoad.subscriberMissed)} missed to retention, ${fmt.int(lastLoad.subscriberOutOfOrder)} out of order; ` +
        `${lastLoad.subscriberReceived + lastLoad.subscriberMissed === lastLoad.putsConfirmed ? "all confirmed puts accounted for" : `${fmt.int(lastLoad.putsConfirmed - lastLoad.subscriberReceived - lastLoad.subscriberMissed)} confirmed puts NOT accounted for`}), JSON poller ${fmt.int(lastLoad.pollReplies)} replies: ${fmt.int(lastLoad.pollMessages)} messages, ` +
        `${fmt.int(lastLoad.pollEmpty)} empty, ${fmt.int(lastLoad.pollMissed)} missed to retention; errors: ${lastLoad.clientErrors} client, ${lastLoad.pollErrors} poller, ` +
        `${lastLoad.closedConnections} connections lost${lastLoad.lastError === null ? "" : ` (last: ${lastLoad.lastError})`}`,
    )
  }
  if (finalStats !== null) {
    const nonZero = Object.entries(finalStats.errors).filter(([, count]) => count > 0)
    console.log(
      `  server at the end: ${fmt.int(finalStats.puts)} puts, ${fmt.int(finalStats.deliveries)} deliveries, ${fmt.int(finalStats.storedMessages)} stored, ` +
        `${fmt.int(finalStats.puts - finalStats.storedMessages)} removed by retention (puts − stored; STATS droppedByRetention ${fmt.int(Number((finalStats as unknown as Record<string, unknown>).droppedByRetention ?? NaN))}), errors reported: ${nonZero.length === 0 ? "none" : nonZero.map(([name, count]) => `${name} ${count}`).join(", ")}`,
    )
  }
  if (!droppedExposed)
    console.log(
      "  note: the server's STATS do not expose the retention-dropped count (Retention.droppedCount); 'dropped' here is puts − storedMessages, exact for the in-memory store",
    )
  if (clientErrors.length > 0) console.log(`  probe client errors: ${clientErrors.length}: ${clientErrors.slice(0, 5).join("; ")}`)
  if (serverLog.length > 0) console.log(`  broker stderr:\n${serverLog.map((line) => `    ${line}`).join("\n")}`)
  if (failure !== null) console.log(`  FAILURE: ${failure}`)

  if (options.json !== null) {
    writeFileSync(
      options.json,
      `${JSON.stringify(
        {
          options,
          cap,
          storedMessageOverhead: STORED_MESSAGE_OVERHEAD,
          cores: os.cpus().length,
          idleRss: idle?.rss ?? null,
          rssAfterLoad: afterLoad?.rss ?? null,
          samples,
          verdict,
          failure,
          probes: { lost: probeLost, late: probeLate, skipped: probeSkipped },
          whole: Object.fromEntries(
            Object.entries(series).map(([name, s]) => [
              name,
              { all: summarize(s.all), dropping: summarize(s.dropping), quiet: summarize(s.quiet) },
            ]),
          ),
          load: lastLoad,
          finalStats,
          clientErrors,
          serverLog,
          droppedExposed,
        },
        null,
        2,
      )}\n`,
    )
    console.log(`  wrote ${options.json}`)
  }
  return failure === null && verdict.ok ? 0 : 1
}

async function readPort(server: import("bun").Subprocess, log: string[]): Promise<number> {
  const reader = (server.stdout as ReadableStream<Uint8Array>).getReader()
  const decoder = new TextDecoder()
  let text = ""
  const until = Date.now() + 15_000
  while (Date.now() < until) {
    const { value, done } = await withTimeout(reader.read(), Math.max(1, until - Date.now()), "the broker's address line")
    if (done) break
    text += decoder.decode(value, { stream: true })
    const match = /dsmq listening on tcp:\/\/[^\s,]*:(\d+)/.exec(text)
    if (match !== null) {
      reader.releaseLock()
      void (server.stdout as ReadableStream<Uint8Array>).pipeTo(new WritableStream()).catch(() => {})
      return Number(match[1])
    }
  }
  log.push(text)
  throw new Error(`the broker did not print its address: ${JSON.stringify(text)}`)
}

async function collectLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder()
  let rest = ""
  for await (const chunk of stream) {
    rest += decoder.decode(chunk, { stream: true })
    let newline: number
    while ((newline = rest.indexOf("\n")) >= 0) {
      const line = rest.slice(0, newline)
      rest = rest.slice(newline + 1)
      if (line.trim() !== "") onLine(line)
    }
  }
  if (rest.trim() !== "") onLine(rest)
}

// ---------------------------------------------------------------------------------------------
// Verdict and printing

interface Verdict {
  ok: boolean
  rssFlat: boolean
  rssWithinBound: boolean
  latencyStable: boolean
  lines: string[]
  /** RSS − idle RSS, per counted byte, over the last third. */
  rssPerCountedByte: number
  steadyRss: number
  maxRss: number
  bound: number
}

function judge(
  samples: readonly Sample[],
  series: Record<string, Series>,
  options: SoakOptions,
  cap: number | null,
  idleRss: number,
): Verdict {
  const lines: string[] = []
  const tail = samples.slice(samples.length - Math.max(2, Math.ceil(samples.length / 3)))
  const tailRss = tail.map((s) => s.rss)
  const minTail = Math.min(...tailRss)
  const maxTail = Math.max(...tailRss)
  const spread = ((maxTail - minTail) / minTail) * 100
  // Least-squares slope over the last third, MiB per minute.
  const n = tail.length
  const meanT = tail.reduce((sum, s) => sum + s.t, 0) / n
  const meanR = tail.reduce((sum, s) => sum + s.rss, 0) / n
  const slope =
    tail.reduce((sum, s) => sum + (s.t - meanT) * (s.rss - meanR), 0) /
    Math.max(
      1e-9,
      tail.reduce((sum, s) => sum + (s.t - meanT) ** 2, 0),
    )
  const rssFlat = samples.length >= 2 && spread <= options.rssTolerance
  lines.push(
    `RSS flat: ${rssFlat ? "yes" : "NO"} — the last ${n} samples (t ≥ ${tail[0]?.t.toFixed(0)} s) lie within ${spread.toFixed(1)} % of each other ` +
      `(${fmt.mib(minTail)}–${fmt.mib(maxTail)} MiB; tolerance ${options.rssTolerance} %), trend ${((slope * 60) / MiB).toFixed(2)} MiB/min`,
  )

  const maxRss = Math.max(...samples.map((s) => Math.max(s.rss, s.hwm)))
  const bound = cap === null ? Number.POSITIVE_INFINITY : cap * options.rssFactor + options.rssSlack
  const rssWithinBound = maxRss <= bound
  lines.push(
    `RSS bound: ${rssWithinBound ? "yes" : "NO"} — peak ${fmt.mib(maxRss)} MiB (VmHWM included) vs cap ${cap === null ? "none" : `${fmt.mib(cap)} MiB`} x ${options.rssFactor} + ${fmt.mib(options.rssSlack)} MiB = ${fmt.mib(bound)} MiB`,
  )
  const steadyRss = median(tailRss)
  const steadyCounted = median(tail.map((s) => s.countedBytes))
  const rssPerCountedByte = (steadyRss - idleRss) / steadyCounted
  lines.push(
    `RSS vs store: idle ${fmt.mib(idleRss)} MiB, steady ${fmt.mib(steadyRss)} MiB with ${fmt.mib(steadyCounted)} MiB counted against the cap ` +
      `(${fmt.int(median(tail.map((s) => s.storedMessages)))} messages): RSS ≈ idle + ${rssPerCountedByte.toFixed(2)} x counted` +
      (cap === null
        ? ""
        : `; at the cap: ≈ ${fmt.mib(idleRss + rssPerCountedByte * cap)} MiB, i.e. cap x ${(steadyRss / cap).toFixed(2)} measured`),
  )
  const filled = cap !== null && tail.every((s) => s.countedBytes >= cap * 0.9)
  if (cap !== null && !filled)
    lines.push(
      `  note: the store did not stay near its cap over the last third (counted ${fmt.mib(Math.min(...tail.map((s) => s.countedBytes)))} MiB at least): another limit binds first (messages per topic, age), or the load was too slow to fill it`,
    )

  // Latency: intervals while retention dropped vs the baseline. Intervals in which other
  // processes on the machine used more than --contention % of a core are "contended": a spike
  // there may be theirs, so it is reported but does not fail the verdict.
  let latencyStable = true
  const contended = (s: Sample): boolean => s.otherCpuPercent > options.contention
  const clean = samples.filter((s) => !contended(s))
  const droppingIntervals = samples.filter((s) => s.dropping)
  const contendedCount = samples.filter(contended).length
  if (contendedCount > 0) {
    lines.push(
      `contention: in ${contendedCount} of ${samples.length} intervals other processes used more than ${options.contention} % of a core ` +
        `(up to ${fmt.pct(Math.max(...samples.map((s) => s.otherCpuPercent)))} %); latency there is not the broker's alone`,
    )
  }
  for (const name of ["deliver", "ack", "get", "ping"] as const) {
    const values = (list: readonly Sample[]): number[] => list.map((s) => s[name].p999).filter(Number.isFinite)
    // Baseline: the lower of the median p99.9 of the intervals without dropping (the fill phase,
    // which also holds the warm-up, and any later quiet interval) and the median p99.9 of all
    // intervals, so that a slow warm-up does not hide spikes and steady dropping is measured
    // against itself; uncontended intervals only, when there are any.
    const pool = clean.length > 0 ? clean : samples
    const quiet = values(pool.filter((s) => !s.dropping))
    const overall = median(values(pool))
    const baseline = quiet.length > 0 ? Math.min(median(quiet), overall) : overall
    const spikes = droppingIntervals.filter((s) => s[name].p999 > baseline * options.spikeFactor && s[name].p999 > baseline + 10)
    const cleanSpikes = spikes.filter((s) => !contended(s))
    const contendedSpikes = spikes.filter(contended)
    const whole = series[name]!
    const d = summarize(whole.dropping)
    const q = summarize(whole.quiet)
    const label = { deliver: "put→deliver", ack: "putAck RTT", get: "get RTT", ping: "ping RTT" }[name]
    if (cleanSpikes.length > 0) latencyStable = false
    const at = (list: readonly Sample[]): string => list.map((s) => `${s.t.toFixed(0)} s: ${fmt.ms(s[name].p999)} ms`).join(", ")
    const verdictText =
      spikes.length === 0
        ? "no spike"
        : [
            cleanSpikes.length === 0
              ? "no spike in uncontended intervals"
              : `SPIKE in ${cleanSpikes.length} of ${droppingIntervals.length} dropping intervals (${at(cleanSpikes)})`,
            contendedSpikes.length === 0
              ? ""
              : `; ${contendedSpikes.length} more in contended intervals, inconclusive (${at(contendedSpikes)})`,
          ].join("")
    lines.push(
      `${label} p99.9: ${verdictText} — ` +
        `baseline ${fmt.ms(baseline)} ms (median interval p99.9${clean.length > 0 && clean.length < samples.length ? " of uncontended intervals" : ""}: ${fmt.ms(overall)} ms overall, ` +
        `${quiet.length > 0 ? `${fmt.ms(median(quiet))} ms over ${quiet.length} non-dropping intervals` : "no non-dropping interval"}), ` +
        `pooled while dropping p99.9 ${fmt.ms(d.p999)} / max ${fmt.ms(d.max)} ms (n=${d.n}), while not dropping p99.9 ${fmt.ms(q.p999)} / max ${fmt.ms(q.max)} ms (n=${q.n})`,
    )
  }
  lines.push(
    `  (a spike: a dropping interval's p99.9 over ${options.spikeFactor} x baseline and over baseline + 10 ms; baseline: the lower of the two medians)`,
  )
  return {
    ok: rssFlat && rssWithinBound && latencyStable,
    rssFlat,
    rssWithinBound,
    latencyStable,
    lines,
    rssPerCountedByte,
    steadyRss,
    maxRss,
    bound,
  }
}

function liveHeader(): string {
  return "  t(s)  RSS MiB  stored msgs  counted MiB  puts/s  deliv/s  dropped/s  srv CPU%  other CPU% | deliver p50/p99/p99.9/max ms | get p99.9 | ping p99.9"
}

function printLive(s: Sample, cap: number | null): void {
  const capNote = cap === null ? "" : ` (${((s.countedBytes / cap) * 100).toFixed(0)}%)`
  console.log(
    `${(s.phase === "fill" ? `${s.t.toFixed(0)}f` : s.t.toFixed(0)).padStart(6)}  ${fmt.mib(s.rss).padStart(7)}  ${fmt.int(s.storedMessages).padStart(11)}  ${(fmt.mib(s.countedBytes) + capNote).padStart(11)}  ` +
      `${fmt.rate(s.putsPerSecond).padStart(6)}  ${fmt.rate(s.deliveriesPerSecond).padStart(7)}  ${fmt.rate(s.droppedPerSecond).padStart(9)}  ${s.serverCpuPercent.toFixed(0).padStart(8)}  ${fmt.pct(s.otherCpuPercent).padStart(10)} | ` +
      `${[s.deliver.p50, s.deliver.p99, s.deliver.p999, s.deliver.max].map(fmt.ms).join(" / ").padStart(27)} | ${fmt.ms(s.get.p999).padStart(9)} | ${fmt.ms(s.ping.p999).padStart(10)}`,
  )
}

function printReport(
  samples: readonly Sample[],
  series: Record<string, Series>,
  verdict: Verdict,
  options: SoakOptions,
  cap: number | null,
  idleRss: number,
  afterLoadRss: number,
): void {
  console.log(
    "\nMemory and throughput (rates per second over each interval; counted = payload + " +
      `${STORED_MESSAGE_OVERHEAD} B/message, what the cap limits;`,
  )
  console.log(
    `CPU in % of one core of ${os.cpus().length}: the broker, the load process, this process (probe and sampler), and everything else on the machine)`,
  )
  console.log(
    table(
      [
        "t(s)",
        "RSS MiB",
        "HWM MiB",
        "load RSS",
        "stored msgs",
        "stored MiB",
        "counted MiB",
        "cap %",
        "puts/s",
        "deliv/s",
        "dropped/s",
        "srv CPU%",
        "load CPU%",
        "own CPU%",
        "other CPU%",
        "max conn buf KiB",
        "errors",
        "load1",
      ],
      samples.map((s) => [
        s.phase === "fill" ? `${s.t.toFixed(0)} fill` : s.t.toFixed(0),
        fmt.mib(s.rss),
        fmt.mib(s.hwm),
        fmt.mib(s.loadRss),
        fmt.int(s.storedMessages),
        fmt.mib(s.storedBytes),
        fmt.mib(s.countedBytes),
        cap === null ? "-" : ((s.countedBytes / cap) * 100).toFixed(0),
        fmt.rate(s.putsPerSecond),
        fmt.rate(s.deliveriesPerSecond),
        fmt.rate(s.droppedPerSecond),
        s.serverCpuPercent.toFixed(0),
        fmt.pct(s.loadCpuPercent),
        fmt.pct(s.selfCpuPercent),
        fmt.pct(s.otherCpuPercent),
        (s.maxConnectionBufferedBytes / 1024).toFixed(0),
        String(s.errors),
        s.loadAverage.toFixed(2),
      ]),
    ),
  )
  const latencyTable = (title: string, names: readonly ("deliver" | "ack" | "get" | "ping")[]): void => {
    console.log(`\n${title}`)
    console.log(
      table(
        ["t(s)", "dropping", ...names.flatMap((name) => [`${name} n`, "p50", "p99", "p99.9", "max"])],
        samples.map((s) => [
          s.t.toFixed(0),
          s.phase === "fill" ? "fill" : s.dropping ? "yes" : "no",
          ...names.flatMap((name) => [
            String(s[name].n),
            fmt.ms(s[name].p50),
            fmt.ms(s[name].p99),
            fmt.ms(s[name].p999),
            fmt.ms(s[name].max),
          ]),
        ]),
      ),
    )
  }
  latencyTable("Latency, ms: put→deliver (putAck sent to DELIVER on another connection) and the putAck round trip", ["deliver", "ack"])
  latencyTable("Latency, ms: request round trips on otherwise idle connections: binary get (of a load topic) and ping", ["get", "ping"])
  console.log("\nWhole run, ms:")
  console.log(
    table(
      ["series", "n", "p50", "p99", "p99.9", "max"],
      Object.entries(series).map(([name, s]) => {
        const w = summarize(s.all)
        return [name, String(w.n), fmt.ms(w.p50), fmt.ms(w.p99), fmt.ms(w.p999), fmt.ms(w.max)]
      }),
    ),
  )
  console.log(
    `\nVerdict: ${verdict.ok ? "PASS" : "FAIL"}${options.maxAge === null ? "" : ` (age limit ${options.maxAge}: the sweep runs every second)`}`,
  )
  for (const line of verdict.lines) console.log(`  ${line}`)
  console.log(
    `  RSS 2 s after the load stopped: ${fmt.mib(afterLoadRss)} MiB (idle at start ${fmt.mib(idleRss)} MiB${cap === null ? "" : `, cap ${fmt.mib(cap)} MiB`})`,
  )
}

// ---------------------------------------------------------------------------------------------

if (import.meta.main) {
  const argv = process.argv.slice(2)
  if (argv[0] === "--role" && argv[1] === "load") {
    await loadMain(argv.slice(2))
  } else {
    const options = parseOptions(argv)
    process.on("SIGINT", () => {
      console.error("soak: interrupted; killing the broker and the load process")
      killAll()
      process.exit(130)
    })
    process.exit(await coordinatorMain(options))
  }
}
