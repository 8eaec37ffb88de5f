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
  /** More environment variables for the broker (e.g. a BUN_JSC_ engine option). */
  readonly env?: Readonly<Record<string, string>>
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
    /dsmq listening on tcp:\/\/(?<host>\S+):(?<port>\d+)/,
    undefined,
    options.env,
  )
}

/** The floor: an echo server, or (`relay`) a relay from writers to every reader. */
export function spawnEcho(relay = false): Promise<Spawned> {
  return spawnListening(
    [process.execPath, "run", join(projectDir, "bench/load/echo-server.ts"), "0", ...(relay ? ["--relay"] : [])],
    /echo listening on tcp:\/\/(?<host>\S+):(?<port>\d+)/,
  )
}

/**
 * Spawns `command` and resolves once it prints a line matching `pattern` (named groups `port`
 * and, unless `host` is given, `host`) on stdout or stderr; the process is stopped if it does not
 * within START_TIMEOUT_MS or exits first.
 */
export async function spawnListening(
  command: string[],
  pattern: RegExp,
  host?: string,
  env: Readonly<Record<string, string>> = {},
): Promise<Spawned> {
  const child = Bun.spawn(command, { cwd: projectDir, env: { ...process.env, ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" })
  const stderrLines: string[] = []
  const stderrTail = (): string => stderrLines.join("\n")
  // Output up to the address line (both streams), then only stderr's last lines are kept.
  let seen = ""
  let match: RegExpExecArray | null = null
  const listening = Promise.withResolvers<void>()
  // Keep reading both streams so the child never blocks on a full pipe.
  const pump = async (stream: ReadableStream<Uint8Array>, keepTail: boolean): Promise<void> => {
    const decoder = new TextDecoder()
    let partial = ""
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true })
      if (match === null) {
        seen += text
        match = pattern.exec(seen)
        if (match !== null) listening.resolve()
      }
      if (!keepTail) continue
      partial += text
      const lines = partial.split("\n")
      partial = lines.pop() ?? ""
      stderrLines.push(...lines)
      if (stderrLines.length > 20) stderrLines.splice(0, stderrLines.length - 20)
    }
  }
  void pump(child.stdout, false)
  void pump(child.stderr, true)

  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill("SIGTERM")
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS)
    await child.exited
    clearTimeout(timer)
  }

  let timer: Timer | undefined
  try {
    await Promise.race([
      listening.promise,
      child.exited.then((code) => Promise.reject(new Error(`exited (code ${code}) before listening`))),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no address line within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS)
      }),
    ])
  } catch (error) {
    await stop()
    const tail = stderrTail()
    throw new Error(`${command.join(" ")}: ${(error as Error).message}${tail === "" ? "" : `\n${tail}`}`)
  } finally {
    clearTimeout(timer)
  }
  const found = match as unknown as RegExpExecArray
  const addressLine = seen.slice(found.index).split("\n")[0]!.trim()
  const websocketUrl = /WebSocket (ws:\/\/[^\s)]+)/.exec(addressLine)?.[1] ?? null
  return {
    host: (host ?? found.groups?.host ?? "").replace(/^\[(.*)\]$/, "$1"),
    port: Number(found.groups?.port),
    addressLine,
    websocketUrl,
    pid: child.pid,
    stderrTail,
    stop,
  }
}
