/**
 * Long-running fuzzing: the corpus and mutators of test/fuzz.test.ts (test/fuzz-corpus.ts,
 * test/fuzz-drivers.ts) in a loop, against a server in a child process, for N minutes.
 *
 *   bun run bench/fuzz.ts [--minutes N] [--seed S] [--wave N] [--max-message-bytes N]
 *                         [--protocol P] [--auth] [--server harness|cli] [--replay I[-J]]
 *
 * Each case (an iteration) is a function of (seed, index) only: protocol, valid traffic,
 * mutations, write sizes. Cases go out in waves, each on its own connection, while a
 * well-behaved client of every protocol puts and gets and checks the answers; after every wave
 * the server must hold nothing for the fuzzed connections (a leak is reported, and the run goes
 * on counting from there). Prints progress every minute and a summary at the end; exits 1 if
 * anything failed, naming the seed and the case (or the range of a wave) to replay with
 * `--seed S --replay I[-J]`. A replay sends the same bytes in the same writes; what the server
 * makes of them can still depend on timing (the other connections, a busy machine).
 *
 * The server is, by default, `startServer` in a child process that writes every internal
 * error to stderr (`--server harness`): the real command line rate-limits its log to 20 lines a
 * second, and fuzzing makes far more, so an internal error could be dropped unseen. `--server
 * cli` runs `bun run src/server.ts --port 0 --http-port 0` itself instead. Either way the run
 * ends with SIGTERM, and the exit code must be 0.
 *
 * Not part of `bun test`, and not run by bench/run.ts.
 */

import { readFileSync } from "node:fs"
import { join } from "node:path"
import type { Subscriber } from "../src/broker/broker.ts"
import { startServer } from "../src/start-server.ts"
import { BinaryClient, statsBody } from "../test/binary-client.ts"
import { req } from "../test/binary-frames.ts"
import { PROTOCOLS, type Protocol, Tally } from "../test/fuzz-corpus.ts"
import {
  type CaseOptions,
  describeCase,
  FUZZ_AUTH,
  FUZZ_TOKENS,
  type FuzzCase,
  GOOD_TOKEN,
  GoodClients,
  makeCase,
  runWave,
  startCase,
  type Target,
} from "../test/fuzz-drivers.ts"
import { type OptionSpec, parseOptionsOrExit } from "./lib/args.ts"

const ROOT = join(import.meta.dir, "..")
const MiB = 1024 * 1024
/** Stop after this many failing cases: the first ones say enough. */
const MAX_FAILURES = 25
/** A wave that takes this long is stuck (the server stopped answering): the run ends. */
const WAVE_WATCHDOG_MS = 120_000
/** How long after a wave the server may take to let go of what the wave's connections held. */
const LEAK_GRACE_MS = 20_000

const USAGE = `Usage: bun run bench/fuzz.ts [options]

  --minutes N            how long to fuzz (default 60; fractions allowed)
  --seed S               the run's seed, 0 to 4294967295 (default: a random one, printed)
  --wave N               cases sent at once, each on its own connection (default 64)
  --max-message-bytes N  the server's --max-message-bytes (default 65536, so requests over
                         the limit are cheap to make)
  --protocol P           fuzz one protocol only: ${PROTOCOLS.join(", ")}
                         (default: every case picks one)
  --auth                 the server requires tokens; the fuzzed traffic presents (mostly) valid
                         ones that may write some topics or only read
  --server harness|cli   harness: startServer in a child process with an unthrottled log of
                         internal errors (default); cli: bun run src/server.ts
  --replay I[-J]         send cases I..J of --seed again, one wave, against a fresh server,
                         printing each case and what was wrong with its replies
  -h, --help
`

interface Options {
  readonly minutes: number
  readonly seed: number
  readonly wave: number
  readonly maxMessageBytes: number
  readonly server: "harness" | "cli"
  readonly protocol: Protocol | undefined
  readonly auth: boolean
  readonly replay: { first: number; last: number } | null
}

const SPECS = {
  minutes: { type: "number", min: 0.05, max: 7 * 24 * 60 },
  seed: { type: "number", min: 0, max: 0xffffffff, integer: true },
  wave: { type: "number", min: 1, max: 2000, integer: true },
  "max-message-bytes": { type: "number", min: 1024, max: 64 * MiB, integer: true },
  server: { type: "choice", choices: ["harness", "cli"] },
  replay: { type: "string" },
  protocol: { type: "choice", choices: PROTOCOLS },
  auth: { type: "boolean" },
  role: { type: "string" },
} as const satisfies Record<string, OptionSpec>

