/**
 * The processes a load scenario talks to: the broker (`bun run src/server.ts --port 0
 * --http-port 0`) or the echo server, each spawned fresh, found by the address line it prints,
 * and always stopped.
 */
import { dirname, join } from "node:path"

const projectDir = dirname(dirname(import.meta.dir))
const START_TIMEOUT_MS = 15_000
const STOP_TIMEOUT_MS = 5_000

export interface Spawned {
  readonly host: string
  readonly port: number
  /** The rest of the address line (e.g. the broker's HTTP and WebSocket addresses). */
  readonly addressLine: string
  /** The broker's WebSocket endpoint (ws://HOST:HTTP_PORT/) as it announces it; null if it announces none. */
  readonly websocketUrl: string | null
  readonly pid: number
  /** The last lines the process wrote to stderr (for error messages). */
  stderrTail(): string
  /** SIGTERM, then SIGKILL if it has not exited within a few seconds. */
  stop(): Promise<void>
}

export interface SpawnOptions {
  /** Write a CPU profile of the server (bun --cpu-prof, with a Markdown summary) into this directory. */
  readonly cpuProfileDir?: string
  readonly profileName?: string
  /** More flags for the broker (after --port 0 --http-port 0). */
  readonly args?: readonly string[]
}

export function spawnBroker(options: SpawnOptions = {}): Promise<Spawned> {
  const profile =
    options.cpuProfileDir === undefined
      ? []
      : [
          "--cpu-prof",
          "--cpu-prof-md",
          "--cpu-prof-interval=250",
          `--cpu-prof-dir=${options.cpuProfileDir}`,
          ...(options.profileName === undefined ? [] : [`--cpu-prof-name=${options.profileName}`]),
        ]
  return spawnListening(
    [process.execPath, ...profile, "run", join(projectDir, "src/server.ts"), "--port", "0", "--http-port", "0", ...(options.args ?? [])],
    /dsmq listening on tcp:\/\/(\S+):(\d+)/,
  )
}

/** The floor: an echo server, or (`relay`) a relay from writers to every reader. */
export function spawnEcho(relay = false): Promise<Spawned> {
  return spawnListening(
    [process.execPath, "run", join(projectDir, "bench/load/echo-server.ts"), "0", ...(relay ? ["--relay"] : [])],
    /echo listening on tcp:\/\/(\S+):(\d+)/,
  )
}

async function spawnListening(command: string[], pattern: RegExp): Promise<Spawned> {
  const child = Bun.spawn(command, { cwd: projectDir, stdin: "ignore", stdout: "pipe", stderr: "pipe" })
  const stderrLines: string[] = []
  // Keep reading stderr so the child never blocks on a full pipe; keep the last lines.
  void (async () => {
    const decoder = new TextDecoder()
    let partial = ""
    for await (const chunk of child.stderr) {
      partial += decoder.decode(chunk, { stream: true })
      const lines = partial.split("\n")
      partial = lines.pop() ?? ""
      stderrLines.push(...lines)
      if (stderrLines.length > 20) stderrLines.splice(0, stderrLines.length - 20)
    }
  })()
  const stderrTail = (): string => stderrLines.join("\n")

  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill("SIGTERM")
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS)
    await child.exited
    clearTimeout(timer)
  }

  const reader = child.stdout.getReader()
  const decoder = new TextDecoder()
  let text = ""
  const deadline = Date.now() + START_TIMEOUT_MS
  try {
    for (;;) {
      const match = pattern.exec(text)
      if (match !== null) {
        // Keep draining stdout in the background.
        void (async () => {
          while (!(await reader.read()).done) {}
        })()
        const host = match[1]!.replace(/^\[(.*)\]$/, "$1")
        const addressLine = text.slice(match.index).split("\n")[0]!.trim()
        const websocketUrl = /WebSocket (ws:\/\/[^\s)]+)/.exec(addressLine)?.[1] ?? null
        return { host, port: Number(match[2]), addressLine, websocketUrl, pid: child.pid, stderrTail, stop }
      }
      const remaining = deadline - Date.now()
      if (remaining <= 0) throw new Error(`no address line within ${START_TIMEOUT_MS / 1000} s`)
      const result = await Promise.race([
        reader.read(),
        Bun.sleep(remaining).then(() => ({ done: true, value: undefined, timedOut: true }) as const),
      ])
      if ("timedOut" in result) continue
      if (result.done) throw new Error(`exited (code ${await child.exited}) before listening`)
      text += decoder.decode(result.value, { stream: true })
    }
  } catch (error) {
    await stop()
    const tail = stderrTail()
    throw new Error(`${command.slice(1).join(" ")}: ${(error as Error).message}${tail === "" ? "" : `\n${tail}`}`)
  }
}
