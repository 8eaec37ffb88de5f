/**
 * Cursors cost nothing until they matter: reads of topics that do not exist hold no entry and
 * create no row, on any protocol; the entries a connection holds are bounded by --max-cursors,
 * past which a read is refused with too_many_cursors and the connection goes on.
 */
import { Database } from "bun:sqlite"
import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { connect, DsmqError } from "../../src/client.ts"
import { Op } from "../../src/protocol/binary/constants.ts"
import { ErrorCode } from "../../src/protocol/errors.ts"
import { BinaryClient } from "../binary-client.ts"
import { rep, req } from "../binary-frames.ts"
import { request, startTestServer, TestClient } from "../helpers.ts"

const TOO_MANY_CURSORS = ErrorCode.too_many_cursors
const bytes = (text: string) => new TextEncoder().encode(text)

describe("reads of topics that do not exist", () => {
  test("200,000 gets of absent topics on one connection hold no cursor and store no topic", async () => {
    using server = startTestServer()
    await using client = await connect({ port: server.port })
    const count = 200_000
    for (let start = 0; start < count; start += 10_000) {
      const batch = Array.from({ length: 10_000 }, (_, i) => client.get(`absent/${start + i}`))
      expect((await Promise.all(batch)).every((message) => message === null)).toBe(true)
    }
    expect(server.stats().cursors).toBe(0)
    expect(server.stats().topics).toBe(0)
  })

  test("a read-only token's reads of absent topics, on every protocol, create no row in a --db file", async () => {
    const directory = mkdtempSync(join(tmpdir(), "dsmq-cursors-"))
    const db = join(directory, "broker.db")
    try {
      {
        using server = startTestServer({
          db,
          auth: { tokens: [{ name: "reader", token: "0123456789abcdef-read", read: ["#"], write: [] }], anonymousLegacy: null },
        })
        await using binary = await BinaryClient.connect(server.port, { token: "0123456789abcdef-read" })
        const replies = await Promise.all([
          binary.call(req.get(1, "absent/get")),
          binary.call(req.getLatest(2, "absent/latest")),
          binary.call(req.getWait(3, "absent/wait", 0)),
          binary.call(req.get(4, "absent/#")),
          binary.call(req.subscribe(5, "absent/sub")),
          binary.call(req.subscribe(6, "absent/+/sub")),
        ])
        expect(replies.map((reply) => reply.op)).toEqual([Op.empty, Op.empty, Op.empty, Op.empty, Op.ok, Op.ok])
        await using json = await TestClient.connect(server.port)
        json.send(request({ action: "auth", token: "0123456789abcdef-read" }))
        expect(await json.ask({ action: "get", topic: "absent/json" })).toMatchObject({ message: "" })
        const headers = { Authorization: "Bearer 0123456789abcdef-read" }
        const http = await fetch(`http://127.0.0.1:${server.httpPort}/topics/absent%2Fhttp?cursor=reader-1`, { headers })
        expect(http.status).toBe(204)
        expect(server.stats().topics).toBe(0)
      }
      const file = new Database(db, { readonly: true })
      const rows = (table: string) => file.query<{ rows: number }, []>(`SELECT count(*) AS rows FROM ${table}`).get()!.rows
      // The named cursor itself is kept (it is what the client asked for, counted against the cap); it holds no place.
      expect([rows("topics"), rows("messages"), rows("named_cursors"), rows("named_readers")]).toEqual([0, 0, 0, 1])
      file.close()
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })

  test("JSON get, get_latest and a named HTTP cursor on absent topics create no row either", async () => {
    using server = startTestServer({
      auth: { tokens: [{ name: "reader", token: "0123456789abcdef-read", read: ["#"], write: [] }], anonymousLegacy: null },
    })
    await using json = await TestClient.connect(server.port)
    json.send(request({ action: "auth", token: "0123456789abcdef-read" }))
    for (const action of ["get", "get_latest"])
      expect(await json.ask({ action, topic: `nothing/${action}` })).toMatchObject({ message: "" })
    const headers = { Authorization: "Bearer 0123456789abcdef-read" }
    expect((await fetch(`http://127.0.0.1:${server.httpPort}/topics/nothing%2Fhttp?cursor=reader-1`, { headers })).status).toBe(204)
    expect(server.stats().topics).toBe(0)
    expect(server.broker.store.topicCount).toBe(0)
  })
})

describe("--max-cursors", () => {
  function serverWith(maxCursors: number, topics: number) {
    const server = startTestServer({ limits: { maxCursors } })
    for (let i = 1; i <= topics; i++) server.broker.put(`t${i}`, bytes(`m${i}`))
    return server
  }

  test("binary: a get of one topic more is refused with too_many_cursors; the topics already read go on", async () => {
    using server = serverWith(3, 4)
    await using client = await BinaryClient.connect(server.port)
    expect(await client.call(req.from(2, 0))).toEqual(rep.ok(2))
    for (let i = 1; i <= 3; i++) expect(await client.call(req.get(2 + i, `t${i}`))).toEqual(rep.message(2 + i, i, `t${i}`, `m${i}`))
    expect(await client.call(req.get(6, "t4"))).toEqual(
      rep.error(6, TOO_MANY_CURSORS, false, expect.stringContaining("--max-cursors") as never),
    )
    server.broker.put("t1", bytes("again"))
    expect(await client.call(req.get(7, "t1"))).toEqual(rep.message(7, 5, "t1", "again"))
    // A get of an absent topic needs no entry, so it is answered.
    expect(await client.call(req.get(8, "absent"))).toEqual(rep.empty(8))
    expect(server.stats().errors.too_many_cursors).toBe(1)
  })

  test("JSON: the refusal is an error reply; the connection goes on", async () => {
    using server = serverWith(1, 2)
    await using client = await TestClient.connect(server.port)
    server.broker.put("t1", bytes("new 1"))
    server.broker.put("t2", bytes("new 2"))
    expect(await client.ask({ action: "get", topic: "t1" })).toMatchObject({ message: "new 1" })
    expect(await client.ask({ action: "get", topic: "t2" })).toMatchObject({ message: "", error: { code: "too_many_cursors" } })
    expect(await client.ask({ action: "get", topic: "t1" })).toMatchObject({ message: "" })
  })

  test("HTTP: a named cursor that holds as many topics as allowed gets 429 for one more", async () => {
    using server = serverWith(2, 3)
    const web = (topic: string) => fetch(`http://127.0.0.1:${server.httpPort}/topics/${topic}?cursor=web`)
    // The cursor starts now; reading t1 and t2 notes where it caught up on each: two entries.
    for (const topic of ["t1", "t2"]) expect((await web(topic)).status).toBe(204)
    for (const topic of ["t1", "t2", "t3"]) server.broker.put(topic, bytes(`new ${topic}`))
    for (const topic of ["t1", "t2"]) expect(await (await web(topic)).text()).toBe(`new ${topic}`)
    const refused = await web("t3")
    expect([refused.status, ((await refused.json()) as { error: { code: string } }).error.code]).toEqual([429, "too_many_cursors"])
  })

  test("a pattern subscription reaching one topic too many ends with an ERROR naming it; a topic with a cursor goes on", async () => {
    using server = startTestServer({ limits: { maxCursors: 2 } })
    await using client = await BinaryClient.connect(server.port)
    expect(await client.call(req.subscribe(2, "lab/#"))).toEqual(rep.ok(2))
    for (const topic of ["lab/a", "lab/b", "lab/c"]) server.broker.put(topic, bytes(topic))
    await client.waitUntil(() => client.frames.some((frame) => frame.op === Op.error), "the subscription's end")
    const pushes = () => client.frames.filter((frame) => frame.op === Op.deliver).map((frame) => (frame as { topic: string }).topic)
    expect(pushes()).toEqual(["lab/a", "lab/b"])
    expect(client.frames.find((frame) => frame.op === Op.error)).toMatchObject({
      requestId: 0,
      code: TOO_MANY_CURSORS,
      fatal: false,
      text: expect.stringContaining('subscription "lab/#" ended'),
    })
    expect(server.stats().subscribers).toBe(0)
    // lab/a has its entry: a subscription to it is served as before.
    expect(await client.call(req.subscribe(3, "lab/a"))).toEqual(rep.ok(3))
    server.broker.put("lab/a", bytes("still"))
    await client.waitUntil(() => pushes().length === 3, "the push on lab/a")
  })

  test("the client sees too_many_cursors as a DsmqError", async () => {
    using server = serverWith(1, 2)
    await using client = await connect({ port: server.port, from: 0 })
    expect((await client.get("t1"))?.text()).toBe("m1")
    const refused = await client.get("t2").catch((error: unknown) => error)
    expect(refused).toBeInstanceOf(DsmqError)
    expect((refused as DsmqError).codeName).toBe("too_many_cursors")
  })
})
