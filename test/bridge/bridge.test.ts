/**
 * The NATS bridge against a real nats-server (test/nats-server.ts): export, import, two brokers
 * joined through one NATS server without echo, NATS restarted mid-stream, a broker killed under
 * --db, and bad configuration. Waits are for conditions, each bounded.
 */
import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream"
import { type NatsConnection, connect as natsConnect } from "@nats-io/transport-node"
import type { BridgeConfig, BridgeRule } from "../../src/bridge/config.ts"
import { statsTable } from "../../src/cli/inspect.ts"
import { type Client, connect } from "../../src/client.ts"
import { parseArguments, UsageError } from "../../src/options.ts"
import { startTestServer } from "../helpers.ts"
import { NATS_SERVER, NatsServer } from "../nats-server.ts"
import { makeSelfSignedCertificate } from "../self-signed.ts"
import { spawnServer } from "../server-process.ts"

const TEST_MS = 60_000
const text = new TextDecoder()

/** Polls `condition` every 10 ms until it holds; fails after `maxMs`. */
async function waitFor(condition: () => boolean | Promise<boolean>, what: string, maxMs = 15_000): Promise<void> {
  for (let waited = 0; waited < maxMs; waited += 10) {
    if (await condition()) return
    await Bun.sleep(10)
  }
  throw new Error(`gave up waiting for ${what} after ${maxMs} ms`)
}

const rules = (...patterns: string[]): BridgeRule[] => patterns.map((pattern) => ({ pattern, stream: null }))

function bridged(nats: NatsServer, config: Partial<BridgeConfig>, options: Parameters<typeof startTestServer>[0] = {}) {
  const bridge: BridgeConfig = { servers: [nats.url], auth: null, tls: null, prefix: "", name: "a", exports: [], imports: [], ...config }
  return startTestServer({ ...options, bridge })
}

type Server = ReturnType<typeof startTestServer>
const connected = (server: Server) => waitFor(() => server.stats().bridge?.connected === true, "the bridge to connect")

/** Every message of a local subscription, as "topic payload". */
async function localSubscriber(server: Server, pattern: string): Promise<{ client: Client; received: string[] }> {
  const client = await connect({ port: server.port, retries: 0 })
  const subscription = await client.subscribe(pattern)
  const received: string[] = []
  void (async () => {
    for await (const message of subscription) received.push(`${message.topic} ${text.decode(message.payload)}`)
  })()
  return { client, received }
}

/** The messages of a JetStream stream, in stream order: [subject, Dsmq-Seq, payload]. */
async function streamContents(nc: NatsConnection, stream: string): Promise<[string, string, string][]> {
  const jsm = await jetstreamManager(nc)
  const info = await jsm.streams.info(stream)
  const consumer = await jsm.consumers.add(stream, { ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All })
  const messages = await jetstream(nc).consumers.get(stream, consumer.name)
  const out: [string, string, string][] = []
  for (let i = 0; i < info.state.messages; i++) {
    const message = await messages.next({ expires: 5000 })
    if (message === null) break
    out.push([message.subject, message.headers?.get("Dsmq-Seq") ?? "", message.string()])
  }
  return out
}

