/**
 * Isolation: abusive clients, each in its own process (test/abuse-fixture.ts), all at once,
 * while well-behaved clients work. The well-behaved clients must get every answer right, lose
 * nothing and see it in order; the server must stay up, keep each connection's buffers bounded,
 * and return to its baseline once the abusers stop. No wall-clock latency is asserted here:
 * bench/isolation.ts measures that.
 */
import { expect, test } from "bun:test"
import { join } from "node:path"
import { connect, type Message } from "../../src/client.ts"
import { DEFAULT_MAX_MESSAGE_BYTES, MAX_OUTBOUND_BYTES } from "../../src/start-server.ts"
import { eventually, request, startTestServer, TestClient } from "../helpers.ts"

const FIXTURE = join(import.meta.dir, "..", "abuse-fixture.ts")
const MODES = ["flood", "never-read", "garbage", "connect-loop"] as const
/** Round trips each well-behaved client makes under abuse, and requests in each. */
const ROUNDS = 20
const PIPELINE = 5
/** Answers each well-behaved client checks, and pushes the subscriber receives. */
const ROUND_TRIPS = ROUNDS * PIPELINE

/** One abusive client process: started, seen to be active, stopped, its counters read. */
class Abuser {
  readonly #child
  readonly #lines: string[] = []
  readonly #reading: Promise<void>
  #newLine: () => void = () => {}

