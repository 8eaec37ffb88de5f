/** The server as a user runs it: `bun run src/server.ts ...` in a child process. */
import { join } from "node:path"

export const SERVER = join(import.meta.dir, "..", "src", "server.ts")

export interface ServerProcess extends AsyncDisposable {
  readonly process: Bun.Subprocess<"ignore", "pipe", "pipe">
  readonly firstLine: string
  readonly port: number
  readonly httpPort: number | null
}

/** Starts the server and resolves once it has printed its address line. */
export async function spawnServer(args: string[]): Promise<ServerProcess> {
  const child = Bun.spawn(["bun", "run", SERVER, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" })
  const reader = child.stdout.getReader()
  let text = ""
  while (!text.includes("\n")) {
    const { value, done } = await reader.read()
    if (done) throw new Error(`server exited before printing its address: ${await new Response(child.stderr).text()}`)
    text += new TextDecoder().decode(value)
  }
  reader.releaseLock()
  const firstLine = text.slice(0, text.indexOf("\n"))
  const port = Number(/(?:tcp|tls):\/\/[^ ]+:(\d+)/.exec(firstLine)?.[1])
  const http = /https?:\/\/[^ ]+:(\d+)/.exec(firstLine)?.[1]
  return {
    process: child,
    firstLine,
    port,
    httpPort: http === undefined ? null : Number(http),
    async [Symbol.asyncDispose]() {
      child.kill("SIGKILL")
      await child.exited
    },
  }
}
