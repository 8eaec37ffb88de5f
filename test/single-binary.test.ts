/** `bun run build`'s single binary (bun build --compile): it knows its version, serves and answers. */
import { afterAll, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { serve } from "./dsmq-process.ts"

const directory = mkdtempSync(join(tmpdir(), "dsmq-binary-"))
afterAll(() => rmSync(directory, { recursive: true, force: true }))
const ROOT = join(import.meta.dir, "..")

test("the compiled dsmq prints its version, serves, and its client commands reach it", async () => {
  const binary = join(directory, "dsmq")
  // The same build as `bun run build`, written elsewhere so a test never touches dist/.
  const { scripts, version } = (await Bun.file(join(ROOT, "package.json")).json()) as { scripts: { build: string }; version: string }
  const args = scripts.build.replace(/^bun /, "").replace("dist/dsmq", binary).split(" ")
  const build = Bun.spawn(["bun", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" })
  expect([await build.exited, await new Response(build.stderr).text()]).toEqual([0, ""])

  const run = async (...argv: string[]) => {
    const child = Bun.spawn([binary, ...argv], { stdin: "ignore", stdout: "pipe", stderr: "pipe" })
    return [await child.exited, await new Response(child.stdout).text(), await new Response(child.stderr).text()]
  }
  expect(await run("--version")).toEqual([0, `dsmq ${version} (Bun ${Bun.version})\n`, ""])
  await using server = await serve([], [binary])
  expect(await run("put", "lab/temp", "21.5", "--ack", "--port", String(server.port))).toEqual([0, "1\n", ""])
  expect(await run("get", "lab/#", "-v", "--port", String(server.port))).toEqual([0, "lab/temp 21.5\n", ""])
  // The dashboard's page and its bundled script travel inside the binary (served on the TCP port too).
  const page = await fetch(`http://127.0.0.1:${server.port}/`)
  const script = /src="(\/[^"]+\.js)"/.exec(await page.text())?.[1]
  expect([page.status, script]).toEqual([200, expect.stringMatching(/\.js$/)])
  const asset = await fetch(`http://127.0.0.1:${server.port}${script}`)
  expect(asset.status).toBe(200)
  expect((await asset.text()).length).toBeGreaterThan(10_000)
  const [code, , stderr] = await run("bench")
  expect([code, stderr]).toEqual([1, expect.stringContaining("the benchmark suite is not part of this dsmq")])
  server.process.kill("SIGINT")
  expect(await server.process.exited).toBe(0)
})