describe.skipIf(NATS_SERVER === null)("the NATS bridge", () => {
  test(
    "exports local puts to NATS subjects, payload unchanged, origin and sequence in headers",
    async () => {
      await using nats = await NatsServer.start()
      using server = bridged(nats, { exports: rules("lab/#"), prefix: "site1" })
      await connected(server)
      const nc = await natsConnect({ servers: nats.url })
      const subscription = nc.subscribe("site1.>", { max: 2 })
      await nc.flush()
      await using client = await connect({ port: server.port, retries: 0 })
      await client.putAck("lab/temp", new Uint8Array([0, 255, 1]))
      await client.putAck("other/topic", "not exported")
      await client.putAck("lab", "the parent of lab/#")
      const got: [string, number[], string | undefined, string | undefined, string | undefined][] = []
      for await (const message of subscription) {
        got.push([
          message.subject,
          [...message.data],
          message.headers?.get("Dsmq-Origin"),
          message.headers?.get("Dsmq-Topic"),
          message.headers?.get("Dsmq-Seq"),
        ])
      }
      expect(got).toEqual([
        ["site1.lab.temp", [0, 255, 1], "a", "lab/temp", "1"],
        ["site1.lab", [...new TextEncoder().encode("the parent of lab/#")], "a", "lab", "3"],
      ])
      await waitFor(() => server.stats().bridge?.exports[0]?.exported === 2, "the exported count")
      const metrics = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text()
      expect(metrics).toContain("dsmq_bridge_connected 1")
      expect(metrics).toContain('dsmq_bridge_exported_total{rule="lab/#"} 2')
      expect(metrics).toContain('dsmq_bridge_lag_messages{rule="lab/#"} 0')
      await nc.close()
    },
    TEST_MS,
  )

  test(
    "imports NATS messages onto local topics, escaped subjects mapped back",
    async () => {
      await using nats = await NatsServer.start()
      using server = bridged(nats, { imports: rules("site2/#") })
      await connected(server)
      const { client, received } = await localSubscriber(server, "site2/#")
      const nc = await natsConnect({ servers: nats.url })
      nc.publish("site2.temp", "21.5")
      nc.publish("site2.room~201.door", "open")
      nc.publish("elsewhere.temp", "not imported")
      await nc.flush()
      await waitFor(() => received.length >= 2, "two imported messages")
      expect(received).toEqual(["site2/temp 21.5", "site2/room 1/door open"])
      const state = (await (await fetch(`http://127.0.0.1:${server.httpPort}/stats`)).json()) as { bridge: { imported: number } }
      expect(state.bridge.imported).toBe(2)
      await client.close()
      await nc.close()
    },
    TEST_MS,
  )

  test(
    "two brokers bridging lab/# both ways through one NATS server: each message arrives once, in order, no echo",
    async () => {
      await using nats = await NatsServer.start()
      using a = bridged(nats, { name: "a", exports: rules("lab/#"), imports: rules("lab/#") })
      using b = bridged(nats, { name: "b", exports: rules("lab/#"), imports: rules("lab/#") })
      await connected(a)
      await connected(b)
      const atA = await localSubscriber(a, "lab/#")
      const atB = await localSubscriber(b, "lab/#")
      await using putterA = await connect({ port: a.port, retries: 0 })
      await using putterB = await connect({ port: b.port, retries: 0 })
      for (let i = 1; i <= 20; i++) await putterA.putAck("lab/temp", `a${i}`)
      await putterB.putAck("lab/door", "b1")
      // Markers last: once both have crossed, anything echoed would have arrived before them.
      await putterA.putAck("lab/marker", "from a")
      await putterB.putAck("lab/marker", "from b")
      const crossed = (received: string[]) => received.includes("lab/marker from a") && received.includes("lab/marker from b")
      await waitFor(() => crossed(atA.received) && crossed(atB.received), "both markers at both brokers")
      const expected = [...Array.from({ length: 20 }, (_, i) => `lab/temp a${i + 1}`)]
      for (const received of [atA.received, atB.received]) {
        expect(received.filter((line) => line.startsWith("lab/temp"))).toEqual(expected)
        expect(received.filter((line) => line === "lab/door b1")).toHaveLength(1)
        expect(received).toHaveLength(23)
      }
      // Each broker's own messages came back from NATS and were dropped there, by origin.
      expect(a.stats().bridge?.imports[0]?.dropped).toBe(21)
      expect(a.stats().bridge?.exports[0]?.exported).toBe(21)
      await atA.client.close()
      await atB.client.close()
    },
    TEST_MS,
  )

  test(
    "JetStream: NATS killed and restarted mid-stream loses nothing and keeps the order, each message once",
    async () => {
      await using nats = await NatsServer.start()
      using server = bridged(nats, { exports: [{ pattern: "lab/#", stream: "LAB" }] })
      await connected(server)
      await using client = await connect({ port: server.port, retries: 0 })
      for (let i = 1; i <= 50; i++) await client.putAck(`lab/s${i % 3}`, `m${i}`)
      await waitFor(() => server.stats().bridge?.exports[0]?.exported === 50, "the first 50 exported")
      await nats.kill()
      await waitFor(() => server.stats().bridge?.connected === false, "the bridge to see NATS gone")
      for (let i = 51; i <= 120; i++) await client.putAck(`lab/s${i % 3}`, `m${i}`)
      expect(server.stats().bridge?.exports[0]?.lagMessages).toBe(70)
      await nats.restart()
      await waitFor(() => server.stats().bridge?.exports[0]?.lagMessages === 0, "the backlog exported", 30_000)
      const nc = await natsConnect({ servers: nats.url })
      const contents = await streamContents(nc, "LAB")
      expect(contents.map(([, seq]) => Number(seq))).toEqual(Array.from({ length: 120 }, (_, i) => i + 1))
      expect(contents.map(([, , payload]) => payload)).toEqual(Array.from({ length: 120 }, (_, i) => `m${i + 1}`))
      await nc.close()
    },
    TEST_MS,
  )

  test(
    "two brokers joined through JetStream: lab/temp put on the first reaches the second's lab/# subscriber once, in order, across a NATS restart",
    async () => {
      await using nats = await NatsServer.start()
      const both = { exports: [{ pattern: "lab/#", stream: "LAB" }], imports: [{ pattern: "lab/#", stream: "LAB" }] }
      using a = bridged(nats, { name: "a", ...both })
      using b = bridged(nats, { name: "b", ...both })
      await connected(a)
      await connected(b)
      const atB = await localSubscriber(b, "lab/#")
      await using putter = await connect({ port: a.port, retries: 0 })
      const put = async (from: number, to: number) => {
        for (let i = from; i <= to; i++) await putter.putAck("lab/temp", `m${i}`)
      }
      await put(1, 30)
      await waitFor(() => atB.received.length === 30, "the first 30 at the second broker")
      await nats.kill()
      await put(31, 60)
      await nats.restart()
      await put(61, 90)
      await waitFor(() => atB.received.length >= 90, "all 90 at the second broker", 30_000)
      expect(atB.received).toEqual(Array.from({ length: 90 }, (_, i) => `lab/temp m${i + 1}`))
      // Its own exports came back through the stream and were dropped; nothing went back to a.
      const aState = a.stats().bridge!
      expect(aState.imports[0]!.imported).toBe(0)
      await atB.client.close()
    },
    TEST_MS,
  )

  test(
    "a broker killed with -9 under --db sends its backlog after the restart, with no duplicate in the stream",
    async () => {
      await using nats = await NatsServer.start()
      const directory = mkdtempSync(join(tmpdir(), "dsmq-bridge-db-"))
      try {
        const args = ["--port", "0", "--http-port", "0", "--db", join(directory, "b.db"), "--bridge-nats", nats.url]
        const bridgeArgs = [...args, "--bridge-export", "lab/#", "--bridge-stream", "LAB", "--bridge-name", "b"]
        const stateOf = async (httpPort: number) =>
          ((await (await fetch(`http://127.0.0.1:${httpPort}/stats`)).json()) as { bridge: { connected: boolean; exported: number } })
            .bridge
        {
          await using first = await spawnServer(bridgeArgs)
          await waitFor(async () => (await stateOf(first.httpPort!)).connected, "the first broker's bridge")
          await using client = await connect({ port: first.port, retries: 0 })
          for (let i = 1; i <= 30; i++) await client.putAck("lab/t", `m${i}`)
          await waitFor(async () => (await stateOf(first.httpPort!)).exported === 30, "30 exported")
          await nats.kill()
          for (let i = 31; i <= 60; i++) await client.putAck("lab/t", `m${i}`)
          first.process.kill("SIGKILL")
          await first.process.exited
        }
        await nats.restart()
        await using second = await spawnServer(bridgeArgs)
        await waitFor(async () => (await stateOf(second.httpPort!)).exported === 30, "the backlog exported after the restart", 30_000)
        const nc = await natsConnect({ servers: nats.url })
        const contents = await streamContents(nc, "LAB")
        expect(contents.map(([, , payload]) => payload)).toEqual(Array.from({ length: 60 }, (_, i) => `m${i + 1}`))
        await nc.close()
      } finally {
        rmSync(directory, { recursive: true, force: true })
      }
    },
    TEST_MS,
  )

  test(
    "an unreachable NATS server never stops the broker serving local clients; the bridge says why",
    async () => {
      // A port nothing listens on: a server started and killed.
      const gone = await NatsServer.start()
      const url = gone.url
      await gone[Symbol.asyncDispose]()
      using server = startTestServer({
        bridge: { servers: [url], auth: null, tls: null, prefix: "", name: "a", exports: rules("lab/#"), imports: rules("x/#") },
      })
      await using client = await connect({ port: server.port, retries: 0 })
      await client.putAck("lab/t", "still served")
      expect((await client.get("lab/t"))?.payload).toBeDefined()
      const bridge = server.stats().bridge!
      expect(bridge.connected).toBe(false)
      expect(bridge.exports[0]?.lagMessages).toBe(1)
      await waitFor(() => server.stats().bridge?.lastError !== null, "the bridge to report an error", 10_000)
    },
    TEST_MS,
  )

  test(
    "a token, and TLS verified against the server's certificate",
    async () => {
      const directory = mkdtempSync(join(tmpdir(), "dsmq-nats-tls-"))
      try {
        const { certFile, keyFile } = makeSelfSignedCertificate(directory)
        await using nats = await NatsServer.start({ token: "s3cret-token", tls: { certFile, keyFile } })
        expect(nats.url).toStartWith("tls://")
        const ca = await Bun.file(certFile).text()
        using server = bridged(nats, { exports: rules("lab/#"), auth: { kind: "token", token: "s3cret-token" }, tls: { ca } })
        await connected(server)
        await using client = await connect({ port: server.port, retries: 0 })
        await client.putAck("lab/t", "over TLS")
        await waitFor(() => server.stats().bridge?.exported === 1, "the export over TLS")
        // Without the CA the server's certificate is not trusted: refused, and said so.
        using untrusting = bridged(nats, { exports: rules("lab/#"), auth: { kind: "token", token: "s3cret-token" }, tls: {} })
        await waitFor(() => (untrusting.stats().bridge?.lastError ?? "") !== "", "a TLS error")
        expect(untrusting.stats().bridge?.connected).toBe(false)
      } finally {
        rmSync(directory, { recursive: true, force: true })
      }
    },
    TEST_MS,
  )

  test(
    "bad credentials: the bridge reports the refusal and keeps trying; local clients are served",
    async () => {
      await using nats = await NatsServer.start({ user: { name: "bridge", password: "right-password" } })
      using server = bridged(nats, { exports: rules("lab/#"), auth: { kind: "user", user: "bridge", pass: "wrong" } })
      await waitFor(() => /authoriz/i.test(server.stats().bridge?.lastError ?? ""), "an authorization error")
      expect(server.stats().bridge?.connected).toBe(false)
      await using client = await connect({ port: server.port, retries: 0 })
      await client.putAck("lab/t", "served")
      // The right password, from the environment as a user would give it, connects.
      using good = bridged(nats, { exports: rules("lab/#"), auth: { kind: "user", user: "bridge", pass: "right-password" } })
      await connected(good)
    },
    TEST_MS,
  )
})

