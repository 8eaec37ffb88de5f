/**
 * Raw-protocol drivers for the peers the suite measures beside the broker (`--peers`):
 * nats-server over NATS's core text protocol and mosquitto over MQTT 3.1.1 with QoS 0. They are
 * written the way bench/load/wire.ts drives the broker: messages appended to an `Out` and written
 * together at the end of the tick, replies read in place from the chunk the socket delivered
 * (only a message cut by the chunk's end is copied), no object per message, the same 64-byte
 * load payloads. So the peers' figures carry the same client overhead as the broker's, and the
 * difference between rows is the servers'.
 *
 * NATS (https://docs.nats.io/reference/reference-protocols/nats-protocol):
 *   client → server  CONNECT {json}\r\n, PUB subject bytes\r\npayload\r\n, SUB subject sid\r\n, PING\r\n, PONG\r\n
 *   server → client  INFO {json}\r\n, MSG subject sid bytes\r\npayload\r\n, PING\r\n, PONG\r\n, +OK\r\n, -ERR 'text'\r\n
 *
 * MQTT 3.1.1 (https://docs.oasis-open.org/mqtt/mqtt/v3.1.1/mqtt-v3.1.1.html): each packet is a
 * type byte, a variable-length "remaining length", then the rest. CONNECT → CONNACK, SUBSCRIBE
 * (QoS 0) → SUBACK, PUBLISH (QoS 0: topic, then the payload, no packet id, no acknowledgement).
 */
import type { Socket } from "bun"
import { type Arrival, Carry, Out, PAYLOAD_BYTES, readPayload } from "./wire.ts"

const encoder = new TextEncoder()
const utf8 = new TextDecoder()
const LF = 0x0a

/** The peers, by the name of the server the suite spawns. */
export type PeerKind = "nats" | "mqtt"

/** A topic ready to be published on: the bytes that precede each payload, and those that follow it. */
export interface PeerTopic {
  readonly head: Uint8Array
  readonly tail: Uint8Array
}

/** `PUB subject 64\r\n` … `\r\n`: the same bytes around every payload on one subject. */
export function natsTopic(subject: string): PeerTopic {
  return { head: encoder.encode(`PUB ${subject} ${PAYLOAD_BYTES}\r\n`), tail: encoder.encode("\r\n") }
}

/** The fixed header and topic of a QoS 0 PUBLISH of a PAYLOAD_BYTES payload. */
export function mqttTopic(topic: string): PeerTopic {
  const name = encoder.encode(topic)
  const rest = [name.length >> 8, name.length & 0xff, ...name]
  return { head: new Uint8Array([0x30, ...remainingLength(rest.length + PAYLOAD_BYTES), ...rest]), tail: new Uint8Array(0) }
}

/** Appends one message carrying a load payload on `topic` (NATS PUB or MQTT PUBLISH). */
export function publish(out: Out, topic: PeerTopic, phase: number, writer: number, index: number, time: number, sentAt = time): void {
  const at = out.reserve(topic.head.length + PAYLOAD_BYTES + topic.tail.length)
  out.bytes.set(topic.head, at)
  out.payloadAt(at + topic.head.length, phase, writer, index, time, sentAt)
  if (topic.tail.length > 0) out.bytes.set(topic.tail, at + topic.head.length + PAYLOAD_BYTES)
}

export function peerTopic(kind: PeerKind, topic: string): PeerTopic {
  return kind === "nats" ? natsTopic(topic) : mqttTopic(topic)
}

/** MQTT's variable-length integer: 7 bits per byte, low bits first, the top bit set on all but the last. */
function remainingLength(value: number): number[] {
  const bytes: number[] = []
  do {
    let byte = value % 128
    value = Math.floor(value / 128)
    if (value > 0) byte |= 0x80
    bytes.push(byte)
  } while (value > 0)
  return bytes
}

/** What both peer links offer the load generator. */
export interface PeerLink {
  readonly out: Out
  onArrival: Arrival
  /** Resolves once the server has the subscription (a later publish reaches it). */
  subscribe(topic: string): Promise<void>
  close(): Promise<void>
}

abstract class LinkBase {
  readonly out = new Out()
  onArrival: Arrival = () => {}
  protected socket: Socket<unknown> | null = null
  protected readonly carry = new Carry()
  readonly closed = Promise.withResolvers<void>()
  protected failure: Error | null = null
  /** Waiters for the next acknowledgement (NATS PONG, MQTT CONNACK or SUBACK), in order. */
  protected readonly waiters: { resolve(): void; reject(error: Error): void }[] = []

  protected async connect(host: string, port: number): Promise<void> {
    this.socket = await Bun.connect({
      hostname: host,
      port,
      socket: {
        data: (_socket, chunk) => this.#data(chunk),
        drain: () => this.out.onDrain(),
        close: () => this.fail(new Error("connection closed")),
        error: (_socket, error) => this.fail(error),
      },
    })
    this.out.attach(this.socket)
  }

  /** Parses whole messages from `bytes`; returns where the first incomplete one starts. */
  protected abstract parse(bytes: Uint8Array): number

