/**
 * A body over --max-message-bytes gets a 413 its client can read, even from clients that send
 * the whole body before they read the answer (Python's urllib, as scripts use it).
 */
import { expect, test } from "bun:test"
import { startTestServer } from "../helpers.ts"

const PYTHON = `
import sys, urllib.request, urllib.error
url, size = sys.argv[1], int(sys.argv[2])
try:
    with urllib.request.urlopen(urllib.request.Request(url, data=b"x" * size, method="POST")) as response:
        print(response.status, response.read().decode())
except urllib.error.HTTPError as error:
    print(error.code, error.read().decode())
except Exception as error:
    print("failed", type(error).__name__, error)
`

async function postFromPython(url: string, bytes: number): Promise<string> {
  const child = Bun.spawn(["python3", "-c", PYTHON, url, String(bytes)], { stdout: "pipe", stderr: "pipe" })
  const [out] = await Promise.all([new Response(child.stdout).text(), child.exited])
  return out.trim()
}

test.each([
  ["1.5 MiB", 1.5 * 1024 * 1024],
  ["2 MiB", 2 * 1024 * 1024],
  ["20 MiB", 20 * 1024 * 1024],
])(
  "a %s body from Python's urllib gets its 413 in JSON",
  async (_name, bytes) => {
    using server = startTestServer()
    const answer = await postFromPython(`http://127.0.0.1:${server.httpPort}/topics/t`, bytes)
    expect(answer).toStartWith("413 ")
    expect(JSON.parse(answer.slice(4))).toEqual({
      error: { code: "too_large", text: `body of ${bytes} bytes is larger than the maximum of 1048576 bytes` },
    })
    expect(server.stats().puts).toBe(0)
    // Served on: a body within the limit is stored.
    expect(await postFromPython(`http://127.0.0.1:${server.httpPort}/topics/t`, 1024)).toStartWith("201 ")
  },
  30_000,
)

test("a chunked body over the limit is refused once it passes it", async () => {
  using server = startTestServer({ maxMessageBytes: 1024 })
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < 4; i++) controller.enqueue(new Uint8Array(1000).fill(0x61))
      controller.close()
    },
  })
  const response = await fetch(`http://127.0.0.1:${server.httpPort}/topics/t`, { method: "POST", body })
  expect(response.status).toBe(413)
  expect(((await response.json()) as { error: { text: string } }).error.text).toBe(
    "body of more than 1024 bytes is larger than the maximum of 1024 bytes",
  )
  expect(server.stats().puts).toBe(0)
})
