/**
 * Entry point: `bun run src/server.ts [host] [port] [options]`. Prints one line with the
 * address once listening, and stops cleanly (exit code 0) on SIGINT, SIGTERM or an allowed
 * `shutdown` request.
 */
import { exposureWarning, type ParsedCommand, parseArguments, USAGE, UsageError } from "./options.ts"
import { rateLimitedLog } from "./rate-limited-log.ts"
import { ListenError, type RunningServer, startServer } from "./start-server.ts"

function main(argv: readonly string[]): void {
  let command: ParsedCommand
  try {
    command = parseArguments(argv, process.env)
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    console.error(`error: ${error.message}\n\n${USAGE}`)
    process.exit(2)
  }
  if (command.kind === "help") {
    process.stdout.write(USAGE)
    return
  }

  let server: RunningServer
  try {
    server = startServer({ ...command.options, log: rateLimitedLog((line) => console.error(`dsmq: ${line}`)) })
  } catch (error) {
    if (!(error instanceof ListenError)) throw error
    console.error(`error: ${error.message}`)
    process.exit(1)
  }
  const stopOnSignal = (signal: string): void => {
    console.error(`dsmq: ${signal}, stopping`)
    server.stop()
  }
  process.on("SIGINT", () => stopOnSignal("SIGINT"))
  process.on("SIGTERM", () => stopOnSignal("SIGTERM"))
  void server.stopped.then(() => process.exit(0))
  const warning = exposureWarning(server.host, command.options.auth ?? null)
  if (warning !== null) console.error(`dsmq: ${warning}`)
  // Printed last: whoever waits for this line may signal the server at once.
  const host = formatHost(server.host)
  const [tcp, http, ws] = command.options.tls === undefined ? ["tcp", "http", "ws"] : ["tls", "https", "wss"]
  // The TCP port serves WebSocket and HTTP too (upstream 1.x clients connect there by default).
  const webSockets = [server.port, ...(server.httpPort === null ? [] : [server.httpPort])].map((port) => `${ws}://${host}:${port}/`)
  const httpAddress = server.httpPort === null ? "" : `, ${http}://${host}:${server.httpPort}`
  console.log(`dsmq listening on ${tcp}://${host}:${server.port}${httpAddress} (WebSocket ${webSockets.join(" or ")})`)
}

function formatHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host
}

main(process.argv.slice(2))
