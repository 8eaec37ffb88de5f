/**
 * Reads messages from a dsmq topic with `get_wait`: the server holds each request until a
 * message arrives (or `timeout` seconds pass), so the client does not poll.
 *
 *   bun run examples/get-client.ts [host] [port] [topic] [count]
 *
 * Defaults: 127.0.0.1 30008 greetings 5. Start this before the put client: a reader only
 * sees messages put after it connected. Prints each message on its own line and exits once
 * it has `count` of them, or after 10 s with exit status 1.
 */
import type { Socket } from "bun"

const [host = "127.0.0.1", portArg = "30008", topic = "greetings", countArg = "5"] = process.argv.slice(2)
const count = Number(countArg)
if (!Number.isInteger(count) || count < 1) throw new Error(`count must be a whole number above 0, got ${countArg}`)
const giveUpAt = Date.now() + 10_000

interface Reply {
  message: string
  /** Present only when a message was delivered. */
  seq?: number
  error?: { code: string; text: string }
}

let received = 0
let replyText = "" // the reply received so far
const utf8 = new TextDecoder() // with { stream: true }, a character may be split across chunks
let unsent: Uint8Array = new Uint8Array(0)

function fail(why: string): never {
  console.error(`${why} (${received} of ${count} messages)`)
  process.exit(1)
}

// Bun's socket.write does not buffer: it returns how many bytes the kernel took,
// and the rest must be written again from `drain`.
function send(socket: Socket<undefined>, request: object): void {
  unsent = Buffer.concat([unsent, Buffer.from(JSON.stringify(request))])
  writeUnsent(socket)
}

function writeUnsent(socket: Socket<undefined>): void {
  if (unsent.length > 0) unsent = unsent.subarray(Math.max(0, socket.write(unsent)))
}

function askForNext(socket: Socket<undefined>): void {
  const timeout = Math.max(0, (giveUpAt - Date.now()) / 1000) // seconds
  send(socket, { action: "get_wait", topic, timeout })
}

const socket = await Bun.connect({
  hostname: host,
  port: Number(portArg),
  socket: {
    data(socket, chunk) {
      // One request is outstanding at a time, so what has arrived is (part of) one reply;
      // it can come in several chunks, and it parses once it is complete.
      replyText += utf8.decode(chunk, { stream: true })
      let reply: Reply
      try {
        reply = JSON.parse(replyText) as Reply
      } catch {
        return // not all of it yet
      }
      replyText = ""
      if (reply.error !== undefined) fail(`server refused the request: ${reply.error.text}`)
      if (reply.seq === undefined) {
        // The wait ended with nothing: it timed out, or the server is stopping (and will close).
        if (Date.now() >= giveUpAt) fail("no message within 10 s")
        return askForNext(socket)
      }
      console.log(reply.message)
      if (++received === count) socket.end()
      else askForNext(socket)
    },
    drain: writeUnsent,
    close() {
      if (received < count) fail("connection closed by the server")
    },
    error(_socket, error) {
      fail(`connection error: ${error.message}`)
    },
  },
}).catch((error: Error & { code?: string }) => {
  fail(`cannot connect to ${host}:${portArg}: ${error.code ?? error.message}`)
})

console.log(`connected to ${host}:${portArg}, waiting for ${count} messages on ${JSON.stringify(topic)}`)
askForNext(socket)
