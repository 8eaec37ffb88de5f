import { Op } from "../../src/protocol/binary/constants.ts"
import { readU32 } from "../../src/protocol/binary/fields.ts"
import { withTimeout } from "../lib/wait.ts"
import { openPeerLink, type PeerKind } from "./peer-wire.ts"
import type { Protocol } from "./results.ts"
import { WAIT_TIMEOUT_MS } from "./shapes.ts"
import { type Target, websocketUrlOf } from "./targets.ts"
import { WebSocketBinaryLink, WebSocketJsonLink } from "./websocket.ts"
import {
  type Arrival,
  BinaryLink,
  EchoLink,
  JsonLink,
  type JsonReply,
  payloadOffset,
  readJsonPayload,
  readPayload,
  topicBytes,
} from "./wire.ts"

export interface Readers {
  readonly connections: number
  /** Pull readers start asking; push readers are already subscribed. */
  start(): void
  /** No new requests from here on. */
  stop(): void
  close(): Promise<void>
}

/**
 * `count` readers, each reading every topic in `topics`. `arrivals[r]` is told of each message
 * reader r receives. `window`: requests a pull reader keeps in flight per topic.
 */
export async function openReaders(
  protocol: Exclude<Protocol, "echo">,
  target: Target,
  count: number,
  topics: readonly string[],
  window: number,
  arrivals: readonly Arrival[],
): Promise<Readers> {
  switch (protocol) {
    case "relay":
      return openRelayReaders(target, count, arrivals)
    case "binary-push":
      return openPushReaders(() => BinaryLink.open(target.host, target.port), count, topics, arrivals)
    case "websocket-binary-push": {
      const url = websocketUrlOf(target)
      return openPushReaders(() => WebSocketBinaryLink.open(url), count, topics, arrivals)
    }
    case "binary-pull":
      return openBinaryPullReaders(target, count, topics, window, arrivals)
    case "json-stream":
      return openJsonPullReaders(tcpJsonPull(target), count, topics, window, arrivals)
    case "websocket-json":
      return openJsonPullReaders(websocketJsonPull(websocketUrlOf(target)), count, topics, window, arrivals)
    case "nats":
    case "mqtt":
      return openPeerReaders(protocol, target, count, topics, arrivals)
  }
}

/** A peer's readers: one connection each, subscribed to every topic (NATS SUB, MQTT SUBSCRIBE at QoS 0). */
export async function openPeerReaders(
  kind: PeerKind,
  target: Target,
  count: number,
  topics: readonly string[],
  arrivals: readonly Arrival[],
): Promise<Readers> {
  const links = await Promise.all(Array.from({ length: count }, () => openPeerLink(kind, target.host, target.port)))
  await Promise.all(
    links.map(async (link, reader) => {
      link.onArrival = arrivals[reader]!
      for (const topic of topics) await link.subscribe(topic)
    }),
  )
  return alwaysReading(links)
}

/** The relay floor's readers: each gets every writer's messages, as a reader of all topics would. */
export async function openRelayReaders(target: Target, count: number, arrivals: readonly Arrival[]): Promise<Readers> {
  const links = await Promise.all(Array.from({ length: count }, () => EchoLink.open(target.host, target.port, "reader")))
  links.forEach((link, reader) => {
    link.onArrival = arrivals[reader]!
  })
  return alwaysReading(links)
}

/** Readers that need no start or stop (relay, push): only their links to close. */
function alwaysReading(links: readonly { close(): Promise<unknown> }[]): Readers {
  return {
    connections: links.length,
    start: () => {},
    stop: () => {},
    close: async () => {
      await withTimeout(Promise.all(links.map((link) => link.close())), 5000, "closing readers")
    },
  }
}

/** Binary push: one connection per reader (TCP or WebSocket, from `open`), SUBSCRIBE to each topic. */
export async function openPushReaders(
  open: () => Promise<BinaryLink | WebSocketBinaryLink>,
  count: number,
  topics: readonly string[],
  arrivals: readonly Arrival[],
): Promise<Readers> {
  const links = await Promise.all(Array.from({ length: count }, open))
  await Promise.all(
    links.map(async (link, reader) => {
      const arrival = arrivals[reader]!
      link.onFrame = (bytes, start) => {
        if (bytes[start + 4] === Op.deliver) readPayload(bytes, payloadOffset(bytes, start), arrival)
      }
      for (const topic of topics) await link.subscribe(topicBytes(topic))
    }),
  )
  return alwaysReading(links)
}

/**
 * Binary pull: one connection per reader; per topic one GET_WAIT (answered the moment a message
 * is put) and, while GETs keep finding messages, up to `window - 1` pipelined GETs.
 * Request ids: bits 0-10 the topic, bit 11 set for GET_WAIT, bits 12-30 a counter.
 */
