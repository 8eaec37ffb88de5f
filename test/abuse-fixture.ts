/**
 * An abusive client in its own process, for test/server/isolation.test.ts and bench/isolation.ts:
 *
 *   bun run test/abuse-fixture.ts MODE PORT [--seconds N] [--seed N]
 *
 * MODE is one of:
 *   flood         one JSON-stream and one binary connection write pipelined puts as fast as the
 *                 kernel takes them, never reading (puts have no replies)
 *   never-read    in cycles: four readers (JSON stream, JSON header, binary GETs, binary
 *                 SUBSCRIBE) connect, a writer puts 16 messages of 960 KiB on a topic, each
 *                 reader asks for all of them and never reads a byte; readers of the previous
 *                 cycle are dropped when the next cycle's are stuck
 *   garbage       random bytes (pure noise, and noise after a valid start of each protocol) on
 *                 fresh connections, four at a time, in a loop
 *   connect-loop  connections opened and closed (mostly reset, some with FIN) eight at a time, in
 *                 a loop; plus 64 half-open connections held open: 48 that never send a byte,
 *                 16 that send the first bytes of a header and stop
 *   partial-frame connections that each start a first frame announcing about 1 MiB (a binary
 *                 HELLO, or a JSON object that never ends) and trickle its bytes, never finishing
 *                 it; each connects again when the server closes it
 *   absent-gets   binary connections that get topics that do not exist, 256 pipelined at a time,
 *                 every name new
 *
 * --connections N scales a mode: the readers of each never-read cycle (default 4), the
 * half-open connections of connect-loop (default 64), the connections of partial-frame (default
 * 64) and of absent-gets (default 4).
 *
 * Prints "active" once the abuse is under way. On SIGTERM, SIGINT or its deadline (--seconds,
 * default 60) it prints one line of JSON with its counters and exits; it also exits if its
 * parent goes away. Connects only to 127.0.0.1.
 */
import type { Socket } from "bun"
import { BINARY_VERSION, MAGIC, Op } from "../src/protocol/binary/constants.ts"
import { FrameWriter } from "../src/protocol/binary/frame-writer.ts"
import { encodeHeader } from "../src/protocol/json-header.ts"

const ABUSE_MODES = ["flood", "never-read", "garbage", "connect-loop", "partial-frame", "absent-gets"] as const
type AbuseMode = (typeof ABUSE_MODES)[number]

const HOST = "127.0.0.1"
const [mode, portText, ...rest] = process.argv.slice(2)
const option = (name: string, fallback: number): number => {
  const at = rest.indexOf(name)
  return at >= 0 && rest[at + 1] !== undefined ? Number(rest[at + 1]) : fallback
}
const port = Number(portText)
const seconds = option("--seconds", 60)
/** --connections: how far to scale the mode (see the module comment); null: the mode's default. */
const scale = rest.includes("--connections") ? option("--connections", 0) : null
if (!ABUSE_MODES.includes(mode as AbuseMode) || !Number.isInteger(port) || port <= 0 || !(seconds > 0)) {
  console.error(`usage: bun run test/abuse-fixture.ts ${ABUSE_MODES.join("|")} PORT [--seconds N] [--seed N] [--connections N]`)
  process.exit(2)
}

// ---- counters, reporting and stopping -------------------------------------------------------

const counters: Record<string, number> = {}
const count = (name: string, by = 1): void => void (counters[name] = (counters[name] ?? 0) + by)
let stopping = false
let announced = false
const announce = (): void => {
  if (announced) return
  announced = true
  process.stdout.write("active\n")
}
const startedAt = performance.now()

async function finish(why: string): Promise<never> {
  if (!stopping) {
    stopping = true
    const summary = { mode, why, seconds: (performance.now() - startedAt) / 1000, ...counters }
    await Bun.write(Bun.stdout, `${JSON.stringify(summary)}\n`)
  }
  process.exit(0)
}
process.on("SIGTERM", () => void finish("SIGTERM"))
process.on("SIGINT", () => void finish("SIGINT"))
setTimeout(() => void finish("deadline"), seconds * 1000)
const parent = process.ppid
setInterval(() => {
  if (process.ppid !== parent) void finish("parent gone")
}, 250)

