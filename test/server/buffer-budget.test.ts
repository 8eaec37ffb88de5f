/**
 * The server-wide budget for bytes held for clients (--max-buffered-bytes): the biggest holders
 * are paused, new connections refused, and everything resumes, with nothing lost, once the
 * clients read again.
 */
import { describe, expect, test } from "bun:test"
import { Op } from "../../src/protocol/binary/constants.ts"
import type { BinaryReply } from "../../src/protocol/binary/reply.ts"
import { type BudgetHolder, BufferBudget, MAX_PAUSE_MS, RESUMED_PER_TURN, SMALL_HOLDER_BYTES } from "../../src/server/buffer-budget.ts"
import { TURN_OUTPUT_BYTES } from "../../src/server/flow-control.ts"
import type { RunningServer } from "../../src/start-server.ts"
import { BinaryClient } from "../binary-client.ts"
import { req } from "../binary-frames.ts"
import { eventually, request, startTestServer, TestClient } from "../helpers.ts"

class FakeHolder implements BudgetHolder {
  paused = false
  stalled = false
  budgetPause(paused: boolean): void {
    this.paused = paused
  }
  budgetStalled(): void {
    this.stalled = true
  }
}

// Holders of a few hundred KiB: above SMALL_HOLDER_BYTES, so they stay paused until they shrink below it.
const K = 1024

