/** The entry point as a user runs it: `bun run src/server.ts ...` in its own process. */
import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DEFAULT_RETENTION } from "../src/broker/retention.ts"
import { describeStop } from "../src/cli/serve.ts"
import { parseArguments } from "../src/options.ts"
import { request, TestClient } from "./helpers.ts"
import { spawnServer } from "./server-process.ts"

const SERVER = join(import.meta.dir, "..", "src", "server.ts")

describe("bun run src/server.ts", () => {
  test("prints the real address when given port 0, serves, and exits 0 on SIGTERM", async () => {
    await using server = await spawnServer(["--port", "0"])
    expect(server.firstLine).toMatch(
      /^dsmq listening on tcp:\/\/127\.0\.0\.1:\d+, http:\/\/127\.0\.0\.1:\d+ \(WebSocket ws:\/\/127\.0\.0\.1:\d+\/ or ws:\/\/127\.0\.0\.1:\d+\/\)$/,
    )
    expect(server.port).toBeGreaterThan(0)
    {
      await using client = await TestClient.connect(server.port)
      client.send(request({ action: "put", topic: "t", message: "hi" }))
      expect(await client.ask({ action: "get", topic: "t" })).toEqual({ message: "hi", seq: 1 })
    }
    server.process.kill("SIGTERM")
    expect(await server.process.exited).toBe(0)
  })

  test("exits 0 on SIGINT, closing connected clients", async () => {
    await using server = await spawnServer(["127.0.0.1", "0"])
    const client = await TestClient.connect(server.port)
    server.process.kill("SIGINT")
    expect(await server.process.exited).toBe(0)
    await client.closed
  })

  test("stops on a client's shutdown request only with --allow-shutdown", async () => {
    await using server = await spawnServer(["--port=0", "--allow-shutdown"])
    await using client = await TestClient.connect(server.port)
    client.send(request({ action: "shutdown", topic: "" }))
    expect(await server.process.exited).toBe(0)
    expect(await new Response(server.process.stderr).text()).toContain("shutdown requested by a client")
  })

  test("the first SIGINT says what the stop waits for, a second stops at once; acknowledged puts survive", async () => {
    const directory = mkdtempSync(join(tmpdir(), "dsmq-stop-"))
    try {
      const db = join(directory, "stop.db")
      const args = ["--port", "0", "--db", db, "--max-message-bytes", "64MiB", "--shutdown-timeout", "1h"]
      const server = await spawnServer(args)
      const base = `http://127.0.0.1:${server.httpPort}`
      for (const value of ["a", "b", "c"]) expect((await fetch(`${base}/topics/kept`, { method: "POST", body: value })).status).toBe(201)
      // A client that asks for 32 MiB and never reads: more than the kernel's buffers take.
      const reader = await TestClient.connect(server.port)
      reader.pauseReading()
      reader.sendRequests([
        { action: "put", topic: "big", message: "x".repeat(32 * 1024 * 1024) },
        { action: "get", topic: "big" },
      ])
      const delivered = async (): Promise<number> =>
        Number(/^dsmq_messages_delivered_total (\d+)$/m.exec(await (await fetch(`${base}/metrics`)).text())?.[1])
      for (let turn = 0; (await delivered()) < 1; turn++) if (turn > 10_000) throw new Error("the get was never answered")
      const stderr = server.process.stderr.getReader()
      const lines = async function* (): AsyncGenerator<string> {
        let text = ""
        for (;;) {
          const { value, done } = await stderr.read()
          if (done) return
          text += new TextDecoder().decode(value)
          for (let end = text.indexOf("\n"); end >= 0; end = text.indexOf("\n")) {
            yield text.slice(0, end)
            text = text.slice(end + 1)
          }
        }
      }
      const stderrLines = lines()
      server.process.kill("SIGINT")
      expect((await stderrLines.next()).value).toMatch(
        /^dsmq: SIGINT, stopping: waiting up to 3600 s for 1 client to take [\d.]+ MB \(signal again to stop now\)$/,
      )
      server.process.kill("SIGINT")
      expect((await stderrLines.next()).value).toBe("dsmq: SIGINT again, stopping now")
      expect(await server.process.exited).toBe(130)
      reader.terminate()
      await using restarted = await spawnServer(args)
      const latest = await fetch(`http://127.0.0.1:${restarted.httpPort}/topics/kept/latest`)
      expect([latest.status, await latest.text()]).toEqual([200, "c"])
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })

  test("a port already in use is a one-line error and exit code 1", async () => {
    await using first = await spawnServer(["--port", "0"])
    const second = Bun.spawn(["bun", "run", SERVER, "--port", String(first.port)], { stdout: "pipe", stderr: "pipe" })
    expect(await second.exited).toBe(1)
    const stderr = await new Response(second.stderr).text()
    expect(stderr).toBe(`dsmq: cannot listen on tcp 127.0.0.1:${first.port}: address already in use\n`)
    expect(await new Response(second.stdout).text()).toBe("")
  })

  test("--help prints usage and exits 0; a bad option exits 2 with one line and a pointer to the help", async () => {
    const help = Bun.spawn(["bun", "run", SERVER, "--help"], { stdout: "pipe", stderr: "pipe" })
    expect(await help.exited).toBe(0)
    expect(await new Response(help.stdout).text()).toStartWith("Usage: dsmq serve [host] [port] [options]")
    const bad = Bun.spawn(["bun", "run", SERVER, "--prot", "1"], { stdout: "pipe", stderr: "pipe" })
    expect(await bad.exited).toBe(2)
    expect(await new Response(bad.stderr).text()).toBe("dsmq: unknown option --prot\nsee dsmq serve --help\n")
  })
})

test("the stop line says how long, for how many clients and how much", () => {
  expect(describeStop({ clients: 0, bufferedBytes: 0, timeoutMs: 5000 })).toBe("stopping")
  expect(describeStop({ clients: 2, bufferedBytes: 1_234_567, timeoutMs: 5000 })).toBe(
    "stopping: waiting up to 5 s for 2 clients to take 1.2 MB (signal again to stop now)",
  )
  expect(describeStop({ clients: 1, bufferedBytes: 0, timeoutMs: 500 })).toBe(
    "stopping: waiting up to 0.5 s for 1 client to disconnect (signal again to stop now)",
  )
})

describe("parseArguments", () => {
  test("defaults to upstream's address", () => {
    expect(parseArguments([])).toEqual({
      kind: "serve",
      options: {
        host: "127.0.0.1",
        port: 30008,
        httpPort: 30009,
        maxMessageBytes: 1048576,
        allowShutdown: false,
        shutdownTimeoutMs: 5000,
        idleTimeoutSeconds: 0,
        retention: DEFAULT_RETENTION,
        limits: {
          maxConnections: 1024,
          maxOutboundBytes: 4 * 1024 * 1024,
          maxSubscriptions: 1024,
          maxPendingWaits: 1024,
          maxCursors: 100_000,
          maxBufferedBytes: 256 * 1024 * 1024,
          authTimeoutSeconds: 10,
        },
        auth: null,
        bridge: null,
      },
    })
  })

  test("takes upstream's positional [host] [port] and flags in either form", () => {
    expect(parseArguments(["0.0.0.0", "12345"])).toMatchObject({ options: { host: "0.0.0.0", port: 12345 } })
    expect(parseArguments(["--host", "::1", "--port=0", "--max-message-bytes", "4096"])).toMatchObject({
      options: { host: "::1", port: 0, maxMessageBytes: 4096 },
    })
  })

  test("reads storage and retention options", () => {
    const parsed = parseArguments([
      "--db",
      "/tmp/x.db",
      "--sync",
      "full",
      "--max-memory",
      "64MiB",
      "--max-messages",
      "none",
      "--max-topic-bytes",
      "1.5KiB",
      "--max-age",
      "10m",
      "--full-policy",
      "reject",
    ])
    expect(parsed).toMatchObject({
      options: {
        db: "/tmp/x.db",
        sync: "full",
        retention: {
          maxStoreBytes: 64 * 1024 * 1024,
          defaults: { maxMessages: null, maxBytes: 1536, maxAgeMs: 600_000, policy: "reject" },
          rules: [],
        },
      },
    })
    expect(parseArguments(["--shutdown-timeout", "2", "--idle-timeout", "60"])).toMatchObject({
      options: { shutdownTimeoutMs: 2000, idleTimeoutSeconds: 60 },
    })
    expect(parseArguments(["--max-age", "250ms", "--max-memory", "none"])).toMatchObject({
      options: { retention: { maxStoreBytes: null, defaults: { maxAgeMs: 250 } } },
    })
  })

  test("reads per-topic rules from --retention-config", () => {
    const directory = mkdtempSync(join(tmpdir(), "dsmq-config-"))
    try {
      const path = join(directory, "retention.json")
      writeFileSync(path, JSON.stringify({ rules: [{ pattern: "lab/#", maxAge: "1h", maxMessages: 10, policy: "reject" }] }))
      expect(parseArguments(["--retention-config", path])).toMatchObject({
        options: { retention: { rules: [{ pattern: "lab/#", limits: { maxAgeMs: 3_600_000, maxMessages: 10, policy: "reject" } }] } },
      })
      writeFileSync(path, JSON.stringify({ rules: [{ pattern: "a", maxAge: "soon" }] }))
      expect(() => parseArguments(["--retention-config", path])).toThrow("rule 1 maxAge must be an age")
      writeFileSync(path, JSON.stringify({ rules: [{ pattern: "a", colour: "red" }] }))
      expect(() => parseArguments(["--retention-config", path])).toThrow("unknown field colour")
      writeFileSync(path, JSON.stringify({ rules: [{ pattern: "lab/#" }, { pattern: "lab/a#b" }] }))
      expect(() => parseArguments(["--retention-config", path])).toThrow(
        `--retention-config ${path}: rule 2: pattern "lab/a#b": "#" must fill a whole level, as in "a/#"`,
      )
      expect(() => parseArguments(["--retention-config", join(directory, "missing.json")])).toThrow("--retention-config")
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })

  test.each([
    [["--sync", "full"], "--sync needs --db"],
    [["--db", "x.db", "--sync", "always"], "--sync must be one of normal, full"],
    [["--max-memory", "lots"], "--max-memory must be a size"],
    [["--max-age", "0"], "--max-age must be an age"],
    [["--full-policy", "panic"], "--full-policy must be one of drop-oldest, reject"],
    [["--port", "70000"], "port must be a whole number from 0 to 65535"],
    [["--port", "12ab"], "port must be a whole number"],
    [["--port"], "--port needs a value"],
    [["--max-message-bytes", "10"], "--max-message-bytes must be a size from 64"],
    [["a", "1", "extra"], "expected at most [host] [port]"],
    [["--verbose"], "unknown option --verbose"],
  ])("refuses %p", (args, message) => {
    expect(() => parseArguments(args)).toThrow(message)
  })
})
