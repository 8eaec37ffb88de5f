/**
 * `dsmq sub PATTERN...`: prints each message of the matching topics as it is put, like
 * mosquitto_sub, until Ctrl-C (exit 0), --count messages (exit 0), or the server going away
 * (exit 1, or with --reconnect: connect again and resume without loss or duplicates).
 *
 * How it resumes. Without --cursor each PATTERN gets its own connection, started with FROM at a
 * sequence number. One subscription on a connection delivers in put order, so the last seq a
 * connection delivered is exactly where it must resume: everything after it is read again from
 * the store (nothing lost while the server keeps it). Patterns may overlap, so a message is
 * printed only if its seq is past the last one printed for its topic (no duplicates: each
 * topic's messages come in order on every connection). With --cursor NAME, one connection
 * reads through the server's named cursor, which remembers where it stopped across runs.
 */
import { type Client, ConnectionClosedError, DsmqError, type Subscription } from "../client.ts"
import { CommandLineError } from "../config/values.ts"
import {
  CLIENT_HELP,
  CommandFailure,
  connectTo,
  describeFailure,
  type Env,
  ExitCode,
  readClientCommand,
  type Target,
  targetOf,
  wholeNumber,
} from "./command-line.ts"
import { formatMessage, type MessageFormat, outputFormatOf, Stdout } from "./output.ts"

export const SUB_HELP = `Usage: dsmq sub PATTERN... [options]

Prints each message put on a topic a PATTERN matches, as it arrives, until Ctrl-C. A PATTERN is
a topic, or MQTT-style: + is one level, # everything below (lab/#, lab/+/temp).

  -v, --verbose    print the topic, a space, then the message
  --format F       raw (default: the payload as it is) or json: {"topic", "seq", "time",
                   "text"} ("base64" instead of "text" when the payload is not UTF-8)
  -C, --count N    exit after N messages
  --reconnect      when the server goes away, keep trying to connect, then go on where it
                   stopped (nothing lost while the server keeps the messages, e.g. with --db)
  --cursor NAME    read through the server's named cursor NAME: a later run with the same
                   name starts where this one stopped

${CLIENT_HELP}

Exit codes: 0 after Ctrl-C or --count, 1 when the server went away (without --reconnect).

Examples:
  dsmq sub 'lab/#' -v
  dsmq sub lab/temp --format json --count 10
`

const FIRST_RETRY_MS = 100
const MAX_RETRY_MS = 5000

/** Where the command is: a state machine, so a signal in any state has one meaning. */
type State = "connecting" | "streaming" | "waiting" | "stopping"

/** One connection's subscriptions, and (without --cursor) where it resumes. */
interface Feed {
  readonly patterns: readonly string[]
  /** The last seq this feed's connection delivered; null with a named cursor. */
  lastSeq: number | null
  client: Client | null
  subscriptions: Subscription[]
}

export async function runSub(argv: readonly string[], env: Env): Promise<number> {
  const command = readClientCommand(
    argv,
    {
      verbose: { type: "boolean", short: "v" },
      format: { type: "string" },
      count: { type: "string", short: "C" },
      reconnect: { type: "boolean" },
      cursor: { type: "string" },
    },
    SUB_HELP,
  )
  if (command === null) return ExitCode.ok
  const { values, positionals } = command
  if (positionals.length === 0) throw new CommandLineError("sub needs at least one PATTERN")
  const how: MessageFormat = { format: outputFormatOf(values.format), verbose: values.verbose === true }
  const limit = values.count === undefined ? Number.POSITIVE_INFINITY : wholeNumber("--count", values.count, 1, 1)
  const subscriber = new Subscriber(targetOf(values, env), positionals, how, limit, values.reconnect === true, values.cursor)
  return await subscriber.run()
}

class Subscriber {
  #state: State = "connecting"
  readonly #feeds: Feed[]
  /** Per topic, the last seq printed: what another, overlapping feed delivers again is skipped. */
  readonly #printed = new Map<string, number>()
  #count = 0
  readonly #stopped = Promise.withResolvers<void>()
  readonly #stdout = new Stdout(() => this.#stop())

  constructor(
    readonly target: Target,
    patterns: readonly string[],
    readonly how: MessageFormat,
    readonly limit: number,
    readonly reconnect: boolean,
    readonly cursor: string | undefined,
  ) {
    const unique = [...new Set(patterns)]
    const feedOf = (patterns: string[]): Feed => ({ patterns, lastSeq: null, client: null, subscriptions: [] })
    this.#feeds = cursor === undefined ? unique.map((pattern) => feedOf([pattern])) : [feedOf(unique)]
  }