function parseOptions(argv: string[]): Options {
  const values = parseOptionsOrExit("fuzz", USAGE, argv, SPECS)
  const server = values.server ?? "harness"
  const protocol = values.protocol
  let replay: Options["replay"] = null
  if (values.replay !== undefined) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(values.replay)
    if (match === null) usage("--replay takes I or I-J")
    const first = Number(match[1])
    const last = Number(match[2] ?? match[1])
    if (last < first || last - first >= 10_000) usage("--replay: J must be at least I and at most I + 9999")
    replay = { first, last }
    if (values.seed === undefined) usage("--replay needs the --seed of the run")
  }
  return {
    minutes: values.minutes ?? 60,
    seed: values.seed ?? crypto.getRandomValues(new Uint32Array(1))[0]!,
    wave: values.wave ?? 64,
    maxMessageBytes: values["max-message-bytes"] ?? 65536,
    server,
    protocol,
    auth: values.auth,
    replay,
  }
}

function usage(message: string): never {
  process.stderr.write(`fuzz: ${message}\n\n${USAGE}`)
  process.exit(2)
}

// ---------------------------------------------------------------------------------------------
// The server in a child process
// ---------------------------------------------------------------------------------------------

/** `--role server`: the broker with a log that prints every internal error and counts the rest. */
function runHarnessServer(maxMessageBytes: number, auth: boolean): void {
  let other = 0
  const server = startServer({
    host: "127.0.0.1",
    port: 0,
    httpPort: 0,
    maxMessageBytes,
    allowShutdown: false,
    ...(auth ? { auth: FUZZ_AUTH } : {}),
    log: (line) => {
      if (line.includes("internal error")) process.stderr.write(`dsmq: ${line}\n`)
      else other++
    },
  })
  const stop = (signal: string): void => {
    process.stderr.write(`dsmq: ${signal}, stopping (${other} other log lines)\n`)
    server.stop()
  }
  process.on("SIGTERM", () => stop("SIGTERM"))
  process.on("SIGINT", () => stop("SIGINT"))
  // For a subscriber-count leak: who holds each subscription, and since when (SIGUSR2 prints them).
  const broker = server.broker
  const live = new Map<Subscriber, { topic: string; since: number }>()
  const subscribe = broker.subscribe.bind(broker)
  const unsubscribe = broker.unsubscribe.bind(broker)
  broker.subscribe = (topic, subscriber) => {
    live.set(subscriber, { topic, since: performance.now() })
    subscribe(topic, subscriber)
  }
  broker.unsubscribe = (topic, subscriber) => {
    if (live.get(subscriber)?.topic === topic) live.delete(subscriber)
    unsubscribe(topic, subscriber)
  }
  process.on("SIGUSR2", () => {
    const now = performance.now()
    const held = [...live].map(([subscriber, { topic, since }]) => {
      const kind = subscriber.constructor === Object ? "event stream" : subscriber.constructor.name
      return `${kind} on ${JSON.stringify(topic.slice(0, 40))} for ${((now - since) / 1000).toFixed(1)} s`
    })
    process.stderr.write(`dsmq: live subscribers: ${held.join("; ")}\n`)
  })
  void server.stopped.then(() => process.exit(0))
  console.log(
    `dsmq listening on tcp://127.0.0.1:${server.port}, http://127.0.0.1:${server.httpPort} (WebSocket ws://127.0.0.1:${server.port}/ or ws://127.0.0.1:${server.httpPort}/)`,
  )
}

interface ChildServer {
  readonly process: Bun.Subprocess<"ignore", "pipe", "pipe">
  readonly target: Target
  /** Internal errors the server logged (each line). */
  readonly internalErrors: string[]
  /** Lines the command line's rate-limited log dropped (--server cli). */
  droppedLogLines: number
  /** Resolves once stderr has ended (the process exited). */
  stderrDone: Promise<void>
  /** The last `live subscribers` line the harness printed (on SIGUSR2). */
  liveSubscribers: string | null
}

