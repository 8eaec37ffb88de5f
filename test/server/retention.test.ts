/** Retention as clients of each protocol see it: refusals, and how many messages they missed. */
import { describe, expect, test } from "bun:test"
import { DEFAULT_RETENTION, type RetentionLimits } from "../../src/broker/retention.ts"
import { connect, DsmqError, type Message } from "../../src/client.ts"
import { request, startTestServer, TestClient } from "../helpers.ts"

function retention(defaults: Partial<RetentionLimits>, rules: { pattern: string; limits: Partial<RetentionLimits> }[] = []) {
  return { ...DEFAULT_RETENTION, defaults: { ...DEFAULT_RETENTION.defaults, ...defaults }, rules }
}

describe("JSON protocols", () => {
  test("a reader's next message says how many it missed", async () => {
    using server = startTestServer({ retention: retention({ maxMessages: 3 }) })
    await using reader = await TestClient.connect(server.port)
    await using writer = await TestClient.connect(server.port)
    writer.sendRequests(Array.from({ length: 10 }, (_, i) => ({ action: "put", topic: "t", message: `m${i + 1}` })))
    await writer.ask({ action: "get", topic: "sync" })
    expect(await reader.ask({ action: "get", topic: "t" })).toEqual({ message: "m8", seq: 8, missed: 7 })
    expect(await reader.ask({ action: "get", topic: "t" })).toEqual({ message: "m9", seq: 9 })
    expect(server.stats().droppedByRetention).toBe(7)
    const metrics = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text()
    expect(metrics).toContain("\ndsmq_messages_dropped_total 7\n")
  })

  test("a put refused by a full topic: answered in place with ack, else the connection closes", async () => {
    using server = startTestServer({ retention: retention({ maxMessages: 1, policy: "reject" }) })
    await using client = await TestClient.connect(server.port)
    expect(await client.ask({ action: "put", topic: "t", message: "fits", ack: true })).toEqual({ message: "", seq: 1 })
    expect(await client.ask({ action: "put", topic: "t", message: "full", ack: true })).toMatchObject({
      message: "",
      error: { code: "topic_full" },
    })
    client.send(request({ action: "put", topic: "t", message: "unacknowledged" }))
    await client.closed
    expect(client.replies[2]).toMatchObject({ error: { code: "topic_full" } })
    expect(server.stats().errors.topic_full).toBe(2)
  })
})

describe("binary protocol", () => {
  test("GET says what was missed; a refused put is a typed, non-fatal error", async () => {
    using server = startTestServer({
      retention: retention({ maxMessages: 3 }, [{ pattern: "strict/#", limits: { policy: "reject", maxMessages: 1 } }]),
    })
    await using reader = await connect({ port: server.port, retries: 0 })
    await using writer = await connect({ port: server.port, retries: 0 })
    for (let i = 1; i <= 10; i++) writer.put("t", `m${i}`)
    await writer.ping()
    const message = await reader.get("t")
    expect({ seq: message?.seq, missed: message?.missed, text: message?.text() }).toEqual({ seq: 8, missed: 7, text: "m8" })
    expect((await reader.get("t"))?.missed).toBe(0)

    await writer.putAck("strict/a", "one")
    const refused = await writer.putAck("strict/a", "two").catch((error: unknown) => error)
    expect(refused).toBeInstanceOf(DsmqError)
    expect(refused).toMatchObject({ codeName: "topic_full", code: 9, fatal: false })
    expect(await writer.putAck("t", "still fine")).toBeGreaterThan(0)
  })

  test("a subscriber that falls behind retention gets every retained message in order, and the count of the rest", async () => {
    using server = startTestServer({ retention: retention({ maxMessages: 500 }) })
    const subscriber = await connect({ port: server.port, retries: 0, subscriptionBuffer: 20 })
    const subscription = await subscriber.subscribe("t")
    await using publisher = await connect({ port: server.port, retries: 0 })
    const total = 20_000
    const payload = "p".repeat(1000)
    for (let i = 0; i < total; i += 500) {
      publisher.putMany(Array.from({ length: 500 }, () => ({ topic: "t", payload })))
    }
    await publisher.ping()
    const received: Message[] = []
    let missed = 0
    for await (const message of subscription) {
      received.push(message)
      missed += message.missed
      if (message.seq === total) break
    }
    expect(received.length + missed).toBe(total)
    expect(missed).toBeGreaterThan(0)
    expect(received.every((message, i) => i === 0 || message.seq > received[i - 1]!.seq)).toBe(true)
    // Each gap in sequence numbers is exactly what the message after it reports.
    expect(received.every((message, i) => message.seq - (i === 0 ? 0 : received[i - 1]!.seq) - 1 === message.missed)).toBe(true)
    await subscriber.close()
  })

  test("a named cursor resumes on a new connection; a name in use is refused", async () => {
    using server = startTestServer()
    await using writer = await connect({ port: server.port, retries: 0 })
    {
      await using first = await connect({ port: server.port, retries: 0, cursor: "lab" })
      const busy = await connect({ port: server.port, retries: 0, cursor: "lab" }).catch((error: unknown) => error)
      expect(busy).toMatchObject({ codeName: "cursor_busy" })
      for (let i = 1; i <= 3; i++) writer.put("t", `m${i}`)
      await writer.ping()
      expect((await first.get("t"))?.text()).toBe("m1")
    }
    await using second = await connect({ port: server.port, retries: 0, cursor: "lab" })
    expect((await second.get("t"))?.text()).toBe("m2")
  })
})

