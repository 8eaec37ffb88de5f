/**
 * docs/PROTOCOL.md must say what the code does: every worked example decodes to one frame that
 * FrameWriter encodes to the same bytes (and prints with the same grouping), the text around
 * each example says what its bytes say, and the tables match the code's constants.
 */
import { describe, expect, test } from "bun:test"
import { HEADER_BYTES, Op } from "../../src/protocol/binary/constants.ts"
import { BinaryDecoder } from "../../src/protocol/binary/decoder.ts"
import { type BinaryReply, readReply } from "../../src/protocol/binary/reply.ts"
import { type BinaryRequest, readRequest } from "../../src/protocol/binary/request.ts"
import { ErrorCode, type ErrorName } from "../../src/protocol/errors.ts"
import { MAX_WAIT_MS } from "../../src/protocol/limits.ts"
import { DEFAULT_MAX_MESSAGE_BYTES, MAX_OUTBOUND_BYTES } from "../../src/start-server.ts"
import { MAX_TOPIC_BYTES } from "../../src/topic/topic-name.ts"
import { BinaryClient } from "../binary-client.ts"
import { formatRaw, formatReply, formatRequest, fromHex, text } from "../binary-frames.ts"
import { startTestServer } from "../helpers.ts"

const DOC = await Bun.file(new URL("../../docs/PROTOCOL.md", import.meta.url)).text()
const EXAMPLES_HEADING = "## Worked examples"
const SECTION = DOC.slice(DOC.indexOf(EXAMPLES_HEADING))

/** An example line: hex groups and `|` only. */
const EXAMPLE_LINE = /^[0-9a-f |]+$/i
/** The document's format: `length | opcode flags | request id | body`. */
const EXAMPLE_FORMAT = /^[0-9a-f]{8} \| [0-9a-f]{2} [0-9a-f]{2} \| [0-9a-f]{8} \|( [0-9a-f]+)*$/

interface Block {
  /** The paragraph that introduces the examples. */
  readonly caption: string
  /** Complete example lines, in order. */
  readonly lines: string[]
  /** Example lines with `..` (bytes left out). */
  readonly elided: string[]
  /** Parenthesized notes under an example line, with the line they follow. */
  readonly notes: { readonly note: string; readonly after: string }[]
  /** Indented lines that are none of the above (there should be none). */
  readonly other: string[]
}

function parseBlocks(section: string): Block[] {
  const blocks: Block[] = []
  /** The paragraph just before the examples: its lines. */
  let caption: string[] = []
  let block: Block | null = null
  let afterBlank = false
  for (const raw of section.split("\n").slice(1)) {
    if (raw.startsWith("    ")) {
      const line = raw.trim()
      if (block === null) {
        block = { caption: caption.join(" "), lines: [], elided: [], notes: [], other: [] }
        blocks.push(block)
        caption = []
      }
      if (line.includes("..")) block.elided.push(line)
      else if (EXAMPLE_LINE.test(line)) block.lines.push(line)
      else if (line.startsWith("(") && block.lines.length > 0) block.notes.push({ note: line, after: block.lines.at(-1)! })
      else block.other.push(line)
    } else if (raw.trim() !== "") {
      if (afterBlank) caption = []
      block = null
      caption.push(raw.trim())
    }
    afterBlank = raw.trim() === ""
  }
  return blocks
}

const BLOCKS = parseBlocks(SECTION).filter((block) => block.lines.length + block.elided.length > 0)
const LINES = BLOCKS.flatMap((block) => block.lines)

type Decoded = { readonly kind: "request"; readonly value: BinaryRequest } | { readonly kind: "reply"; readonly value: BinaryReply }

/** The one frame in `bytes`, or an error saying why there is not exactly one. */
function singleFrame(bytes: Uint8Array): Uint8Array {
  const frames: Uint8Array[] = []
  const errors: string[] = []
  const decoder = new BinaryDecoder(
    { frame: (frame) => frames.push(frame.slice()), fail: (error) => errors.push(error.errorName) },
    DEFAULT_MAX_MESSAGE_BYTES,
  )
  decoder.push(bytes)
  expect({ frames: frames.length, errors, leftOver: decoder.buffered }).toEqual({ frames: 1, errors: [], leftOver: 0 })
  return frames[0]!
}

function decode(line: string): Decoded {
  const frame = singleFrame(fromHex(line))
  if (frame[4]! < 0x80) {
    const request = readRequest(frame)
    if (request.op === "rejected") throw new Error(`${line}: ${request.error.errorName}: ${request.error.message}`)
    return { kind: "request", value: request }
  }
  return { kind: "reply", value: readReply(frame) }
}