async function spawnServer(options: Options): Promise<ChildServer> {
  const command =
    options.server === "cli"
      ? [
          "bun",
          "run",
          join(ROOT, "src", "server.ts"),
          "--port",
          "0",
          "--http-port",
          "0",
          "--max-message-bytes",
          String(options.maxMessageBytes),
        ]
      : [
          "bun",
          "run",
          import.meta.path,
          "--role",
          "server",
          "--max-message-bytes",
          String(options.maxMessageBytes),
          ...(options.auth ? ["--auth"] : []),
        ]
  // The command line takes tokens from DSMQ_AUTH (never from its arguments).
  const env =
    options.auth && options.server === "cli" ? { ...process.env, DSMQ_AUTH: JSON.stringify({ tokens: FUZZ_AUTH.tokens }) } : process.env
  const child = Bun.spawn(command, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env })
  const reader = child.stdout.getReader()
  let text = ""
  // Bounded: each read is a chunk of the first line, or the end of the stream.
  while (!text.includes("\n")) {
    const { value, done } = await reader.read()
    if (done) throw new Error(`the server exited before printing its address: ${await new Response(child.stderr).text()}`)
    text += new TextDecoder().decode(value)
  }
  reader.releaseLock()
  const port = Number(/tcp:\/\/[^ ]+:(\d+)/.exec(text)?.[1])
  const httpPort = Number(/http:\/\/[^ ]+:(\d+)/.exec(text)?.[1])
  const server: ChildServer = {
    process: child,
    target: { port, httpPort, maxFrameBytes: options.maxMessageBytes },
    internalErrors: [],
    droppedLogLines: 0,
    stderrDone: Promise.resolve(),
    liveSubscribers: null,
  }
  // Read stderr as it comes (a full pipe would stall the server), line by line.
  server.stderrDone = (async () => {
    let pending = ""
    const decoder = new TextDecoder()
    for await (const chunk of child.stderr) {
      pending += decoder.decode(chunk, { stream: true })
      const lines = pending.split("\n")
      pending = lines.pop()!
      for (const line of lines) {
        const dropped = /\((\d+) more log lines dropped/.exec(line)
        if (dropped !== null) server.droppedLogLines += Number(dropped[1])
        if (line.startsWith("dsmq: live subscribers:")) server.liveSubscribers = line
        if (!line.includes("internal error")) continue
        server.internalErrors.push(line)
      }
    }
  })()
  return server
}

/** What the harness says holds each subscription (`--server harness` only: SIGUSR2 would end the CLI). */
async function liveSubscribers(server: ChildServer): Promise<string> {
  if (server.process.exitCode !== null) return ""
  server.liveSubscribers = null
  server.process.kill("SIGUSR2")
  for (let i = 0; i < 100 && server.liveSubscribers === null; i++) await Bun.sleep(20)
  return server.liveSubscribers === null ? "" : ` [${(server.liveSubscribers as string).slice("dsmq: ".length)}]`
}

function rssBytes(pid: number): number | null {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]
    return kb === undefined ? null : Number(kb) * 1024
  } catch {
    return null
  }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

interface Failure {
  readonly what: string
  readonly replay: string
}

const format = (n: number): string => n.toLocaleString("en-US")
const mib = (bytes: number | null): string => (bytes === null ? "?" : `${(bytes / MiB).toFixed(1)} MiB`)

function caseOptions(options: Options): CaseOptions {
  return { maxFrameBytes: options.maxMessageBytes, ...(options.auth ? { tokens: FUZZ_TOKENS } : {}) }
}

