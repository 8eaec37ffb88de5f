/**
 * What clients can make the server hold, measured against a server in a child process with
 * its default limits: the figures the bounds of the README's "Bounds" table are checked by.
 *
 *   bun run bench/bounds.ts [--gets 200000] [--readers 200]
 *
 * - absent gets: one connection gets `--gets` topics that do not exist; the server's RSS
 *   before and after, the cursors it keeps and the topics it creates;
 * - named absent gets: the same through a named cursor (10,000 gets): topics created;
 * - never-reading readers: `--readers` connections each ask for 16 messages of 960 KiB and
 *   never read; what the server holds for them (the budget's figure where the server has one,
 *   else the largest connection's times their number) and its RSS.
 * Unfinished first frames before authentication are bench/pre-auth.ts's. Not part of `bun
 * test` or `bun run bench`. Uses only figures every version of the server reports, so it can
 * be run on an older commit for a before-and-after.
 */
import type { Socket } from "bun"
import { connect } from "../src/client.ts"
import { BINARY_VERSION, MAGIC, Op } from "../src/protocol/binary/constants.ts"
import { FrameWriter } from "../src/protocol/binary/frame-writer.ts"
import { parseOptionsOrExit } from "./lib/args.ts"
import { memoryOf } from "./lib/proc.ts"
import { withTimeout } from "./lib/wait.ts"

const USAGE = "usage: bun run bench/bounds.ts [--gets N] [--readers N]\n"
const given = parseOptionsOrExit("bounds", USAGE, process.argv.slice(2), {
  gets: { type: "number", min: 1000, max: 1_000_000, integer: true },
  readers: { type: "number", min: 1, max: 1000, integer: true },
})
const gets = given.gets ?? 200_000
const readers = given.readers ?? 200
const MiB = 2 ** 20
const ROOT = new URL("..", import.meta.url).pathname
const mib = (bytes: number): string => (bytes / MiB).toFixed(1)

async function startServer(): Promise<{ pid: number; port: number; stop(): void }> {
  const child = Bun.spawn([process.execPath, "run", "src/server.ts", "--port", "0", "--no-http"], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "ignore",
  })
  const reader = (child.stdout as ReadableStream<Uint8Array>).getReader()
  const first = new TextDecoder().decode((await withTimeout(reader.read(), 15_000, "the address line")).value)
  const port = Number(/tcp:\/\/[^\s,]*:(\d+)/.exec(first)?.[1])
  return { pid: child.pid, port, stop: () => child.kill() }
}

const rows: string[][] = []

// ---- gets of topics that do not exist -----------------------------------------------------------
{
  const server = await startServer()
  const client = await connect({ port: server.port })
  await client.ping()
  const before = memoryOf(server.pid)!.rss
  for (let start = 0; start < gets; start += 10_000) {
    const batch = Array.from({ length: Math.min(10_000, gets - start) }, (_, i) => client.get(`absent/${start + i}`))
    await Promise.all(batch)
  }
  const stats = await client.stats()
  const after = memoryOf(server.pid)!.rss
  rows.push([
    `${gets} gets of absent topics, one connection`,
    `RSS ${mib(before)} -> ${mib(after)} MiB (+${mib(after - before)})`,
    `cursors ${stats.cursors ?? "not reported"}, topics ${stats.topics}`,
  ])
  const named = await connect({ port: server.port, cursor: "bounds-reader" })
  for (let start = 0; start < 10_000; start += 1000)
    await Promise.all(Array.from({ length: 1000 }, (_, i) => named.get(`named-absent/${start + i}`)))
  rows.push(["10000 gets of absent topics, named cursor", "", `topics ${(await named.stats()).topics}`])
  await named.close()
  await client.close()
  server.stop()
}

// ---- readers that never read ----------------------------------------------------------------------
{
  const server = await startServer()
  const writer = await connect({ port: server.port })
  const big = new Uint8Array(960 * 1024).fill(120)
  const sockets: Socket<undefined>[] = []
  const hello = new FrameWriter()
  hello.begin(Op.hello, 0, 0).bytes(MAGIC).u8(BINARY_VERSION).end()
  const helloBytes = hello.take().slice()
  for (let i = 0; i < readers; i++) {
    const socket = await Bun.connect({ hostname: "127.0.0.1", port: server.port, socket: { data() {}, error() {} } })
    socket.write(helloBytes)
    sockets.push(socket)
  }
  await writer.ping()
  for (let i = 0; i < 16; i++) await writer.putAck("big", big)
  // 16 GETs of "big" on each, then never a read.
  const frames = new FrameWriter()
  for (let i = 0; i < 16; i++)
    frames
      .begin(Op.get, 0, i + 1)
      .topic("big")
      .end()
  const gets16 = frames.take().slice()
  for (const socket of sockets) {
    socket.pause()
    socket.write(gets16)
  }
  let peakHeld = 0
  let peakRss = 0
  const until = performance.now() + 5000
  while (performance.now() < until) {
    await Bun.sleep(250)
    const stats = await writer.stats()
    const held = stats.bufferedBytes === undefined ? Number(stats.maxConnectionBufferedBytes) * readers : Number(stats.bufferedBytes)
    peakHeld = Math.max(peakHeld, held)
    peakRss = Math.max(peakRss, memoryOf(server.pid)!.rss)
  }
  const stats = await writer.stats()
  const paused = stats.budgetPausedConnections ?? "not reported"
  rows.push([
    `${readers} readers asking for 16 x 960 KiB, never reading`,
    `held for clients at most ${mib(peakHeld)} MiB${stats.bufferedBytes === undefined ? " (largest connection x readers)" : ""}, RSS at most ${mib(peakRss)} MiB`,
    `budget ${stats.maxBufferedBytes === undefined ? "none" : `${mib(Number(stats.maxBufferedBytes))} MiB`}, paused ${paused}`,
  ])
  for (const socket of sockets) socket.terminate()
  await writer.close()
  server.stop()
}

console.log("| measurement | memory | state |")
console.log("| --- | --- | --- |")
for (const row of rows) console.log(`| ${row.join(" | ")} |`)
process.exit(0)
