/**
 * The raw NATS and MQTT drivers behind `bun run bench --peers`: against the real servers (skipped
 * with a note where one is not installed, unless DSMQ_REQUIRE_NATS=1 / DSMQ_REQUIRE_MOSQUITTO=1
 * make that a failure, as .ci/run does), and against a fake server that hands the reply stream
 * over one byte at a time, so every message is cut at every offset.
 */
import { afterAll, describe, expect, test } from "bun:test"
import type { Socket } from "bun"
import { MqttLink, NatsLink, type PeerKind, type PeerLink, peerTopic, publish } from "../bench/load/peer-wire.ts"
import { findPeer, PEER_PROGRAMS, type SpawnedPeer, spawnPeer } from "../bench/load/peers.ts"
import { Out, PHASE_MEASURED } from "../bench/load/wire.ts"

const REQUIRED: Record<PeerKind, boolean> = {
  nats: process.env.DSMQ_REQUIRE_NATS === "1",
  mqtt: process.env.DSMQ_REQUIRE_MOSQUITTO === "1",
}
const MESSAGES = 2000
const WAIT_MS = 10_000

interface Received {
  writer: number
  index: number
  phase: number
  scheduledAt: number
  sentAt: number
}

/** Resolves with the first `count` arrivals on `link`, or rejects after WAIT_MS. */
function collect(link: PeerLink, count: number): Promise<Received[]> {
  const received: Received[] = []
  const { promise, resolve, reject } = Promise.withResolvers<Received[]>()
  const timer = setTimeout(() => reject(new Error(`only ${received.length} of ${count} messages within ${WAIT_MS} ms`)), WAIT_MS)
  link.onArrival = (writer, index, phase, scheduledAt, sentAt) => {
    received.push({ writer, index, phase, scheduledAt, sentAt })
    if (received.length === count) {
      clearTimeout(timer)
      resolve(received)
    }
  }
  return promise
}

/** Indexes whose payload bytes hold CR LF and spaces, which a line-based reader could take for a line end. */
const indexOf = (i: number): number => 0x0d0a_2000 + i

function expectInOrder(received: readonly Received[], writer: number): void {
  expect(received.length).toBe(MESSAGES)
  received.forEach((message, i) => {
    expect(message).toEqual({ writer, index: indexOf(i), phase: PHASE_MEASURED, scheduledAt: i + 0.5, sentAt: i + 0.75 })
  })
}

for (const kind of ["nats", "mqtt"] as const) {
  const program = PEER_PROGRAMS[kind]
  const installed = findPeer(kind) !== null
  if (!installed && REQUIRED[kind]) throw new Error(`${program.name} is required here but not installed (${program.install})`)
  if (!installed) console.warn(`bench --peers driver tests for ${program.name} skipped: not installed (${program.install})`)

  describe.skipIf(!installed)(`the ${program.name} driver against a real ${program.name}`, () => {
    let peer: SpawnedPeer | null = null
    afterAll(async () => {
      await peer?.stop()
    })

    test("every published message reaches a subscriber, whole and in order, and another topic's do not", async () => {
      peer = await spawnPeer(kind)
      expect(peer.version).toMatch(new RegExp(`^${program.name} \\d+\\.\\d+\\.\\d+$`))
      const open = kind === "nats" ? NatsLink.open : MqttLink.open
      const reader = await open(peer.host, peer.port)
      const writer = await open(peer.host, peer.port)
      try {
        await reader.subscribe("bench-test-a")
        const arrived = collect(reader, MESSAGES)
        const mine = peerTopic(kind, "bench-test-a")
        const other = peerTopic(kind, "bench-test-b")
        for (let i = 0; i < MESSAGES; i++) {
          publish(writer.out, other, PHASE_MEASURED, 9, i, i, i)
          publish(writer.out, mine, PHASE_MEASURED, 3, indexOf(i), i + 0.5, i + 0.75)
        }
        expectInOrder(await arrived, 3)
      } finally {
        await Promise.all([reader.close(), writer.close()])
      }
    })
  })
}

/**
 * A fake peer: answers the handshake and each subscription with `ack` as soon as a request
 * arrives, then writes `stream` one byte per event-loop turn.
 */
