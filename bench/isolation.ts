/**
 * Isolation benchmark: how much an abusive client raises a well-behaved client's latency.
 *
 *   bun run bench/isolation.ts [--seconds N] [--warmup-seconds N] [--modes flood,garbage,...] [--json FILE]
 *                              [--together-only] [--scale MODE=N,...] [--server-args "FLAGS"] [--abusers-nice N]
 *
 * bench/abuse-soak.ts runs it as a long soak: every mode at once, scaled to about 1,000
 * connections, against a server with a small --max-buffered-bytes.
 *
 * Not part of `bun test` or bench/run.ts. For each phase a fresh server process
 * (`bun run src/server.ts --port 0 --http-port 0`) is started; a well-behaved binary client
 * (src/client.ts) and a well-behaved JSON client each send a ping-like `get` of an empty topic
 * every millisecond, open loop: each request has a scheduled time, is sent at that time (or
 * at once, if the process fell behind), and its latency is counted from the scheduled time, so
 * a stalled server cannot hide behind requests that were never sent. Meanwhile a newcomer
 * connects, says HELLO and pings every 200 ms (connection set-up under abuse), and a writer
 * puts an acknowledged message every 10 ms that a subscriber on its own connection must receive
 * every one of, in order, none missed (what a well-behaved client must not lose).
 *
 * Phases: baseline, then each abusive mode of test/abuse-fixture.ts alone (each abuser in its
 * own process), then all at once, then the baseline again (drift of the machine). Prints the
 * percentiles, their ratios to the first baseline, and the CPU each process used, to tell
 * server slowness from CPU contention on a small machine.
 *
 * The abusers run at a lower CPU priority (nice 19 by default, once they are connected). In
 * real use they are other machines; here they share the server's cores, and at normal
 * priority the kernel's scheduler hands them the server's CPU: on 2 cores, with every abuser
 * at once, the machine was 98 % busy, the abusers took a whole core and this process sent its
 * own requests up to 4 ms late, so the well-behaved p99 measured the scheduler (12-16x the
 * baseline) more than the server. `--abusers-nice 0` measures that case.
 */
import { readdirSync, readFileSync } from "node:fs"
import { setPriority } from "node:os"
import { join } from "node:path"
import type { Socket } from "bun"
import { type Client, connect } from "../src/client.ts"
import { Outbound } from "../src/io/outbound.ts"
import { JsonStreamDecoder } from "../src/protocol/json-stream.ts"
import { type OptionSpec, parseOptionsOrExit } from "./lib/args.ts"
import { memoryOf } from "./lib/proc.ts"

const ROOT = join(import.meta.dir, "..")
const SERVER = join(ROOT, "src", "server.ts")
const FIXTURE = join(ROOT, "test", "abuse-fixture.ts")
const ALL_MODES = ["flood", "never-read", "garbage", "connect-loop", "partial-frame", "absent-gets"] as const
type Mode = (typeof ALL_MODES)[number]

const USAGE = `usage: bun run bench/isolation.ts [--seconds N] [--warmup-seconds N] [--modes ${ALL_MODES.join(",")}] [--json FILE]
  --seconds N          measured seconds per phase (default 5)
  --warmup-seconds N   seconds an abuser runs before measuring starts (default 1)
  --modes LIST         abusive modes to run alone, comma-separated (default all); "all" runs them together
  --together-only      skip the phases of one mode alone: baseline, all at once, baseline again
  --scale MODE=N,...   scale a mode (test/abuse-fixture.ts --connections), e.g. partial-frame=400
  --server-args=FLAGS  more flags for the server, space-separated, e.g. --server-args="--max-buffered-bytes 64MiB"
  --abusers-nice N     CPU niceness of the abusers once connected, 0 to 19 (default 19: see the top of this file)
  --json FILE          also write the results as JSON
`

interface Options {
  seconds: number
  warmupSeconds: number
  modes: Mode[]
  togetherOnly: boolean
  scale: Partial<Record<Mode, number>>
  serverArgs: string[]
  abusersNice: number
  json: string | null
}