describe("HTTP", () => {
  test("a put to a full topic is 507; a named cursor reports what it missed in DSMQ-Missed", async () => {
    using server = startTestServer({
      retention: retention({ maxMessages: 3 }, [{ pattern: "strict", limits: { policy: "reject", maxMessages: 1 } }]),
    })
    const base = `http://127.0.0.1:${server.httpPort}/topics`
    expect((await fetch(`${base}/strict`, { method: "POST", body: "1" })).status).toBe(201)
    const full = await fetch(`${base}/strict`, { method: "POST", body: "2" })
    expect(full.status).toBe(507)
    expect(((await full.json()) as { error: { code: string } }).error.code).toBe("topic_full")

    expect((await fetch(`${base}/t`, { method: "POST", body: "m0" })).status).toBe(201)
    expect((await fetch(`${base}/t?cursor=web`)).status).toBe(204) // the cursor starts now, after m0
    for (let i = 1; i <= 10; i++) await fetch(`${base}/t`, { method: "POST", body: `m${i}` })
    const next = await fetch(`${base}/t?cursor=web`)
    expect([next.headers.get("DSMQ-Seq"), next.headers.get("DSMQ-Missed"), await next.text()]).toEqual(["10", "7", "m8"])
    const after = await fetch(`${base}/t?cursor=web`)
    expect([after.headers.get("DSMQ-Missed"), await after.text()]).toEqual([null, "m9"])
    expect((await fetch(`${base}/t?cursor=web&after=3`)).status).toBe(400)
  })

  test("a named cursor that read a topic before it existed created nothing, and cannot tell what it missed", async () => {
    using server = startTestServer({ retention: retention({ maxMessages: 3 }) })
    const base = `http://127.0.0.1:${server.httpPort}/topics`
    expect((await fetch(`${base}/later?cursor=early`)).status).toBe(204)
    // The read stored no topic: the catalogue is empty.
    expect(await (await fetch(`http://127.0.0.1:${server.httpPort}/topics`)).json()).toEqual({ topics: [] })
    for (let i = 1; i <= 10; i++) await fetch(`${base}/later`, { method: "POST", body: `m${i}` })
    const next = await fetch(`${base}/later?cursor=early`)
    // Retention passed the cursor while no one used it, and the topic has no row from before: unknown.
    expect([next.headers.get("DSMQ-Missed"), await next.text()]).toEqual([null, "m8"])
  })

  test("an event stream announces missed messages before the next event", async () => {
    using server = startTestServer({ retention: retention({ maxMessages: 3 }) })
    const response = await fetch(`http://127.0.0.1:${server.httpPort}/topics/t/events`)
    const reader = response.body!.getReader()
    let text = new TextDecoder().decode((await reader.read()).value) // the greeting
    // Put 10 in one go: the stream's cursor is at the start, so it misses 7.
    for (let i = 1; i <= 10; i++) server.broker.put("t", new TextEncoder().encode(`m${i}`))
    while (!text.includes("data: m10")) {
      const { value, done } = await reader.read()
      if (done) throw new Error("stream ended")
      text += new TextDecoder().decode(value)
    }
    expect(text.slice(text.indexOf("event: missed"))).toBe(
      `event: missed\ndata: 7\n\n${[8, 9, 10].map((n) => `id: ${n}\nevent: message\ndata: m${n}\n\n`).join("")}`,
    )
    await reader.cancel()
  })
})
