/**
 * The socket side of fuzzing, shared by test/fuzz.test.ts and bench/fuzz.ts: a fuzz case sent
 * on its own connection (raw TCP, raw WebSocket over TCP, raw HTTP/1.1), well-behaved clients
 * of every protocol that check exact answers, and a wave runner that sends many cases at once
 * while the well-behaved clients work. Waits are on socket events, or bounded by turns of the
 * event loop; never on time.
 */
import type { Socket } from "bun"
import type { AuthConfig } from "../src/auth/auth.ts"
import { Outbound } from "../src/io/outbound.ts"
import { Op } from "../src/protocol/binary/constants.ts"
import { BinaryDecoder } from "../src/protocol/binary/decoder.ts"
import { type BinaryReply, readReply } from "../src/protocol/binary/reply.ts"
import { upstreamMessageReply } from "../src/protocol/json-reply.ts"
import { BinaryClient, statsBody } from "./binary-client.ts"
import { detachReply, encodeRequests, rep, req } from "./binary-frames.ts"
import { EventStreamReader } from "./event-stream-reader.ts"
import { EventWaiter } from "./event-waiter.ts"
import {
  binarySample,
  type CorpusOptions,
  caseRng,
  checkHttpReplies,
  checkTcpReplies,
  checkWsReplies,
  chunk,
  closeFrame,
  frameMessages,
  GOOD_PUSH_TOPIC,
  type Mutated,
  mutate,
  PROTOCOLS,
  type Protocol,
  type Rng,
  type Sample,
  splitIntoMessages,
  streamSample,
  type Tally,
  WsOpcode,
  type WsReceived,
  wsJsonMessages,
} from "./fuzz-corpus.ts"
import { type Framing, type Reply, TestClient } from "./helpers.ts"
import { WsClient } from "./ws-helpers.ts"

export interface Target {
  readonly port: number
  readonly httpPort: number
  /** The server's --max-message-bytes. */
  readonly maxFrameBytes: number
}

const HOST = "127.0.0.1"
/** More reply bytes than any case can legitimately get. */
const MAX_RECEIVED_BYTES = 16 * 1024 * 1024
const yieldTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** A raw TCP connection that records every byte it receives and the close. */
class RawConnection {
  readonly chunks: Uint8Array[] = []
  receivedBytes = 0
  readonly closed: Promise<void>
  isClosed = false
  readonly events = new EventWaiter()
  #socket!: Socket<undefined>
  #outbound!: Outbound
  #finishing = false
  #resolveClosed!: () => void
  onData: ((chunk: Uint8Array) => void) | null = null
  /** Cut the connection once MAX_RECEIVED_BYTES have come (an event stream replaying a long backlog). */
  cutAtLimit = false