const checkScale = (text: string): void => {
  for (const part of text.split(",")) {
    const [mode, count] = part.split("=")
    if (!ALL_MODES.includes(mode as Mode) || !(Number(count) >= 1 && Number(count) <= 2000))
      throw new Error(`--scale wants MODE=N (N from 1 to 2000) for modes ${ALL_MODES.join(", ")}; got ${JSON.stringify(part)}`)
  }
}

const SPECS = {
  seconds: { type: "number", min: 0.1, max: 3600 },
  "warmup-seconds": { type: "number", min: 0, max: 60 },
  modes: { type: "list", choices: ALL_MODES },
  "together-only": { type: "boolean" },
  scale: { type: "string", check: checkScale },
  "server-args": { type: "string" },
  "abusers-nice": { type: "number", min: 0, max: 19 },
  json: { type: "string" },
} as const satisfies Record<string, OptionSpec>

function parseOptions(argv: string[]): Options {
  const given = parseOptionsOrExit("isolation", USAGE, argv, SPECS)
  const scale = Object.fromEntries(
    (given.scale ?? "")
      .split(",")
      .filter(Boolean)
      .map((part) => part.split("="))
      .map(([mode, n]) => [mode, Number(n)]),
  )
  return {
    seconds: given.seconds ?? 5,
    warmupSeconds: given["warmup-seconds"] ?? 1,
    modes: given.modes ?? [...ALL_MODES],
    togetherOnly: given["together-only"] ?? false,
    scale,
    serverArgs: (given["server-args"] ?? "").split(" ").filter(Boolean),
    abusersNice: given["abusers-nice"] ?? 19,
    json: given.json ?? null,
  }
}

// ---- processes and their CPU time ----------------------------------------------------------------

const CLOCK_TICKS = 100 // USER_HZ on Linux

/** User + system CPU seconds of a process, from /proc; null when it is gone. */
function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
  } catch {
    return null
  }
}

/** Busy and total CPU seconds of the whole machine (all cores), from /proc/stat. */
function machineCpu(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!
  const values = line.trim().split(/\s+/).slice(1).map(Number)
  const total = values.slice(0, 8).reduce((sum, n) => sum + n, 0)
  const idle = values[3]! + values[4]!
  return { busy: (total - idle) / CLOCK_TICKS, total: total / CLOCK_TICKS }
}

/** Peak resident memory of a process (VmHWM), in bytes; 0 when it is gone. */
function peakRss(pid: number): number {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? 0 : Number(match[1]) * 1024
  } catch {
    return 0
  }
}

/**
 * The kernel's counters of connections refused before any process saw them: a full accept
 * queue (ListenOverflows) and SYNs dropped for it (ListenDrops). Machine-wide.
 */
function listenDrops(): { overflows: number; drops: number } {
  const lines = readFileSync("/proc/net/netstat", "utf8")
    .split("\n")
    .filter((line) => line.startsWith("TcpExt:"))
  const names = lines[0]!.split(" ")
  const values = lines[1]!.split(" ")
  const value = (name: string): number => Number(values[names.indexOf(name)])
  return { overflows: value("ListenOverflows"), drops: value("ListenDrops") }
}

/** Reads a child's stdout line by line. */
class Lines {
  readonly lines: string[] = []
  readonly done: Promise<void>

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      const decoder = new TextDecoder()
      let text = ""
      for await (const chunk of stream) {
        text += decoder.decode(chunk, { stream: true })
        let end: number
        while ((end = text.indexOf("\n")) >= 0) {
          this.lines.push(text.slice(0, end))
          text = text.slice(end + 1)
        }
      }
      if (text !== "") this.lines.push(text)
    })()
  }

  /** Waits (polling, bounded by `timeoutMs`) for a line that `match` accepts. */
  async wait(match: (line: string) => boolean, timeoutMs: number, exited: () => boolean): Promise<string> {
    const deadline = performance.now() + timeoutMs
    for (;;) {
      const line = this.lines.find(match)
      if (line !== undefined) return line
      if (exited() || performance.now() > deadline) throw new Error(`no such line after ${timeoutMs} ms: ${this.lines.join(" | ")}`)
      await Bun.sleep(10)
    }
  }
}