async function fakePeer(ack: (request: Uint8Array) => Uint8Array | null, stream: Uint8Array) {
  const sockets = new Set<Socket<unknown>>()
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open: (socket) => {
        sockets.add(socket)
      },
      data: (socket, request) => {
        const reply = ack(request)
        if (reply !== null) socket.write(reply)
      },
      close: (socket) => {
        sockets.delete(socket)
      },
    },
  })
  const dribble = async (): Promise<void> => {
    const [socket] = sockets
    for (let i = 0; i < stream.length; i++) {
      socket!.write(stream.subarray(i, i + 1))
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  return { port: listener.port, dribble, stop: () => listener.stop(true) }
}

/** The test messages as a server relays them: MQTT forwards PUBLISH as it came; NATS sends MSG, here with a PING before each. */
function recorded(kind: PeerKind, count: number): Uint8Array {
  const out = new Out(false)
  const encoder = new TextEncoder()
  const topic = kind === "mqtt" ? peerTopic(kind, "t") : { head: encoder.encode("PING\r\nMSG t 1 64\r\n"), tail: encoder.encode("\r\n") }
  for (let i = 0; i < count; i++) publish(out, topic, PHASE_MEASURED, 3, indexOf(i), i + 0.5, i + 0.75)
  return out.bytes.slice(0, out.length)
}

describe("the drivers read messages cut at any byte", () => {
  const count = 50

  test("NATS: MSG lines and payloads one byte at a time, with PINGs between them, answered with PONG", async () => {
    let pongs = 0
    const allPonged = Promise.withResolvers<void>()
    const fake = await fakePeer(
      (request) => {
        const text = new TextDecoder().decode(request)
        pongs += text.split("PONG\r\n").length - 1
        if (pongs === count) allPonged.resolve()
        // CONNECT … PING, and SUB … PING: each PING is answered with PONG.
        return text.includes("PING\r\n") ? new TextEncoder().encode(`INFO {"server_id":"fake"}\r\nPONG\r\n`) : null
      },
      recorded("nats", count),
    )
    try {
      const link = await NatsLink.open("127.0.0.1", fake.port)
      await link.subscribe("t")
      const arrived = collect(link, count)
      await fake.dribble()
      const received = await arrived
      expect(received.map((message) => message.index)).toEqual(Array.from({ length: count }, (_, i) => indexOf(i)))
      expect(received.every((message, i) => message.scheduledAt === i + 0.5 && message.sentAt === i + 0.75)).toBe(true)
      // Every server PING gets its PONG (the last ones may still be on their way).
      await allPonged.promise
      expect(pongs).toBe(count)
      await link.close()
    } finally {
      fake.stop()
    }
  })

  test("MQTT: PUBLISH packets one byte at a time, the remaining length included", async () => {
    const fake = await fakePeer(
      (request) => {
        const type = request[0]! >> 4
        if (type === 1) return new Uint8Array([0x20, 2, 0, 0]) // CONNECT → CONNACK accepted
        if (type === 8) return new Uint8Array([0x90, 3, request[2]!, request[3]!, 0]) // SUBSCRIBE → SUBACK QoS 0
        return null
      },
      recorded("mqtt", count),
    )
    try {
      const link = await MqttLink.open("127.0.0.1", fake.port)
      await link.subscribe("t")
      const arrived = collect(link, count)
      await fake.dribble()
      expect((await arrived).map((message) => message.index)).toEqual(Array.from({ length: count }, (_, i) => indexOf(i)))
      await link.close()
    } finally {
      fake.stop()
    }
  })

  test("MQTT: a refused connection is an error that says so", async () => {
    const fake = await fakePeer(() => new Uint8Array([0x20, 2, 0, 5]), new Uint8Array(0))
    try {
      await expect(MqttLink.open("127.0.0.1", fake.port)).rejects.toThrow("CONNACK return code 5")
    } finally {
      fake.stop()
    }
  })

  test("NATS: -ERR from the server fails the link with the server's words", async () => {
    const fake = await fakePeer(() => new TextEncoder().encode("-ERR 'Authorization Violation'\r\n"), new Uint8Array(0))
    try {
      await expect(NatsLink.open("127.0.0.1", fake.port)).rejects.toThrow("nats-server: -ERR 'Authorization Violation'")
    } finally {
      fake.stop()
    }
  })
})
