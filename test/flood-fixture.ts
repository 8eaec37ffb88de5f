/**
 * A client in its own process that floods a server with puts, never reading:
 *
 *   bun run test/flood-fixture.ts PORT COUNT [CONNECTIONS]
 *
 * Each of CONNECTIONS (default 1) connections writes COUNT puts as fast as the kernel takes
 * them, then ends. Prints "connected" once all are open.
 */
const [port, count, connections = 1] = process.argv.slice(2).map(Number) as [number, number, number?]
const puts = Buffer.from(
  Array.from({ length: count }, (_, i) => JSON.stringify({ action: "put", topic: "flood", message: `m${i}` })).join(""),
)
const flood = async (): Promise<void> => {
  let unsent: Uint8Array = puts
  const write = (socket: { write(data: Uint8Array): number; end(): void }) => {
    unsent = unsent.subarray(Math.max(0, socket.write(unsent)))
    if (unsent.length === 0) socket.end()
  }
  await Bun.connect({ hostname: "127.0.0.1", port, socket: { open: write, drain: write, data() {}, close() {} } })
}
await Promise.all(Array.from({ length: connections }, flood))
console.log("connected")
