import { expect, test } from "bun:test"
import { join } from "node:path"
import { Op } from "../../src/protocol/binary/constants.ts"
import { bulkTurn } from "../../src/server/bulk-turn.ts"
import { BinaryClient } from "../binary-client.ts"
import { eventually, request, startTestServer, TestClient } from "../helpers.ts"

test("a client flooding requests from another process does not keep others waiting for its whole flood", async () => {
  using server = startTestServer()
  await using other = await TestClient.connect(server.port)
  const count = 300_000
  const flooder = Bun.spawn(["bun", "run", join(import.meta.dir, "..", "flood-fixture.ts"), String(server.port), String(count)], {
    stdout: "ignore",
    stderr: "inherit",
  })
  try {
    await eventually(() => server.stats().puts > 0, "the flood to start")
    const samples: number[] = []
    for (let i = 0; i < 5; i++) {
      const before = server.stats().puts
      await other.ask({ action: "get", topic: "quiet" })
      samples.push(server.stats().puts - before)
    }
    // Each answer comes after a chunk or two of the flood (Bun reads up to about a megabyte at
    // a time, ~20,000 of these puts), not after most of it (over 100,000 without the yield).
    expect(Math.max(...samples)).toBeLessThan(50_000)
  } finally {
    flooder.kill()
    await flooder.exited
  }
}, 60_000)

test("a burst of requests in one write is decoded a slice at a time, and every request still runs, in order", async () => {
  using server = startTestServer()
  await using client = await TestClient.connect(server.port)
  await client.ask({ action: "get", topic: "burst" })
  const count = 20_000
  // About 1 MiB in one write: the server reads it in chunks of up to 512 KiB, ~9,000 requests each.
  client.sendRequests(Array.from({ length: count }, (_, i) => ({ action: "put", topic: "burst", message: String(i) })))
  let maxQueued = 0
  await eventually(() => {
    const stats = server.stats()
    maxQueued = Math.max(maxQueued, stats.queuedRequests)
    return stats.puts >= count
  }, "the burst of puts to run")
  // At most RUN_BUDGET (64) waiting plus one 16 KiB slice of them, not a whole chunk decoded at once.
  expect(maxQueued).toBeLessThan(1_000)

  client.sendRequests(Array.from({ length: count }, () => ({ action: "get", topic: "burst" })))
  const replies = (await client.waitForReplies(1 + count)).slice(1)
  expect(replies.map((reply) => reply.message)).toEqual(Array.from({ length: count }, (_, i) => String(i)))
}, 60_000)

test("readers asking for near-megabyte messages take turns with other clients, a few messages at a time", async () => {
  using server = startTestServer()
  const big = "x".repeat(900 * 1024)
  const perReader = 8
  await using writer = await TestClient.connect(server.port)
  const readers = await Promise.all(Array.from({ length: 4 }, () => TestClient.connect(server.port)))
  await using other = await TestClient.connect(server.port)
  try {
    for (const reader of readers) await reader.ask({ action: "get", topic: "sync" })
    await other.ask({ action: "get", topic: "quiet" })
    writer.sendRequests(
      Array.from({ length: perReader }, (_, i) => ({ action: "put", topic: "big", message: big, ack: i === perReader - 1 })),
    )
    await writer.waitForReplies(1)
    for (const reader of readers) reader.pauseReading()

    const before = server.stats().bytesDelivered
    for (const reader of readers) reader.sendRequests(Array.from({ length: perReader }, () => ({ action: "get", topic: "big" })))
    await other.ask({ action: "get", topic: "quiet" })
    const deliveredMeanwhile = (server.stats().bytesDelivered - before) / big.length
    // One message per reader per turn of the event loop, so a couple of turns' worth; replying
    // until each reader's 4 MiB outbound cap was full delivered 16 or more first.
    expect(deliveredMeanwhile).toBeLessThan(12)

    for (const reader of readers) reader.resumeReading()
    for (const reader of readers) {
      const replies = (await reader.waitForReplies(1 + perReader)).slice(1)
      expect(replies.map((reply) => reply.message === big)).toEqual(Array(perReader).fill(true))
    }
  } finally {
    for (const reader of readers) await reader[Symbol.asyncDispose]()
  }
}, 60_000)