export async function openBinaryPullReaders(
  target: Target,
  count: number,
  topics: readonly string[],
  window: number,
  arrivals: readonly Arrival[],
): Promise<Readers> {
  if (topics.length > 2048) throw new Error("too many topics for the request-id layout")
  const encoded = topics.map(topicBytes)
  const links = await Promise.all(Array.from({ length: count }, () => BinaryLink.open(target.host, target.port)))
  let running = false
  const readers = links.map((link, reader) => {
    const arrival = arrivals[reader]!
    const outstanding = new Int32Array(topics.length)
    const waiting = new Uint8Array(topics.length)
    let counter = 1
    const nextId = (topic: number, isWait: number): number => {
      counter = (counter + 1) & 0x7ffff
      return (counter << 12) | (isWait << 11) | topic
    }
    const refill = (topic: number, afterMessage: boolean): void => {
      while (running && outstanding[topic]! < window) {
        if (waiting[topic] === 0) {
          link.out.getWait(nextId(topic, 1), WAIT_TIMEOUT_MS, encoded[topic]!)
          waiting[topic] = 1
        } else if (afterMessage) {
          link.out.topicRequest(Op.get, nextId(topic, 0), encoded[topic]!)
        } else {
          return
        }
        outstanding[topic]!++
      }
    }
    link.onFrame = (bytes, start) => {
      const op = bytes[start + 4]!
      if (op !== Op.message && op !== Op.empty) return
      const id = readU32(bytes, start + 6)
      const topic = id & 0x7ff
      const isWait = (id >> 11) & 1
      outstanding[topic]!--
      if (isWait === 1) waiting[topic] = 0
      if (op === Op.message) {
        readPayload(bytes, payloadOffset(bytes, start), arrival)
        refill(topic, true)
      } else {
        refill(topic, false)
      }
    }
    return {
      start: () => {
        for (const topic of topics.keys()) refill(topic, false)
      },
    }
  })
  return {
    connections: links.length,
    start: () => {
      running = true
      for (const reader of readers) reader.start()
    },
    stop: () => {
      running = false
    },
    close: async () => {
      await withTimeout(Promise.all(links.map((link) => link.close())), 5000, "closing readers")
    },
  }
}

/** What a JSON pull reader needs of its connections: TCP (JsonLink) or WebSocket (WebSocketJsonLink). */
export interface JsonPull<L extends JsonLink | WebSocketJsonLink> {
  open(): Promise<L>
  /** Prepares request `text` once; the result sends it on a link. */
  prepare(text: string): (link: L) => void
}

export function tcpJsonPull(target: Target): JsonPull<JsonLink> {
  const encoder = new TextEncoder()
  return {
    open: () => JsonLink.open(target.host, target.port),
    prepare: (text) => {
      const bytes = encoder.encode(text)
      return (link) => link.sendBytes(bytes)
    },
  }
}

/** Upstream 1.x over WebSocket: each request is a text message of its own. */
export function websocketJsonPull(url: string): JsonPull<WebSocketJsonLink> {
  return { open: () => WebSocketJsonLink.open(url), prepare: (text) => (link) => link.send(text) }
}

/**
 * JSON pull: a JSON get_wait holds back every request behind it on its connection, so a reader
 * of several topics has one connection per topic, each with `window` get_waits in flight (the
 * server answers them one after another as messages arrive).
 */
export async function openJsonPullReaders<L extends JsonLink | WebSocketJsonLink>(
  driver: JsonPull<L>,
  count: number,
  topics: readonly string[],
  window: number,
  arrivals: readonly Arrival[],
): Promise<Readers> {
  const requests = topics.map((topic) => driver.prepare(JSON.stringify({ action: "get_wait", topic, timeout: WAIT_TIMEOUT_MS / 1000 })))
  const links: L[] = []
  const plan: { reader: number; topic: number }[] = []
  for (let reader = 0; reader < count; reader++) for (let topic = 0; topic < topics.length; topic++) plan.push({ reader, topic })
  // Opened a batch at a time: hundreds of simultaneous connects can overflow a small accept backlog.
  for (let i = 0; i < plan.length; i += 50) {
    links.push(...(await Promise.all(plan.slice(i, i + 50).map(() => driver.open()))))
  }
  await Promise.all(links.map((link) => link.ready()))
  let running = false
  let failure: Error | null = null
  links.forEach((link, i) => {
    const { reader, topic } = plan[i]!
    const arrival = arrivals[reader]!
    const ask = requests[topic]!
    link.onReply = (reply: JsonReply) => {
      if (reply.error !== undefined) {
        failure ??= new Error(`server error: ${reply.error.code}: ${reply.error.text}`)
        return
      }
      // A message, or (no seq and empty) a wait that timed out: either way, ask again.
      if (reply.message !== "") readJsonPayload(reply.message, arrival)
      if (running) ask(link)
    }
  })
  return {
    connections: links.length,
    start: () => {
      running = true
      links.forEach((link, i) => {
        const ask = requests[plan[i]!.topic]!
        for (let k = 0; k < window; k++) ask(link)
      })
    },
    stop: () => {
      running = false
      if (failure !== null) throw failure
    },
    close: async () => {
      await withTimeout(Promise.all(links.map((link) => link.close())), 5000, "closing readers")
    },
  }
}
