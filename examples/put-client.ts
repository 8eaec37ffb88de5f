/**
 * Puts a few messages on a dsmq topic, then exits.
 *
 *   bun run examples/put-client.ts [host] [port] [topic] [count]
 *
 * Defaults: 127.0.0.1 30008 greetings 5. Start the get client first: a reader only sees
 * messages put after it connected. A put gets no reply, so this client reads nothing.
 */
import type { Socket } from "bun"

const [host = "127.0.0.1", portArg = "30008", topic = "greetings", countArg = "5"] = process.argv.slice(2)
const count = Number(countArg)
if (!Number.isInteger(count) || count < 0) throw new Error(`count must be a whole number, got ${countArg}`)

// Requests are JSON objects sent back to back, with no delimiter.
let text = ""
for (let i = 0; i < count; i++) text += JSON.stringify({ action: "put", topic, message: `Hello! ${i}` })
let unsent: Uint8Array = Buffer.from(text)

// Bun's socket.write does not buffer: it returns how many bytes the kernel took,
// and the rest must be written again from `drain`.
function writeUnsent(socket: Socket<undefined>): void {
  const written = socket.write(unsent)
  unsent = unsent.subarray(Math.max(0, written))
  if (unsent.length === 0) socket.end() // all sent: close, which lets the process exit
}

await Bun.connect({
  hostname: host,
  port: Number(portArg),
  socket: {
    open: writeUnsent,
    drain: writeUnsent,
    data() {}, // puts get no reply: fire and forget
    close() {
      if (unsent.length > 0) {
        console.error(`connection closed with ${unsent.length} bytes unsent`)
        process.exit(1)
      }
      console.log(`sent ${count} messages to ${JSON.stringify(topic)}`)
    },
    error(_socket, error) {
      console.error(`connection error: ${error.message}`)
      process.exit(1)
    },
  },
}).catch((error: Error & { code?: string }) => {
  console.error(`cannot connect to ${host}:${portArg}: ${error.code ?? error.message}`)
  process.exit(1)
})
