/**
 * A subscriber that stops reading must not hold anyone up, must not make the server buffer
 * without bound, and must still get every message, in order, once it reads again.
 */
import { expect, test } from "bun:test"
import { HEADER_BYTES, Op } from "../../src/protocol/binary/constants.ts"
import type { BinaryReply } from "../../src/protocol/binary/reply.ts"
import { MAX_OUTBOUND_BYTES } from "../../src/start-server.ts"
import { BinaryClient } from "../binary-client.ts"
import { entry, rep, req } from "../binary-frames.ts"
import { startTestServer } from "../helpers.ts"

const TOTAL = 100_000
const BATCH = 1_000
const TOPIC = "firehose"
const PAYLOAD_BYTES = 200

/** Message i's payload: its number, then filler, so a wrong or repeated one is visible. */
function payload(i: number): Uint8Array {
  const bytes = new Uint8Array(PAYLOAD_BYTES).fill(0x61 + (i % 26))
  new DataView(bytes.buffer).setUint32(0, i)
  return bytes
}

/** Checks each DELIVER as it arrives (100,000 frames are not kept) and counts them. */
class DeliveryChecker {
  received = 0
  firstSeq = 0
  lastSeq = 0
  problems: string[] = []

  onFrame = (reply: BinaryReply): void => {
    // Replies (WELCOME, OK, PONG) are kept by the client and checked where they are awaited.
    if (reply.op !== Op.deliver) return
    const i = this.received++
    if (i === 0) this.firstSeq = reply.seq
    this.lastSeq = reply.seq
    const expected = payload(i)
    const samePayload = reply.payload.length === expected.length && reply.payload.every((byte, k) => byte === expected[k])
    if (reply.seq !== this.firstSeq + i || reply.topic !== TOPIC || !samePayload || reply.requestId !== 0) {
      // A handful is enough to diagnose; stop collecting after that.
      if (this.problems.length < 5) this.problems.push(`delivery ${i}: seq ${reply.seq}, topic ${reply.topic}`)
    }
  }
}

test("a paused subscriber holds no one up, stays bounded, then catches up with no gap or duplicate", async () => {
  using server = startTestServer()
  const slowChecker = new DeliveryChecker()
  const fastChecker = new DeliveryChecker()
  await using slow = await BinaryClient.connect(server.port, { keepPushes: false, onFrame: slowChecker.onFrame })
  await using fast = await BinaryClient.connect(server.port, { keepPushes: false, onFrame: fastChecker.onFrame })
  await using publisher = await BinaryClient.connect(server.port)

  for (const client of [slow, fast]) {
    const id = client.nextId()
    expect(await client.call(req.subscribe(id, TOPIC))).toEqual(rep.ok(id))
  }
  slow.pause()

  // The largest frame the server queues for a subscriber: one DELIVER.
  const frameBytes = HEADER_BYTES + 8 + 2 + TOPIC.length + PAYLOAD_BYTES
  const bound = MAX_OUTBOUND_BYTES + frameBytes
  let peak = 0
  const sample = () => (peak = Math.max(peak, server.stats().maxConnectionBufferedBytes))

  for (let start = 0; start < TOTAL; start += BATCH) {
    const id = publisher.nextId()
    const entries = Array.from({ length: BATCH }, (_, k) => entry(TOPIC, payload(start + k)))
    expect(await publisher.call(req.putMany(id, entries, true))).toEqual(rep.putAck(id, start + 1, BATCH))
    sample()
  }
  // The fast subscriber gets everything while the slow one is still paused.
  await fast.waitUntil(() => {
    sample()
    return fastChecker.received === TOTAL
  }, "the fast subscriber's deliveries")
  expect({ received: fastChecker.received, firstSeq: fastChecker.firstSeq, problems: fastChecker.problems }).toEqual({
    received: TOTAL,
    firstSeq: 1,
    problems: [],
  })
  expect(slowChecker.received).toBe(0)

  // The server held at most its cap (plus the frame that crossed it) for the paused one, and
  // it did reach the cap: the test exercised the catch-up-from-the-store path.
  const stats = server.stats()
  expect(peak).toBeLessThanOrEqual(bound)
  expect(stats.maxConnectionBufferedBytes).toBeGreaterThanOrEqual(MAX_OUTBOUND_BYTES)
  expect(stats.maxConnectionBufferedBytes).toBeLessThanOrEqual(bound)

  slow.resume()
  // A message put while the slow subscriber catches up comes after all the others. Waiting for
  // it, rather than for a count, ends the wait even if a message went missing.
  const during = publisher.nextId()
  expect(await publisher.call(req.put(during, TOPIC, payload(TOTAL), true))).toEqual(rep.putAck(during, TOTAL + 1))
  await slow.waitUntil(() => {
    sample()
    return slowChecker.lastSeq === TOTAL + 1
  }, "the slow subscriber's deliveries")
  expect(peak).toBeLessThanOrEqual(bound)

  // Caught up, it is live again: the next message is pushed to both, once.
  const after = publisher.nextId()
  expect(await publisher.call(req.put(after, TOPIC, payload(TOTAL + 1), true))).toEqual(rep.putAck(after, TOTAL + 2))
  await slow.waitUntil(() => slowChecker.lastSeq === TOTAL + 2, "the live push")
  await fast.waitUntil(() => fastChecker.lastSeq === TOTAL + 2, "the live push")
  // A round trip after it: had a duplicate been sent, it would have arrived before the PONG.
  for (const client of [slow, fast]) {
    const id = client.nextId()
    expect(await client.call(req.ping(id, "sync"))).toEqual(rep.pong(id, "sync"))
  }
  expect({ received: slowChecker.received, firstSeq: slowChecker.firstSeq, problems: slowChecker.problems }).toEqual({
    received: TOTAL + 2,
    firstSeq: 1,
    problems: [],
  })
  expect({ received: fastChecker.received, problems: fastChecker.problems }).toEqual({ received: TOTAL + 2, problems: [] })
  expect(server.stats().maxConnectionBufferedBytes).toBe(0)
}, 60_000)