interface ServerProcess {
  readonly pid: number
  readonly port: number
  stderrLines: Lines
  stop(): Promise<void>
}

async function startServer(extraArgs: readonly string[]): Promise<ServerProcess> {
  const child = Bun.spawn([process.execPath, "run", SERVER, "--port", "0", "--http-port", "0", ...extraArgs], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  })
  const stdout = new Lines(child.stdout)
  const stderrLines = new Lines(child.stderr)
  const line = await stdout.wait(
    (text) => text.startsWith("dsmq listening"),
    15_000,
    () => child.exitCode !== null,
  )
  const port = Number(/tcp:\/\/[^ ]+:(\d+)/.exec(line)?.[1])
  return {
    pid: child.pid,
    port,
    stderrLines,
    async stop() {
      child.kill("SIGTERM")
      const killer = setTimeout(() => child.kill("SIGKILL"), 5000)
      await child.exited
      clearTimeout(killer)
    },
  }
}

interface Abuser {
  readonly mode: Mode
  readonly pid: number
  stop(): Promise<Record<string, unknown>>
}

async function startAbuser(mode: Mode, port: number, lifetimeSeconds: number, scale: number | undefined, nice: number): Promise<Abuser> {
  const scaled = scale === undefined ? [] : ["--connections", String(scale)]
  const child = Bun.spawn(
    [process.execPath, "run", FIXTURE, mode, String(port), "--seconds", String(Math.ceil(lifetimeSeconds)), ...scaled],
    {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "inherit",
    },
  )
  const lines = new Lines(child.stdout)
  await lines.wait(
    (line) => line === "active",
    20_000,
    () => child.exitCode !== null,
  )
  // Only now: at nice 19 from the start, 400 connections took longer than the wait above to open.
  // Every thread: on Linux a niceness is a thread's (threads started later inherit the main one's).
  for (const thread of readdirSync(`/proc/${child.pid}/task`)) setPriority(Number(thread), nice)
  return {
    mode,
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM")
      const killer = setTimeout(() => child.kill("SIGKILL"), 3000)
      await child.exited
      clearTimeout(killer)
      await lines.done
      const summary = lines.lines.find((line) => line.startsWith("{"))
      return summary === undefined ? { exitCode: child.exitCode } : (JSON.parse(summary) as Record<string, unknown>)
    },
  }
}

// ---- the well-behaved clients ---------------------------------------------------------------------

/** A JSON-stream client that sends gets and matches replies to them in order. */
class JsonClient {
  readonly #socket: Socket<undefined>
  readonly #outbound: Outbound
  readonly #waiting: ((reply: string) => void)[] = []
  #head = 0
  closed = false

  private constructor(socket: Socket<undefined>) {
    this.#socket = socket
    this.#outbound = new Outbound(socket)
  }

  static async connect(port: number): Promise<JsonClient> {
    const utf8 = new TextDecoder()
    let client: JsonClient | null = null
    const decoder = new JsonStreamDecoder(
      {
        frame: (body) => client!.#reply(utf8.decode(body)),
        fail: (error) => {
          throw error
        },
      },
      1 << 30,
    )
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_socket, chunk) => decoder.push(chunk),
        drain: () => {
          if (client !== null) client.#outbound.writeQueued()
        },
        close: () => {
          if (client !== null) client.closed = true
        },
        error: () => {},
      },
    })
    client = new JsonClient(socket)
    return client
  }

  #reply(text: string): void {
    const resolve = this.#waiting[this.#head++]
    if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
      this.#waiting.splice(0, this.#head)
      this.#head = 0
    }
    resolve?.(text)
  }

  /** Sends requests as one write; each promise resolves with its reply's text. */
  send(requests: string[]): Promise<string>[] {
    const promises = requests.map(() => {
      const { promise, resolve } = Promise.withResolvers<string>()
      this.#waiting.push(resolve)
      return promise
    })
    this.#outbound.send(Buffer.from(requests.join("")))
    return promises
  }

  close(): void {
    this.#socket.end()
  }
}