// ---- helpers ---------------------------------------------------------------------------------

/** A seeded PRNG (mulberry32), so a run's garbage can be replayed with --seed. */
let seed = option("--seed", Date.now() % 2 ** 31) >>> 0
counters.seed = seed
function random(): number {
  seed = (seed + 0x6d2b79f5) >>> 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
}
const randomInt = (below: number): number => Math.floor(random() * below)

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const encoder = new TextEncoder()

interface Link {
  socket: Socket<undefined>
  /** Resolves on the first bytes received. */
  readonly firstData: Promise<void>
  readonly closed: Promise<void>
  isClosed: boolean
  received: number
}

/** Connects; `onData` sees every chunk. Rejects when the connection cannot be made. */
async function open(onData?: (chunk: Uint8Array) => void, onDrain?: () => void): Promise<Link> {
  const firstData = Promise.withResolvers<void>()
  const closed = Promise.withResolvers<void>()
  const link = { firstData: firstData.promise, closed: closed.promise, isClosed: false, received: 0 } as Link
  link.socket = await Bun.connect({
    hostname: HOST,
    port,
    socket: {
      data: (_socket, chunk) => {
        link.received += chunk.length
        count("bytesReceived", chunk.length)
        firstData.resolve()
        onData?.(chunk)
      },
      drain: () => onDrain?.(),
      close: () => {
        link.isClosed = true
        closed.resolve()
        firstData.resolve()
      },
      error: () => count("socketErrors"),
    },
  })
  count("connections")
  return link
}

/** Connects, or counts the failure and waits `backOffMs` (null then: the caller tries again). */
async function openOrBackOff(backOffMs: number, onData?: (chunk: Uint8Array) => void, onDrain?: () => void): Promise<Link | null> {
  try {
    return await open(onData, onDrain)
  } catch {
    count("connectFailures")
    await sleep(backOffMs)
    return null
  }
}

/** Writes all of `bytes`, waiting for the kernel to take them (bounded by the process deadline). */
function writeAll(link: Link, bytes: Uint8Array): Promise<void> {
  let unsent = bytes
  const { promise, resolve } = Promise.withResolvers<void>()
  const write = (): void => {
    if (link.isClosed) {
      resolve()
      return
    }
    const written = link.socket.write(unsent)
    if (written > 0) {
      count("bytesSent", written)
      unsent = unsent.subarray(written)
    }
    if (unsent.length === 0) resolve()
  }
  const poll = (): void => {
    write()
    if (unsent.length > 0 && !link.isClosed && !stopping) setTimeout(poll, 1)
  }
  poll()
  return promise
}

const json = (value: unknown): string => JSON.stringify(value)

// ---- flood -------------------------------------------------------------------------------------

/** About 1 MiB of pipelined puts, written again and again. */
function floodChunk(binary: boolean): Uint8Array {
  if (!binary) {
    const parts: string[] = []
    let length = 0
    for (let i = 0; length < 1 << 20; i++) {
      const part = json({ action: "put", topic: "abuse/flood", message: `flood ${i} ${"f".repeat(i % 64)}` })
      parts.push(part)
      length += part.length
    }
    return encoder.encode(parts.join(""))
  }
  const writer = new FrameWriter()
  for (let i = 0; writer.length < 1 << 20; i++) {
    writer
      .begin(Op.put, 0, (i % 0xfffffff) + 1)
      .topic("abuse/flood-bin")
      .bytes(encoder.encode(`flood ${i} ${"f".repeat(i % 64)}`))
      .end()
  }
  return writer.take().slice()
}

function hello(): Uint8Array {
  const writer = new FrameWriter()
  writer.begin(Op.hello, 0, 0).bytes(MAGIC).u8(BINARY_VERSION).end()
  return writer.take().slice()
}