  #data(chunk: Uint8Array): void {
    if (this.failure !== null) return
    const bytes = this.carry.join(chunk)
    const consumed = this.parse(bytes)
    if (this.failure === null) this.carry.keep(bytes, consumed)
  }

  protected acknowledged(): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure)
    const { promise, resolve, reject } = Promise.withResolvers<void>()
    this.waiters.push({ resolve, reject })
    return promise
  }

  protected settle(): void {
    this.waiters.shift()?.resolve()
  }

  protected fail(error: Error): void {
    if (this.failure !== null) return
    this.failure = error
    for (const waiter of this.waiters.splice(0)) waiter.reject(error)
    this.socket?.end()
    this.closed.resolve()
  }

  close(): Promise<void> {
    if (this.failure === null && this.socket !== null) {
      this.out.flush()
      this.socket.end()
    }
    return this.closed.promise
  }
}

/** One connection to nats-server speaking the core text protocol. */
export class NatsLink extends LinkBase implements PeerLink {
  #nextSid = 1

  static async open(host: string, port: number): Promise<NatsLink> {
    const link = new NatsLink()
    await link.connect(host, port)
    // verbose off: no +OK per message; echo off: a connection never receives its own messages.
    link.out.append(encoder.encode(`CONNECT {"verbose":false,"pedantic":false,"echo":false,"lang":"bench","version":"1"}\r\nPING\r\n`))
    await link.acknowledged()
    return link
  }

  /** SUB, then PING: the PONG comes after the server has handled the SUB. */
  async subscribe(subject: string): Promise<void> {
    this.out.append(encoder.encode(`SUB ${subject} ${this.#nextSid++}\r\nPING\r\n`))
    await this.acknowledged()
  }

  protected parse(bytes: Uint8Array): number {
    let at = 0
    while (at < bytes.length) {
      const lineEnd = bytes.indexOf(LF, at)
      if (lineEnd < 0) return at
      const first = bytes[at]!
      if (first === 0x4d) {
        // MSG subject sid [reply-to] count\r\n, then count bytes and \r\n.
        let count = 0
        let digit = lineEnd - 2
        for (let scale = 1; digit > at && bytes[digit] !== 0x20; digit--, scale *= 10) count += (bytes[digit]! - 0x30) * scale
        const payloadAt = lineEnd + 1
        const next = payloadAt + count + 2
        if (next > bytes.length) return at
        if (count >= PAYLOAD_BYTES) readPayload(bytes, payloadAt, this.onArrival)
        at = next
        continue
      }
      if (first === 0x50) {
        // PING (answered at once) or PONG.
        if (bytes[at + 1] === 0x49) this.out.append(encoder.encode("PONG\r\n"))
        else this.settle()
      } else if (first === 0x2d) {
        this.fail(new Error(`nats-server: ${utf8.decode(bytes.subarray(at, lineEnd)).trim()}`))
        return at
      }
      // INFO and +OK need nothing.
      at = lineEnd + 1
    }
    return at
  }
}

let mqttClients = 0

/** One connection to an MQTT 3.1.1 broker, QoS 0 throughout. */
export class MqttLink extends LinkBase implements PeerLink {
  #nextPacketId = 1

  static async open(host: string, port: number): Promise<MqttLink> {
    const link = new MqttLink()
    await link.connect(host, port)
    const clientId = encoder.encode(`bench-${process.pid}-${++mqttClients}-${Date.now().toString(36)}`)
    // Protocol "MQTT" level 4, clean session, a keep-alive longer than any run.
    const rest = [0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0x02, 0x58, clientId.length >> 8, clientId.length & 0xff, ...clientId]
    link.out.append(new Uint8Array([0x10, ...remainingLength(rest.length), ...rest]))
    await link.acknowledged()
    return link
  }

  async subscribe(topic: string): Promise<void> {
    const name = encoder.encode(topic)
    const id = this.#nextPacketId++ & 0xffff || 1
    const rest = [id >> 8, id & 0xff, name.length >> 8, name.length & 0xff, ...name, 0]
    this.out.append(new Uint8Array([0x82, ...remainingLength(rest.length), ...rest]))
    await this.acknowledged()
  }

  protected parse(bytes: Uint8Array): number {
    let at = 0
    while (at + 2 <= bytes.length) {
      let length = 0
      let lengthBytes = 0
      let scale = 1
      let byte: number
      do {
        if (at + 1 + lengthBytes >= bytes.length) return at
        byte = bytes[at + 1 + lengthBytes]!
        length += (byte & 0x7f) * scale
        scale *= 128
        lengthBytes++
      } while ((byte & 0x80) !== 0 && lengthBytes < 4)
      const bodyAt = at + 1 + lengthBytes
      const next = bodyAt + length
      if (next > bytes.length) return at
      const type = bytes[at]! >> 4
      if (type === 3) {
        // PUBLISH, QoS 0: topic length, topic, payload.
        const payloadAt = bodyAt + 2 + ((bytes[bodyAt]! << 8) | bytes[bodyAt + 1]!)
        if (next - payloadAt >= PAYLOAD_BYTES) readPayload(bytes, payloadAt, this.onArrival)
      } else if (type === 2) {
        // CONNACK: the return code is the second byte of the body.
        const code = bytes[bodyAt + 1]!
        if (code !== 0) {
          this.fail(new Error(`MQTT broker refused the connection (CONNACK return code ${code})`))
          return at
        }
        this.settle()
      } else if (type === 9) {
        // SUBACK: 0x80 is a refused subscription.
        if (bytes[next - 1] === 0x80) {
          this.fail(new Error("MQTT broker refused a subscription"))
          return at
        }
        this.settle()
      }
      at = next
    }
    return at
  }
}

export function openPeerLink(kind: PeerKind, host: string, port: number): Promise<NatsLink | MqttLink> {
  return kind === "nats" ? NatsLink.open(host, port) : MqttLink.open(host, port)
}