interface Latencies {
  /** Milliseconds from scheduled time to reply, for each answered request. */
  readonly fromScheduled: number[]
  /** Milliseconds from the actual send to the reply. */
  readonly fromSent: number[]
  readonly sent: number
  unanswered: number
  wrong: number
}

const newLatencies = (): Latencies => ({ fromScheduled: [], fromSent: [], sent: 0, unanswered: 0, wrong: 0 })

interface Newcomers {
  readonly times: number[]
  failures: number
  readonly errors: string[]
}

/** What the writer put (acknowledged) and the subscriber received on the pipeline topic. */
interface Pipeline {
  acked: number
  refused: number
  delivered: number
  /** Deliveries whose sequence was not the next one acknowledged, and their missed counts. */
  outOfOrder: number
  missed: number
  /** Acknowledged messages the subscriber had not received GRACE_MS after the last put. */
  lost: number
}

/** The server's memory and budget, sampled every 250 ms. */
interface ServerSamples {
  /** RSS every 250 ms, for whether it grows over a long run. */
  readonly rssBytes: number[]
  peakRssBytes: number
  peakBufferedBytes: number
  peakBudgetPaused: number
}

interface Measurement {
  readonly pipeline: Pipeline
  readonly samples: ServerSamples
  readonly binary: Latencies
  readonly json: Latencies
  /** How late requests were sent after their scheduled time (this process's own lateness). */
  readonly sendLag: number[]
  readonly newcomers: Newcomers
  readonly maxBufferedBytes: number
  readonly seconds: number
}

/** The reply to a get of an empty topic: `{"message": ""}` (spacing as the server writes it). */
const isEmptyReply = (text: string): boolean => {
  const reply = JSON.parse(text) as Record<string, unknown>
  return reply.message === "" && Object.keys(reply).length === 1
}
const JSON_GET = JSON.stringify({ action: "get", topic: "isolation/idle" })
/** Replies later than this after the last send are counted as unanswered. */
const GRACE_MS = 5000

/** Puts an acknowledged message every 10 ms until `running()` is false; the subscriber must get them all, in order. */
async function runPipeline(writer: Client, subscriber: Client, running: () => boolean): Promise<Pipeline> {
  const pipeline: Pipeline = { acked: 0, refused: 0, delivered: 0, outOfOrder: 0, missed: 0, lost: 0 }
  const ackedSeqs: number[] = []
  const subscription = await subscriber.subscribe(PIPELINE_TOPIC)
  const receiving = (async () => {
    for await (const message of subscription) {
      if (message.seq !== ackedSeqs[pipeline.delivered] && ackedSeqs[pipeline.delivered] !== undefined) pipeline.outOfOrder++
      pipeline.delivered++
      pipeline.missed += message.missed ?? 0
    }
  })()
  for (let i = 0; running(); i++) {
    const started = performance.now()
    try {
      ackedSeqs.push(await writer.putAck(PIPELINE_TOPIC, `pipeline ${i}`))
      pipeline.acked++
    } catch {
      pipeline.refused++
    }
    await Bun.sleep(Math.max(0, 10 - (performance.now() - started)))
  }
  const graceEnd = performance.now() + GRACE_MS
  while (pipeline.delivered < pipeline.acked && performance.now() < graceEnd) await Bun.sleep(5)
  pipeline.lost = pipeline.acked - pipeline.delivered
  await subscriber.unsubscribe(subscription).catch(() => {})
  await Promise.race([receiving, Bun.sleep(1000)])
  return pipeline
}
const PIPELINE_TOPIC = "isolation/pipeline"

