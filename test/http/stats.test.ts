/** GET /stats, GET /stats/connections and the dashboard's live channel (GET /stats/live), over real HTTP. */
import { describe, expect, test } from "bun:test"
import type { AuthConfig } from "../../src/auth/auth.ts"
import { connect } from "../../src/client.ts"
import { MAX_VIEWERS } from "../../src/http/dashboard-feed.ts"
import { TAIL_PREVIEW_BYTES } from "../../src/http/dashboard-tail.ts"
import { EventStreamReader } from "../event-stream-reader.ts"
import { startTestServer, TestClient } from "../helpers.ts"

const ADMIN = "admin-token-0123456789abcdef"
const LAB = "lab-token-0123456789abcdefgh"
const tokens: AuthConfig = {
  tokens: [
    { name: "admin", token: ADMIN, read: ["#"], write: ["#"] },
    { name: "lab", token: LAB, read: ["lab/#"], write: ["lab/#"] },
  ],
  anonymousLegacy: null,
}

type Server = ReturnType<typeof startTestServer>
const base = (server: Server) => `http://127.0.0.1:${server.httpPort}`
const bearer = (token: string) => ({ headers: { Authorization: `Bearer ${token}` } })

async function put(server: Server, topic: string, body: string | Uint8Array, token?: string): Promise<void> {
  const response = await fetch(`${base(server)}/topics/${encodeURIComponent(topic)}`, {
    method: "POST",
    body,
    ...(token === undefined ? {} : bearer(token)),
  })
  expect(response.status).toBe(201)
}

interface ConnectionsPage {
  total: number
  offset: number
  limit: number
  connections: { principal: string | null }[]
}

interface Update {
  atMs: number
  overview: { puts: { total: number } }
  rate: { atMs: number; putsPerSecond: number }
  history?: unknown[]
  topics?: { total: number; list: { topic: string; messages: number; lastPutAt: number | null }[] }
  connections?: { total: number; list: { protocol: string; principal: string | null }[] }
  tail?: {
    name: string
    skipped: number
    messages: { topic: string; seq: number; bytes: number; truncated: boolean; text?: string; hex?: string }[]
  }
}

/** The live channel, read update by update. */
async function live(server: Server, query = "", token?: string) {
  const response = await fetch(`${base(server)}/stats/live${query}`, token === undefined ? {} : bearer(token))
  expect(response.status).toBe(200)
  expect(response.headers.get("content-type")).toStartWith("text/event-stream")
  const reader = new EventStreamReader(response)
  return {
    async next(): Promise<Update> {
      const event = await reader.next()
      expect(event.event).toBe("update")
      return JSON.parse(event.data!) as Update
    },
    /** Updates until `done` says so; bounded by `max` updates (each at most 250 ms apart). */
    async until(done: (update: Update) => boolean, max = 80): Promise<Update> {
      for (let i = 0; i < max; i++) {
        const update = await this.next()
        if (done(update)) return update
      }
      throw new Error(`no update matched in ${max} updates`)
    },
    [Symbol.asyncDispose]: () => reader.cancel(),
  }
}

describe("GET /stats", () => {
  test("has the documented fields, and counts puts and connections by protocol", async () => {
    using server = startTestServer()
    await using json = await TestClient.connect(server.port)
    json.sendRequests([{ action: "put", topic: "lab/t", message: "hello" }])
    // A put has no reply in upstream's protocol: a get of another topic says it has run.
    expect((await json.ask({ action: "get", topic: "sync" })).message).toBe("")
    await put(server, "lab/t", "over http")
    const response = await fetch(`${base(server)}/stats`)
    expect(response.headers.get("content-type")).toStartWith("application/json")
    const stats = (await response.json()) as { memory: { storeBytes: number }; errors: Record<string, number>; startedAt: string }
    // Payloads plus each message's and the topic's overhead, as the store's cap counts them.
    expect(stats.memory.storeBytes).toBeGreaterThan(14)
    expect(stats).toMatchObject({
      version: expect.any(String),
      pid: process.pid,
      uptimeSeconds: expect.any(Number),
      memory: { rss: expect.any(Number), heapUsed: expect.any(Number), storeBytes: expect.any(Number), maxMemory: expect.any(Number) },
      connections: { total: 1, byProtocol: { "json-stream": 1 } },
      puts: { total: 2, bytes: 5 + 9, perSecond: expect.any(Number) },
      deliveries: { total: 0, bytes: 0, perSecond: expect.any(Number) },
      deliveryLatency: { windowSeconds: expect.any(Number), count: 0, p50: null, p90: null, p99: null },
      store: { messages: 2, payloadBytes: 14, topics: 1, lastSeq: 2 },
      retention: { dropped: 0 },
      buffers: { bytes: expect.any(Number), maxBytes: expect.any(Number) },
      cpuSeconds: expect.any(Number),
    })
    expect(Object.values(stats.errors).every((count) => count === 0)).toBe(true)
    expect(new Date(stats.startedAt).getTime()).toBeLessThanOrEqual(Date.now())
  })

  test("counts errors by code, as clients were told them", async () => {
    using server = startTestServer()
    await using json = await TestClient.connect(server.port)
    expect((await json.ask({ action: "nonsense", topic: "t" })).error?.code).toBe("unknown_action")
    const stats = (await (await fetch(`${base(server)}/stats`)).json()) as { errors: Record<string, number> }
    expect(stats.errors.unknown_action).toBe(1)
  })
})