describe("BufferBudget", () => {
  test("under the budget nothing is paused and connections are admitted", () => {
    const budget = new BufferBudget(1000 * K)
    const [a, b] = [new FakeHolder(), new FakeHolder()]
    budget.report(a, 600 * K)
    budget.report(b, 400 * K)
    expect(budget.totalBytes).toBe(1000 * K)
    expect(budget.admits).toBe(true)
    expect([a.paused, b.paused]).toEqual([false, false])
  })

  test("past the budget the biggest holders are paused until the running ones hold half of it", () => {
    const budget = new BufferBudget(1000 * K)
    const [small, middle, big] = [new FakeHolder(), new FakeHolder(), new FakeHolder()]
    budget.report(small, 100 * K)
    budget.report(middle, 300 * K)
    budget.report(big, 500 * K)
    expect(budget.pausedCount).toBe(0)
    budget.report(big, 700 * K) // 1,100 in all: pausing big leaves 400 running, within half
    expect([small.paused, middle.paused, big.paused]).toEqual([false, false, true])
    expect(budget.admits).toBe(false)
    budget.report(middle, 450 * K) // 1,250: running 550 is past half, so middle goes too
    expect([small.paused, middle.paused, big.paused]).toEqual([false, true, true])
    expect(budget.pausedCount).toBe(2)
  })

  test("every paused holder resumes once the total is back under three quarters", () => {
    const budget = new BufferBudget(1000 * K)
    const [reader, other] = [new FakeHolder(), new FakeHolder()]
    budget.report(other, 100 * K)
    budget.report(reader, 1000 * K)
    expect(reader.paused).toBe(true)
    budget.report(reader, 700 * K) // 800 in all: under the budget, over three quarters
    expect(reader.paused).toBe(true)
    expect(budget.admits).toBe(true)
    budget.report(reader, 600 * K) // 700 in all
    expect(reader.paused).toBe(false)
    expect(budget.pausedCount).toBe(0)
  })

  test("paused holders resume RESUMED_PER_TURN a turn, longest paused first, while the total stays under three quarters", () => {
    const turns: (() => void)[] = []
    const budget = new BufferBudget(
      10_200 * K,
      MAX_PAUSE_MS,
      () => 0,
      (task) => turns.push(task),
    )
    const holders = Array.from({ length: 40 }, () => new FakeHolder())
    for (const holder of holders) budget.report(holder, 300 * K)
    const paused = holders.filter((holder) => holder.paused)
    const running = holders.filter((holder) => !holder.paused)
    expect(paused.length).toBeGreaterThan(RESUMED_PER_TURN)
    // The running ones empty: what is left is under three quarters.
    for (const holder of running) budget.report(holder, 0)
    expect(budget.totalBytes).toBeLessThan(7_650 * K - K)
    const resumed = () => paused.filter((holder) => !holder.paused)
    // The longest paused first.
    expect(resumed()).toEqual(paused.slice(0, RESUMED_PER_TURN))
    // More reports in the same turn resume no more.
    budget.report(new FakeHolder(), K)
    expect(resumed().length).toBe(RESUMED_PER_TURN)
    // The next turns resume the rest, a batch each.
    turns.shift()!()
    expect(resumed().length).toBe(Math.min(paused.length, RESUMED_PER_TURN * 2))
    for (let turn = 0; turn < 10 && turns.length > 0; turn++) turns.shift()!()
    expect(resumed().length).toBe(paused.length)
    expect(budget.pausedCount).toBe(0)
  })

  test("a paused holder that does not shrink for MAX_PAUSE_MS is closed; one that shrinks starts its time again", () => {
    let now = 0
    const budget = new BufferBudget(1000 * K, MAX_PAUSE_MS, () => now)
    const [stuck, slow, other] = [new FakeHolder(), new FakeHolder(), new FakeHolder()]
    budget.report(other, 200 * K)
    budget.report(stuck, 800 * K)
    budget.report(slow, 700 * K)
    expect([stuck.paused, slow.paused, other.paused]).toEqual([true, true, false])
    now = MAX_PAUSE_MS / 2
    budget.report(slow, 650 * K) // it reads, slowly
    budget.closeStalled()
    now = MAX_PAUSE_MS
    budget.closeStalled()
    expect([stuck.stalled, slow.stalled]).toEqual([true, false])
    // Forgotten when closed: what it held is free, and the rest resumes.
    expect(budget.totalBytes).toBe(850 * K)
    expect(budget.pausedCount).toBe(1)
    now = MAX_PAUSE_MS * 2
    budget.closeStalled()
    expect(slow.stalled).toBe(true)
    expect([budget.totalBytes, budget.pausedCount, budget.admits]).toEqual([200 * K, 0, true])
    budget.close()
  })

  test("past the budget, any holder whose bytes waiting on its client grow past a small holder's is paused; queued requests do not count", () => {
    const budget = new BufferBudget(1000 * K)
    const [stuck, reader, writer, light] = [new FakeHolder(), new FakeHolder(), new FakeHolder(), new FakeHolder()]
    budget.report(stuck, 1100 * K)
    expect(stuck.paused).toBe(true)
    budget.report(reader, 100 * K) // replies it has not taken
    budget.report(writer, 200 * K, 0) // puts received, waiting to run: the server drains them itself
    budget.report(light, 10 * K)
    expect([reader.paused, writer.paused, light.paused]).toEqual([true, false, false])
  })

  test("a paused holder that shrinks below a small holder's size runs again, while the others stay paused", () => {
    const budget = new BufferBudget(1000 * K)
    const [stuck, reader] = [new FakeHolder(), new FakeHolder()]
    budget.report(stuck, 1100 * K)
    budget.report(reader, 100 * K)
    expect([stuck.paused, reader.paused]).toEqual([true, true])
    budget.report(reader, 10 * K)
    expect([stuck.paused, reader.paused]).toEqual([true, false])
    expect(budget.pausedCount).toBe(1)
  })

  test("a holder that closes frees what it held, paused or not", () => {
    const budget = new BufferBudget(1000 * K)
    const [gone, other] = [new FakeHolder(), new FakeHolder()]
    budget.report(other, 200 * K)
    budget.report(gone, 1200 * K)
    expect(gone.paused).toBe(true)
    budget.forget(gone)
    // Gone, not resumed: resuming would let it report (and be counted) again.
    expect(gone.paused).toBe(true)
    expect(budget.totalBytes).toBe(200 * K)
    expect(budget.pausedCount).toBe(0)
    expect(budget.admits).toBe(true)
    budget.report(other, 0)
    expect(budget.totalBytes).toBe(0)
  })
})

const MiB = 1024 * 1024
const MESSAGE_BYTES = 600 * 1024
// Enough replies per reader to fill the kernel's loopback buffers and then the server's queues.
const GETS = 60
const bigMessage = (i: number): string => `${i}:`.padEnd(MESSAGE_BYTES, "x")
/**
 * Readers that never read. Each ends up holding only what its kernel buffers did not take of
 * its last reply, which depends on the machine's TCP buffer sizes (one kernel took ~4.3 MB a
 * socket, leaving ~287 KiB each): enough of them that together they pass a 1 MiB budget as
 * long as each rest is over 128 KiB (three needed over 341 KiB each).
 */