async function measure(
  server: ServerProcess,
  clients: { binary: Client; json: JsonClient; writer: Client; subscriber: Client },
  seconds: number,
): Promise<Measurement> {
  const { port } = server
  const { binary, json } = clients
  const periodMs = 1
  const total = Math.round((seconds * 1000) / periodMs)
  const binaryResults = { ...newLatencies(), sent: total }
  const jsonResults = { ...newLatencies(), sent: total }
  const sendLag: number[] = []
  let outstanding = 0
  let maxBufferedBytes = 0

  // Newcomers, one at a time, every 200 ms; and the server's buffers, every 250 ms.
  const newcomers: Newcomers = { times: [], failures: 0, errors: [] }
  let measuring = true
  const pipelineRun = runPipeline(clients.writer, clients.subscriber, () => measuring)
  const samples: ServerSamples = { rssBytes: [], peakRssBytes: 0, peakBufferedBytes: 0, peakBudgetPaused: 0 }
  const newcomerLoop = (async () => {
    while (measuring) {
      const started = performance.now()
      const timeout = Bun.sleep(3000).then(() => "timeout" as const)
      let client: Client | null = null
      try {
        const attempt = (async () => {
          client = await connect({ port, retries: 0 })
          await client.ping()
          return "ok" as const
        })()
        const outcome = await Promise.race([attempt, timeout])
        if (outcome === "ok") newcomers.times.push(performance.now() - started)
        else {
          newcomers.failures++
          newcomers.errors.push("no answer in 3 s")
          void attempt.catch(() => {})
        }
      } catch (error) {
        newcomers.failures++
        newcomers.errors.push(String((error as Error).message ?? error).slice(0, 80))
      }
      const opened = client as Client | null
      if (opened !== null) void opened.close().catch(() => {})
      await Bun.sleep(Math.max(0, 200 - (performance.now() - started)))
    }
  })()
  const statsLoop = (async () => {
    while (measuring) {
      try {
        const stats = await binary.stats()
        maxBufferedBytes = Math.max(maxBufferedBytes, Number(stats.maxConnectionBufferedBytes))
        samples.peakBufferedBytes = Math.max(samples.peakBufferedBytes, Number(stats.bufferedBytes))
        samples.peakBudgetPaused = Math.max(samples.peakBudgetPaused, Number(stats.budgetPausedConnections))
      } catch {}
      const rss = memoryOf(server.pid)?.rss ?? 0
      samples.rssBytes.push(rss)
      samples.peakRssBytes = Math.max(samples.peakRssBytes, rss)
      await Bun.sleep(250)
    }
  })()

  const start = performance.now() + 20
  let next = 0
  const { promise: allSent, resolve: sentAll } = Promise.withResolvers<void>()
  const tick = (): void => {
    const now = performance.now()
    const due: number[] = []
    while (next < total && start + next * periodMs <= now) due.push(next++)
    if (due.length > 0) {
      const sentAt = performance.now()
      const replies = json.send(due.map(() => JSON_GET))
      for (const [k, i] of due.entries()) {
        const scheduled = start + i * periodMs
        sendLag.push(sentAt - scheduled)
        outstanding += 2
        binary.get("isolation/idle").then(
          (message) => {
            const at = performance.now()
            outstanding--
            if (message !== null) binaryResults.wrong++
            binaryResults.fromScheduled.push(at - scheduled)
            binaryResults.fromSent.push(at - sentAt)
          },
          () => outstanding--,
        )
        replies[k]!.then((text) => {
          const at = performance.now()
          outstanding--
          if (!isEmptyReply(text)) jsonResults.wrong++
          jsonResults.fromScheduled.push(at - scheduled)
          jsonResults.fromSent.push(at - sentAt)
        })
      }
    }
    if (next < total) setTimeout(tick, Math.max(0, start + next * periodMs - performance.now()))
    else sentAll()
  }
  setTimeout(tick, 20)
  await allSent
  const graceEnd = performance.now() + GRACE_MS
  while (outstanding > 0 && performance.now() < graceEnd) await Bun.sleep(5)
  measuring = false
  const [pipeline] = await Promise.all([pipelineRun, newcomerLoop, statsLoop])
  binaryResults.unanswered = binaryResults.sent - binaryResults.fromScheduled.length
  jsonResults.unanswered = jsonResults.sent - jsonResults.fromScheduled.length
  return { pipeline, samples, binary: binaryResults, json: jsonResults, sendLag, newcomers, maxBufferedBytes, seconds }
}

// ---- a phase --------------------------------------------------------------------------------------

interface Percentiles {
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly p999: number
  readonly max: number
  readonly count: number
}

