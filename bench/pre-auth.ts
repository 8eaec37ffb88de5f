/**
 * What clients that never authenticate can make the server hold: a broker with tokens, and
 * `--connections` clients that each send the start of a huge first frame (a HELLO announcing
 * 1 MiB, or an `auth` object that never ends) and then keep sending, without ever completing it.
 * Prints the broker's peak RSS (VmHWM) and how many of those connections it still held.
 *
 *   bun run bench/pre-auth.ts [--connections 300] [--seconds 3]
 */
import type { Socket } from "bun"
import { parseOptionsOrExit } from "./lib/args.ts"
import { memoryOf } from "./lib/proc.ts"
import { withTimeout } from "./lib/wait.ts"

const USAGE = "Usage: bun run bench/pre-auth.ts [--connections N] [--seconds S]\n"
const given = parseOptionsOrExit("pre-auth", USAGE, process.argv.slice(2), {
  connections: { type: "number", min: 1, max: 1000, integer: true },
  seconds: { type: "number", min: 0.5, max: 60 },
})
const connections = given.connections ?? 300
const seconds = given.seconds ?? 3
const MiB = 1024 * 1024
const ROOT = new URL("..", import.meta.url).pathname

const server = Bun.spawn(["bun", "run", "src/server.ts", "--port", "0", "--no-http", "--max-connections", String(connections + 10)], {
  cwd: ROOT,
  env: {
    ...process.env,
    DSMQ_AUTH: JSON.stringify({ tokens: [{ name: "t", token: "pre-auth-bench-token-0123", read: ["#"], write: ["#"] }] }),
  },
  stdout: "pipe",
  stderr: "pipe",
})
const reader = (server.stdout as ReadableStream<Uint8Array>).getReader()
const first = new TextDecoder().decode((await withTimeout(reader.read(), 15_000, "the address line")).value)
const port = Number(/tcp:\/\/[^\s,]*:(\d+)/.exec(first)?.[1])
const idle = memoryOf(server.pid)

// Half send a binary HELLO announcing 1 MiB, half a JSON auth whose token never ends.
const helloHeader = new Uint8Array([0x00, 0x10, 0x00, 0x06, 0x01, 0x00, 0, 0, 0, 1])
const filler = new Uint8Array(64 * 1024).fill(0x61)
const sockets: Socket<undefined>[] = []
let closedByServer = 0
for (let i = 0; i < connections; i++) {
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: { data() {}, close: () => void closedByServer++, error() {} },
  })
  socket.write(i % 2 === 0 ? helloHeader : new TextEncoder().encode('{"action": "auth", "token": "'))
  sockets.push(socket)
}
const until = performance.now() + seconds * 1000
let peak = 0
while (performance.now() < until) {
  // Keep pushing bytes of the never-ending first frame: up to 1 MiB each.
  for (const socket of sockets) socket.write(filler)
  await Bun.sleep(50)
  peak = Math.max(peak, memoryOf(server.pid)?.hwm ?? 0)
}
const end = memoryOf(server.pid)
for (const socket of sockets) socket.terminate()
server.kill("SIGTERM")
await server.exited
console.log(
  `pre-auth: ${connections} connections sending an unfinished first frame for ${seconds} s: broker RSS idle ` +
    `${((idle?.rss ?? 0) / MiB).toFixed(1)} MiB, at the end ${((end?.rss ?? 0) / MiB).toFixed(1)} MiB, peak (VmHWM) ${(peak / MiB).toFixed(1)} MiB; ` +
    `${closedByServer} of ${connections} closed by the server`,
)