describe("GET /stats/connections", () => {
  test("pages the open connections, oldest first, with protocol, address, principal and subscriptions", async () => {
    using server = startTestServer({ auth: tokens })
    await using first = await connect({ port: server.port, token: LAB, retries: 0 })
    await first.subscribe("lab/a")
    await first.subscribe("lab/b")
    await using second = await TestClient.connect(server.port)
    await second.ask({ action: "auth", token: ADMIN })
    const all = (await (await fetch(`${base(server)}/stats/connections`, bearer(ADMIN))).json()) as ConnectionsPage
    expect(all).toMatchObject({ total: 2, offset: 0, limit: 100 })
    expect(all.connections).toEqual([
      {
        protocol: "binary",
        address: "127.0.0.1",
        principal: "lab",
        subscriptions: 2,
        bufferedBytes: expect.any(Number),
        queuedRequests: 0,
        connectedAt: expect.any(String),
        ageSeconds: expect.any(Number),
      },
      expect.objectContaining({ protocol: "json-stream", principal: "admin", subscriptions: 0 }),
    ])
    const page = (await (await fetch(`${base(server)}/stats/connections?offset=1&limit=1`, bearer(ADMIN))).json()) as ConnectionsPage
    expect([page.total, page.offset, page.limit, page.connections.length, page.connections[0]!.principal]).toEqual([2, 1, 1, 1, "admin"])
  })

  test.each([
    ["limit=0", 400],
    ["limit=1001", 400],
    ["limit=1.5", 400],
    ["offset=-1", 400],
    ["offset=many", 400],
  ])("%s is a clear 400", async (query, status) => {
    using server = startTestServer()
    const response = await fetch(`${base(server)}/stats/connections?${query}`)
    expect(response.status).toBe(status)
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("bad_field")
  })
})

describe("with tokens", () => {
  test("the page is served to anyone; /stats, /stats/connections and /stats/live answer 401 without a valid token", async () => {
    using server = startTestServer({ auth: tokens })
    const page = await fetch(`${base(server)}/`)
    expect(page.status).toBe(200)
    expect(await page.text()).toContain("<title>dsmq dashboard</title>")
    for (const path of ["/stats", "/stats/connections", "/stats/live"]) {
      for (const init of [{}, bearer("not-a-token-0123456789abcdef")]) {
        const response = await fetch(`${base(server)}${path}`, init)
        expect([path, response.status, response.headers.get("www-authenticate")]).toEqual([path, 401, "Bearer"])
      }
      const allowed = await fetch(`${base(server)}${path}`, bearer(LAB))
      expect([path, allowed.status]).toEqual([path, 200])
      await allowed.body?.cancel()
    }
  })

  test("a viewer sees only the topics, and tail messages, its token may read", async () => {
    using server = startTestServer({ auth: tokens })
    await put(server, "office/door", "secret", ADMIN)
    await put(server, "lab/temp", "21.5", ADMIN)
    await using stream = await live(server, `?tail=${encodeURIComponent("#")}`, ADMIN)
    const first = await stream.next()
    expect(first.topics!.list.map((row) => row.topic).sort()).toEqual(["lab/temp", "office/door"])

    // "#" matches topics the lab token may not read: refused, as any read of it would be.
    const refused = await fetch(`${base(server)}/stats/live?tail=office%2F%23`, bearer(LAB))
    expect(refused.status).toBe(403)
    await using lab = await live(server, `?tail=${encodeURIComponent("+/#")}`, LAB)
    const labFirst = await lab.next()
    expect(labFirst.topics).toEqual({ total: 1, list: [expect.objectContaining({ topic: "lab/temp", messages: 1 })] })
    await put(server, "office/door", "opened", ADMIN)
    await put(server, "lab/temp", "21.6", ADMIN)
    const shown = await lab.until((update) => (update.tail?.messages.length ?? 0) > 0)
    expect(shown.tail!.messages.map((message) => [message.topic, message.text])).toEqual([["lab/temp", "21.6"]])
  })
})