test("what waits for a paused subscriber costs the memory it is counted as", async () => {
  using server = startTestServer()
  const checker = new DeliveryChecker()
  await using slow = await BinaryClient.connect(server.port, { keepPushes: false, onFrame: checker.onFrame })
  await using publisher = await BinaryClient.connect(server.port)
  const subscribeId = slow.nextId()
  expect(await slow.call(req.subscribe(subscribeId, TOPIC))).toEqual(rep.ok(subscribeId))
  slow.pause()

  // Large batches until the kernel's buffers are full and the server starts queueing for the
  // paused subscriber (each batch also makes the server's frame buffer for it grow to 1 MiB).
  const batch = 4_000
  let sent = 0
  for (let i = 0; i < 100 && server.stats().maxConnectionBufferedBytes === 0; i++) {
    const id = publisher.nextId()
    const entries = Array.from({ length: batch }, (_, k) => entry(TOPIC, payload(sent + k)))
    expect(await publisher.call(req.putMany(id, entries, true))).toEqual(rep.putAck(id, sent + 1, batch))
    sent += batch
  }
  const queuedBefore = server.stats().maxConnectionBufferedBytes
  expect(queuedBefore).toBeGreaterThan(0)
  expect(queuedBefore).toBeLessThan(MAX_OUTBOUND_BYTES / 2)

  // Then a trickle: one message per round trip, each pushed (and queued) on its own.
  Bun.gc(true)
  const memoryBefore = process.memoryUsage().arrayBuffers
  const trickle = 200
  for (let k = 0; k < trickle; k++) {
    const id = publisher.nextId()
    expect(await publisher.call(req.put(id, TOPIC, payload(sent), true))).toEqual(rep.putAck(id, sent + 1))
    sent++
  }
  Bun.gc(true)
  const grown = process.memoryUsage().arrayBuffers - memoryBefore
  const counted = server.stats().maxConnectionBufferedBytes - queuedBefore
  // 200 pushes of 224 bytes are counted as 44,800 bytes; each must not pin a 1 MiB buffer.
  expect(counted).toBe(trickle * (HEADER_BYTES + 8 + 2 + TOPIC.length + PAYLOAD_BYTES))
  expect(grown).toBeLessThan(8 * 1024 * 1024)

  slow.resume()
  const last = publisher.nextId()
  expect(await publisher.call(req.put(last, TOPIC, payload(sent), true))).toEqual(rep.putAck(last, sent + 1))
  sent++
  await slow.waitUntil(() => checker.lastSeq === sent, "the paused subscriber's deliveries")
  const id = slow.nextId()
  expect(await slow.call(req.ping(id))).toEqual(rep.pong(id))
  expect({ received: checker.received, firstSeq: checker.firstSeq, problems: checker.problems }).toEqual({
    received: sent,
    firstSeq: 1,
    problems: [],
  })
})
