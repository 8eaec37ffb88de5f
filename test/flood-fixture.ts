/** A client in its own process that floods a server with puts: bun run test/flood-fixture.ts PORT COUNT */
const [port, count] = process.argv.slice(2).map(Number) as [number, number]
let unsent: Uint8Array = Buffer.from(
  Array.from({ length: count }, (_, i) => JSON.stringify({ action: "put", topic: "flood", message: `m${i}` })).join(""),
)
const write = (socket: { write(data: Uint8Array): number; end(): void }) => {
  unsent = unsent.subarray(Math.max(0, socket.write(unsent)))
  if (unsent.length === 0) socket.end()
}
await Bun.connect({ hostname: "127.0.0.1", port, socket: { open: write, drain: write, data() {}, close() {} } })
console.log("connected")
