/**
 * `dsmq serve` (and `bun run src/server.ts`): parses the settings, starts the server, prints one
 * line with its addresses, and stops on SIGINT or SIGTERM: the first signal waits (up to
 * --shutdown-timeout) for clients to take their last replies and says so; a second one stops
 * at once. Every failure to start is one line on stderr.
 */
import { humanBytes } from "../config/values.ts"
import { CommandLineError, exposureWarning, type ParsedCommand, parseArguments, USAGE, UsageError } from "../options.ts"
import { rateLimitedLog } from "../rate-limited-log.ts"
import { type RunningServer, StartupError, type StopProgress, startServer } from "../start-server.ts"
import { versionLine } from "./version.ts"

/** Exit codes: 2 the command line cannot be read, 1 the server cannot start; 128 + signal number when a second signal cut the stop short. */
const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const

export function runServe(argv: readonly string[], env: Record<string, string | undefined>): void {
  let command: ParsedCommand
  try {
    command = parseArguments(argv, env)
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    // A mistyped command line gets a pointer to the help; a bad file or value is one line.
    if (error instanceof CommandLineError) console.error(`dsmq: ${error.message}\nsee dsmq serve --help`)
    else console.error(`dsmq: ${error.message}`)
    process.exit(error instanceof CommandLineError ? 2 : 1)
  }
  if (command.kind === "help") return void process.stdout.write(USAGE)
  if (command.kind === "version") return void console.log(versionLine())
  if (command.kind === "print-config") return void process.stdout.write(command.text)

  let server: RunningServer
  try {
    server = startServer({ ...command.options, log: rateLimitedLog((line) => console.error(`dsmq: ${line}`)) })
  } catch (error) {
    if (!(error instanceof StartupError)) throw error
    console.error(`dsmq: ${error.message}`)
    process.exit(1)
  }
  let stopping = false
  const onSignal = (signal: keyof typeof SIGNAL_EXIT_CODES): void => {
    if (stopping) {
      console.error(`dsmq: ${signal} again, stopping now`)
      server.stopNow()
      process.exit(SIGNAL_EXIT_CODES[signal])
    }
    stopping = true
    console.error(`dsmq: ${signal}, ${describeStop(server.stop())}`)
  }
  process.on("SIGINT", () => onSignal("SIGINT"))
  process.on("SIGTERM", () => onSignal("SIGTERM"))
  void server.stopped.then(() => process.exit(0))
  const warning = exposureWarning(server.host, command.options.auth ?? null)
  if (warning !== null) console.error(`dsmq: ${warning}`)
  // Printed last: whoever waits for this line may signal the server at once.
  console.log(addressLine(server, command.options.tls !== undefined))
}

/** "stopping: waiting up to 5 s for 2 clients to take 1.2 MB (press Ctrl-C again to stop now)". */
export function describeStop(progress: StopProgress): string {
  if (progress.clients === 0) return "stopping"
  const clients = progress.clients === 1 ? "1 client" : `${progress.clients} clients`
  const what = progress.bufferedBytes === 0 ? "to disconnect" : `to take ${humanBytes(progress.bufferedBytes)}`
  return `stopping: waiting up to ${progress.timeoutMs / 1000} s for ${clients} ${what} (signal again to stop now)`
}

function addressLine(server: RunningServer, secure: boolean): string {
  const host = server.host.includes(":") ? `[${server.host}]` : server.host
  const [tcp, http, ws] = secure ? ["tls", "https", "wss"] : ["tcp", "http", "ws"]
  // The TCP port serves WebSocket and HTTP too (upstream 1.x clients connect there by default).
  const webSockets = [server.port, ...(server.httpPort === null ? [] : [server.httpPort])].map((port) => `${ws}://${host}:${port}/`)
  const httpAddress = server.httpPort === null ? "" : `, ${http}://${host}:${server.httpPort}`
  return `dsmq listening on ${tcp}://${host}:${server.port}${httpAddress} (WebSocket ${webSockets.join(" or ")})`
}