function withWatchdog<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: Timer | undefined
  const watchdog = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} took more than ${WAVE_WATCHDOG_MS / 1000} s: the server stopped answering`)),
      WAVE_WATCHDOG_MS,
    )
  })
  return Promise.race([work, watchdog]).finally(() => clearTimeout(timer))
}

/** What the server holds when no fuzzed connection is open: the good clients' own, plus any leaked earlier. */
interface Baseline {
  connections: number
  queuedRequests: number
  subscribers: number
}

/**
 * Polls STATS (one round trip each, bounded) until the fuzzed connections are gone. Returns
 * null, or what the server still holds beyond `baseline` (a leak), after moving the baseline
 * up to it so that the run can go on and report every leak, not only the first.
 */
async function leftovers(good: GoodClients, baseline: Baseline): Promise<string | null> {
  const over = (stats: Record<string, unknown>): boolean =>
    (stats.connections as number) > baseline.connections ||
    (stats.queuedRequests as number) > baseline.queuedRequests ||
    (stats.subscribers as number) > baseline.subscribers
  // Bounded by LEAK_GRACE_MS: an event stream whose client went away is only dropped when the
  // server next writes to it (an event, or the keepalive comment every 15 s).
  let stats = await good.stats()
  const deadline = performance.now() + LEAK_GRACE_MS
  for (let i = 0; over(stats) && performance.now() < deadline; i++) {
    if (i >= 100) await Bun.sleep(50)
    stats = await good.stats()
  }
  // What leaked earlier and has been let go since lowers the baseline again (not below the good clients' own).
  baseline.connections = Math.max(GoodClients.CONNECTIONS, Math.min(baseline.connections, stats.connections as number))
  baseline.queuedRequests = Math.min(baseline.queuedRequests, stats.queuedRequests as number)
  baseline.subscribers = Math.max(GoodClients.SUBSCRIBERS, Math.min(baseline.subscribers, stats.subscribers as number))
  const leaked = baseline.connections > GoodClients.CONNECTIONS
  const problems = [
    (stats.connections as number) > baseline.connections ? `connections ${stats.connections} (expected ${baseline.connections})` : null,
    (stats.queuedRequests as number) > baseline.queuedRequests
      ? `queuedRequests ${stats.queuedRequests} (expected ${baseline.queuedRequests})`
      : null,
    (stats.subscribers as number) > baseline.subscribers ? `subscribers ${stats.subscribers} (expected ${baseline.subscribers})` : null,
    // A leaked connection holds its unsent replies: only checked while nothing has leaked.
    leaked || (stats.maxConnectionBufferedBytes as number) < 1024 ? null : `maxConnectionBufferedBytes ${stats.maxConnectionBufferedBytes}`,
  ].filter((problem) => problem !== null)
  if (problems.length === 0) return null
  baseline.connections = Math.max(baseline.connections, stats.connections as number)
  baseline.queuedRequests = Math.max(baseline.queuedRequests, stats.queuedRequests as number)
  baseline.subscribers = Math.max(baseline.subscribers, stats.subscribers as number)
  return `${problems.join(", ")} ${LEAK_GRACE_MS / 1000} s after the wave (by protocol: ${JSON.stringify(stats.connectionsByProtocol)})`
}

async function replay(options: Options, first: number, last: number): Promise<number> {
  const server = await spawnServer(options)
  const tally = new Tally()
  const cases = Array.from({ length: last - first + 1 }, (_, i) =>
    makeCase(options.seed, first + i, caseOptions(options), options.protocol),
  )
  const running = cases.map((fuzzCase) => startCase(fuzzCase, server.target, tally))
  await Promise.all(running.map((item) => item.sent))
  for (let turn = 0; turn < 2000 && running.some((item) => !item.isClosed()); turn++) await new Promise((resolve) => setImmediate(resolve))
  for (const item of running) if (!item.isClosed()) item.abort()
  const results = await Promise.all(running.map((item) => item.done))
  // What the server still holds for the cases' connections, seen by a fresh client (STATS, bounded).
  const probe = await BinaryClient.connect(server.target.port, options.auth ? { token: GOOD_TOKEN } : {})
  let stats = statsBody(await probe.call(req.stats(2)))
  const deadline = performance.now() + LEAK_GRACE_MS
  for (let i = 0; (stats.connections !== 1 || stats.queuedRequests !== 0 || stats.subscribers !== 0) && performance.now() < deadline; i++) {
    if (i >= 100) await Bun.sleep(50)
    stats = statsBody(await probe.call(req.stats(3 + i)))
  }
  const left =
    stats.connections === 1 && stats.queuedRequests === 0 && stats.subscribers === 0
      ? null
      : `connections ${stats.connections} (1 expected), queuedRequests ${stats.queuedRequests}, subscribers ${stats.subscribers}`
  await probe[Symbol.asyncDispose]()
  let bad = 0
  for (const [i, problems] of results.entries()) {
    const fuzzCase: FuzzCase = cases[i]!
    console.log(`${problems.length === 0 ? "ok  " : "FAIL"} ${describeCase(fuzzCase)}`)
    for (const problem of problems) console.log(`       ${problem}`)
    if (problems.length > 0) bad++
  }
  const alive = server.process.exitCode === null
  server.process.kill("SIGTERM")
  const code = await server.process.exited
  await server.stderrDone
  console.log(`\n${tally.summary()}`)
  console.log(
    `server: ${alive ? "up after the cases" : "DIED"}, exit code on SIGTERM ${code}, internal errors ${server.internalErrors.length}`,
  )
  console.log(`after the cases the server holds: ${left ?? "nothing"}`)
  for (const line of server.internalErrors) console.log(`  ${line}`)
  return bad > 0 || !alive || code !== 0 || server.internalErrors.length > 0 || left !== null ? 1 : 0
}

async function main(argv: string[]): Promise<number> {
  const roleAt = argv.indexOf("--role")
  if (roleAt >= 0 && argv[roleAt + 1] === "server") {
    const at = argv.indexOf("--max-message-bytes")
    runHarnessServer(at >= 0 ? Number(argv[at + 1]) : 65536, argv.includes("--auth"))
    return -1 // keeps running until SIGTERM
  }
  const options = parseOptions(argv)
  const command =
    `bun run bench/fuzz.ts --minutes ${options.minutes} --seed ${options.seed}` +
    (options.wave !== 64 ? ` --wave ${options.wave}` : "") +
    (options.maxMessageBytes !== 65536 ? ` --max-message-bytes ${options.maxMessageBytes}` : "") +
    (options.protocol !== undefined ? ` --protocol ${options.protocol}` : "") +
    (options.auth ? " --auth" : "") +
    (options.server !== "harness" ? ` --server ${options.server}` : "")
  if (options.replay !== null) return replay(options, options.replay.first, options.replay.last)

  console.log(`fuzzing for ${options.minutes} minutes with seed ${options.seed} (replay: ${command})`)
  const server = await spawnServer(options)
  const pid = server.process.pid
  console.log(
    `server: ${options.server === "cli" ? "src/server.ts" : "startServer harness"} in pid ${pid}, tcp ${server.target.port}, http ${server.target.httpPort}, --max-message-bytes ${options.maxMessageBytes}`,
  )
  const good = await GoodClients.connect(server.target, options.auth ? GOOD_TOKEN : undefined)
  const tally = new Tally()
  const byProtocol = new Map<Protocol, number>(PROTOCOLS.map((protocol) => [protocol, 0]))
  const failures: Failure[] = []
  const started = performance.now()
  const deadline = started + options.minutes * 60_000
  let nextReport = started + 60_000
  let index = 0
  let waves = 0
  let aborted = 0
  let maxRss = rssBytes(pid) ?? 0
  const rssAtStart = maxRss
  let stopReason = "the time is up"
  const baseline: Baseline = { connections: GoodClients.CONNECTIONS, queuedRequests: 0, subscribers: GoodClients.SUBSCRIBERS }
  const replayOf = (first: number, last: number): string =>
    `bun run bench/fuzz.ts --seed ${options.seed} --replay ${first}${last > first ? `-${last}` : ""}` +
    (options.protocol !== undefined ? ` --protocol ${options.protocol}` : "") +
    ` --max-message-bytes ${options.maxMessageBytes}${options.auth ? " --auth" : ""}`

  // Bounded by the deadline, and by MAX_FAILURES.
  while (performance.now() < deadline) {
    const first = index
    const cases = Array.from({ length: options.wave }, () => makeCase(options.seed, index++, caseOptions(options), options.protocol))
    for (const fuzzCase of cases) byProtocol.set(fuzzCase.protocol, byProtocol.get(fuzzCase.protocol)! + 1)
    const last = index - 1
    try {
      const result = await withWatchdog(runWave(cases, server.target, tally, good, `wave ${waves}`), `wave ${waves}`)
      aborted += result.aborted
      for (const failure of result.failures) {
        failures.push({
          what: `${failure.description.split("\n")[0]!}\n      ${failure.problems.join("\n      ")}`,
          replay: failure.replay,
        })
        console.log(`FAILURE: ${failure.description}\n    ${failure.problems.slice(0, 5).join("\n    ")}`)
      }
      if (server.process.exitCode !== null) throw new Error(`the server exited with code ${server.process.exitCode}`)
      const left = await withWatchdog(leftovers(good, baseline), "the leak check")
      if (left !== null) {
        // Recorded, and the run goes on from the new baseline.
        const holders = left.includes("subscribers") && options.server === "harness" ? await liveSubscribers(server) : ""
        const what = `wave ${waves} (cases ${first}-${last}): after the wave the server still holds ${left}${holders}`
        failures.push({ what, replay: replayOf(first, last) })
        console.log(`FAILURE (leak) in ${what}`)
      }
      if (server.internalErrors.length > 0) throw new Error(`the server logged an internal error: ${server.internalErrors[0]}`)
      await withWatchdog(good.round(`wave ${waves} after`), "the round after the wave")
      const pushProblems = good.checkPushes()
      if (pushProblems.length > 0) throw new Error(`the good subscriber's pushes: ${pushProblems[0]}`)
    } catch (error) {
      const what = `wave ${waves} (cases ${first}-${last}): ${error instanceof Error ? error.message : String(error)}`
      failures.push({ what, replay: replayOf(first, last) })
      console.log(`FAILURE in ${what}`)
      stopReason = "a wave failed (the well-behaved clients or the server)"
      break
    }
    waves++
    maxRss = Math.max(maxRss, rssBytes(pid) ?? 0)
    if (failures.length >= MAX_FAILURES) {
      stopReason = `${MAX_FAILURES} failing cases`
      break
    }
    const now = performance.now()
    if (now >= nextReport) {
      nextReport += 60_000
      const minutes = (now - started) / 60_000
      const stats = await good.stats().catch(() => null)
      console.log(
        `[${new Date().toISOString().slice(11, 19)}] minute ${minutes.toFixed(1)}/${options.minutes}: ${format(index)} cases ` +
          `(${format(Math.round(index / (minutes * 60)))}/s), ${mib(tally.bytesSent)} sent, ${mib(tally.bytesReceived)} received, ` +
          `${format(tally.connections)} connections, ${format(waves)} waves, ${failures.length} failures; server RSS ${mib(rssBytes(pid))}` +
          (stats === null ? "" : `, ${format(stats.storedMessages as number)} messages stored, lastSeq ${format(stats.lastSeq as number)}`),
      )
    }
  }

  const elapsed = (performance.now() - started) / 60_000
  const alive = server.process.exitCode === null
  await good.close().catch(() => {})
  if (alive) server.process.kill("SIGTERM")
  const exitCode = await server.process.exited
  await server.stderrDone
  if (server.internalErrors.length > 0 && !failures.some((failure) => failure.what.includes("internal error"))) {
    failures.push({
      what: `the server logged internal errors: ${server.internalErrors.slice(0, 3).join(" | ")}`,
      replay: replayOf(0, Math.max(0, index - 1)),
    })
  }
  if (exitCode !== 0) failures.push({ what: `the server's exit code on SIGTERM was ${exitCode}`, replay: command })

  const map = (entries: Iterable<[string | number, number]>) => [...entries].map(([key, count]) => `${key} ${format(count)}`).join(", ")
  console.log(
    `
fuzz summary
  command:      ${command}
  ran:          ${elapsed.toFixed(2)} minutes (${stopReason}); seed ${options.seed}; waves of ${options.wave}
  iterations:   ${format(index)} cases (indexes 0-${index - 1}) in ${format(waves)} waves; ${format(aborted)} held by the server until the end of their wave
  by protocol:  ${map(byProtocol)}
  traffic:      ${format(tally.connections)} connections, ${format(tally.bytesSent)} bytes sent, ${format(tally.bytesReceived)} bytes received
  replies:      ${tally.summary()}
  leaks:        ${baseline.connections - GoodClients.CONNECTIONS} connections (${baseline.queuedRequests} queued requests) the server still held after their clients had gone
  server:       ${alive ? "up until the end" : "NOT RUNNING at the end"}; exit code on SIGTERM ${exitCode}; RSS ${mib(rssAtStart)} at the start, at most ${mib(maxRss)}
  log:          ${server.internalErrors.length} internal errors` +
      (server.droppedLogLines > 0
        ? `; ${format(server.droppedLogLines)} log lines dropped by the server's rate limit (internal errors among them unseen)`
        : "") +
      `
  failures:     ${failures.length === 0 ? "none" : failures.length}`,
  )
  for (const failure of failures) console.log(`    ${failure.what}\n      replay: ${failure.replay}`)
  return failures.length === 0 ? 0 : 1
}

const code = await main(process.argv.slice(2))
if (code >= 0) process.exit(code)