  constructor(
    readonly mode: string,
    port: number,
  ) {
    // --seconds bounds the child's life even if this test dies without stopping it.
    this.#child = Bun.spawn([process.execPath, "run", FIXTURE, mode, String(port), "--seconds", "30"], {
      stdout: "pipe",
      stderr: "inherit",
    })
    this.#reading = this.#read()
  }

  async #read(): Promise<void> {
    const decoder = new TextDecoder()
    let text = ""
    for await (const chunk of this.#child.stdout) {
      text += decoder.decode(chunk, { stream: true })
      let end: number
      while ((end = text.indexOf("\n")) >= 0) {
        this.#lines.push(text.slice(0, end))
        text = text.slice(end + 1)
        this.#newLine()
      }
    }
    this.#newLine()
  }

  get running(): boolean {
    return this.#child.exitCode === null
  }

  /** Resolves once the fixture says its abuse is under way; rejects if it exits first or takes over 10 s. */
  async active(): Promise<void> {
    const deadline = Date.now() + 10_000
    while (!this.#lines.includes("active")) {
      if (!this.running) throw new Error(`${this.mode} exited before it was active: ${this.#lines.join(" | ")}`)
      if (Date.now() > deadline) throw new Error(`${this.mode} was not active after 10 s`)
      // Wakes on the fixture's next line or on its exit, whichever comes first.
      await Promise.race([new Promise<void>((resolve) => (this.#newLine = resolve)), this.#child.exited])
    }
  }

  /** Stops the process (SIGTERM, SIGKILL after 2 s) and returns its counters. */
  async stop(): Promise<Record<string, number | string>> {
    this.#child.kill("SIGTERM")
    const killer = setTimeout(() => this.#child.kill("SIGKILL"), 2000)
    await this.#child.exited
    clearTimeout(killer)
    await this.#reading
    const summary = this.#lines.find((line) => line.startsWith("{"))
    return summary === undefined ? {} : (JSON.parse(summary) as Record<string, number | string>)
  }
}

test("abusive clients (flood, never-read, garbage, connect-loop) cost well-behaved clients nothing but time", async () => {
  using server = startTestServer()
  /** Errors for bad input (not limit_exceeded, which the connect loop's bursts cause). */
  const garbageErrors = (): number => {
    const { errors } = server.stats()
    return errors.malformed_frame + errors.bad_json + errors.not_an_object + errors.unknown_action + errors.bad_field + errors.too_large
  }

  // The well-behaved clients connect first (the connect loop may fill the connection table).
  await using binary = await connect({ port: server.port, retries: 0 })
  await using publisher = await connect({ port: server.port, retries: 0 })
  await using subscriber = await connect({ port: server.port, retries: 0 })
  await using json = await TestClient.connect(server.port)
  const feed = await subscriber.subscribe("good/feed")
  expect(await json.ask({ action: "get", topic: "good/json" })).toEqual({ message: "" })
  const baseline = server.stats()
  expect(baseline.connections).toBe(4)

  // Per-connection buffers, sampled throughout.
  let maxBuffered = 0
  let maxQueued = 0
  let minConnections = Infinity
  let sampling = true
  const sample = (): void => {
    const stats = server.stats()
    maxBuffered = Math.max(maxBuffered, stats.maxConnectionBufferedBytes)
    maxQueued = Math.max(maxQueued, stats.queuedRequests)
    if (sampling) minConnections = Math.min(minConnections, stats.connections)
  }
  const sampler = setInterval(sample, 5)

  const abusers = MODES.map((mode) => new Abuser(mode, server.port))
  const summaries: Record<string, Record<string, number | string>> = {}
  const received: Message[] = []
  try {
    await Promise.all(abusers.map((abuser) => abuser.active()))
    // The server has seen each abuse: half-open connections held, requests held back for a
    // reader that does not read, garbage refused, puts flooding in.
    await eventually(() => {
      const stats = server.stats()
      return stats.connections >= baseline.connections + 64 && stats.queuedRequests > 0 && garbageErrors() > 0 && stats.puts > 10_000
    }, "every abuse to reach the server")
    minConnections = Infinity
    const before = server.stats()

    // Round trips: puts and gets in one write, each get answered with exactly the message put
    // before it. A flooded server takes a whole turn of its event loop per round trip, so
    // each round trip carries several requests.
    const binaryLoop = async (): Promise<void> => {
      for (let round = 0; round < ROUNDS; round++) {
        const pairs = Array.from({ length: PIPELINE }, (_, j) => {
          const text = `b${round * PIPELINE + j}`
          return Promise.all([binary.putAck("good/binary", text), binary.get("good/binary"), text] as const)
        })
        for (const [seq, message, text] of await Promise.all(pairs)) {
          expect(message?.text()).toBe(text)
          expect(message?.seq).toBe(seq)
        }
      }
    }
    const jsonLoop = async (): Promise<void> => {
      let lastSeq = 0
      for (let round = 0; round < ROUNDS; round++) {
        const texts = Array.from({ length: PIPELINE }, (_, j) => `j${round * PIPELINE + j}`)
        const count = json.replies.length + PIPELINE
        json.sendRequests(
          texts.flatMap((text) => [
            { action: "put", topic: "good/json", message: text },
            { action: "get", topic: "good/json" },
          ]),
        )
        const replies = (await json.waitForReplies(count)).slice(count - PIPELINE)
        expect(replies).toEqual(texts.map((text) => ({ message: text, seq: expect.any(Number) })))
        for (const reply of replies) {
          expect(reply.seq!).toBeGreaterThan(lastSeq)
          lastSeq = reply.seq!
        }
      }
    }
    const publish = async (): Promise<void> => {
      for (let round = 0; round < ROUNDS; round++) {
        for (let j = 0; j < PIPELINE; j++) publisher.put("good/feed", `p${round * PIPELINE + j}`)
        await publisher.ping()
      }
    }
    const receive = async (): Promise<void> => {
      for await (const message of feed) {
        received.push(message)
        if (received.length === ROUND_TRIPS) break
      }
    }
    await Promise.all([binaryLoop(), jsonLoop(), publish(), receive()])

    // The abuse lasted all along: every abuser is still at it, and the server saw it go on.
    const after = server.stats()
    for (const abuser of abusers) expect({ mode: abuser.mode, running: abuser.running }).toEqual({ mode: abuser.mode, running: true })
    // (The flood gets a turn of 64 puts per connection between the good clients' turns, so a
    // few thousand puts while they ran.)
    expect(after.puts - before.puts).toBeGreaterThan(3 * ROUND_TRIPS + 1_000)
    expect(minConnections).toBeGreaterThanOrEqual(baseline.connections + 64)

    // Pushes: every one, in order, once.
    expect(received.map((message) => message.text())).toEqual(Array.from({ length: ROUND_TRIPS }, (_, i) => `p${i}`))
    for (let i = 1; i < received.length; i++) expect(received[i]!.seq).toBeGreaterThan(received[i - 1]!.seq)
    expect(received.every((message) => message.missed === 0)).toBe(true)
  } catch (error) {
    clearInterval(sampler)
    throw error
  } finally {
    sampling = false
    for (const abuser of abusers) summaries[abuser.mode] = await abuser.stop()
  }

  // Each abuser did what it is for.
  expect(Number(summaries.flood!.floodJsonBytes) + Number(summaries.flood!.floodBinaryBytes)).toBeGreaterThan(1 << 20)
  expect(Number(summaries["never-read"]!.cycles)).toBeGreaterThanOrEqual(1)
  expect(Number(summaries.garbage!.closedByServer)).toBeGreaterThan(0)
  expect(Number(summaries["connect-loop"]!.churnReset ?? 0) + Number(summaries["connect-loop"]!.churnEnded ?? 0)).toBeGreaterThan(50)

  // Back to the baseline: only the well-behaved connections, nothing held back or buffered.
  await eventually(() => {
    const stats = server.stats()
    return stats.connections === baseline.connections && stats.queuedRequests === 0 && stats.maxConnectionBufferedBytes === 0
  }, "the server to return to its baseline")
  clearInterval(sampler)
  sample()
  // Bounded throughout: the outbound cap, plus the one reply that crossed it, plus at most one
  // unfinished request.
  expect(maxBuffered).toBeLessThanOrEqual(MAX_OUTBOUND_BYTES + 2 * DEFAULT_MAX_MESSAGE_BYTES)
  expect(maxQueued).toBeGreaterThan(0)

  // Alive and serving, old connections and new.
  expect(await binary.get("good/binary")).toBeNull()
  json.send(request({ action: "put", topic: "good/json", message: "after" }))
  expect(await json.ask({ action: "get", topic: "good/json" })).toMatchObject({ message: "after" })
  await using newcomer = await connect({ port: server.port, retries: 0 })
  const seq = await newcomer.putAck("good/feed", "after")
  expect(seq).toBeGreaterThan(received.at(-1)!.seq)
  expect((await newcomer.get("good/feed"))?.text()).toBe("after")
}, 30_000)