  async run(): Promise<number> {
    process.on("SIGINT", () => this.#stop())
    process.on("SIGTERM", () => this.#stop())
    let retryMs = FIRST_RETRY_MS
    let outage = false
    while (!this.#stopping()) {
      this.#state = "connecting"
      try {
        await this.#connect()
      } catch (error) {
        this.#closeAll()
        if (error instanceof RestartedError) continue
        if (!this.reconnect || !retryable(error)) throw new CommandFailure(describeFailure(error, this.target))
        if (!outage) console.error(`dsmq: ${describeFailure(error, this.target)}; retrying (Ctrl-C to stop)`)
        outage = true
        await this.#wait(retryMs)
        retryMs = Math.min(retryMs * 2, MAX_RETRY_MS)
        continue
      }
      if (this.#stopping()) break
      if (outage) console.error("dsmq: connected again; going on where it stopped")
      outage = false
      retryMs = FIRST_RETRY_MS
      this.#state = "streaming"
      await this.#stream()
      if (this.#stopping()) break
      if (!this.reconnect) throw new CommandFailure(`lost the connection to ${address(this.target)}`)
      console.error(`dsmq: lost the connection to ${address(this.target)}; reconnecting (Ctrl-C to stop)`)
      outage = true
      this.#state = "waiting"
      await this.#wait(retryMs)
    }
    return ExitCode.ok
  }

  /** Opens every feed's connection and subscribes; throws if any fails. */
  async #connect(): Promise<void> {
    if (this.cursor === undefined && this.#feeds.some((feed) => feed.lastSeq === null)) {
      // Where "now" is: every feed starts there, so none misses what another prints.
      const probe = await connectTo(this.target)
      const { lastSeq } = (await probe.stats()) as { lastSeq: number }
      await probe.close()
      for (const feed of this.#feeds) feed.lastSeq ??= lastSeq
    }
    for (const feed of this.#feeds) {
      const start = this.cursor === undefined ? { from: feed.lastSeq! } : { cursor: this.cursor }
      const client = await connectTo(this.target, { ...start, putTimes: this.how.format === "json" })
      feed.client = client
      if (this.#stopping()) return
      if (feed.lastSeq !== null && feed === this.#feeds[0]) await this.#noticeRestart(client)
    }
    for (const feed of this.#feeds) {
      feed.subscriptions = []
      for (const pattern of feed.patterns) feed.subscriptions.push(await feed.client!.subscribe(pattern))
    }
  }

  /** A server restarted without --db numbers messages from 1 again: resume from its start. */
  async #noticeRestart(client: Client): Promise<void> {
    const { lastSeq } = (await client.stats()) as { lastSeq: number }
    const resumeAt = Math.max(...this.#feeds.map((feed) => feed.lastSeq ?? 0))
    if (lastSeq >= resumeAt) return
    console.error(
      `dsmq: the server numbers messages from ${lastSeq} now, not ${resumeAt}: it restarted without its messages; reading all it has`,
    )
    for (const feed of this.#feeds) feed.lastSeq = 0
    this.#printed.clear()
    this.#closeAll()
    throw new RestartedError()
  }

  /** Prints what the feeds deliver until a connection closes or the command stops. */
  async #stream(): Promise<void> {
    const clients = this.#feeds.map((feed) => feed.client!)
    const anyClosed = Promise.race(clients.map((client) => client.closed))
    const readers = this.#feeds.flatMap((feed) => feed.subscriptions.map((subscription) => this.#print(feed, subscription)))
    await Promise.race([anyClosed, this.#stopped.promise])
    // All feeds resume together: close the others, then print what each had received.
    this.#closeAll()
    await Promise.all(readers)
  }

  /** Prints one subscription's messages until its connection closes (it ends then, after what it holds). */
  async #print(feed: Feed, subscription: Subscription): Promise<void> {
    for await (const message of subscription) {
      // Stopping: the connection is closing; what it still holds is not printed.
      if (this.#stopping()) continue
      if (feed.lastSeq !== null) feed.lastSeq = message.seq
      if (message.seq <= (this.#printed.get(message.topic) ?? 0)) continue
      this.#printed.set(message.topic, message.seq)
      if (message.missed > 0) {
        console.error(`dsmq: ${message.missed} messages of ${message.topic} were removed by retention before they could be read`)
      }
      await this.#stdout.write(formatMessage(message, this.how))
      if (++this.#count >= this.limit) this.#stop()
    }
  }

  /** A method, not a field read, so the compiler does not assume the state stays as last set across awaits. */
  #stopping(): boolean {
    return this.#state === "stopping"
  }

  #stop(): void {
    if (this.#stopping()) {
      // A second Ctrl-C while closing: do not wait for anything.
      process.exit(ExitCode.ok)
    }
    this.#state = "stopping"
    this.#closeAll()
    this.#stopped.resolve()
  }

  #closeAll(): void {
    for (const feed of this.#feeds) {
      void feed.client?.close()
      feed.client = null
    }
  }

  /** Waits `ms`, or less if the command stops meanwhile. */
  async #wait(ms: number): Promise<void> {
    let timer: Timer | undefined
    await Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))), this.#stopped.promise])
    clearTimeout(timer)
  }
}

/** The server restarted and lost its messages: connect again at once, from its start. */
class RestartedError extends Error {}

/** Worth retrying: the server is away or busy; not: a bad token, a forbidden pattern, a bad name. */
function retryable(error: unknown): boolean {
  if (error instanceof RestartedError || error instanceof ConnectionClosedError) return true
  if (error instanceof DsmqError) return error.codeName === "cursor_busy"
  if (error instanceof CommandFailure) return /cannot connect|lost the connection|cursor_busy/.test(error.message)
  return (error as { code?: string } | null)?.code !== undefined
}

function address(target: Target): string {
  return `${target.host.includes(":") ? `[${target.host}]` : target.host}:${target.port}`
}
