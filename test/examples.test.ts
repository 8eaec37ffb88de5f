/**
 * The example clients in examples/, run as a user would run them, against a test server:
 * the get client starts first, the put client runs to completion, and the get client must
 * print exactly the messages put, in order, and exit 0.
 */
import { describe, expect, test } from "bun:test"
import type { Subprocess } from "bun"
import { startTestServer } from "./helpers.ts"

const root = `${import.meta.dir}/..`
const python = Bun.which("python3")
if (python === null) console.warn("python3 is not on PATH: skipping the tests that run the Python examples")
const needsPython = test.skipIf(python === null)

type Language = "python" | "typescript"

function clientCommand(language: Language, role: "put" | "get", args: string[]): string[] {
  return language === "python"
    ? [python ?? "python3", `examples/${role}_client.py`, ...args]
    : [process.execPath, "run", `examples/${role}-client.ts`, ...args]
}

function messages(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `Hello! ${i}`)
}

interface Finished {
  exitCode: number
  stdout: string
  stderr: string
}

/**
 * A running get client. `started` resolves with its first stdout line once it has printed one:
 * the client prints "connected ..." as soon as its connection is open, so any put made after
 * that reaches it.
 */
class GetClient implements AsyncDisposable {
  readonly #child: Subprocess<"ignore", "pipe", "pipe">
  readonly #chunks: AsyncIterator<Uint8Array>
  readonly #stderr: Promise<string>
  readonly #utf8 = new TextDecoder()
  #stdout = ""

  constructor(command: string[]) {
    this.#child = Bun.spawn(command, { cwd: root, stdin: "ignore", stdout: "pipe", stderr: "pipe" })
    this.#chunks = this.#child.stdout[Symbol.asyncIterator]()
    this.#stderr = new Response(this.#child.stderr).text()
  }

  /** Reads stdout until the first line is complete (each read waits for the child to write). */
  async firstLine(): Promise<string> {
    while (!this.#stdout.includes("\n")) {
      if (!(await this.#read())) {
        throw new Error(`get client exited before printing a line; stderr: ${await this.#stderr}`)
      }
    }
    return this.#stdout.slice(0, this.#stdout.indexOf("\n"))
  }

  /** Reads stdout to its end (the child's exit) and returns what the client printed. */
  async finish(): Promise<Finished> {
    while (await this.#read()) {}
    this.#stdout += this.#utf8.decode()
    return { exitCode: await this.#child.exited, stdout: this.#stdout, stderr: await this.#stderr }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // Only matters when a test failed half-way: never leave a client running.
    if (this.#child.exitCode === null) this.#child.kill()
    await this.#child.exited
  }

  async #read(): Promise<boolean> {
    const { done, value } = await this.#chunks.next()
    if (!done) this.#stdout += this.#utf8.decode(value, { stream: true })
    return !done
  }
}

async function runToCompletion(command: string[]): Promise<Finished> {
  const child = Bun.spawn(command, { cwd: root, stdin: "ignore", stdout: "pipe", stderr: "pipe" })
  const [stdout, stderr, exitCode] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited])
  return { exitCode, stdout, stderr }
}

/** Starts `getter`, waits until it is connected, runs `putter`, and checks what `getter` printed. */
async function putThenGet(putter: Language, getter: Language, count: number): Promise<void> {
  using server = startTestServer()
  const args = ["127.0.0.1", String(server.port), `greetings-${putter}-to-${getter}`, String(count)]
  await using get = new GetClient(clientCommand(getter, "get", args))
  expect(await get.firstLine()).toStartWith("connected to 127.0.0.1:")

  const put = await runToCompletion(clientCommand(putter, "put", args))
  expect(put.stderr).toBe("")
  expect(put.exitCode).toBe(0)

  const result = await get.finish()
  expect(result.stderr).toBe("")
  expect(result.exitCode).toBe(0)
  const [connected, ...printed] = result.stdout.trimEnd().split("\n")
  expect(connected).toStartWith("connected to 127.0.0.1:")
  expect(printed).toEqual(messages(count))
  expect(server.stats().puts).toBe(count)
}

describe("example clients", () => {
  needsPython("Python get client prints what the Python put client put", async () => {
    await putThenGet("python", "python", 10)
  })

  test("TypeScript get client (get_wait) prints what the TypeScript put client put", async () => {
    await putThenGet("typescript", "typescript", 10)
  })

  needsPython("Python get client prints what the TypeScript put client put", async () => {
    await putThenGet("typescript", "python", 10)
  })

  needsPython("TypeScript get client prints what the Python put client put", async () => {
    await putThenGet("python", "typescript", 10)
  })

  test("the default count is small and the put client says what it did", async () => {
    using server = startTestServer()
    await using get = new GetClient(clientCommand("typescript", "get", ["127.0.0.1", String(server.port)]))
    expect(await get.firstLine()).toBe(`connected to 127.0.0.1:${server.port}, waiting for 5 messages on "greetings"`)
    const put = await runToCompletion(clientCommand("typescript", "put", ["127.0.0.1", String(server.port)]))
    expect(put.stdout).toBe('sent 5 messages to "greetings"\n')
    expect((await get.finish()).stdout.trimEnd().split("\n").slice(1)).toEqual(messages(5))
  })

  for (const language of ["python", "typescript"] as const) {
    const runIf = language === "python" ? needsPython : test
    runIf(`${language} get client exits non-zero when the server goes away early`, async () => {
      using server = startTestServer()
      await using get = new GetClient(clientCommand(language, "get", ["127.0.0.1", String(server.port), "t", "3"]))
      await get.firstLine()
      server.stop()
      const result = await get.finish()
      expect(result.exitCode).not.toBe(0)
      expect(result.stdout.trimEnd().split("\n")).toHaveLength(1)
      expect(result.stderr).not.toBe("")
    })
  }
})