async function flood(binary: boolean): Promise<void> {
  const chunk = floodChunk(binary)
  while (!stopping) {
    let unsent: Uint8Array = binary ? hello() : chunk
    let link: Link | null = null
    const pump = (): void => {
      if (link === null || link.isClosed || stopping) return
      // Bounded per call: if the kernel keeps taking everything, let the event loop breathe.
      for (let i = 0; i < 64; i++) {
        const written = link.socket.write(unsent)
        if (written <= 0) return
        count(binary ? "floodBinaryBytes" : "floodJsonBytes", written)
        if (written < unsent.length) {
          unsent = unsent.subarray(written)
          announce()
          return
        }
        unsent = chunk
      }
      setImmediate(pump)
    }
    link = await openOrBackOff(50, undefined, pump)
    if (link === null) continue
    pump()
    await link.closed
    count("floodConnectionsClosedByServer")
    await sleep(20)
  }
}

// ---- never-read ----------------------------------------------------------------------------------

const BIG_MESSAGE_BYTES = 960 * 1024
const BIG_MESSAGES_PER_CYCLE = 16
const HOLD_MS = 1000

type ReaderKind = "json-stream" | "json-header" | "binary-get" | "binary-subscribe"
const READER_KINDS: readonly ReaderKind[] = ["json-stream", "json-header", "binary-get", "binary-subscribe"]

function jsonRequests(kind: "json-stream" | "json-header", values: unknown[]): Uint8Array {
  return encoder.encode(
    values
      .map((value) => {
        const body = json(value)
        return kind === "json-header" ? encodeHeader(Buffer.byteLength(body)) + body : body
      })
      .join(""),
  )
}

/** A reader that makes one round trip (so its cursors have started), then never reads again. */
async function stuckReader(kind: ReaderKind): Promise<Link> {
  const link = await open()
  if (kind === "json-stream" || kind === "json-header") {
    await writeAll(link, jsonRequests(kind, [{ action: "get", topic: "abuse/sync" }]))
  } else {
    await writeAll(link, hello())
  }
  await link.firstData
  link.socket.pause()
  return link
}

function askForAll(kind: ReaderKind, topic: string): Uint8Array {
  if (kind === "json-stream" || kind === "json-header") {
    return jsonRequests(
      kind,
      Array.from({ length: BIG_MESSAGES_PER_CYCLE }, () => ({ action: "get", topic })),
    )
  }
  const writer = new FrameWriter()
  if (kind === "binary-subscribe") writer.begin(Op.subscribe, 0, 1).topic(topic).end()
  else
    for (let i = 0; i < BIG_MESSAGES_PER_CYCLE; i++)
      writer
        .begin(Op.get, 0, i + 1)
        .topic(topic)
        .end()
  return writer.take().slice()
}

async function neverRead(): Promise<void> {
  const big = "x".repeat(BIG_MESSAGE_BYTES)
  let writer: Link | null = null
  let acks = 0
  let previous: Link[] = []
  for (let cycle = 0; !stopping; cycle++) {
    try {
      if (writer === null || writer.isClosed) {
        writer = await open((chunk) => {
          // Each ack is one small JSON object; count closing braces at the top level.
          for (const byte of chunk) if (byte === 0x7d) acks++
        })
        acks = 0
      }
      const kinds = Array.from({ length: scale ?? READER_KINDS.length }, (_, i) => READER_KINDS[i % READER_KINDS.length]!)
      const readers = await Promise.all(kinds.map(stuckReader))
      const topic = `abuse/big/${cycle % 32}`
      const puts = Array.from({ length: BIG_MESSAGES_PER_CYCLE }, (_, i) =>
        i === BIG_MESSAGES_PER_CYCLE - 1 ? { action: "put", topic, message: big, ack: true } : { action: "put", topic, message: big },
      )
      const acked = acks + 1
      await writeAll(writer, jsonRequests("json-stream", puts))
      while (acks < acked && !writer.isClosed && !stopping) await sleep(1)
      for (const [i, reader] of readers.entries()) await writeAll(reader, askForAll(kinds[i]!, topic))
      count("cycles")
      announce()
      for (const link of previous) link.socket.terminate()
      previous = readers
      await sleep(HOLD_MS)
    } catch {
      count("cycleFailures")
      await sleep(50)
    }
  }
}