test("dsmq stats shows the bridge: its link and each rule's totals", async () => {
  const bridge: BridgeConfig = {
    servers: ["nats://127.0.0.1:9"],
    auth: null,
    tls: null,
    prefix: "",
    name: "a",
    exports: rules("lab/#"),
    imports: rules("x/#"),
  }
  using server = startTestServer({ bridge })
  await using client = await connect({ port: server.port, retries: 0 })
  await client.putAck("lab/t", "waiting")
  const table = statsTable(server.stats())
  expect(table).toMatch(/^NATS bridge +not connected/m)
  expect(table).toMatch(/^ {2}export lab\/# +0 sent, 1 waiting$/m)
  expect(table).toMatch(/^ {2}import x\/# +0 put, 0 dropped$/m)
  using plain = startTestServer()
  expect(statsTable(plain.stats())).not.toContain("NATS bridge")
})

describe("bridge configuration", () => {
  const serve = (argv: string[], env: Record<string, string> = {}) => {
    const parsed = parseArguments(argv, env)
    if (parsed.kind !== "serve") throw new Error("expected serve")
    return parsed.options
  }

  test("flags: servers, repeated rules, the stream for flag exports, prefix, name; credentials from the environment only", () => {
    const options = serve(
      [
        "--bridge-nats",
        "nats://a:4222,nats://b:4222",
        "--bridge-export",
        "lab/#",
        "--bridge-export",
        "ops/+",
        "--bridge-import",
        "site2/#",
        "--bridge-stream",
        "LAB",
        "--bridge-prefix",
        "site1",
        "--bridge-name",
        "room-a",
      ],
      { DSMQ_BRIDGE_USER: "u", DSMQ_BRIDGE_PASSWORD: "p" },
    )
    expect(options.bridge).toEqual({
      servers: ["nats://a:4222", "nats://b:4222"],
      auth: { kind: "user", user: "u", pass: "p" },
      tls: null,
      prefix: "site1",
      name: "room-a",
      exports: [
        { pattern: "lab/#", stream: "LAB" },
        { pattern: "ops/+", stream: "LAB" },
      ],
      imports: [{ pattern: "site2/#", stream: null }],
    })
    expect(serve([]).bridge).toBeNull()
  })

  test("--print-config writes the bridge as a [bridge] table that reads back the same", async () => {
    const argv = ["--bridge-nats", "nats://a:4222", "--bridge-export", "lab/#", "--bridge-export", "x/+", "--bridge-stream", "LAB"]
    const printed = parseArguments([...argv, "--bridge-import", "site2/#", "--print-config"])
    if (printed.kind !== "print-config") throw new Error("expected print-config")
    const directory = mkdtempSync(join(tmpdir(), "dsmq-bridge-print-"))
    try {
      const path = join(directory, "printed.toml")
      await Bun.write(path, printed.text)
      expect(serve(["--config", path]).bridge).toEqual(serve([...argv, "--bridge-import", "site2/#"]).bridge)
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })

  test("the configuration file's [bridge] table and rule tables", async () => {
    const directory = mkdtempSync(join(tmpdir(), "dsmq-bridge-config-"))
    try {
      const path = join(directory, "dsmq.toml")
      await Bun.write(
        path,
        '[bridge]\nnats = ["tls://nats.example:4222"]\nprefix = "site1"\n\n[[bridge.export]]\npattern = "lab/#"\nstream = "LAB"\n\n[[bridge.import]]\npattern = "site2/#"\n',
      )
      const options = serve(["--config", path])
      expect(options.bridge).toMatchObject({
        servers: ["tls://nats.example:4222"],
        tls: {},
        prefix: "site1",
        exports: [{ pattern: "lab/#", stream: "LAB" }],
        imports: [{ pattern: "site2/#", stream: null }],
      })
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })

  test.each([
    ["need a NATS server", ["--bridge-export", "lab/#"], {}],
    ["needs something to bridge", ["--bridge-nats", "nats://a:4222"], {}],
    ["lab/#/x", ["--bridge-nats", "nats://a:4222", "--bridge-export", "lab/#/x"], {}],
    ["not a valid NATS subject", ["--bridge-nats", "nats://a:4222", "--bridge-export", "lab/#", "--bridge-prefix", "a..b"], {}],
    ["not a valid JetStream stream name", ["--bridge-nats", "nats://a:4222", "--bridge-export", "lab/#", "--bridge-stream", "a.b"], {}],
    ["go together", ["--bridge-nats", "nats://a:4222", "--bridge-export", "lab/#"], { DSMQ_BRIDGE_USER: "u" }],
    ["one way", ["--bridge-nats", "nats://a:4222", "--bridge-export", "lab/#"], { DSMQ_BRIDGE_TOKEN: "t", DSMQ_BRIDGE_USER: "u" }],
  ])("refused, saying %p", (message, argv, env) => {
    expect(() => serve(argv, env as Record<string, string>)).toThrow(message)
    expect(() => serve(argv, env as Record<string, string>)).toThrow(UsageError)
  })
})