describe("GET /stats/live", () => {
  test("the first update comes at once, with the rate history, the topics and the connections", async () => {
    using server = startTestServer()
    await put(server, "lab/t", "x")
    await using stream = await live(server)
    const first = await stream.next()
    expect(first.overview.puts.total).toBe(1)
    expect(Array.isArray(first.history)).toBe(true)
    expect(first.topics).toEqual({
      total: 1,
      list: [expect.objectContaining({ topic: "lab/t", messages: 1, lastPutAt: expect.any(Number) })],
    })
    expect(first.connections).toEqual({ total: 0, list: [] })
    expect(first.tail).toBeUndefined()
  })

  test("a burst reaches the tail in a few updates: each message shown or counted as passed over, in order", async () => {
    using server = startTestServer()
    await using stream = await live(server, `?tail=${encodeURIComponent("lab/#")}&tailLimit=50`)
    await stream.next()
    const burst = 2000
    await using client = await connect({ port: server.port, retries: 0 })
    for (let i = 0; i < burst; i++) client.put(i % 2 === 0 ? "lab/a" : "lab/b", `m${i}`)
    await client.ping()
    await put(server, "other", "not in the tail")
    let counted = 0
    let updates = 0
    const shown: string[] = []
    await stream.until((update) => {
      updates++
      counted += update.tail!.skipped + update.tail!.messages.length
      shown.push(...update.tail!.messages.map((message) => message.text!))
      return counted >= burst
    })
    expect(counted).toBe(burst)
    // Far fewer updates than messages: the tail is batched into the channel's ticks.
    expect(updates).toBeLessThan(burst / 50)
    expect(shown.at(-1)).toBe(`m${burst - 1}`)
    const numbers = shown.map((text) => Number(text.slice(1)))
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b))
  })

  test("binary payloads show as hex, long ones cut to the preview, with their full size", async () => {
    using server = startTestServer()
    await using stream = await live(server, "?tail=bin")
    await stream.next()
    await put(server, "bin", new Uint8Array([0xff, 0x00, 0x10]))
    await put(server, "bin", "é".repeat(TAIL_PREVIEW_BYTES))
    const messages: NonNullable<Update["tail"]>["messages"][number][] = []
    await stream.until((update) => {
      messages.push(...update.tail!.messages)
      return messages.length >= 2
    })
    expect(messages[0]).toMatchObject({ hex: "ff0010", bytes: 3, truncated: false })
    // 512 bytes of two-byte characters: the preview ends on a whole character.
    expect(messages[1]).toMatchObject({ text: "é".repeat(TAIL_PREVIEW_BYTES / 2), bytes: TAIL_PREVIEW_BYTES * 2, truncated: true })
  })

  test.each([
    ["a bad pattern", "?tail=lab%2F%23%2Fx", 400],
    ["a tailLimit of 0", "?tail=t&tailLimit=0", 400],
    ["a tailLimit past the most", "?tail=t&tailLimit=100000", 400],
  ])("%s is a clear 400", async (_name, query, status) => {
    using server = startTestServer()
    const response = await fetch(`${base(server)}/stats/live${query}`)
    expect(response.status).toBe(status)
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("bad_field")
  })

  test(`at most ${MAX_VIEWERS} viewers server-wide; the next is told to come back, and one leaving makes room`, async () => {
    using server = startTestServer()
    const streams = []
    for (let i = 0; i < MAX_VIEWERS; i++) {
      const stream = await live(server)
      await stream.next()
      streams.push(stream)
    }
    const refused = await fetch(`${base(server)}/stats/live`)
    expect([refused.status, refused.headers.get("retry-after")]).toEqual([503, "5"])
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("limit_exceeded")
    // Still served: the rest of the API, and the viewers there are.
    expect((await fetch(`${base(server)}/stats`)).status).toBe(200)
    await streams.pop()![Symbol.asyncDispose]()
    // The server sees the stream end when its next write fails or the cancel arrives: retry a bounded number of times.
    let admitted: Response | null = null
    for (let attempt = 0; attempt < 40 && admitted === null; attempt++) {
      const response = await fetch(`${base(server)}/stats/live`)
      if (response.status === 200) admitted = response
      else await streams[0]!.next()
    }
    expect(admitted?.status).toBe(200)
    await admitted?.body?.cancel()
    for (const stream of streams) await stream[Symbol.asyncDispose]()
  })

  test("stopping the server ends every viewer's stream", async () => {
    const server = startTestServer()
    const response = await fetch(`${base(server)}/stats/live`)
    const reader = new EventStreamReader(response)
    await reader.next()
    server.stop()
    let ended = false
    for (let i = 0; i < 10 && !ended; i++)
      ended = await reader.next().then(
        () => false,
        () => true,
      )
    expect(ended).toBe(true)
    await server.stopped
  })
})

test("the README documents every field of /stats", async () => {
  using server = startTestServer()
  const stats = (await (await fetch(`${base(server)}/stats`)).json()) as Record<string, unknown>
  const readme = await Bun.file(`${import.meta.dir}/../../README.md`).text()
  const table = readme.slice(readme.indexOf("**`GET /stats`**"), readme.indexOf("**`GET /stats/connections"))
  expect(table.length).toBeGreaterThan(100)
  const documented = (key: string) => table.includes(`\`${key}\``) || table.includes(`\`${key}.`)
  expect(Object.keys(stats).filter((key) => !documented(key))).toEqual([])
})