function percentiles(values: readonly number[]): Percentiles {
  if (values.length === 0) return { p50: NaN, p90: NaN, p99: NaN, p999: NaN, max: NaN, count: 0 }
  const sorted = Float64Array.from(values).sort()
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: sorted[sorted.length - 1]!, count: sorted.length }
}

interface PhaseResult {
  readonly name: string
  readonly modes: readonly Mode[]
  readonly binary: Percentiles & { unanswered: number; wrong: number }
  readonly json: Percentiles & { unanswered: number; wrong: number }
  readonly binaryFromSent: Percentiles
  readonly jsonFromSent: Percentiles
  readonly sendLag: Percentiles
  readonly newcomers: Percentiles & { failures: number; errors: string[] }
  readonly pipeline: Pipeline
  readonly samples: ServerSamples
  /** CPU used during the measured window, as a share of one core. */
  readonly cpu: { server: number; abusers: number; bench: number; machine: number; other: number; cores: number }
  readonly server: {
    maxBufferedBytes: number
    peakRssBytes: number
    connectionsAtEnd: number
    puts: number
    errors: Record<string, number>
    logLines: number
  }
  /** Kernel listen-queue overflows and SYN drops during the measured window (machine-wide). */
  readonly listen: { overflows: number; drops: number }
  readonly abusers: Record<string, Record<string, unknown>>
}

async function runPhase(name: string, modes: readonly Mode[], options: Options): Promise<PhaseResult> {
  process.stderr.write(`phase ${name}: starting\n`)
  const server = await startServer(options.serverArgs)
  const binary = await connect({ port: server.port, retries: 0, onError: () => {} })
  const json = await JsonClient.connect(server.port)
  const writer = await connect({ port: server.port, retries: 0, onError: () => {} })
  const subscriber = await connect({ port: server.port, retries: 0, onError: () => {} })
  // One round trip each, so both are surely accepted before any abuse starts.
  await binary.ping()
  await Promise.all(json.send([JSON_GET]))
  const abusers: Abuser[] = []
  const abuserSummaries: Record<string, Record<string, unknown>> = {}
  try {
    const lifetime = options.warmupSeconds + options.seconds + GRACE_MS / 1000 + 30
    abusers.push(
      ...(await Promise.all(modes.map((mode) => startAbuser(mode, server.port, lifetime, options.scale[mode], options.abusersNice)))),
    )
    await Bun.sleep(options.warmupSeconds * 1000)

    const pids = [server.pid, ...abusers.map((abuser) => abuser.pid)]
    const cpuBefore = pids.map(cpuSeconds)
    const selfBefore = process.cpuUsage()
    const machineBefore = machineCpu()
    const listenBefore = listenDrops()
    const wallBefore = performance.now()
    const measurement = await measure(server, { binary, json, writer, subscriber }, options.seconds)
    const wall = (performance.now() - wallBefore) / 1000
    const cpuAfter = pids.map(cpuSeconds)
    const selfAfter = process.cpuUsage()
    const machineAfter = machineCpu()
    const listenAfter = listenDrops()
    const used = (i: number): number => (cpuAfter[i] ?? cpuBefore[i] ?? 0) - (cpuBefore[i] ?? 0)
    const serverCpu = used(0) / wall
    const abusersCpu = abusers.reduce((sum, _abuser, i) => sum + used(i + 1), 0) / wall
    const benchCpu = (selfAfter.user + selfAfter.system - selfBefore.user - selfBefore.system) / 1e6 / wall
    const machineWall = machineAfter.total - machineBefore.total
    const cores = navigator.hardwareConcurrency
    const machine = ((machineAfter.busy - machineBefore.busy) / machineWall) * cores
    const stats = await binary.stats()
    for (const abuser of abusers.splice(0)) abuserSummaries[abuser.mode] = await abuser.stop()
    const errors = Object.fromEntries(Object.entries(stats.errors as Record<string, number>).filter(([, n]) => n > 0))
    const label = (latencies: Latencies) => ({
      ...percentiles(latencies.fromScheduled),
      unanswered: latencies.unanswered,
      wrong: latencies.wrong,
    })
    return {
      name,
      modes,
      binary: label(measurement.binary),
      json: label(measurement.json),
      binaryFromSent: percentiles(measurement.binary.fromSent),
      jsonFromSent: percentiles(measurement.json.fromSent),
      sendLag: percentiles(measurement.sendLag),
      newcomers: {
        ...percentiles(measurement.newcomers.times),
        failures: measurement.newcomers.failures,
        errors: [...new Set(measurement.newcomers.errors)],
      },
      pipeline: measurement.pipeline,
      samples: measurement.samples,
      cpu: {
        server: serverCpu,
        abusers: abusersCpu,
        bench: benchCpu,
        machine,
        other: Math.max(0, machine - serverCpu - abusersCpu - benchCpu),
        cores,
      },
      server: {
        maxBufferedBytes: measurement.maxBufferedBytes,
        peakRssBytes: peakRss(server.pid),
        connectionsAtEnd: Number(stats.connections),
        puts: Number(stats.puts),
        errors,
        logLines: server.stderrLines.lines.length,
      },
      listen: { overflows: listenAfter.overflows - listenBefore.overflows, drops: listenAfter.drops - listenBefore.drops },
      abusers: abuserSummaries,
    }
  } finally {
    for (const abuser of abusers) abuserSummaries[abuser.mode] = await abuser.stop()
    await binary.close().catch(() => {})
    await writer.close().catch(() => {})
    await subscriber.close().catch(() => {})
    json.close()
    await server.stop()
  }
}