// ---- garbage ---------------------------------------------------------------------------------------

/** Noise to take slices from, made once so the loop costs the server, not this process. */
const NOISE = new Uint8Array(1 << 20).map(() => randomInt(256))

function noise(bytes: number): Uint8Array {
  const start = randomInt(NOISE.length - bytes)
  return NOISE.subarray(start, start + bytes)
}

function garbageBytes(): { variant: string; bytes: Uint8Array } {
  const size = 16 + randomInt(randomInt(2) === 0 ? 512 : 16 * 1024)
  const concat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts))
  switch (randomInt(7)) {
    case 0:
      return { variant: "noise", bytes: noise(size) }
    case 1: // a binary connection: first byte 0x00, then anything
      return { variant: "binary-noise", bytes: concat(new Uint8Array([0]), noise(size)) }
    case 2: {
      // HELLO, then frames with a plausible length but random opcode, flags, id and body
      const writer = new FrameWriter()
      writer.begin(Op.hello, 0, 0).bytes(MAGIC).u8(BINARY_VERSION).end()
      for (let i = 0; i < 8; i++) {
        writer
          .begin(randomInt(256), randomInt(256), randomInt(2 ** 32))
          .bytes(noise(randomInt(64)))
          .end()
      }
      return { variant: "binary-frames", bytes: writer.take().slice() }
    }
    case 3:
      return { variant: "header-noise", bytes: concat(encoder.encode('{"msg_length": '), noise(size)) }
    case 4:
      return {
        variant: "json-then-noise",
        bytes: concat(encoder.encode(json({ action: "put", topic: "abuse/garbage", message: "ok" })), noise(size)),
      }
    case 5: // an object that never ends: the server must hold it, bounded
      return {
        variant: "unfinished-object",
        bytes: concat(encoder.encode('{"action": "put", "topic": "t", "message": "'), encoder.encode("y".repeat(size))),
      }
    default: // valid-looking requests with bad fields
      return {
        variant: "bad-requests",
        bytes: encoder.encode(
          json({ action: "get", topic: 42 }) +
            json({ action: "get_wait", topic: "t", timeout: -1 }) +
            json({ action: randomInt(1000), topic: "t" }),
        ),
      }
  }
}

async function garbageWorker(): Promise<void> {
  while (!stopping) {
    const { variant, bytes } = garbageBytes()
    const link = await openOrBackOff(10)
    if (link === null) continue
    count(`variant:${variant}`)
    if (link.socket.write(bytes) > 0) count("bytesSent", bytes.length)
    // The server should answer with an error and close; an unfinished request may wait for more.
    const closedByServer = await Promise.race([link.closed.then(() => true), sleep(200).then(() => false)])
    if (closedByServer) count("closedByServer")
    else {
      count("closedByUs")
      link.socket.terminate()
    }
    announce()
  }
}

// ---- connect-loop ----------------------------------------------------------------------------------

const HALF_OPEN = scale ?? 64
const HALF_OPEN_WITH_PREFIX = 16

/** Opens a half-open connection; once it is open, holds it (and opens it again if the server closes it). */
async function holdHalfOpen(index: number): Promise<void> {
  let opened: () => void = () => {}
  const isOpen = new Promise<void>((resolve) => (opened = resolve))
  void (async () => {
    while (!stopping) {
      const link = await openOrBackOff(50)
      if (link === null) continue
      // The start of a header-framed request: the server cannot even pick a protocol yet.
      if (index < HALF_OPEN_WITH_PREFIX) link.socket.write(encoder.encode('{"msg_len'))
      count("halfOpen")
      opened()
      await link.closed
      count("halfOpenClosedByServer")
      await sleep(100)
    }
  })()
  return isOpen
}