test("a crowd asking for large messages at once is paced server-wide, a few a turn, and every reader still gets each, in order", async () => {
  using server = startTestServer()
  const perReader = 4
  const message = (i: number) => `${i}:`.padEnd(300 * 1024, "x")
  const framings = ["json-stream", "json-header"] as const
  const readers = await Promise.all(Array.from({ length: 24 }, (_, i) => TestClient.connect(server.port, framings[i % 2])))
  const subscribers = await Promise.all(Array.from({ length: 4 }, () => BinaryClient.connect(server.port)))
  await using writer = await TestClient.connect(server.port)
  await using other = await TestClient.connect(server.port)
  const originalWait = bulkTurn.wait
  let waits = 0
  try {
    for (const [i, reader] of readers.entries()) await reader.ask({ action: "get", topic: "sync" }, framings[i % 2])
    for (const subscriber of subscribers) expect((await subscriber.call({ op: Op.subscribe, requestId: 7, topic: "crowd" })).op).toBe(Op.ok)
    await other.ask({ action: "get", topic: "quiet" })
    writer.sendRequests(
      Array.from({ length: perReader }, (_, i) => ({ action: "put", topic: "crowd", message: message(i), ack: i === perReader - 1 })),
    )
    await writer.waitForReplies(1)
    // Large pushes go through catch-up, paced the same way: every subscriber gets each, in order.
    for (const subscriber of subscribers) {
      const pushes = await subscriber.waitForFrames(1 + perReader)
      const payloads = pushes.flatMap((frame) => (frame.op === Op.deliver ? [Buffer.from(frame.payload).toString()] : []))
      expect(payloads).toEqual(Array.from({ length: perReader }, (_, i) => message(i)))
    }
    for (const reader of readers) reader.pauseReading()

    bulkTurn.wait = (resume) => {
      waits++
      originalWait.call(bulkTurn, resume)
    }
    const before = server.stats().bytesDelivered
    // All in the kernel before the server's next turn: 24 readers' first gets arrive together.
    for (const [i, reader] of readers.entries())
      reader.sendRequests(
        Array.from({ length: perReader }, () => ({ action: "get", topic: "crowd" })),
        framings[i % 2],
      )
    await other.ask({ action: "get", topic: "quiet" })
    const deliveredMeanwhile = (server.stats().bytesDelivered - before) / message(0).length
    // About 1 MiB of them a turn (4 of 300 KiB); without the server-wide pacing every reader's
    // first get ran in the first turn (24 or more before the quiet get was answered).
    expect(deliveredMeanwhile).toBeLessThan(20)
    expect(waits).toBeGreaterThan(0)

    for (const reader of readers) reader.resumeReading()
    for (const reader of readers) {
      const replies = (await reader.waitForReplies(1 + perReader)).slice(1)
      expect(replies.map((reply) => reply.message)).toEqual(Array.from({ length: perReader }, (_, i) => message(i)))
    }
  } finally {
    bulkTurn.wait = originalWait
    for (const reader of readers) await reader[Symbol.asyncDispose]()
    for (const subscriber of subscribers) await subscriber[Symbol.asyncDispose]()
  }
}, 60_000)

for (const [after, what] of [
  [150, "the last 16 KiB slice of the burst is still undecoded"],
  [1_000, "more requests than PAUSE_AT_QUEUED (256) wait behind it"],
] as const) {
  test(`a connection held by a get_wait still sees its client close when ${what}`, async () => {
    using server = startTestServer()
    await using client = await TestClient.connect(server.port)
    await client.ask({ action: "get", topic: "held" })
    expect(server.stats().connections).toBe(1)
    // More than a turn's budget of puts, a long get_wait, then more puts (16 KiB is ~110 of them).
    const puts = (topic: string, count: number) =>
      Array.from({ length: count }, (_, i) => ({ action: "put", topic, message: `${i}`.padEnd(100, ".") }))
    client.sendRequests([...puts("before", 100), { action: "get_wait", topic: "held", timeout: 600 }, ...puts("after", after)])
    await eventually(() => server.stats().puts >= 100 && server.stats().queuedRequests > 0, "the get_wait to hold the connection")
    client.end()
    // Seen only if the server goes on reading: Bun does not tell a paused socket of a FIN.
    await eventually(() => server.stats().connections === 0, "the server to let go of the closed connection")
  }, 60_000)
}

const MiB = 1024 * 1024

for (const { title, message, count, reached, limit } of [
  {
    // HELD_READ_BYTES (1 MiB) undecoded, plus what one read can bring (Bun reads up to 512 KiB).
    title: "behind a held get_wait, a client is read up to about a megabyte, then held back; nothing it sent is lost",
    message: (i: number) => `${i}`.padEnd(200, "."),
    count: 20_000, // about 4.5 MiB
    reached: 1 * MiB,
    limit: 2 * MiB,
  },
  {
    // MAX_QUEUED_BYTES (1 MiB) of decoded requests and one more, HELD_READ_BYTES undecoded, one
    // read of up to 512 KiB and a partial request: under 5 MiB, not the 20 MiB sent.
    title: "requests held back are bounded in bytes too: large puts behind a held get_wait do not pile up",
    message: () => "b".repeat(512 * 1024),
    count: 40, // 20 MiB, well under PAUSE_AT_QUEUED requests
    reached: 2 * MiB,
    limit: 5 * MiB,
  },
]) {
  test(title, async () => {
    using server = startTestServer()
    await using client = await TestClient.connect(server.port)
    await using other = await TestClient.connect(server.port)
    await client.ask({ action: "get", topic: "held" })
    const puts = Array.from({ length: count }, (_, i) => ({ action: "put", topic: "behind", message: message(i) }))
    client.sendRequests([{ action: "get_wait", topic: "held", timeout: 600 }, ...puts])
    // The most the connection held: once it has read what it may, and for 2,000 turns after.
    let maxBuffered = 0
    const sample = (): number => (maxBuffered = Math.max(maxBuffered, server.stats().maxConnectionBufferedBytes))
    await eventually(() => sample() >= reached, "the server to read what it may behind the get_wait")
    for (let turn = 0; turn < 2_000; turn++) {
      sample()
      await new Promise((resolve) => setImmediate(resolve))
    }
    expect(maxBuffered).toBeLessThan(limit)
    expect(server.stats().puts).toBe(0)

    other.send(request({ action: "put", topic: "held", message: "go" }))
    expect((await client.waitForReplies(2))[1]).toMatchObject({ message: "go" })
    await eventually(() => server.stats().puts === 1 + count, "every put behind the get_wait to run")
  }, 60_000)
}