/** Decodes a line, allowing the unknown opcodes the errors section shows. */
function decodeOrUnknown(line: string): Decoded | { readonly kind: "unknown"; readonly opcode: number; readonly requestId: number } {
  const frame = singleFrame(fromHex(line))
  const request = frame[4]! < 0x80 ? readRequest(frame) : null
  if (request?.op === "rejected" && request.error.errorName === "unknown_action") {
    return { kind: "unknown", opcode: frame[4]!, requestId: request.requestId }
  }
  return decode(line)
}

/** The strings a frame carries: topics, payloads and bodies that are text. */
function stringsOf(value: BinaryRequest | BinaryReply): string[] {
  const found: string[] = []
  if ("topic" in value) found.push(value.topic)
  if ("payload" in value) found.push(text(value.payload))
  if ("body" in value) found.push(text(value.body))
  if ("entries" in value) for (const entry of value.entries) found.push(entry.topic, text(entry.payload))
  if ("name" in value) found.push(value.name)
  return found.filter((string) => string !== "")
}

describe("docs/PROTOCOL.md worked examples", () => {
  test("the section is found and every indented line is an example or a note on one", () => {
    expect(SECTION.startsWith(EXAMPLES_HEADING)).toBe(true)
    // A line with a typo (a stray character) would otherwise be skipped silently.
    expect(BLOCKS.flatMap((block) => block.other)).toEqual([])
    expect(LINES.length).toBe(24)
    expect(BLOCKS.flatMap((block) => block.elided).length).toBe(2)
  })

  test.each(LINES)("%s is byte-exact", (line) => {
    expect(line).toMatch(EXAMPLE_FORMAT)
    const decoded = decodeOrUnknown(line)
    const frame = fromHex(line)
    switch (decoded.kind) {
      case "request":
        // Same grouping (one hex group per field) implies the same bytes; both are checked.
        expect(formatRequest(decoded.value)).toBe(line)
        expect(fromHex(formatRequest(decoded.value))).toEqual(frame)
        return
      case "reply":
        expect(formatReply(decoded.value)).toBe(line)
        expect(fromHex(formatReply(decoded.value))).toEqual(frame)
        return
      case "unknown":
        expect(formatRaw(decoded.opcode, frame[5]!, decoded.requestId, frame.subarray(HEADER_BYTES))).toBe(line)
        return
    }
  })

  test.each(BLOCKS.map((block) => [block.caption, block] as const))("the text says what the bytes say: %s", (_caption, block) => {
    const { caption } = block
    const decoded = block.lines.map(decodeOrUnknown)
    const values = decoded.flatMap((item) => (item.kind === "unknown" ? [] : [item.value]))

    // "request id N": every frame carries it, except a DELIVER push, which carries 0. A reply
    // shown on its own ("in reply") carries the id of the request just before it.
    const requestId = /request id (\d+)(?: \(0x([0-9a-f]+)\))?/.exec(caption)
    let id: number
    if (requestId === null) {
      expect(caption).toContain("in reply")
      const previous = BLOCKS[BLOCKS.indexOf(block) - 1]!
      id = new DataView(fromHex(previous.lines.at(-1)!).buffer).getUint32(6)
    } else {
      id = Number(requestId[1])
      if (requestId[2] !== undefined) expect(parseInt(requestId[2], 16)).toBe(id)
    }
    for (const item of decoded) {
      const frameId = item.kind === "unknown" ? item.requestId : item.value.requestId
      const isPush = item.kind === "reply" && item.value.op === Op.deliver
      expect({ line: block.lines[decoded.indexOf(item)], requestId: frameId }).toEqual({
        line: block.lines[decoded.indexOf(item)],
        requestId: isPush ? 0 : id,
      })
    }

    // Quoted strings in the caption are exactly the topics and payloads in the frames.
    const quoted = new Set([...caption.matchAll(/"([^"]*)"/g)].map((match) => match[1]!))
    expect(new Set(values.flatMap(stringsOf))).toEqual(quoted)

    // "sequence N": the sequence numbers in the frames.
    const sequences = new Set([...caption.matchAll(/sequence (\d+)/g)].map((match) => Number(match[1])))
    expect(new Set(values.flatMap((value) => ("seq" in value ? [value.seq] : [])))).toEqual(sequences)

    // "with ACK" / "without ACK" on puts.
    const acks = values.flatMap((value) => ("ack" in value ? [value.ack] : []))
    if (/without ACK/.test(caption)) expect(acks).toEqual(acks.map(() => false))
    else if (/with ACK/.test(caption)) expect(acks).toEqual(acks.map(() => true))

    // "version N", "maximum frame N bytes", "(N = 0xH ms)", "opcode 0xH".
    const version = /version (\d+)/.exec(caption)
    if (version !== null) {
      expect(values.map((value) => ("version" in value ? value.version : null)).filter((v) => v !== null)).toEqual([Number(version[1])])
    }
    const maxFrame = /maximum frame ([\d,]+) bytes/.exec(caption)
    if (maxFrame !== null) {
      const announced = Number(maxFrame[1]!.replaceAll(",", ""))
      expect(announced).toBe(DEFAULT_MAX_MESSAGE_BYTES)
      expect(values.map((value) => ("maxFrameBytes" in value ? value.maxFrameBytes : null))).toEqual([announced])
    }
    const timeout = /([\d.]+) s \((\d+) = 0x([0-9a-f]+) ms\)/.exec(caption)
    if (timeout !== null) {
      expect(Number(timeout[1]) * 1000).toBe(Number(timeout[2]))
      expect(parseInt(timeout[3]!, 16)).toBe(Number(timeout[2]))
      expect(values.map((value) => ("timeoutMs" in value ? value.timeoutMs : null))).toEqual([Number(timeout[2])])
    }
    const opcode = /opcode 0x([0-9a-f]{2})/.exec(caption)
    if (opcode !== null) expect(fromHex(block.lines[0]!)[4]).toBe(parseInt(opcode[1]!, 16))

    // The caption names the operations, in the order of the lines.
    const names = decoded.map((item) => (item.kind === "unknown" ? null : OP_NAMES[item.value.op]))
    let from = 0
    for (const name of names) {
      if (name === null || name === undefined) continue
      const at = caption.indexOf(name, from)
      expect({ name, mentioned: at >= 0 }).toEqual({ name, mentioned: true })
      from = at + name.length
    }

    // Notes "(length 0xH = N ...)" under a line: the same number, and the line's length field.
    for (const { note, after } of block.notes) {
      const length = /length 0x([0-9a-f]+) = (\d+)/.exec(note)
      expect(length).not.toBeNull()
      expect(parseInt(length![1]!, 16)).toBe(Number(length![2]))
      expect(new DataView(fromHex(after).buffer).getUint32(0)).toBe(Number(length![2]))
    }
  })

  test("sums and hex-decimal pairs in the text are right", () => {
    // "27 = 6 + 4 + 8 + 9"
    const sums = [...SECTION.matchAll(/(\d+) = (\d+(?: \+ \d+)+)/g)]
    expect(sums.length).toBeGreaterThanOrEqual(3)
    for (const match of sums) {
      const sum = match[2]!.split("+").reduce((total, term) => total + Number(term.trim()), 0)
      expect({ text: match[0], sum }).toEqual({ text: match[0], sum: Number(match[1]) })
    }
    for (const match of SECTION.matchAll(/0x([0-9a-f]+) = (\d+)|(\d+) = 0x([0-9a-f]+)/g)) {
      const [hex, decimal] = match[1] !== undefined ? [match[1], match[2]!] : [match[4]!, match[3]!]
      expect({ text: match[0], value: parseInt(hex, 16) }).toEqual({ text: match[0], value: Number(decimal) })
    }
  })

  test("the examples with bytes left out match what the server sends", async () => {
    using server = startTestServer()
    await using client = await BinaryClient.connect(server.port)
    const elided = BLOCKS.flatMap((block) => block.elided)
    for (const line of elided) {
      const [, frameText, comment] = /^(.*?)(?:\s{2,}\((.*)\))?$/.exec(line)!
      const groups = frameText!.split("|").map((group) => group.trim())
      expect(groups.length).toBe(4)
      const requestId = parseInt(groups[2]!, 16)
      // Send the request this reply answers (the example just above it) and take the real reply.
      const requestLine = BLOCKS.find((block) => block.elided.includes(line))!.lines.at(-1)!
      client.sendBytes(fromHex(requestLine))
      const reply = await client.replyTo(requestId)
      const real = formatReply(reply).split(" | ")
      expect(real.length).toBe(4)
      // The length of an elided body is itself elided: any length; other groups as shown,
      // with `..` standing for the bytes left out.
      const pattern = (group: string) =>
        new RegExp(
          `^${group
            .replace(/\.{2,}/g, "\u0000")
            .replace(/[|]/g, "\\|")
            // biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is the placeholder put in just above
            .replace(/\u0000/g, "[0-9a-f ]*")}$`,
        )
      expect(real[1]).toBe(groups[1]!)
      expect(real[2]).toBe(groups[2]!)
      expect(real[3]).toMatch(pattern(groups[3]!))
      // The comment quotes the start of the text: ("unknown...") or ({"c... JSON).
      const shown = /^"?(.*?)\.\.\./.exec(comment ?? "")
      expect(shown).not.toBeNull()
      const body = reply.op === Op.error ? reply.text : reply.op === Op.statsReply ? text(reply.body) : ""
      expect(body.startsWith(shown![1]!)).toBe(true)
      if (reply.op === Op.error) {
        const code = /\(code (\d+)\)/.exec(BLOCKS.find((block) => block.elided.includes(line))!.caption)
        expect({ code: reply.code, fatal: reply.fatal }).toEqual({ code: Number(code![1]), fatal: false })
      }
    }
    expect(client.isClosed).toBe(false)
  })
})

const OP_NAMES: Partial<Record<number, string>> = {
  [Op.hello]: "HELLO",
  [Op.put]: "PUT",
  [Op.putMany]: "PUT_MANY",
  [Op.get]: "GET",
  [Op.getLatest]: "GET_LATEST",
  [Op.getWait]: "GET_WAIT",
  [Op.subscribe]: "SUBSCRIBE",
  [Op.unsubscribe]: "UNSUBSCRIBE",
  [Op.ping]: "PING",
  [Op.stats]: "STATS",
  [Op.cursor]: "CURSOR",
  [Op.topics]: "TOPICS",
  [Op.from]: "FROM",
  [Op.ok]: "OK",
  [Op.welcome]: "WELCOME",
  [Op.putAck]: "PUT_ACK",
  [Op.message]: "MESSAGE",
  [Op.empty]: "EMPTY",
  [Op.pong]: "PONG",
  [Op.statsReply]: "STATS",
  [Op.topicsReply]: "TOPICS",
  [Op.deliver]: "push",
  [Op.error]: "ERROR",
}

describe("docs/PROTOCOL.md tables and limits", () => {
  /** Rows `| 0xNN | NAME | ...` of the table that follows `heading`. */
  function opcodeRows(heading: string): [number, string][] {
    const table = DOC.slice(DOC.indexOf(heading)).split("\n\n")[1]!
    return [...table.matchAll(/^\| 0x([0-9A-Fa-f]{2}) \| (\w+) \|/gm)].map((match) => [parseInt(match[1]!, 16), match[2]!])
  }

  test("the opcode tables list the code's opcodes", () => {
    const requests = opcodeRows("Requests, client to server:")
    const replies = opcodeRows("Replies and pushes, server to client:")
    const name = (op: number) => (op === Op.deliver ? "DELIVER" : OP_NAMES[op])
    const codeRequests = Object.values(Op).filter((op) => op < 0x80)
    const codeReplies = Object.values(Op).filter((op) => op >= 0x80)
    expect(requests).toEqual(codeRequests.map((op) => [op, name(op)!]))
    expect(replies).toEqual(codeReplies.map((op) => [op, name(op)!]))
  })

  test("the error table lists the code's binary error codes", () => {
    const table = DOC.slice(DOC.indexOf("| code | name |")).split("\n\n")[0]!
    const rows = [...table.matchAll(/^\| (\d+) \| (\w+) \|.*\| (yes|no) \|$/gm)].map((match) => ({
      code: Number(match[1]),
      name: match[2]!,
      fatal: match[3] === "yes",
    }))
    // Every code but the JSON protocols' own, so a code added to the code is added here too.
    const jsonOnly: ErrorName[] = ["bad_json", "not_an_object", "shutdown_refused"]
    expect(rows.map((row) => [row.code, row.name])).toEqual(
      (Object.keys(ErrorCode) as ErrorName[]).filter((name) => !jsonOnly.includes(name)).map((name) => [ErrorCode[name], name]),
    )
    expect(rows.filter((row) => row.fatal).map((row) => row.name)).toEqual([
      "malformed_frame",
      "too_large",
      "unsupported_version",
      "unauthorized",
    ])
    const json = /Codes (\d+), (\d+) and (\d+) belong to the JSON protocols/.exec(DOC)
    expect(json?.slice(1).map(Number)).toEqual([ErrorCode.bad_json, ErrorCode.not_an_object, ErrorCode.shutdown_refused])
  })

  test("the limits in the text are the code's", () => {
    expect(DOC).toContain(`has a ${HEADER_BYTES}-byte header`)
    expect(DOC).toContain(`(at most ${MAX_TOPIC_BYTES} bytes)`)
    expect(DOC).toContain(`(at most ${MAX_WAIT_MS.toLocaleString("en-US")})`)
    expect(DOC).toContain(`${DEFAULT_MAX_MESSAGE_BYTES / 1024 / 1024} MiB by default`)
    expect(DOC).toContain(`more than ${MAX_OUTBOUND_BYTES / 1024 / 1024} MiB of frames waiting`)
    expect(DOC).toContain(`past ${MAX_OUTBOUND_BYTES / 1024 / 1024} MiB of waiting replies`)
  })
})
