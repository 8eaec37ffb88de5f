/**
 * `dsmq put TOPIC [MESSAGE]`: one message, a file's bytes (--file), or one message per line of
 * stdin. Lines are sent as they arrive, in PUT_MANY frames of what each read from stdin gave,
 * without waiting for one frame's acknowledgement before the next; the command waits for all
 * of them at the end, and exits 1 if any was refused.
 */
import { readFileSync } from "node:fs"
import { type Client, ConnectionClosedError, type PutResult } from "../client.ts"
import { CommandLineError } from "../config/values.ts"
import {
  asking,
  CLIENT_HELP,
  CommandFailure,
  connectTo,
  describeFailure,
  type Env,
  ExitCode,
  readClientCommand,
  type Target,
  targetOf,
} from "./command-line.ts"

export const PUT_HELP = `Usage: dsmq put TOPIC [MESSAGE] [options]

Puts MESSAGE on TOPIC. Without MESSAGE, puts one message per line of stdin (empty lines are
skipped) as the lines arrive, and exits 1 if the server refused any of them.

  -f, --file FILE  put the whole file (- for stdin) as one message, bytes as they are
  --ack            print the sequence number of each message put

${CLIENT_HELP}

Examples:
  dsmq put lab/temp 21.5
  sensor-reader | dsmq put lab/temp
  dsmq put lab/camera/frame --file frame.jpg
`

/** Frames in flight before reading more of stdin: enough to keep the connection busy, bounded memory. */
const MAX_UNACKNOWLEDGED_FRAMES = 64
/** Room a PUT_MANY frame needs besides its payloads: header, count, and per entry a topic and a length. */
const FRAME_OVERHEAD = 10 + 4

export async function runPut(argv: readonly string[], env: Env): Promise<number> {
  const command = readClientCommand(argv, { file: { type: "string", short: "f" }, ack: { type: "boolean" } }, PUT_HELP)
  if (command === null) return ExitCode.ok
  const { values, positionals } = command
  const [topic, message, ...extra] = positionals
  if (topic === undefined) throw new CommandLineError("put needs a TOPIC")
  if (extra.length > 0) throw new CommandLineError(`put takes one MESSAGE; quote it if it has spaces (got ${positionals.length - 1} words)`)
  if (message !== undefined && values.file !== undefined) throw new CommandLineError("give a MESSAGE or --file, not both")
  const target = targetOf(values, env)
  const payload = values.file === undefined ? message : await readPayloadFile(values.file)
  await using client = await connectTo(target)
  if (payload !== undefined) {
    const seq = await asking(target, () => client.putAck(topic, payload))
    if (values.ack) console.log(seq)
    return ExitCode.ok
  }
  if (process.stdin.isTTY) console.error("dsmq: reading messages from stdin, one per line (Ctrl-D to end)")
  return await putLines(client, target, topic, values.ack === true)
}

async function readPayloadFile(path: string): Promise<Uint8Array> {
  try {
    return path === "-" ? await Bun.stdin.bytes() : readFileSync(path)
  } catch (error) {
    throw new CommandFailure(`--file ${path}: ${(error as { code?: string }).code === "ENOENT" ? "no such file" : String(error)}`)
  }
}

interface SentFrame {
  /** Line numbers (1-based) of its first and last message. */
  readonly firstLine: number
  readonly lastLine: number
  readonly result: Promise<PutResult>
}

/** One message per line of stdin; returns the exit code. */
async function putLines(client: Client, target: Target, topic: string, printSeqs: boolean): Promise<number> {
  const inFlight: SentFrame[] = []
  let failed = 0
  let lineNumber = 0
  // Bytes of a line not yet ended by a newline, carried into the next read.
  let partial = new Uint8Array()
  const maxPayloads = client.maxFrameBytes - FRAME_OVERHEAD

  const settleOldest = async (): Promise<void> => {
    const frame = inFlight.shift()!
    try {
      const { firstSeq, count } = await frame.result
      if (printSeqs) for (let i = 0; i < count; i++) console.log(firstSeq + i)
    } catch (error) {
      // The rest cannot be sent either: one line says how far it got.
      if (error instanceof ConnectionClosedError) {
        throw new CommandFailure(`${describeFailure(error, target)}; lines from ${frame.firstLine} on may not have been put`)
      }
      failed += frame.lastLine - frame.firstLine + 1
      const lines = frame.firstLine === frame.lastLine ? `line ${frame.firstLine}` : `lines ${frame.firstLine}-${frame.lastLine}`
      console.error(`dsmq: ${lines} not put: ${describeFailure(error, target)}`)
    }
  }
  const send = async (lines: { readonly line: number; readonly payload: Uint8Array }[]): Promise<void> => {
    // Frames up to the server's maximum; a line too long for any frame is refused on its own.
    let batch: typeof lines = []
    let bytes = 0
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return
      const messages = batch.map(({ payload }) => ({ topic, payload }))
      const result = client.putManyAck(messages)
      // A frame the client refuses to send (too large) rejects at once; settled in order like the rest.
      result.catch(() => {})
      inFlight.push({ firstLine: batch[0]!.line, lastLine: batch.at(-1)!.line, result })
      batch = []
      bytes = 0
      while (inFlight.length > MAX_UNACKNOWLEDGED_FRAMES) await settleOldest()
    }
    for (const entry of lines) {
      const size = entry.payload.length + 2 + Buffer.byteLength(topic) + 4
      if (bytes + size > maxPayloads) await flush()
      batch.push(entry)
      bytes += size
    }
    await flush()
  }

  for await (const chunk of Bun.stdin.stream()) {
    const data = partial.length === 0 ? chunk : Buffer.concat([partial, chunk])
    const lines: { line: number; payload: Uint8Array }[] = []
    let start = 0
    for (let end = data.indexOf(0x0a); end >= 0; end = data.indexOf(0x0a, start)) {
      lineNumber++
      const payload = lineBytes(data.subarray(start, end))
      if (payload.length > 0) lines.push({ line: lineNumber, payload: payload.slice() })
      start = end + 1
    }
    partial = data.slice(start)
    await send(lines)
  }
  if (partial.length > 0) {
    lineNumber++
    const payload = lineBytes(partial)
    if (payload.length > 0) await send([{ line: lineNumber, payload }])
  }
  while (inFlight.length > 0) await settleOldest()
  return failed === 0 ? ExitCode.ok : ExitCode.failed
}

/** A line without its line ending (a Windows `\r\n` loses the `\r` too). */
function lineBytes(line: Uint8Array): Uint8Array {
  return line.length > 0 && line[line.length - 1] === 0x0d ? line.subarray(0, -1) : line
}
