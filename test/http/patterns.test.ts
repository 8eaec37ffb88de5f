/** Patterns over HTTP: event streams of `lab/#`, pattern reads, and the topic catalogue. */
import { describe, expect, test } from "bun:test"
import type { AuthConfig } from "../../src/auth/auth.ts"
import { EventStreamReader } from "../event-stream-reader.ts"
import { startTestServer } from "../helpers.ts"

type Server = ReturnType<typeof startTestServer>
const base = (server: Server) => `http://127.0.0.1:${server.httpPort}`
const LAB = "lab-token-0123456789"
const labOnly: AuthConfig = { tokens: [{ name: "lab", token: LAB, read: ["lab/#"], write: ["#"] }], anonymousLegacy: null }

async function put(server: Server, topic: string, body: string | Uint8Array, token?: string): Promise<void> {
  const headers = token === undefined ? undefined : { Authorization: `Bearer ${token}` }
  const response = await fetch(`${base(server)}/topics/${encodeURIComponent(topic)}`, { method: "POST", body, headers })
  expect(response.status).toBe(201)
}

describe("event streams of patterns", () => {
  for (const [where, path] of [
    ["/events?topic=", (pattern: string) => `/events?topic=${encodeURIComponent(pattern)}`],
    ["/topics/PATTERN/events", (pattern: string) => `/topics/${encodeURIComponent(pattern)}/events`],
  ] as const) {
    test(`${where}: every matching put, in put order, as JSON naming its topic; bytes that are not UTF-8 in base64`, async () => {
      using server = startTestServer()
      const response = await fetch(`${base(server)}${path("lab/#")}`)
      expect(response.headers.get("content-type")).toStartWith("text/event-stream")
      const events = new EventStreamReader(response)
      await put(server, "lab/a", "one\ntwo")
      await put(server, "labx/a", "not this")
      await put(server, "lab/b/c", new Uint8Array([0xff, 0x00]))
      const first = await events.next()
      expect(first).toEqual({ id: "1", event: "message", data: JSON.stringify({ topic: "lab/a", seq: 1, text: "one\ntwo" }) })
      expect(await events.next()).toEqual({ id: "3", event: "message", data: JSON.stringify({ topic: "lab/b/c", seq: 3, base64: "/wA=" }) })
      await events.cancel()
    })
  }

  test("several ?topic= are merged in put order, and Last-Event-ID resumes across topics", async () => {
    using server = startTestServer()
    for (const [topic, body] of [
      ["a/1", "x"],
      ["b", "y"],
      ["a/2", "z"],
      ["c", "no"],
    ] as const)
      await put(server, topic, body)
    const response = await fetch(`${base(server)}/events?topic=${encodeURIComponent("a/+")}&topic=b`, { headers: { "Last-Event-ID": "1" } })
    const events = new EventStreamReader(response)
    expect(JSON.parse((await events.next()).data!)).toEqual({ topic: "b", seq: 2, text: "y" })
    expect(JSON.parse((await events.next()).data!)).toEqual({ topic: "a/2", seq: 3, text: "z" })
    await events.cancel()
  })

  test("an exact topic's stream keeps its plain format", async () => {
    using server = startTestServer()
    const events = new EventStreamReader(await fetch(`${base(server)}/topics/t/events`))
    await put(server, "t", "plain")
    expect(await events.next()).toEqual({ id: "1", event: "message", data: "plain" })
    await events.cancel()
  })

  test("a malformed pattern is 400 bad_field; a pattern the token can never read is 403", async () => {
    using server = startTestServer({ auth: labOnly })
    const auth = { headers: { Authorization: `Bearer ${LAB}` } }
    const bad = await fetch(`${base(server)}/events?topic=${encodeURIComponent("lab/#/x")}`, auth)
    expect([bad.status, ((await bad.json()) as { error: { code: string } }).error.code]).toEqual([400, "bad_field"])
    expect((await fetch(`${base(server)}/events?topic=${encodeURIComponent("other/#")}`, auth)).status).toBe(403)
    expect((await fetch(`${base(server)}/events`, auth)).status).toBe(400)
  })
})

test("GET of a pattern after a sequence reads the oldest matching message, naming its topic", async () => {
  using server = startTestServer()
  await put(server, "lab/b", "first")
  await put(server, "lab/a", "second")
  const response = await fetch(`${base(server)}/topics/${encodeURIComponent("lab/+")}?after=1`)
  expect([response.status, response.headers.get("DSMQ-Topic"), response.headers.get("DSMQ-Seq"), await response.text()]).toEqual([
    200,
    "lab%2Fa",
    "2",
    "second",
  ])
})

describe("the topic catalogue", () => {
  test("GET /topics lists every topic by name with its counts; ?match= narrows it", async () => {
    using server = startTestServer()
    await put(server, "lab/b", "12345")
    await put(server, "lab/a", "1")
    await put(server, "lab/a", "22")
    await put(server, "office", "x")
    const listing = (await (await fetch(`${base(server)}/topics`)).json()) as { topics: Record<string, unknown>[]; next?: string }
    expect(listing.next).toBeUndefined()
    expect(listing.topics.map((entry) => entry.topic)).toEqual(["lab/a", "lab/b", "office"])
    expect(listing.topics[0]).toMatchObject({ topic: "lab/a", messages: 2, bytes: 3, firstSeq: 2, lastSeq: 3, subscribers: 0 })
    expect(Date.parse(listing.topics[0]!.lastPutAt as string)).toBeGreaterThan(0)
    const matched = (await (await fetch(`${base(server)}/topics?match=${encodeURIComponent("lab/#")}`)).json()) as {
      topics: { topic: string }[]
    }
    expect(matched.topics.map((entry) => entry.topic)).toEqual(["lab/a", "lab/b"])
  })

  test("pages: ?limit and ?after, with next on every page but the last", async () => {
    using server = startTestServer()
    for (const topic of ["e", "a", "d", "b", "c"]) await put(server, topic, "x")
    const pages: string[][] = []
    let after = ""
    for (let page = 0; page < 10; page++) {
      const listing = (await (await fetch(`${base(server)}/topics?limit=2&after=${after}`)).json()) as {
        topics: { topic: string }[]
        next?: string
      }
      pages.push(listing.topics.map((entry) => entry.topic))
      if (listing.next === undefined) break
      after = listing.next
    }
    expect(pages).toEqual([["a", "b"], ["c", "d"], ["e"]])
  })

  test("only readable topics are listed", async () => {
    using server = startTestServer({ auth: labOnly })
    await put(server, "lab/a", "x", LAB)
    await put(server, "office", "x", LAB)
    const listing = (await (await fetch(`${base(server)}/topics`, { headers: { Authorization: `Bearer ${LAB}` } })).json()) as {
      topics: { topic: string }[]
    }
    expect(listing.topics.map((entry) => entry.topic)).toEqual(["lab/a"])
  })
})
