import { type Client, connect, type Subscription } from "../../src/client.ts"
import { Outbound } from "../../src/io/outbound.ts"
import { withTimeout } from "../lib/wait.ts"

/** How long the JSON poller waits after a round trip that found nothing. */
export const POLL_IDLE_MS = 10

export interface LoadTally {
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

export async function loadMain(argv: readonly string[]): Promise<void> {
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
export class JsonPoller {
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