async function churnWorker(): Promise<void> {
  while (!stopping) {
    const link = await openOrBackOff(10)
    if (link === null) continue
    // Mostly a reset (no TIME_WAIT left on this side), sometimes an orderly close.
    if (randomInt(4) === 0) {
      link.socket.end()
      await Promise.race([link.closed, sleep(200)])
      if (!link.isClosed) link.socket.terminate()
      count("churnEnded")
    } else {
      link.socket.terminate()
      count("churnReset")
    }
    if ((counters.churnEnded ?? 0) + (counters.churnReset ?? 0) >= 50) announce()
  }
}

// ---- partial-frame ----------------------------------------------------------------------------------

const PARTIAL_FRAME_BYTES = 1024 * 1024
const TRICKLE_BYTES = 16 * 1024

/** The start of a first frame that announces about 1 MiB: a binary HELLO, or a JSON auth object. */
function frameStart(binary: boolean): Uint8Array {
  if (!binary) return encoder.encode('{"action": "auth", "token": "')
  // 0x00 (binary), then a frame length of 1 MiB - 1 and the HELLO opcode.
  return new Uint8Array([0x00, 0x0f, 0xff, 0xff, Op.hello, 0x00, 0, 0, 0, 1])
}

async function partialFrame(index: number): Promise<void> {
  const filler = new Uint8Array(TRICKLE_BYTES).fill(0x61)
  while (!stopping) {
    const link = await openOrBackOff(100)
    if (link === null) continue
    await writeAll(link, frameStart(index % 2 === 0))
    announce()
    // Never the whole frame: stop short of it, and wait for the server to give up.
    for (let sent = 0; sent + TRICKLE_BYTES < PARTIAL_FRAME_BYTES - 1024 && !link.isClosed && !stopping; sent += TRICKLE_BYTES) {
      await writeAll(link, filler)
      await sleep(100)
    }
    await Promise.race([link.closed, sleep(60_000)])
    count(link.isClosed ? "partialClosedByServer" : "partialGaveUp")
    if (!link.isClosed) link.socket.terminate()
    await sleep(100)
  }
}

// ---- absent-gets ------------------------------------------------------------------------------------

async function absentGets(index: number): Promise<void> {
  while (!stopping) {
    let replies = 0
    // After the WELCOME, every reply is an EMPTY: a 10-byte header and no body.
    const link = await openOrBackOff(100, (chunk) => void (replies += chunk.length / 10))
    if (link === null) continue
    await writeAll(link, hello())
    await link.firstData
    replies = 0
    for (let batch = 0; !link.isClosed && !stopping; batch++) {
      const writer = new FrameWriter()
      for (let i = 0; i < 256; i++)
        writer
          .begin(Op.get, 0, i + 1)
          .topic(`absent/${index}/${batch}/${i}/${randomInt(1e9)}`)
          .end()
      const expected = replies + 256
      await writeAll(link, writer.take().slice())
      while (replies < expected && !link.isClosed && !stopping) await sleep(1)
      count("absentGets", 256)
      announce()
    }
    count("absentClosedByServer")
    await sleep(100)
  }
}

// ---- main -------------------------------------------------------------------------------------------

switch (mode as AbuseMode) {
  case "flood":
    void flood(false)
    void flood(true)
    break
  case "never-read":
    void neverRead()
    break
  case "garbage":
    for (let i = 0; i < 4; i++) void garbageWorker()
    break
  case "connect-loop":
    // The half-open connections first, so that they are all held once this says "active".
    await Promise.all(Array.from({ length: HALF_OPEN }, (_, i) => holdHalfOpen(i)))
    for (let i = 0; i < 8; i++) void churnWorker()
    break
  case "partial-frame":
    for (let i = 0; i < (scale ?? 64); i++) void partialFrame(i)
    break
  case "absent-gets":
    for (let i = 0; i < (scale ?? 4); i++) void absentGets(i)
    break
}