const READERS = 8
/**
 * The budget is passed by at most, for each connection running when it was passed, a small
 * holder's size, a turn of output and a frame (buffer-budget.ts); a bound far below what the
 * readers asked for (READERS x GETS replies).
 */
const overshootBound = (largestFrame: number): number => MiB + READERS * (SMALL_HOLDER_BYTES + TURN_OUTPUT_BYTES + largestFrame)

/** Puts GETS big messages; READERS readers ask for all of them and never read, until the budget pauses one of them. */
async function readersThatDoNotRead(server: RunningServer, writer: TestClient): Promise<TestClient[]> {
  const readers = await Promise.all(Array.from({ length: READERS }, () => TestClient.connect(server.port)))
  for (let i = 0; i < GETS; i++) writer.send(request({ action: "put", topic: "big", message: bigMessage(i) }))
  await writer.ask({ action: "get", topic: "sync" })
  for (const reader of readers) {
    reader.pauseReading()
    reader.sendRequests(Array(GETS).fill({ action: "get", topic: "big" }))
  }
  await eventually(() => server.stats().budgetPausedConnections >= 1, "the budget to pause the readers", 5_000_000)
  return readers
}

test("readers holding most of the budget are paused, new connections are refused, and all resume with nothing lost", async () => {
  const logged: string[] = []
  using server = startTestServer({ limits: { maxBufferedBytes: MiB }, log: (line) => logged.push(line) })
  await using writer = await TestClient.connect(server.port)
  await using good = await TestClient.connect(server.port)
  const readers = await readersThatDoNotRead(server, writer)
  const paused = server.stats()
  expect(paused.bufferedBytes).toBeGreaterThan(MiB)
  expect(paused.maxBufferedBytes).toBe(MiB)
  // Paused readers read nothing and run nothing more, so the total stops growing.
  expect(paused.bufferedBytes).toBeLessThan(overshootBound(MESSAGE_BYTES))

  // A client connected before is served; a new one is refused with a logged reason.
  good.send(request({ action: "put", topic: "alive", message: "still here" }))
  expect(await good.ask({ action: "get", topic: "alive" })).toMatchObject({ message: "still here" })
  const refused = await TestClient.connect(server.port)
  await refused.closed
  expect(server.stats().errors.limit_exceeded).toBeGreaterThanOrEqual(1)
  expect(logged.some((line) => line.includes("past --max-buffered-bytes"))).toBe(true)
  const metrics = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text()
  expect(metrics).toContain(`dsmq_budget_paused_connections ${server.stats().budgetPausedConnections}`)
  expect(metrics).toContain(`dsmq_buffered_bytes_limit ${MiB}`)
  expect(server.stats().bufferedBytes).toBeLessThan(overshootBound(MESSAGE_BYTES))

  // The readers read again: they resume, get every reply in order, and the server admits again.
  for (const reader of readers) reader.resumeReading()
  for (const reader of readers) {
    const replies = await reader.waitForReplies(GETS)
    const wrong = replies.filter((reply, i) => reply.message !== bigMessage(i) || reply.seq !== i + 1)
    expect(wrong).toEqual([])
    await reader[Symbol.asyncDispose]()
  }
  expect(server.stats().budgetPausedConnections).toBe(0)
  await using later = await TestClient.connect(server.port)
  later.send(request({ action: "put", topic: "alive", message: "admitted again" }))
  expect(await later.ask({ action: "get", topic: "alive" })).toMatchObject({ message: "admitted again" })
}, 60_000)

const COUNT = 2000
const message = (i: number): string => `${i}:`.padEnd(16 * 1024, "x")

test("a subscriber paused by the budget catches up from the store: every message, in order, none missed", async () => {
  using server = startTestServer({ limits: { maxBufferedBytes: MiB } })
  await using subscriber = await BinaryClient.connect(server.port)
  await subscriber.call(req.subscribe(1, "feed"))
  subscriber.pause()
  await using writer = await TestClient.connect(server.port)
  writer.sendRequests(Array.from({ length: COUNT }, (_, i) => ({ action: "put", topic: "feed", message: message(i) })))
  await writer.ask({ action: "get", topic: "sync" })
  await eventually(() => server.stats().budgetPausedConnections === 1, "the budget to pause the subscriber")
  expect(server.stats().bufferedBytes).toBeLessThan(MiB + 17 * 1024)

  subscriber.resume()
  await subscriber.waitUntil(() => subscriber.frames.filter((frame) => frame.op === Op.deliver).length >= COUNT, `${COUNT} deliveries`)
  const deliveries = subscriber.frames.filter((frame) => frame.op === Op.deliver) as Extract<BinaryReply, { seq: number; missed: number }>[]
  expect(deliveries.map((frame) => frame.seq)).toEqual(Array.from({ length: COUNT }, (_, i) => i + 1))
  expect(deliveries.every((frame) => frame.missed === 0)).toBe(true)
  expect(new TextDecoder().decode(deliveries[COUNT - 1]!.payload)).toBe(message(COUNT - 1))
  expect(server.stats().budgetPausedConnections).toBe(0)
}, 60_000)

