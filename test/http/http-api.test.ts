/** The HTTP API, health and metrics, with real requests on an ephemeral port. */
import { describe, expect, test } from "bun:test"
import parsePrometheusTextFormat from "parse-prometheus-text-format"
import { connect } from "../../src/client.ts"
import { EventStreamReader } from "../event-stream-reader.ts"
import { DOORS, eventually, request, startTestServer, TestClient } from "../helpers.ts"

type Server = ReturnType<typeof startTestServer>

for (const door of DOORS) {
  describe(door.name, () => {
    const base = (server: Server) => `http://127.0.0.1:${door.portOf(server)}`
    const post = (server: Server, topic: string, body: string | Uint8Array): Promise<Response> =>
      fetch(`${base(server)}/topics/${encodeURIComponent(topic)}`, { method: "POST", body })

    describe("HTTP API", () => {
      test("POST puts the body and answers 201 with the sequence; GET reads after a sequence", async () => {
        using server = startTestServer()
        const first = await post(server, "t", "hello")
        expect(first.status).toBe(201)
        expect(first.headers.get("content-type")).toStartWith("application/json")
        expect(await first.json()).toEqual({ topic: "t", seq: 1 })
        expect(await (await post(server, "t", new Uint8Array([0, 1, 255]))).json()).toEqual({ topic: "t", seq: 2 })

        const read = await fetch(`${base(server)}/topics/t?after=0`)
        expect(read.status).toBe(200)
        expect(read.headers.get("content-type")).toBe("application/octet-stream")
        expect(read.headers.get("DSMQ-Seq")).toBe("1")
        expect(read.headers.get("DSMQ-Topic")).toBe("t")
        expect(await read.text()).toBe("hello")
        const binary = await fetch(`${base(server)}/topics/t?after=1`)
        expect(Array.from(new Uint8Array(await binary.arrayBuffer()))).toEqual([0, 1, 255])
        expect((await fetch(`${base(server)}/topics/t?after=2`)).status).toBe(204)
        expect((await fetch(`${base(server)}/topics/t`)).headers.get("DSMQ-Seq")).toBe("1") // after defaults to 0
      })

      test("a topic is one percent-encoded path segment", async () => {
        using server = startTestServer()
        expect(await (await post(server, "lab/room 1/ü", "x")).json()).toEqual({ topic: "lab/room 1/ü", seq: 1 })
        await using tcp = await TestClient.connect(server.port)
        tcp.send(request({ action: "put", topic: "lab/room 1/ü", message: "from tcp" }))
        await tcp.ask({ action: "get", topic: "sync" })
        const read = await fetch(`${base(server)}/topics/${encodeURIComponent("lab/room 1/ü")}?after=1`)
        expect([read.headers.get("DSMQ-Topic"), await read.text()]).toEqual([encodeURIComponent("lab/room 1/ü"), "from tcp"])
      })

      test("GET /latest returns the newest message, or 204", async () => {
        using server = startTestServer()
        expect((await fetch(`${base(server)}/topics/t/latest`)).status).toBe(204)
        await post(server, "t", "old")
        await post(server, "t", "new")
        const latest = await fetch(`${base(server)}/topics/t/latest`)
        expect([latest.status, latest.headers.get("DSMQ-Seq"), await latest.text()]).toEqual([200, "2", "new"])
      })

      test("a long poll (wait) is answered by the next put, or 204 when it times out", async () => {
        using server = startTestServer()
        const polling = fetch(`${base(server)}/topics/t?after=0&wait=60`)
        await eventually(() => server.stats().connections === 0, "the request to arrive")
        await using client = await connect({ port: server.port, retries: 0 })
        await client.ping()
        await post(server, "t", "answer")
        const answered = await polling
        expect([answered.status, await answered.text()]).toEqual([200, "answer"])
        const timedOut = await fetch(`${base(server)}/topics/t?after=1&wait=0.02`)
        expect(timedOut.status).toBe(204)
      })

      test.each([
        ["a topic over 1024 bytes", () => `/topics/${"t".repeat(1025)}`, 400, "bad_field"],
        ["a topic that is not percent-encoded UTF-8", () => "/topics/%E0%A4%A", 400, "bad_field"],
        ["a bad after", () => "/topics/t?after=-1", 400, "bad_field"],
        ["a bad wait", () => "/topics/t?wait=forever", 400, "bad_field"],
        ["an unknown route", () => "/topics/t/oldest", 404, "not_found"],
        ["a path under the dashboard's root", () => "/nothing-here", 404, "not_found"],
        ["no topic", () => "/topics/", 404, "not_found"],
      ])("%s is a clear JSON error", async (_name, path, status, code) => {
        using server = startTestServer()
        const response = await fetch(`${base(server)}${path()}`)
        expect(response.status).toBe(status)
        expect(response.headers.get("content-type")).toStartWith("application/json")
        const body = (await response.json()) as { error: { code: string; text: string } }
        expect(body.error.code).toBe(code)
        expect(body.error.text.length).toBeGreaterThan(10)
      })

      test("a wrong method is 405 with an Allow header", async () => {
        using server = startTestServer()
        const response = await fetch(`${base(server)}/topics/t/latest`, { method: "POST", body: "x" })
        expect(response.status).toBe(405)
        expect(response.headers.get("allow")).toBe("GET, HEAD")
        expect(((await response.json()) as { error: { code: string } }).error.code).toBe("method_not_allowed")
        expect((await fetch(`${base(server)}/metrics`, { method: "DELETE" })).status).toBe(405)
      })

      test("a body over --max-message-bytes is 413, and nothing is stored", async () => {
        using server = startTestServer({ maxMessageBytes: 1024 })
        const response = await post(server, "t", "x".repeat(1025))
        expect(response.status).toBe(413)
        expect(((await response.json()) as { error: { code: string } }).error.code).toBe("too_large")
        expect((await post(server, "t", "x".repeat(1024))).status).toBe(201)
        expect(server.stats().puts).toBe(1)
      })

      test("GET /healthz", async () => {
        using server = startTestServer()
        const response = await fetch(`${base(server)}/healthz`)
        expect([response.status, await response.json()]).toEqual([200, { status: "ok" }])
      })
    })

    describe("Server-Sent Events", () => {
      test("GET /events streams new messages, one event each, multi-line data split into lines", async () => {
        using server = startTestServer()
        await post(server, "t", "before the stream")
        const response = await fetch(`${base(server)}/topics/t/events`)
        expect(response.headers.get("content-type")).toStartWith("text/event-stream")
        const events = new EventStreamReader(response)
        await eventually(() => server.stats().subscribers === 1, "the stream to subscribe")
        await post(server, "t", "first")
        await post(server, "t", "two\nlines")
        expect(await events.next()).toEqual({ id: "2", event: "message", data: "first" })
        expect(await events.next()).toEqual({ id: "3", event: "message", data: "two\nlines" })
        await events.cancel()
        await eventually(() => server.stats().subscribers === 0, "the stream to unsubscribe")
      })

      test("a stream resumes after Last-Event-ID, with nothing lost or repeated", async () => {
        using server = startTestServer()
        for (const text of ["a", "b", "c", "d"]) await post(server, "t", text)
        const response = await fetch(`${base(server)}/topics/t/events`, { headers: { "Last-Event-ID": "2" } })
        const events = new EventStreamReader(response)
        expect((await events.next()).data).toBe("c")
        expect((await events.next()).data).toBe("d")
        await post(server, "t", "e")
        expect(await events.next()).toMatchObject({ id: "5", data: "e" })
        await events.cancel()
        const again = new EventStreamReader(await fetch(`${base(server)}/topics/t/events?after=4`))
        expect(await again.next()).toMatchObject({ id: "5", data: "e" })
        await again.cancel()
      })
    })

    describe("GET /metrics", () => {
      test("parses as Prometheus text, and its counters match the traffic", async () => {
        using server = startTestServer()
        await post(server, "m", "12345") // 5 bytes
        await using tcp = await TestClient.connect(server.port)
        tcp.send(request({ action: "put", topic: "m", message: "abc" })) // 3 bytes
        expect(await tcp.ask({ action: "get", topic: "m" })).toMatchObject({ message: "abc" })
        expect(await tcp.ask({ action: "get", topic: 7 })).toMatchObject({ error: { code: "bad_field" } })
        await fetch(`${base(server)}/topics/m?after=0`) // delivers "12345"

        const response = await fetch(`${base(server)}/metrics`)
        expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8")
        const families = parsePrometheusTextFormat(await response.text())
        const value = (name: string, labels?: Record<string, string>): number => {
          const family = families.find((candidate) => candidate.name === name)
          if (family === undefined) throw new Error(`no metric ${name}`)
          const sample = family.metrics.find((metric) =>
            Object.entries(labels ?? {}).every(([key, label]) => metric.labels?.[key] === label),
          )
          return Number(sample?.value)
        }
        expect({
          put: value("dsmq_messages_put_total"),
          putBytes: value("dsmq_put_bytes_total"),
          delivered: value("dsmq_messages_delivered_total"),
          deliveredBytes: value("dsmq_delivered_bytes_total"),
          stored: value("dsmq_stored_messages"),
          storedBytes: value("dsmq_stored_bytes"),
          topics: value("dsmq_topics"),
          tcpConnections: value("dsmq_connections", { protocol: "json-stream" }),
          badField: value("dsmq_errors_total", { code: "bad_field" }),
          tooLarge: value("dsmq_errors_total", { code: "too_large" }),
        }).toEqual({
          put: 2,
          putBytes: 8,
          delivered: 2,
          deliveredBytes: 8,
          stored: 2,
          storedBytes: 8,
          topics: 1,
          tcpConnections: 1,
          badField: 1,
          tooLarge: 0,
        })
        const latency = families.find((family) => family.name === "dsmq_delivery_latency_seconds")!
        expect(latency.type).toBe("HISTOGRAM")
        expect(Number(latency.metrics[0]!.count)).toBe(2)
        expect(Number(latency.metrics[0]!.buckets!["10"])).toBe(2)
      })

      test("the binary STATS request returns the same numbers", async () => {
        using server = startTestServer()
        await post(server, "m", "x")
        await using client = await connect({ port: server.port, retries: 0 })
        const stats = await client.stats()
        // Everything but what moves between the two calls: CPU time and this connection's own buffers.
        const { cpuMicros: _cpu1, maxConnectionBufferedBytes: _b1, bufferedBytes: _t1, ...binary } = stats
        const { cpuMicros: _cpu2, maxConnectionBufferedBytes: _b2, bufferedBytes: _t2, ...direct } = server.stats()
        expect(binary).toEqual(JSON.parse(JSON.stringify(direct)))
      })
    })
  })
}