// ---- output ---------------------------------------------------------------------------------------

const ms = (value: number): string =>
  Number.isNaN(value) ? "-" : value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)
const ratio = (value: number, base: number): string => (Number.isNaN(value) || !(base > 0) ? "-" : `${(value / base).toFixed(1)}x`)
const pct = (share: number): string => `${(share * 100).toFixed(share < 0.1 ? 1 : 0)}%`

function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: string[]): string =>
    `| ${cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(" | ")} |`
  const rule = `|${widths.map((width, i) => (i === 0 ? "-".repeat(width + 2) : `${"-".repeat(width + 1)}:`)).join("|")}|`
  return [line(header), rule, ...rows.map(line)].join("\n")
}

function report(results: readonly PhaseResult[], options: Options, command: string): string {
  const base = results[0]!
  const latencyRows = results.flatMap((result) =>
    (["binary", "json"] as const).map((protocol) => {
      const p = result[protocol]
      const b = base[protocol]
      return [
        `${result.name} (${protocol})`,
        ms(p.p50),
        ms(p.p90),
        ms(p.p99),
        ms(p.p999),
        ms(p.max),
        ratio(p.p50, b.p50),
        ratio(p.p99, b.p99),
        ratio(p.p999, b.p999),
        `${p.unanswered}/${p.wrong}`,
      ]
    }),
  )
  const costRows = results.map((result) => [
    result.name,
    pct(result.cpu.server),
    pct(result.cpu.abusers),
    pct(result.cpu.bench),
    pct(result.cpu.other),
    `${pct(result.cpu.machine / result.cpu.cores)} of ${result.cpu.cores}`,
    ms(result.sendLag.p99),
    ms(result.binaryFromSent.p99),
    ms(result.jsonFromSent.p99),
    `${ms(result.newcomers.p50)} / ${ms(result.newcomers.max)} / ${result.newcomers.failures}`,
    (result.server.maxBufferedBytes / 1024).toFixed(0),
    (result.server.peakRssBytes / 2 ** 20).toFixed(0),
    String(result.listen.overflows),
    String(result.server.puts),
  ])
  const lines = [
    `# Isolation: well-behaved latency with and without abusive clients`,
    ``,
    `command: ${command}`,
    `date: ${new Date().toISOString()}, bun ${Bun.version}, ${navigator.hardwareConcurrency} cores, load average at the end ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
    `each phase: a fresh server process, ${options.warmupSeconds} s of abuse before ${options.seconds} s measured; one binary and one JSON get every 1 ms, open loop; latency in ms from the scheduled send time`,
    `abusers at nice ${options.abusersNice} once connected (the server and this process at 0)`,
    ``,
    table(["phase (client)", "p50", "p90", "p99", "p99.9", "max", "p50 x", "p99 x", "p99.9 x", "lost/wrong"], latencyRows),
    ``,
    `Where the time went (CPU as a share of one core during the measured window; "other" is the rest of the machine, e.g. other work running on it):`,
    ``,
    table(
      [
        "phase",
        "server CPU",
        "abusers CPU",
        "bench CPU",
        "other CPU",
        "machine busy",
        "send lag p99",
        "bin p99 from send",
        "json p99 from send",
        "newcomer p50/max/failed",
        "max buffered KiB",
        "server peak RSS MiB",
        "listen overflows",
        "puts",
      ],
      costRows,
    ),
    ``,
    `ratios (x) are to the first baseline. lost: no reply within ${GRACE_MS / 1000} s after the last send; wrong: a reply other than "nothing there".`,
    `send lag: how late this process sent requests after their scheduled time (its own CPU starvation).`,
    `newcomer: connect, HELLO and one PING on a new connection every 200 ms, ms; failed: refused, closed or no answer in 3 s.`,
    `max buffered: the server's maxConnectionBufferedBytes, sampled every 250 ms. listen overflows: the kernel's ListenOverflows (machine-wide): connections`,
    `dropped because the server's accept queue was full (the client retries its SYN after 1 s, 3 s, ...).`,
    ``,
    `What the well-behaved clients kept, and what the server held (sampled every 250 ms):`,
    ``,
    table(
      [
        "phase",
        "puts acked",
        "delivered",
        "lost",
        "out of order",
        "missed",
        "puts refused",
        "peak RSS MiB",
        "peak held by clients MiB",
        "peak paused",
      ],
      results.map((result) => [
        result.name,
        String(result.pipeline.acked),
        String(result.pipeline.delivered),
        String(result.pipeline.lost),
        String(result.pipeline.outOfOrder),
        String(result.pipeline.missed),
        String(result.pipeline.refused),
        (result.samples.peakRssBytes / 2 ** 20).toFixed(0),
        (result.samples.peakBufferedBytes / 2 ** 20).toFixed(1),
        String(result.samples.peakBudgetPaused),
      ]),
    ),
    ``,
    `pipeline: an acknowledged put every 10 ms on one connection, subscribed to on another; lost: acknowledged, not delivered within ${GRACE_MS / 1000} s.`,
    `held by clients: the server-wide budget's figure (bufferedBytes); paused: connections the budget paused (budgetPausedConnections).`,
  ]
  for (const result of results) {
    const errors = Object.entries(result.server.errors)
      .map(([code, n]) => `${code} ${n}`)
      .join(", ")
    const newcomerErrors = result.newcomers.errors.length > 0 ? `; newcomer failures: ${result.newcomers.errors.join("; ")}` : ""
    const logged = result.server.logLines > 0 ? `; server log lines: ${result.server.logLines}` : ""
    if (errors !== "" || newcomerErrors !== "" || logged !== "")
      lines.push(`${result.name}: server errors: ${errors || "none"}${newcomerErrors}${logged}`)
  }
  lines.push(``, `abusers' own counters:`)
  for (const result of results) {
    for (const [mode, summary] of Object.entries(result.abusers)) {
      const { seed: _seed, why: _why, mode: _mode, ...counters } = summary
      lines.push(`  ${result.name} / ${mode}: ${JSON.stringify(counters)}`)
    }
  }
  return lines.join("\n")
}

// ---- main -----------------------------------------------------------------------------------------

const options = parseOptions(process.argv.slice(2))
const command = ["bun", "run", "bench/isolation.ts", ...process.argv.slice(2)].join(" ")
const single = options.togetherOnly ? [] : options.modes.map((mode): [string, Mode[]] => [mode, [mode]])
const phases: [string, Mode[]][] = [["baseline", []], ...single]
if (options.modes.length > 1 || options.togetherOnly) phases.push(["all at once", [...options.modes]])
phases.push(["baseline again", []])
const results: PhaseResult[] = []
for (const [name, modes] of phases) results.push(await runPhase(name, modes, options))
console.log(report(results, options, command))
if (options.json !== null) await Bun.write(options.json, JSON.stringify({ command, options, results }, null, 2))
process.exit(0)