  private constructor() {
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve))
  }

  static async open(port: number): Promise<RawConnection> {
    const connection = new RawConnection()
    connection.#socket = await Bun.connect({
      hostname: HOST,
      port,
      socket: {
        data: (_socket, chunk) => {
          connection.receivedBytes += chunk.length
          if (connection.receivedBytes <= MAX_RECEIVED_BYTES) connection.chunks.push(new Uint8Array(chunk))
          else if (connection.cutAtLimit) connection.terminate()
          connection.onData?.(chunk)
          connection.events.notify()
        },
        drain: () => {
          connection.#outbound.writeQueued()
          if (connection.#finishing && connection.#outbound.isIdle) connection.#socket.shutdown()
        },
        close: () => {
          connection.isClosed = true
          connection.#resolveClosed()
          connection.events.notify()
        },
        error: () => {},
      },
    })
    connection.#outbound = new Outbound(connection.#socket)
    return connection
  }

  get received(): Uint8Array {
    return Buffer.concat(this.chunks)
  }

  /** This end's port: the server sees the connection coming from it (`ss`, logs). */
  get localPort(): number {
    return this.#socket.localPort
  }

  send(bytes: Uint8Array): void {
    if (!this.isClosed && !this.#finishing && bytes.length > 0) this.#outbound.send(bytes)
  }

  /** Writes the pieces one by one, a turn of the event loop apart, so the server reads them apart. */
  async sendPieces(pieces: readonly Uint8Array[]): Promise<void> {
    for (const [i, piece] of pieces.entries()) {
      if (this.isClosed) return
      if (i > 0) await yieldTurn()
      this.send(piece)
    }
  }

  /** Half-closes once everything queued is written: the server sees the end of the stream. */
  finish(): void {
    if (this.#finishing || this.isClosed) return
    this.#finishing = true
    if (this.#outbound.isIdle) this.#socket.shutdown()
  }

  end(): void {
    this.#socket.end()
  }

  terminate(): void {
    if (!this.isClosed) this.#socket.terminate()
  }
}

/** One generated, mutated case, ready to send. */
export interface FuzzCase {
  readonly protocol: Protocol
  readonly seed: number
  readonly index: number
  readonly ops: readonly string[]
  /** What goes on the wire after the connection is set up (for WebSocket: the frames). */
  readonly bytes: Uint8Array
  readonly pieces: readonly Uint8Array[]
  /** How the client leaves: FIN after sending, RST after sending, or wait for the server. */
  readonly ending: "fin" | "rst" | "wait"
  /** WebSocket cases: the upgrade's path (with ?token= sometimes), and whether a 401 is the right answer. */
  readonly upgrade?: { readonly path: string; readonly refused: boolean }
  /** The command that sends this case again. */
  readonly replay: string
}

export interface CaseOptions extends CorpusOptions {
  /** Fraction of cases sent as generated, not mutated (default 0.1). */
  readonly validShare?: number
}

/** A description of the case: protocol, seed, index, mutations, the start of the input, and how to replay it. */
export function describeCase(fuzzCase: FuzzCase): string {
  const hex = Buffer.from(fuzzCase.bytes.subarray(0, 160)).toString("hex")
  return (
    `${fuzzCase.protocol} seed=${fuzzCase.seed} index=${fuzzCase.index} ops=[${fuzzCase.ops.join(", ")}] ` +
    `${fuzzCase.bytes.length} bytes in ${fuzzCase.pieces.length} writes, ${fuzzCase.ending}: ${hex}${fuzzCase.bytes.length > 160 ? "…" : ""}\n` +
    `    replay: ${fuzzCase.replay}`
  )
}

/** Tokens of the runs with authentication: the good clients may do anything, the fuzzed traffic less. */
export const GOOD_TOKEN = "good-token-0123456789abcdef"
/** The fuzzed traffic's tokens: one that may write some topics, one that may only read. */
export const FUZZ_TOKENS: readonly string[] = ["fuzz-token-0123456789abcdef", "reader-token-0123456789abcdef"]
export const FUZZ_AUTH: AuthConfig = {
  tokens: [
    { name: "good", token: GOOD_TOKEN, read: ["#"], write: ["#"] },
    { name: "fuzzer", token: FUZZ_TOKENS[0]!, read: ["t", "u", "fz/#", GOOD_PUSH_TOPIC], write: ["t", "fz/#", GOOD_PUSH_TOPIC] },
    { name: "reader", token: FUZZ_TOKENS[1]!, read: ["#"], write: [] },
  ],
  anonymousLegacy: null,
}

const SENTINEL = new TextEncoder().encode("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")

function sampleOf(protocol: Protocol, rng: Rng, options: CorpusOptions): Sample {
  switch (protocol) {
    case "ws-json":
      return { bytes: new Uint8Array(0), starts: [], lengths: [] } // messages, not a stream
    case "ws-binary":
      return binarySample(rng, options)
    default:
      return streamSample(protocol, rng, options)
  }
}

/** A WebSocket upgrade's path: with a token in the query now and then, when the server wants one. */
function upgradeFor(rng: Rng, options: CorpusOptions): { path: string; refused: boolean } {
  if (options.tokens === undefined || options.tokens.length === 0 || !rng.chance(0.35)) return { path: "/", refused: false }
  if (rng.chance(0.15)) return { path: "/?token=not-a-valid-token-0000", refused: true }
  return { path: `/?token=${encodeURIComponent(rng.pick(options.tokens))}`, refused: false }
}

/**
 * Case `index` of the run seeded `seed`: a function of the two numbers only. Without
 * `protocol`, the case picks one.
 */
export function makeCase(seed: number, index: number, options: CaseOptions, protocol?: Protocol): FuzzCase {
  const rng = caseRng(seed, index)
  const chosen = protocol ?? rng.pick(PROTOCOLS)
  const { maxFrameBytes } = options
  const valid = rng.chance(options.validShare ?? 0.1)
  // A donor for splicing: usually of the same protocol, sometimes of another.
  const donorProtocol = rng.chance(0.15) ? rng.pick(["json-stream", "json-header", "binary", "http"] as const) : chosen
  const replay =
    `bun run bench/fuzz.ts --seed ${seed} --replay ${index}${protocol === undefined ? "" : ` --protocol ${protocol}`}` +
    ` --max-message-bytes ${maxFrameBytes}${options.tokens === undefined ? "" : " --auth"}`
  const base = { protocol: chosen, seed, index, upgrade: upgradeFor(rng, options), replay }
  /** What one case may send at most (a little over: whole messages, the HTTP sentinel). */
  const cap = 256 * 1024 + 2 * maxFrameBytes
  if (chosen === "ws-json") {
    let messages = wsJsonMessages(rng, options).map((payload) => ({ opcode: WsOpcode.text as number, payload }))
    const ops: string[] = []
    if (!valid) {
      for (let round = rng.range(1, 3); round > 0 && messages.length > 0; round--) {
        const k = rng.int(messages.length)
        switch (rng.int(5)) {
          case 0:
          case 1: {
            const donor = messages[rng.int(messages.length)]!.payload
            const mutated = mutate(
              { bytes: messages[k]!.payload, starts: [0], lengths: [] },
              { bytes: donor, starts: [0], lengths: [] },
              chosen,
              rng,
              options,
            )
            messages[k] = { opcode: WsOpcode.text, payload: mutated.bytes }
            ops.push(`message#${k}:${mutated.ops.join("+")}`)
            break
          }
          case 2:
            messages.splice(k, 0, ...Array.from({ length: rng.range(1, 20) }, () => messages[k]!))
            ops.push(`repeat#${k}`)
            break
          case 3:
            if (k + 1 < messages.length) {
              const joined = Buffer.concat([messages[k]!.payload, messages[k + 1]!.payload])
              messages.splice(k, 2, { opcode: WsOpcode.text, payload: joined })
              ops.push(`join#${k}`)
            }
            break
          default:
            messages[k] = { opcode: WsOpcode.binary, payload: messages[k]!.payload }
            ops.push(`as-binary#${k}`)
        }
      }
    } else ops.push("valid")
    // Bounded: at most 200 messages and about CAP bytes.
    let total = 0
    messages = messages
      .slice(0, 200)
      .map((message) => ({ ...message, payload: message.payload.subarray(0, cap) }))
      .filter((message) => (total += message.payload.length) <= cap || total === message.payload.length)
    const framed = frameMessages(messages, rng)
    const bytes = Buffer.concat([framed.bytes, closeFrame(rng)])
    return { ...base, ops: [...ops, ...framed.ops], bytes, pieces: chunk(bytes, rng), ending: "wait" }
  }
  const sample = sampleOf(chosen, rng, options)
  const donor = sampleOf(donorProtocol === "ws-binary" || chosen === "ws-binary" ? "binary" : donorProtocol, rng, options)
  let mutated: Mutated = valid ? { bytes: sample.bytes, ops: ["valid"] } : mutate(sample, donor, chosen, rng, options)
  if (mutated.bytes.length > cap) mutated = { bytes: mutated.bytes.subarray(0, cap), ops: [...mutated.ops, `capped@${cap}`] }
  if (chosen === "ws-binary") {
    const messages = splitIntoMessages(mutated.bytes, rng).map((payload) => ({
      opcode: rng.chance(0.03) ? WsOpcode.text : WsOpcode.binary,
      payload,
    }))
    const framed = frameMessages(messages, rng)
    const bytes = Buffer.concat([framed.bytes, closeFrame(rng)])
    return {
      ...base,
      ops: [...mutated.ops, `${messages.length} messages`, ...framed.ops],
      bytes,
      pieces: chunk(bytes, rng),
      ending: "wait",
    }
  }
  if (chosen === "http") {
    const bytes = Buffer.concat([mutated.bytes, SENTINEL])
    return { ...base, ops: mutated.ops, bytes, pieces: chunk(bytes, rng), ending: "wait" }
  }
  return { ...base, ops: mutated.ops, bytes: mutated.bytes, pieces: chunk(mutated.bytes, rng), ending: rng.chance(0.1) ? "rst" : "fin" }
}

/** A case on its way: resolves with its problems once its connection has closed. */
export interface RunningCase {
  readonly fuzzCase: FuzzCase
  /** Resolves once every piece is written. */
  readonly sent: Promise<void>
  /** Resolves with what was wrong with the replies (empty: nothing) once the connection closed. */
  readonly done: Promise<string[]>
  readonly isClosed: () => boolean
  /** The client's port, once connected (to find the connection on the server's side). */
  readonly localPort: () => number | null
  /** Bytes received so far. */
  readonly receivedBytes: () => number
  /** Cuts the connection (RST), for one the server keeps open (a held request, a partial body). */
  abort(): void
}

/** Sends a case on a connection of its own and checks what comes back. */
export function startCase(fuzzCase: FuzzCase, target: Target, tally: Tally): RunningCase {
  let connection: RawConnection | null = null
  let aborted = false
  const { promise: sent, resolve: resolveSent } = Promise.withResolvers<void>()
  const done = (async (): Promise<string[]> => {
    const isWs = fuzzCase.protocol === "ws-json" || fuzzCase.protocol === "ws-binary"
    try {
      connection = await RawConnection.open(fuzzCase.protocol === "http" || isWs ? target.httpPort : target.port)
    } catch (error) {
      resolveSent()
      return [`cannot connect: ${String(error)}`]
    }
    if (aborted) connection.terminate()
    // An event stream from ?after=0 replays the topic's whole backlog, which a long run makes large.
    connection.cutAtLimit = fuzzCase.protocol === "http"
    tally.connections++
    tally.bytesSent += fuzzCase.bytes.length
    const ws = isWs ? new RawWsReader(connection) : null
    try {
      if (ws !== null) {
        connection.send(upgradeRequest(fuzzCase.upgrade?.path ?? "/"))
        if (!(await ws.upgraded())) {
          // Refused (a wrong token): the refusal is the whole answer.
          connection.terminate()
          await connection.closed
          const status = Number(ws.refusal!.slice(9, 12))
          tally.statuses.set(status, (tally.statuses.get(status) ?? 0) + 1)
          // A 503 is the server at its connection limit; a 401 must be for a wrong token.
          return fuzzCase.upgrade?.refused === true || ws.refusal!.startsWith("HTTP/1.1 503")
            ? []
            : [`the upgrade was refused: ${ws.refusal}`]
        }
      }
      await connection.sendPieces(fuzzCase.pieces)
    } catch (error) {
      if (!connection.isClosed) return [`sending failed: ${String(error)}`]
    } finally {
      resolveSent()
    }
    if (fuzzCase.ending === "fin") connection.finish()
    else if (fuzzCase.ending === "rst") connection.terminate()
    await connection.closed
    if (connection.receivedBytes > MAX_RECEIVED_BYTES && !connection.cutAtLimit) return [`more than ${MAX_RECEIVED_BYTES} bytes of replies`]
    if (ws !== null) return ws.problemsBeforeUpgrade ?? checkWsReplies(ws.result(), target.maxFrameBytes, tally)
    if (fuzzCase.protocol === "http") return checkHttpReplies(connection.received, tally)
    return checkTcpReplies(fuzzCase.bytes, connection.received, target.maxFrameBytes, tally)
  })()
  return {
    fuzzCase,
    sent,
    done,
    isClosed: () => (connection as RawConnection | null)?.isClosed ?? false,
    localPort: () => (connection as RawConnection | null)?.localPort ?? null,
    receivedBytes: () => (connection as RawConnection | null)?.receivedBytes ?? 0,
    abort: () => {
      aborted = true
      ;(connection as RawConnection | null)?.terminate()
    },
  }
}

function upgradeRequest(path: string): Uint8Array {
  return new TextEncoder().encode(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  )
}

/** Parses what a WebSocket server sends: the 101, then unmasked frames. Echoes a close frame. */
class RawWsReader {
  readonly #connection: RawConnection
  #buffer = new Uint8Array(0)
  #upgraded = false
  problemsBeforeUpgrade: string[] | null = null
  readonly #messages: { text: boolean; data: Uint8Array }[] = []
  #partial: { text: boolean; parts: Uint8Array[] } | null = null
  #close: { code: number; reason: string } | null = null
  #afterClose = 0
  readonly #framing: string[] = []
  #stopped = false

  constructor(connection: RawConnection) {
    this.#connection = connection
    connection.onData = (chunk) => this.#onData(chunk)
  }

  /** The 101 arrived (true), or a 401 or 503 (false); throws on anything else. */
  async upgraded(): Promise<boolean> {
    await this.#connection.events.until(
      () => this.#upgraded || this.problemsBeforeUpgrade !== null || this.refusal !== null,
      () => (this.#connection.isClosed ? "closed" : null),
      "the WebSocket upgrade",
    )
    if (this.problemsBeforeUpgrade !== null) throw new Error(this.problemsBeforeUpgrade.join("; "))
    return this.#upgraded
  }

  /** The head of a 401 or 503 answer to the upgrade. */
  refusal: string | null = null

  result(): WsReceived {
    if (this.#partial !== null) this.#framing.push("a fragmented message that never ended")
    return { messages: this.#messages, close: this.#close, framingProblems: this.#framing, afterClose: this.#afterClose }
  }

  #onData(chunk: Uint8Array): void {
    if (this.#stopped) return
    const buffer = new Uint8Array(this.#buffer.length + chunk.length)
    buffer.set(this.#buffer)
    buffer.set(chunk, this.#buffer.length)
    this.#buffer = buffer
    if (!this.#upgraded) {
      const end = Buffer.from(this.#buffer).indexOf("\r\n\r\n")
      if (end < 0) return
      const head = Buffer.from(this.#buffer.subarray(0, end)).toString("latin1")
      if (head.startsWith("HTTP/1.1 401") || head.startsWith("HTTP/1.1 503")) {
        this.refusal = head.slice(0, 200)
        this.#stopped = true
        return
      }
      if (!head.startsWith("HTTP/1.1 101")) {
        this.problemsBeforeUpgrade = [`the upgrade was refused: ${head.slice(0, 200)}`]
        this.#stopped = true
        return
      }
      this.#upgraded = true
      this.#buffer = this.#buffer.subarray(end + 4)
    }
    for (;;) {
      const bytes = this.#buffer
      if (bytes.length < 2) return
      const fin = (bytes[0]! & 0x80) !== 0
      const opcode = bytes[0]! & 0x0f
      if ((bytes[0]! & 0x70) !== 0) this.#framing.push("a server frame with reserved bits set")
      if ((bytes[1]! & 0x80) !== 0) this.#framing.push("a masked server frame")
      let length = bytes[1]! & 0x7f
      let offset = 2
      if (length === 126) {
        if (bytes.length < 4) return
        length = (bytes[2]! << 8) | bytes[3]!
        offset = 4
      } else if (length === 127) {
        if (bytes.length < 10) return
        length = Number(Buffer.from(bytes.subarray(2, 10)).readBigUInt64BE())
        offset = 10
      }
      if (bytes.length < offset + length) return
      const payload = bytes.slice(offset, offset + length)
      this.#buffer = bytes.subarray(offset + length)
      this.#frame(fin, opcode, payload)
    }
  }

  #frame(fin: boolean, opcode: number, payload: Uint8Array): void {
    switch (opcode) {
      case WsOpcode.text:
      case WsOpcode.binary:
      case WsOpcode.continuation: {
        if (this.#close !== null) {
          this.#afterClose++
          return
        }
        if (opcode === WsOpcode.continuation) {
          if (this.#partial === null) {
            this.#framing.push("a continuation frame with no message to continue")
            return
          }
          this.#partial.parts.push(payload)
        } else {
          if (this.#partial !== null) this.#framing.push("a new message inside a fragmented one")
          this.#partial = { text: opcode === WsOpcode.text, parts: [payload] }
        }
        if (fin) {
          this.#messages.push({ text: this.#partial.text, data: Buffer.concat(this.#partial.parts) })
          this.#partial = null
        }
        return
      }
      case WsOpcode.close: {
        if (this.#close !== null) {
          this.#framing.push("a second close frame")
          return
        }
        const code = payload.length >= 2 ? (payload[0]! << 8) | payload[1]! : 1005
        this.#close = { code, reason: new TextDecoder().decode(payload.subarray(2)) }
        if (payload.length === 1) this.#framing.push("a close frame with a 1-byte payload")
        // Answer the close, then go: the server closes the TCP connection.
        this.#connection.send(closeFrameFor(code))
        this.#connection.end()
        return
      }
      case WsOpcode.ping:
      case WsOpcode.pong:
        return
      default:
        this.#framing.push(`a server frame with opcode ${opcode}`)
    }
  }
}

function closeFrameFor(code: number): Uint8Array {
  const echo = code === 1005 || code === 1006 ? 1000 : code
  // Any mask will do; a fixed one keeps this free of the case's PRNG.
  const payload = [echo >> 8, echo & 0xff]
  const mask = [1, 2, 3, 4]
  return new Uint8Array([0x88, 0x82, ...mask, payload[0]! ^ mask[0]!, payload[1]! ^ mask[1]!])
}

// ---------------------------------------------------------------------------------------------
// Well-behaved clients
// ---------------------------------------------------------------------------------------------

/** Texts with what JSON scanners trip on: braces and quotes in strings, escapes, non-ASCII. */
function goodText(label: string, i: number): string {
  return `${label} #${i} {"x": "}"} [\\] \\u0041 ünï 🎉 \u2028 ${"}".repeat(i)}`
}

class Failure extends Error {
  override readonly name = "WellBehavedClientFailure"
}

function check(condition: boolean, what: () => string): void {
  if (!condition) throw new Failure(what())
}

/** A binary-frames-over-WebSocket client on Bun's WebSocket: frames in, frames out. */
class WsBinaryClient {
  readonly ws: WsClient
  readonly frames: BinaryReply[] = []
  #seen = 0
  readonly #decoder: BinaryDecoder

  private constructor(ws: WsClient) {
    this.ws = ws
    this.#decoder = new BinaryDecoder(
      {
        frame: (frame) => this.frames.push(detachReply(readReply(frame))),
        fail: (error) => {
          throw new Failure(`the good WebSocket binary client got a bad frame: ${error.message}`)
        },
      },
      1 << 30,
    )
  }

  static async connect(url: string): Promise<WsBinaryClient> {
    const client = new WsBinaryClient(await WsClient.connect(url))
    client.ws.send(encodeRequests(req.hello(1)))
    await client.waitForFrames(1)
    return client
  }

  /** Forgets the frames and messages received so far (a long run would keep them all). */
  forget(): void {
    this.frames.length = 0
    this.ws.messages.length = 0
    this.#seen = 0
  }

  async waitForFrames(count: number): Promise<BinaryReply[]> {
    // Bounded: each pass waits for one more message (or throws when the socket closes).
    while (this.frames.length < count) {
      await this.ws.waitForMessages(this.#seen + 1)
      for (; this.#seen < this.ws.messages.length; this.#seen++) {
        const message = this.ws.messages[this.#seen]!
        if (typeof message === "string") throw new Failure(`the good WebSocket binary client got text: ${message.slice(0, 100)}`)
        this.#decoder.push(message)
      }
    }
    return this.frames
  }
}

/**
 * One well-behaved client per protocol, each on its own connection: JSON stream, header-framed
 * JSON, binary (also subscribed to the topic fuzzed puts may hit), JSON and binary over
 * WebSocket, and HTTP (with an event stream open throughout). `round` checks that what each
 * puts comes back exactly, in order.
 */
export class GoodClients {
  /** TCP and WebSocket connections these clients hold. */
  static readonly CONNECTIONS = 5
  /** The binary client's subscription and the HTTP event stream. */
  static readonly SUBSCRIBERS = 2

  readonly #target: Target
  /** Headers for HTTP requests: the token, when the server wants one. */
  readonly #headers: Record<string, string>
  readonly #stream: TestClient
  readonly #header: TestClient
  readonly #binary: BinaryClient
  readonly #wsJson: WsClient
  readonly #wsBinary: WsBinaryClient
  readonly #events: EventStreamReader
  readonly #eventsAbort: AbortController
  /** The binary client's own puts on GOOD_PUSH_TOPIC whose push has not come yet, by seq. */
  readonly #ownPushes = new Map<number, BinaryReply>()
  /** What the pushes looked like so far (they are checked, then forgotten, as they come). */
  #pushes = 0
  #lastPushSeq = 0
  readonly #pushProblems: string[] = []
  #httpLastSeq = 0
  #rounds = 0

  private constructor(
    target: Target,
    headers: Record<string, string>,
    parts: [TestClient, TestClient, BinaryClient, WsClient, WsBinaryClient, EventStreamReader, AbortController],
  ) {
    this.#target = target
    this.#headers = headers
    ;[this.#stream, this.#header, this.#binary, this.#wsJson, this.#wsBinary, this.#events, this.#eventsAbort] = parts
  }

  /** `token`: when the server requires one, a token that may read and write every topic. */
  static async connect(target: Target, token?: string): Promise<GoodClients> {
    const ws = `ws://${HOST}:${target.httpPort}/${token === undefined ? "" : `?token=${encodeURIComponent(token)}`}`
    const headers: Record<string, string> = token === undefined ? {} : { Authorization: `Bearer ${token}` }
    const stream = await TestClient.connect(target.port, "json-stream")
    const header = await TestClient.connect(target.port, "json-header")
    if (token !== undefined) {
      for (const [client, framing] of [
        [stream, "json-stream"],
        [header, "json-header"],
      ] as const) {
        const reply = await client.ask({ action: "auth", token }, framing)
        check(
          reply.message === "" && typeof reply.auth === "string" && reply.error === undefined,
          () => `${framing}: auth answered ${JSON.stringify(reply)}`,
        )
      }
    }
    const binary = await BinaryClient.connect(target.port, token === undefined ? {} : { token })
    const subscribed = await binary.call(req.subscribe(2, GOOD_PUSH_TOPIC))
    check(subscribed.op === Op.ok, () => `SUBSCRIBE answered ${JSON.stringify(subscribed)}`)
    const wsJson = await WsClient.connect(ws)
    const wsBinary = await WsBinaryClient.connect(ws)
    const abort = new AbortController()
    const response = await fetch(`http://${HOST}:${target.httpPort}/topics/${encodeURIComponent("good/http")}/events`, {
      signal: abort.signal,
      headers,
    })
    check(response.status === 200, () => `the good event stream answered ${response.status}`)
    const events = new EventStreamReader(response)
    const clients = new GoodClients(target, headers, [stream, header, binary, wsJson, wsBinary, events, abort])
    // Every connection has made a round trip: the server has opened them all.
    await clients.round("connect")
    return clients
  }

  /** One put-then-get exchange on every protocol at once; throws on any wrong answer. */
  async round(label: string): Promise<void> {
    const n = this.#rounds++
    const tag = `${label} r${n}`
    await Promise.all([
      this.#jsonRound(this.#stream, "json-stream", tag),
      this.#jsonRound(this.#header, "json-header", tag),
      this.#binaryRound(tag),
      this.#wsJsonRound(tag),
      this.#wsBinaryRound(tag),
      this.#httpRound(tag),
    ])
  }

  /** The server's counters, from a binary STATS request (works in-process and across processes). */
  async stats(): Promise<Record<string, unknown>> {
    const id = this.#binary.nextId()
    return statsBody(await this.#binary.call(req.stats(id)))
  }

  /**
   * The binary client's pushes on GOOD_PUSH_TOPIC: in order, no duplicates, and its own puts
   * among them exactly (fuzzed connections put on that topic too).
   */
  checkPushes(): string[] {
    this.#takePushes()
    const missing = [...this.#ownPushes.keys()]
    return [...this.#pushProblems, ...(missing.length === 0 ? [] : [`the good client's own pushes ${missing.join(", ")} never came`])]
  }

  /** Pushes received on GOOD_PUSH_TOPIC (own and fuzzed). */
  get pushCount(): number {
    this.#takePushes()
    return this.#pushes
  }

  /**
   * Checks the binary client's frames received since the last call, then forgets them, so a
   * long run keeps none: pushes in order, each once, its own ones exactly as put.
   */
  #takePushes(): void {
    for (const frame of this.#binary.frames) {
      if (frame.op !== Op.deliver) continue
      this.#pushes++
      if (frame.seq <= this.#lastPushSeq)
        this.#pushProblems.push(`pushes out of order or repeated: seq ${frame.seq} after ${this.#lastPushSeq}`)
      this.#lastPushSeq = Math.max(this.#lastPushSeq, frame.seq)
      const own = this.#ownPushes.get(frame.seq)
      if (own === undefined) continue
      this.#ownPushes.delete(frame.seq)
      if (JSON.stringify(frame) !== JSON.stringify(own)) this.#pushProblems.push(`an own push differs: ${JSON.stringify(frame)}`)
    }
    this.#binary.frames.length = 0
  }

  async close(): Promise<void> {
    this.#eventsAbort.abort()
    await this.#events.cancel()
    await Promise.all([
      this.#stream[Symbol.asyncDispose](),
      this.#header[Symbol.asyncDispose](),
      this.#binary[Symbol.asyncDispose](),
      this.#wsJson[Symbol.asyncDispose](),
      this.#wsBinary.ws[Symbol.asyncDispose](),
    ])
  }

  async #jsonRound(client: TestClient, framing: Framing, tag: string): Promise<void> {
    const topic = `good/${framing}`
    const texts = [0, 1, 2, 3].map((i) => goodText(tag, i))
    const before = client.replies.length
    client.sendRequests(
      [
        ...texts.slice(0, 3).map((message) => ({ action: "put", topic, message })),
        { action: "put", topic, message: texts[3], ack: true },
        ...Array.from({ length: 5 }, () => ({ action: "get", topic })),
      ],
      framing,
    )
    const replies = (await client.waitForReplies(before + 6)).slice(before)
    const ack = replies[0]!
    check(
      ack.message === "" && typeof ack.seq === "number" && Object.keys(ack).length === 2,
      () => `${framing}: the put's ack was ${JSON.stringify(ack)}`,
    )
    const gets = replies.slice(1, 5)
    const expected: Reply[] = texts.map((message, i) => ({ message, seq: gets[i]?.seq ?? -1 }))
    check(
      JSON.stringify(gets) === JSON.stringify(expected),
      () => `${framing}: got ${JSON.stringify(gets)}, expected ${JSON.stringify(expected)}`,
    )
    const seqs = gets.map((reply) => reply.seq!)
    check(
      seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!) && seqs[3] === ack.seq,
      () => `${framing}: sequence numbers ${seqs} (ack ${ack.seq})`,
    )
    check(
      JSON.stringify(replies[5]) === '{"message":""}',
      () => `${framing}: the get after the last message answered ${JSON.stringify(replies[5])}`,
    )
    // Forgotten once checked: a long run keeps nothing.
    client.clearReceived()
    client.replies.length = 0
  }

  async #binaryRound(tag: string): Promise<void> {
    const client = this.#binary
    const topic = "good/binary"
    const payload = new Uint8Array([...Array.from({ length: 256 }, (_, i) => i), ...new TextEncoder().encode(tag)])
    const putId = client.nextId()
    const ack = await client.call(req.put(putId, topic, payload, true))
    check(ack.op === Op.putAck && ack.count === 1, () => `binary: PUT answered ${JSON.stringify(ack)}`)
    const seq = ack.op === Op.putAck ? ack.seq : -1
    const getId = client.nextId()
    const message = await client.call(req.get(getId, topic))
    check(
      JSON.stringify(message) === JSON.stringify(rep.message(getId, seq, topic, payload)),
      () => `binary: GET answered ${JSON.stringify(message)}`,
    )
    const emptyId = client.nextId()
    const empty = await client.call(req.get(emptyId, topic))
    check(JSON.stringify(empty) === JSON.stringify(rep.empty(emptyId)), () => `binary: the second GET answered ${JSON.stringify(empty)}`)
    const pushId = client.nextId()
    const text = `push ${tag}`
    const pushAck = await client.call(req.put(pushId, GOOD_PUSH_TOPIC, text, true))
    check(pushAck.op === Op.putAck, () => `binary: PUT on the push topic answered ${JSON.stringify(pushAck)}`)
    if (pushAck.op === Op.putAck) this.#ownPushes.set(pushAck.seq, rep.deliver(pushAck.seq, GOOD_PUSH_TOPIC, text))
    this.#takePushes()
  }

  async #wsJsonRound(tag: string): Promise<void> {
    const client = this.#wsJson
    const topic = "good/ws-json"
    const texts = [0, 1].map((i) => goodText(tag, i))
    for (const message of texts) client.send(JSON.stringify({ action: "put", topic, message }))
    for (const message of texts) {
      const reply = await client.ask({ action: "get", topic })
      const expected = upstreamMessageReply(new TextEncoder().encode(message))
      check(reply === expected, () => `ws-json: got ${reply}, expected ${expected}`)
    }
    const empty = await client.ask({ action: "get", topic })
    check(empty === '{"message": ""}', () => `ws-json: the get after the last message answered ${empty}`)
    client.messages.length = 0
  }

  async #wsBinaryRound(tag: string): Promise<void> {
    const client = this.#wsBinary
    const topic = "good/ws-binary"
    const payload = new TextEncoder().encode(goodText(tag, 0))
    client.forget()
    const base = 10 + this.#rounds * 10
    client.ws.send(encodeRequests(req.put(base, topic, payload, true), req.get(base + 1, topic), req.get(base + 2, topic)))
    const frames = await client.waitForFrames(3)
    const ack = frames[0]!
    check(ack.op === Op.putAck && ack.requestId === base && ack.count === 1, () => `ws-binary: PUT answered ${JSON.stringify(ack)}`)
    const seq = ack.op === Op.putAck ? ack.seq : -1
    const expected = [rep.message(base + 1, seq, topic, payload), rep.empty(base + 2)]
    check(JSON.stringify(frames.slice(1)) === JSON.stringify(expected), () => `ws-binary: got ${JSON.stringify(frames.slice(1))}`)
  }

  async #httpRound(tag: string): Promise<void> {
    const url = `http://${HOST}:${this.#target.httpPort}/topics/${encodeURIComponent("good/http")}`
    // Bytes that are not UTF-8, then a text: both come back exactly, in order.
    const payloads = [
      new Uint8Array([0xff, 0x00, 0xc3, 0x28, ...new TextEncoder().encode(tag)]),
      new TextEncoder().encode(goodText(tag, 1)),
    ]
    const seqs: number[] = []
    for (const payload of payloads) {
      const response = await fetch(url, { method: "POST", body: payload, headers: this.#headers })
      const body = (await response.json()) as { topic: string; seq: number }
      check(
        response.status === 201 && body.topic === "good/http" && Number.isSafeInteger(body.seq),
        () => `http: POST answered ${response.status} ${JSON.stringify(body)}`,
      )
      seqs.push(body.seq)
    }
    let after = this.#httpLastSeq
    for (const [i, payload] of payloads.entries()) {
      const response = await fetch(`${url}?after=${after}`, { headers: this.#headers })
      const body = new Uint8Array(await response.arrayBuffer())
      check(
        response.status === 200 && response.headers.get("dsmq-seq") === String(seqs[i]) && Buffer.from(body).equals(payload),
        () => `http: GET after ${after} answered ${response.status} seq ${response.headers.get("dsmq-seq")} (expected ${seqs[i]})`,
      )
      after = seqs[i]!
    }
    const none = await fetch(`${url}?after=${after}`, { headers: this.#headers })
    await none.arrayBuffer()
    check(none.status === 204, () => `http: GET after the last message answered ${none.status}`)
    this.#httpLastSeq = after
    // The event stream, open all along, gets both, in order.
    for (const [i, seq] of seqs.entries()) {
      const event = await this.#events.next()
      check(event.id === String(seq) && event.event === "message", () => `http events: got ${JSON.stringify(event)}, expected id ${seq}`)
      if (i === 1) check(event.data === goodText(tag, 1), () => `http events: data ${JSON.stringify(event.data)}`)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Waves
// ---------------------------------------------------------------------------------------------

export interface WaveResult {
  /** Each failing case, described for replay, with what was wrong. */
  readonly failures: { readonly description: string; readonly problems: readonly string[]; readonly replay: string }[]
  /** Cases the server still held when the wave ended (cut by the client). */
  readonly aborted: number
}

/**
 * Sends `cases` at once, each on its own connection, while the good clients do a round; once
 * both are done, gives the connections `settleTurns` turns of the event loop to close, then
 * cuts the ones the server still holds (a pending get_wait, a partial body, an event stream).
 */
/** How long no byte may have arrived on the connections still open before they are cut. */
const QUIET_MS = 10
const MAX_QUIET_WAIT_MS = 2_000

/**
 * Waits until replies in flight on the connections the server keeps open have arrived: a busy
 * machine can take longer than the settle turns to deliver a large one (a 64 KiB message was
 * once cut 159 bytes short by the abort). Bounded by MAX_QUIET_WAIT_MS.
 */
async function untilQuiet(running: readonly RunningCase[]): Promise<void> {
  const open = (): RunningCase[] => running.filter((item) => !item.isClosed())
  const received = (): number => open().reduce((sum, item) => sum + item.receivedBytes(), 0)
  const deadline = performance.now() + MAX_QUIET_WAIT_MS
  let last = received()
  while (open().length > 0 && performance.now() < deadline) {
    await Bun.sleep(QUIET_MS)
    const now = received()
    if (now === last) return
    last = now
  }
}

export async function runWave(
  cases: readonly FuzzCase[],
  target: Target,
  tally: Tally,
  good: GoodClients | null,
  label: string,
  settleTurns = 2000,
): Promise<WaveResult> {
  const running = cases.map((fuzzCase) => startCase(fuzzCase, target, tally))
  let goodFailure: unknown = null
  await Promise.all([good?.round(`${label} during`).catch((error: unknown) => (goodFailure = error)), ...running.map((item) => item.sent)])
  for (let turn = 0; turn < settleTurns && running.some((item) => !item.isClosed()); turn++) await yieldTurn()
  await untilQuiet(running)
  let aborted = 0
  for (const item of running) {
    if (!item.isClosed()) {
      aborted++
      item.abort()
    }
  }
  const results = await Promise.all(running.map((item) => item.done))
  if (goodFailure !== null) throw goodFailure
  const failures = results.flatMap((problems, i) =>
    problems.length === 0 ? [] : [{ description: describeCase(running[i]!.fuzzCase), problems, replay: running[i]!.fuzzCase.replay }],
  )
  return { failures, aborted }
}