test("readers paused by the budget that never read are closed after the pause limit; the server admits again", async () => {
  const logged: string[] = []
  using server = startTestServer({ limits: { maxBufferedBytes: MiB, budgetPauseMs: 100 }, log: (line) => logged.push(line) })
  await using writer = await TestClient.connect(server.port)
  await using good = await TestClient.connect(server.port)
  const readers = await readersThatDoNotRead(server, writer)
  // Nothing is read: after the pause limit each paused reader is closed, and the budget frees what it held.
  await eventually(() => server.stats().budgetPausedConnections === 0, "the stalled readers to be closed", 5_000_000)
  const closed = 2 + READERS - server.stats().connections
  expect(closed).toBeGreaterThanOrEqual(1)
  expect(server.stats().errors.limit_exceeded).toBe(closed)
  expect(logged.filter((line) => line.includes("unread, past --max-buffered-bytes"))).toHaveLength(closed)
  good.send(request({ action: "put", topic: "alive", message: "still here" }))
  expect(await good.ask({ action: "get", topic: "alive" })).toMatchObject({ message: "still here" })
  await using later = await TestClient.connect(server.port)
  later.send(request({ action: "put", topic: "alive", message: "admitted" }))
  expect(await later.ask({ action: "get", topic: "alive" })).toMatchObject({ message: "admitted" })
  for (const reader of readers) reader.terminate()
}, 60_000)

/** Sends an HTTP POST's head and `sent` bytes of a `declared`-byte body, and no more. */
async function partialPost(port: number, declared: number, sent: number): Promise<TestClient> {
  const client = await TestClient.connect(port)
  client.send(`POST /topics/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${declared}\r\n\r\n`)
  client.send(new Uint8Array(sent).fill(120))
  return client
}

test("HTTP bodies count toward the budget: past it new bodies get 503, and bodies stalled past the pause limit get 503 too", async () => {
  using server = startTestServer({ limits: { maxBufferedBytes: MiB, budgetPauseMs: 200 } })
  const url = `http://127.0.0.1:${server.httpPort}/topics/uploads`
  const uploads = [await partialPost(server.httpPort!, 900 * 1024, 800 * 1024), await partialPost(server.httpPort!, 900 * 1024, 800 * 1024)]
  await eventually(() => server.stats().bufferedBytes > MiB, "the two bodies to be held", 5_000_000)
  const refused = await fetch(url, { method: "POST", body: "small" })
  expect(refused.status).toBe(503)
  expect(await refused.json()).toMatchObject({ error: { code: "limit_exceeded" } })
  // Neither client sends the rest: both are answered 503 once their pause outlasts the limit.
  for (const upload of uploads) {
    await upload.waitUntil(() => upload.received.toString().startsWith("HTTP/1.1 503"), "a 503 for the stalled body")
    upload.terminate()
  }
  await eventually(() => server.stats().bufferedBytes === 0, "the stalled bodies to be forgotten", 5_000_000)
  const accepted = await fetch(url, { method: "POST", body: "after" })
  expect(accepted.status).toBe(201)
}, 60_000)

test("paused readers that vanish free all they held", async () => {
  using server = startTestServer({ limits: { maxBufferedBytes: MiB } })
  await using writer = await TestClient.connect(server.port)
  const readers = await readersThatDoNotRead(server, writer)
  for (const reader of readers) reader.terminate()
  await eventually(() => server.stats().connections === 1, "the readers' connections to close", 5_000_000)
  await eventually(() => server.stats().bufferedBytes < 64 * 1024, "what they held to be freed", 5_000_000)
  expect(server.stats().budgetPausedConnections).toBe(0)
}, 60_000)
