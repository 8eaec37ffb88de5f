/**
 * The `dsmq` command driven as a user drives it: subprocesses, a real server on free ports,
 * stdin pipes, Ctrl-C (SIGINT). Exit codes: 0 done, 1 failed or found nothing, 2 usage.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { dsmq, Running, serve, subscribers } from "./dsmq-process.ts"

const directory = mkdtempSync(join(tmpdir(), "dsmq-command-"))
afterAll(() => rmSync(directory, { recursive: true, force: true }))

const on = (port: number) => ["--port", String(port)]

describe("dsmq serve, sub and put", () => {
  test("the quick start: sub 'lab/#' -v prints what echo 21.5 | dsmq put lab/temp puts; Ctrl-C ends it with 0", async () => {
    await using server = await serve()
    await using sub = new Running(["sub", "lab/#", "-v", ...on(server.port)])
    await subscribers(server.httpPort, 1)
    const put = await dsmq(["put", "lab/temp", ...on(server.port)], { input: "21.5\n" })
    expect(put).toEqual({ code: 0, stdout: "", stderr: "" })
    expect(await sub.stdout.next()).toBe("lab/temp 21.5")
    sub.process.kill("SIGINT")
    expect(await sub.process.exited).toBe(0)
    expect(await sub.stderr.rest()).toBe("")
  })

  test("sub --format json: topic, seq, ISO put time, text; base64 for bytes that are not UTF-8; --count ends it", async () => {
    await using server = await serve()
    await using sub = new Running(["sub", "bin/+", "--format", "json", "--count", "2", ...on(server.port)])
    await subscribers(server.httpPort, 1)
    const file = join(directory, "bytes.bin")
    writeFileSync(file, new Uint8Array([0xff, 0x00, 0xfe]))
    expect((await dsmq(["put", "bin/a", "héllo", ...on(server.port)])).code).toBe(0)
    expect((await dsmq(["put", "bin/b", "--file", file, ...on(server.port)])).code).toBe(0)
    const [text, bytes] = (await sub.stdout.take(2)).map((line) => JSON.parse(line))
    expect(text).toEqual({ topic: "bin/a", seq: 1, time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/), text: "héllo" })
    expect(bytes).toEqual({ topic: "bin/b", seq: 2, time: expect.any(String), base64: "/wD+" })
    expect(Date.parse(bytes.time)).toBeGreaterThanOrEqual(Date.parse(text.time))
    expect(await sub.process.exited).toBe(0)
  })

  test("overlapping patterns print each message once", async () => {
    await using server = await serve()
    await using sub = new Running(["sub", "lab/#", "lab/a", "-v", "--count", "3", ...on(server.port)])
    await subscribers(server.httpPort, 2)
    expect((await dsmq(["put", "lab/a", ...on(server.port)], { input: "1\n2\n" })).code).toBe(0)
    expect((await dsmq(["put", "lab/b", "3", ...on(server.port)])).code).toBe(0)
    expect((await sub.stdout.take(3)).sort()).toEqual(["lab/a 1", "lab/a 2", "lab/b 3"])
    expect(await sub.process.exited).toBe(0)
    expect(await sub.stdout.rest()).toBe("")
  })

  test("when the server goes away, sub says so in one line and exits 1", async () => {
    const server = await serve()
    await using sub = new Running(["sub", "t", ...on(server.port)])
    await subscribers(server.httpPort, 1)
    server.process.kill("SIGTERM")
    expect(await server.process.exited).toBe(0)
    expect(await sub.process.exited).toBe(1)
    expect(await sub.stderr.rest()).toBe(`dsmq: lost the connection to 127.0.0.1:${server.port}\n`)
  })

  test("sub --reconnect resumes after a restart of a --db server without loss or duplicates", async () => {
    const db = join(directory, "reconnect.db")
    const first = await serve(["--db", db])
    const port = first.port
    await using sub = new Running(["sub", "lab/#", "--reconnect", ...on(port)])
    await subscribers(first.httpPort, 1)
    expect((await dsmq(["put", "lab/x", ...on(port)], { input: "one\ntwo\n" })).code).toBe(0)
    expect(await sub.stdout.take(2)).toEqual(["one", "two"])
    first.process.kill("SIGKILL")
    await first.process.exited
    expect(await sub.stderr.next()).toBe(`dsmq: lost the connection to 127.0.0.1:${port}; reconnecting (Ctrl-C to stop)`)
    // Back on the same port; what is put before sub is back is read from the store.
    // --http-port 0: the default, the TCP port + 1, may be taken by now.
    await using second = await serve(["--db", db, "--port", String(port), "--http-port", "0"])
    expect((await dsmq(["put", "lab/y", "three", ...on(second.port)])).code).toBe(0)
    expect(await sub.stdout.next()).toBe("three")
    expect((await dsmq(["put", "lab/x", "four", ...on(second.port)])).code).toBe(0)
    expect(await sub.stdout.next()).toBe("four")
    sub.process.kill("SIGINT")
    expect(await sub.process.exited).toBe(0)
    expect(await sub.stdout.rest()).toBe("")
  })
})

test("sub --reconnect notices a server that restarted without its messages and reads all the new one has", async () => {
  const first = await serve()
  const port = first.port
  await using sub = new Running(["sub", "t", "--reconnect", ...on(port)])
  await subscribers(first.httpPort, 1)
  expect((await dsmq(["put", "t", ...on(port)], { input: "a\nb\nc\n" })).code).toBe(0)
  expect(await sub.stdout.take(3)).toEqual(["a", "b", "c"])
  first.process.kill("SIGKILL")
  await first.process.exited
  expect(await sub.stderr.next()).toContain("lost the connection")
  // In memory: the new server numbers its messages from 1 again.
  await using second = await serve(["--port", String(port), "--http-port", "0"])
  expect((await dsmq(["put", "t", "fresh", ...on(port)])).code).toBe(0)
  expect(await sub.stdout.next()).toBe("fresh")
  expect(sub.stderr.seen.concat(await sub.stderr.take(1)).join("\n")).toContain("restarted without its messages")
  sub.process.kill("SIGINT")
  expect(await sub.process.exited).toBe(0)
  void second
})

describe("dsmq put", () => {
  test("stdin lines are one message each, in order; --ack prints their sequence numbers", async () => {
    await using server = await serve()
    const lines = Array.from({ length: 2000 }, (_, i) => `line ${i}`)
    const put = await dsmq(["put", "many", "--ack", ...on(server.port)], { input: `${lines.join("\r\n")}\r\n\n` })
    expect(put.code).toBe(0)
    expect(put.stdout).toBe(`${lines.map((_, i) => i + 1).join("\n")}\n`)
    const got = await dsmq(["get", "many", "--from", "0", "-n", "5000", ...on(server.port)])
    expect(got.stdout).toBe(`${lines.join("\n")}\n`)
  })

  test("a refused put is reported and the exit code is 1", async () => {
    await using server = await serve(["--max-messages", "2", "--full-policy", "reject"])
    const put = await dsmq(["put", "full", ...on(server.port)], { input: "a\nb\nc\n" })
    expect(put.code).toBe(1)
    expect(put.stderr).toMatch(/^dsmq: lines? [\d-]+ not put: topic_full: /)
    // The frame was refused whole: the topic is still empty, so two single puts fit, a third does not.
    for (const message of ["d", "e"]) expect((await dsmq(["put", "full", message, ...on(server.port)])).code).toBe(0)
    const single = await dsmq(["put", "full", "f", ...on(server.port)])
    expect(single.code).toBe(1)
    expect(single.stderr).toStartWith("dsmq: topic_full: ")
    const pattern = await dsmq(["put", "lab/#", "x", ...on(server.port)])
    expect([pattern.code, pattern.stderr]).toEqual([1, expect.stringContaining("bad_field")])
  })

  test("--file puts the file's bytes as one message", async () => {
    await using server = await serve()
    const file = join(directory, "two-lines.txt")
    writeFileSync(file, "first\nsecond\n")
    expect((await dsmq(["put", "doc", "--file", file, "--ack", ...on(server.port)])).stdout).toBe("1\n")
    expect((await dsmq(["get", "doc", ...on(server.port)])).stdout).toBe("first\nsecond\n\n")
    const missing = await dsmq(["put", "doc", "--file", join(directory, "nope"), ...on(server.port)])
    expect([missing.code, missing.stderr]).toEqual([1, `dsmq: --file ${join(directory, "nope")}: no such file\n`])
  })
})

describe("dsmq get", () => {
  test("prints the newest message; --from SEQ -n N the ones after SEQ; exit 1 when there is none", async () => {
    await using server = await serve()
    expect((await dsmq(["put", "lab/a", ...on(server.port)], { input: "1\n2\n3\n" })).code).toBe(0)
    expect((await dsmq(["put", "lab/b", "4", ...on(server.port)])).code).toBe(0)
    expect(await dsmq(["get", "lab/a", ...on(server.port)])).toEqual({ code: 0, stdout: "3\n", stderr: "" })
    expect((await dsmq(["get", "lab/#", "-v", ...on(server.port)])).stdout).toBe("lab/b 4\n")
    expect((await dsmq(["get", "lab/#", "--from", "1", "-n", "2", "-v", ...on(server.port)])).stdout).toBe("lab/a 2\nlab/a 3\n")
    expect((await dsmq(["get", "lab/a", "--from", "3", ...on(server.port)])).code).toBe(1)
    expect(await dsmq(["get", "nothing/here", ...on(server.port)])).toEqual({ code: 1, stdout: "", stderr: "" })
  })

  test("--wait waits for a message that is put later", async () => {
    await using server = await serve()
    await using get = new Running(["get", "later", "--wait", "1m", ...on(server.port)])
    // The get is waiting once the server holds its GET_WAIT.
    for (let attempt = 0; ; attempt++) {
      const metrics = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text()
      if (/dsmq_connections\{protocol="binary"\} 1/.test(metrics)) break
      if (attempt > 5000) throw new Error("the get never connected")
    }
    expect((await dsmq(["put", "later", "here", ...on(server.port)])).code).toBe(0)
    expect(await get.stdout.next()).toBe("here")
    expect(await get.process.exited).toBe(0)
  })

  test("--cursor NAME reads on from where the last run with that name stopped", async () => {
    await using server = await serve()
    expect((await dsmq(["get", "jobs", "--cursor", "worker", ...on(server.port)])).code).toBe(1)
    expect((await dsmq(["put", "jobs", ...on(server.port)], { input: "a\nb\nc\n" })).code).toBe(0)
    expect((await dsmq(["get", "jobs", "--cursor", "worker", ...on(server.port)])).stdout).toBe("a\n")
    expect((await dsmq(["get", "jobs", "--cursor", "worker", "-n", "5", ...on(server.port)])).stdout).toBe("b\nc\n")
    expect((await dsmq(["get", "jobs", "--cursor", "worker", ...on(server.port)])).code).toBe(1)
  })
})

describe("dsmq topics and stats", () => {
  test("a table for people, JSON for scripts", async () => {
    await using server = await serve()
    expect((await dsmq(["put", "lab/temp", ...on(server.port)], { input: "21.5\n22\n" })).code).toBe(0)
    expect((await dsmq(["put", "other", "x", ...on(server.port)])).code).toBe(0)
    const table = await dsmq(["topics", "lab/#", ...on(server.port)])
    expect(table.code).toBe(0)
    expect(table.stdout.split("\n")[0]).toMatch(/^TOPIC +MESSAGES +BYTES +LAST SEQ +LAST PUT \(UTC\) +SUBSCRIBERS$/)
    expect(table.stdout.split("\n")[1]).toMatch(/^lab\/temp +2 +6 B +2 +\d{4}-\S+Z +0$/)
    expect(table.stdout).not.toContain("other")
    const json = JSON.parse((await dsmq(["topics", "--json", ...on(server.port)])).stdout)
    expect(json.map((entry: { topic: string; messages: number }) => [entry.topic, entry.messages])).toEqual([
      ["lab/temp", 2],
      ["other", 1],
    ])
    const stats = JSON.parse((await dsmq(["stats", "--json", ...on(server.port)])).stdout)
    expect(stats).toMatchObject({ puts: 3, storedMessages: 3, lastSeq: 3, topics: 2 })
    const human = await dsmq(["stats", ...on(server.port)])
    expect(human.stdout).toMatch(/^stored messages +3 \(7 B\)$/m)
  })
})

describe("mistakes and failures are one line", () => {
  test.each([
    [["put"], "dsmq: put needs a TOPIC\nsee dsmq put --help\n"],
    [["put", "t", "--bogus"], "dsmq: unknown option --bogus\nsee dsmq put --help\n"],
    [["get", "t", "--from"], "dsmq: --from needs a value\nsee dsmq get --help\n"],
    [["get", "t", "--from", "1", "--cursor", "c"], "dsmq: give --from or --cursor, not both\nsee dsmq get --help\n"],
    [["get", "t", "--wait", "forever"], expect.stringMatching(/^dsmq: --wait must be a duration .*\nsee dsmq get --help\n$/)],
    [["sub", "t", "--format", "xml"], 'dsmq: --format must be raw or json, got "xml"\nsee dsmq sub --help\n'],
    [["sub", "t", "--port", "99999"], expect.stringContaining("--port must be a whole number from 1 to 65535")],
    [["frobnicate"], 'dsmq: unknown command "frobnicate"\nsee dsmq --help\n'],
  ])("dsmq %j exits 2", async (args, stderr) => {
    const result = await dsmq(args)
    expect(result).toEqual({ code: 2, stdout: "", stderr })
  })

  test("no server: one line naming the address, exit 1", async () => {
    // A port nothing listens on: a server's, just stopped.
    const server = await serve()
    const { port } = server
    server.process.kill("SIGTERM")
    await server.process.exited
    for (const args of [["put", "t", "x"], ["get", "t"], ["sub", "t"], ["topics"], ["stats"]]) {
      const result = await dsmq([...args, ...on(port)])
      expect({ args, ...result }).toEqual({
        args,
        code: 1,
        stdout: "",
        stderr: `dsmq: cannot connect to 127.0.0.1:${port}: connection refused (is dsmq serve running?)\n`,
      })
    }
  })

  test("a server that wants a token says so", async () => {
    const tokens = join(directory, "tokens.json")
    writeFileSync(tokens, JSON.stringify({ tokens: [{ name: "lab", token: "0123456789abcdef-lab", read: ["#"], write: ["lab/#"] }] }))
    await using server = await serve(["--auth-file", tokens])
    const anonymous = await dsmq(["get", "lab/a", ...on(server.port)])
    expect([anonymous.code, anonymous.stderr]).toEqual([
      1,
      "dsmq: unauthorized: a token is required in HELLO (give --token or DSMQ_TOKEN)\n",
    ])
    const put = await dsmq(["put", "lab/a", "x", ...on(server.port)], { env: { DSMQ_TOKEN: "0123456789abcdef-lab" } })
    expect(put.code).toBe(0)
    const forbidden = await dsmq(["put", "other", "x", "--token", "0123456789abcdef-lab", ...on(server.port)])
    expect([forbidden.code, forbidden.stderr]).toEqual([1, 'dsmq: forbidden: lab may not write topic "other"\n'])
  })

  test("--help on every command, and the version", async () => {
    for (const command of ["put", "get", "sub", "topics", "stats", "serve"]) {
      const help = await dsmq([command, "--help"])
      expect({ command, code: help.code, start: help.stdout.split("\n")[0] }).toEqual({
        command,
        code: 0,
        start: expect.stringMatching(new RegExp(`^Usage: dsmq ${command}`)),
      })
    }
    const { version } = (await Bun.file(join(import.meta.dir, "..", "package.json")).json()) as { version: string }
    for (const args of [["--version"], ["version"], ["serve", "--version"]]) {
      expect(await dsmq(args)).toEqual({ code: 0, stdout: `dsmq ${version} (Bun ${Bun.version})\n`, stderr: "" })
    }
    const bare = await dsmq([])
    expect([bare.code, bare.stderr.split("\n")[0]]).toEqual([2, "Usage: dsmq COMMAND [options]"])
  })
})
