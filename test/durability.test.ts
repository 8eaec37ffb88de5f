/**
 * --db: messages, sequence numbers and named cursors survive a restart, and a crash (kill -9)
 * loses no acknowledged message. The server runs as a child process, as in production.
 */
import { Database } from "bun:sqlite"
import { afterEach, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { connect } from "../src/client.ts"
import { spawnServer } from "./server-process.ts"

const directories: string[] = []
afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true })
})
function tempDb(): string {
  const directory = mkdtempSync(join(tmpdir(), "dsmq-durable-"))
  directories.push(directory)
  return join(directory, "broker.db")
}

test("a restart keeps messages, continues the sequence and resumes named cursors", async () => {
  const db = tempDb()
  {
    await using server = await spawnServer(["--port", "0", "--no-http", "--db", db])
    await using reader = await connect({ port: server.port, retries: 0, cursor: "worker" })
    await using writer = await connect({ port: server.port, retries: 0 })
    for (let i = 1; i <= 5; i++) await writer.putAck("jobs", `job ${i}`)
    expect((await reader.get("jobs"))?.text()).toBe("job 1")
    expect((await reader.get("jobs"))?.text()).toBe("job 2")
    await reader.close()
    await writer.close()
    server.process.kill("SIGTERM")
    expect(await server.process.exited).toBe(0)
  }
  await using server = await spawnServer(["--port", "0", "--no-http", "--db", db])
  await using reader = await connect({ port: server.port, retries: 0, cursor: "worker" })
  await using writer = await connect({ port: server.port, retries: 0 })
  expect(await writer.putAck("jobs", "job 6")).toBe(6)
  const rest = [
    await reader.get("jobs"),
    await reader.get("jobs"),
    await reader.get("jobs"),
    await reader.get("jobs"),
    await reader.get("jobs"),
  ]
  expect(rest.map((message) => message?.text() ?? null)).toEqual(["job 3", "job 4", "job 5", "job 6", null])
})

for (const sync of ["normal", "full"] as const) {
  test(`kill -9 in the middle of an acknowledged put stream loses no acknowledged message (--sync ${sync})`, async () => {
    const db = tempDb()
    const acknowledged = new Map<number, string>()
    {
      await using server = await spawnServer(["--port", "0", "--no-http", "--db", db, "--sync", sync])
      const writer = await connect({ port: server.port, retries: 0 })
      const target = sync === "full" ? 300 : 3000
      // Keep many puts in flight, so the kill lands between a write and its acknowledgement.
      const inFlight = new Set<Promise<void>>()
      let next = 0
      let killed = false
      while (!killed && next < 100_000) {
        while (inFlight.size < 64 && next < 100_000) {
          const payload = `payload ${next++}`
          const put: Promise<void> = writer.putAck("stream", payload).then(
            (seq) => {
              acknowledged.set(seq, payload)
            },
            () => {},
          )
          inFlight.add(put)
          void put.finally(() => inFlight.delete(put))
        }
        await Promise.race(inFlight)
        if (acknowledged.size >= target) {
          server.process.kill("SIGKILL")
          killed = true
        }
      }
      await server.process.exited
      await Promise.allSettled(inFlight)
      await writer.closed
    }
    expect(acknowledged.size).toBeGreaterThanOrEqual(sync === "full" ? 300 : 3000)

    // The file as the crash left it (WAL included): every acknowledged message is there.
    const stored = new Map<number, string>()
    {
      using file = new Database(db, { readonly: true })
      for (const row of file.query<{ seq: number; payload: Uint8Array }, []>("SELECT seq, payload FROM messages").all()) {
        stored.set(row.seq, new TextDecoder().decode(row.payload))
      }
    }
    const lost = [...acknowledged].filter(([seq, payload]) => stored.get(seq) !== payload)
    expect(lost).toEqual([])

    // And the server comes back with the sequence continuing past everything it stored.
    await using server = await spawnServer(["--port", "0", "--no-http", "--db", db])
    await using writer = await connect({ port: server.port, retries: 0 })
    expect(await writer.putAck("stream", "after the crash")).toBe(Math.max(...stored.keys()) + 1)
  })
}

test("SIGTERM with clients connected: pending waits are answered, then the server exits 0", async () => {
  await using server = await spawnServer(["--port", "0", "--no-http"])
  const waiter = await connect({ port: server.port, retries: 0 })
  const subscriber = await connect({ port: server.port, retries: 0 })
  const subscription = await subscriber.subscribe("t")
  const waiting = waiter.getWait("t", 60_000)
  await waiter.ping()
  server.process.kill("SIGTERM")
  expect(await waiting).toBeNull()
  expect(await subscription.next()).toEqual({ value: undefined, done: true })
  expect(await server.process.exited).toBe(0)
  await Promise.all([waiter.closed, subscriber.closed])
})
