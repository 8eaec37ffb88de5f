/**
 * The floor: minimal Bun.listen servers, in their own process, that do nothing but move bytes,
 * measured by the load generator with the same code as the broker, so that broker latencies can
 * be read as ratios to what the machine allows.
 *
 *   bun run bench/load/echo-server.ts [port]           echo: every byte straight back on its connection
 *   bun run bench/load/echo-server.ts [port] --relay   relay: a connection that starts with "R" is a
 *                                                      reader (answered with one "K" byte once
 *                                                      registered); one that starts with "W" is a
 *                                                      writer, whose bytes go to every reader, in
 *                                                      whole RECORD_BYTES records
 *
 * Both print "echo listening on tcp://127.0.0.1:PORT". The echo server is the floor of the rtt
 * scenario (one round trip, two event-loop wake-ups); the relay is the floor of khz and fanout
 * (every message written to every reader's socket, one write per reader per batch of records).
 */
import type { Socket } from "bun"

/** The load generator's payloads are this long; a relay forwards whole ones only. */
const RECORD_BYTES = 64

interface Peer {
  role: "undecided" | "echo" | "reader" | "writer"
  /** Bytes the kernel did not take yet (Bun's socket.write does not buffer). */
  queued: Uint8Array | null
  /** A writer's unfinished record. */
  partial: Uint8Array | null
}

const relay = process.argv.includes("--relay")
const portArgument = process.argv.slice(2).find((argument) => !argument.startsWith("--"))
const readers = new Set<Socket<Peer>>()

function send(socket: Socket<Peer>, bytes: Uint8Array): void {
  if (socket.data.queued !== null) {
    socket.data.queued = Buffer.concat([socket.data.queued, bytes])
    return
  }
  const written = Math.max(0, socket.write(bytes))
  if (written < bytes.length) socket.data.queued = bytes.slice(written)
}

function flush(socket: Socket<Peer>): void {
  const queued = socket.data.queued
  if (queued === null) return
  const written = Math.max(0, socket.write(queued))
  socket.data.queued = written < queued.length ? queued.subarray(written) : null
}

function relayFromWriter(socket: Socket<Peer>, chunk: Uint8Array): void {
  let data = chunk
  if (socket.data.partial !== null) {
    data = Buffer.concat([socket.data.partial, chunk])
    socket.data.partial = null
  }
  const whole = data.length - (data.length % RECORD_BYTES)
  if (whole < data.length) socket.data.partial = data.slice(whole)
  if (whole === 0) return
  const records = data.subarray(0, whole)
  for (const reader of readers) send(reader, records)
}

const server = Bun.listen<Peer>({
  hostname: "127.0.0.1",
  port: Number(portArgument ?? 0),
  socket: {
    open(socket) {
      socket.data = { role: relay ? "undecided" : "echo", queued: null, partial: null }
    },
    data(socket, chunk) {
      const peer = socket.data
      if (peer.role === "echo") {
        send(socket, chunk)
        return
      }
      if (peer.role === "undecided") {
        peer.role = chunk[0] === 0x52 ? "reader" : "writer" // "R"
        chunk = chunk.subarray(1)
        if (peer.role === "reader") {
          readers.add(socket)
          send(socket, new Uint8Array([0x4b])) // "K"
        }
      }
      if (peer.role === "writer" && chunk.length > 0) relayFromWriter(socket, chunk)
    },
    drain: flush,
    close(socket) {
      readers.delete(socket)
    },
  },
})
console.log(`echo listening on tcp://127.0.0.1:${server.port}`)

const stop = (): void => {
  server.stop(true)
  process.exit(0)
}
process.on("SIGINT", stop)
process.on("SIGTERM", stop)
