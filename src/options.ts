/**
 * Command-line options, parsed in one place. Upstream's positional form
 * `server.ts [host] [port]` is accepted as well as flags.
 */
import { DEFAULT_HOST, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PORT, type ServerOptions } from "./server/listener.ts"

export const USAGE = `Usage: bun run src/server.ts [host] [port] [options]

A dsmq-compatible message broker.

Options:
  --host HOST               address to listen on (default ${DEFAULT_HOST})
  --port PORT               TCP port; 0 picks a free one (default ${DEFAULT_PORT})
  --http-port PORT          HTTP and WebSocket port; 0 picks a free one
                            (default: the TCP port + 1, so ${DEFAULT_PORT + 1}; 0 when the TCP port is 0)
  --no-http                 no HTTP/WebSocket listener
  --max-message-bytes N     largest request accepted, in bytes (default ${DEFAULT_MAX_MESSAGE_BYTES})
  --allow-shutdown          obey the dsmq "shutdown" action (refused by default)
  -h, --help                show this help
`

export type ParsedCommand = { readonly kind: "help" } | { readonly kind: "serve"; readonly options: ServerOptions }

export class UsageError extends Error {
  override readonly name = "UsageError"
}

export function parseArguments(argv: readonly string[]): ParsedCommand {
  let host = DEFAULT_HOST
  let port = DEFAULT_PORT
  let httpPort: number | null | undefined
  let maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES
  let allowShutdown = false
  const positional: string[] = []

  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!
    const [flag, inlineValue] = argument.startsWith("--") && argument.includes("=")
      ? [argument.slice(0, argument.indexOf("=")), argument.slice(argument.indexOf("=") + 1)]
      : [argument, undefined]
    const value = (): string => {
      if (inlineValue !== undefined) return inlineValue
      const next = argv[++i]
      if (next === undefined) throw new UsageError(`${flag} needs a value`)
      return next
    }
    switch (flag) {
      case "-h":
      case "--help":
        return { kind: "help" }
      case "--host":
        host = parseHost(value())
        break
      case "--port":
        port = parsePort(value())
        break
      case "--http-port":
        httpPort = parsePort(value())
        break
      case "--no-http":
        httpPort = null
        break
      case "--max-message-bytes":
        maxMessageBytes = parseInteger("--max-message-bytes", value(), 64, 2 ** 31 - 1)
        break
      case "--allow-shutdown":
        allowShutdown = true
        break
      default:
        if (flag.startsWith("-")) throw new UsageError(`unknown option ${flag}`)
        positional.push(argument)
    }
  }

  if (positional.length > 2) throw new UsageError(`expected at most [host] [port], got ${positional.join(" ")}`)
  if (positional[0] !== undefined) host = parseHost(positional[0])
  if (positional[1] !== undefined) port = parsePort(positional[1])
  if (httpPort === undefined) httpPort = port === 0 ? 0 : port + 1
  if (httpPort !== null && httpPort === port && port !== 0) throw new UsageError(`--http-port must differ from the TCP port ${port}`)
  if (httpPort !== null && httpPort > 65535) throw new UsageError(`the default HTTP port ${httpPort} is out of range; give --http-port`)
  return { kind: "serve", options: { host, port, httpPort, maxMessageBytes, allowShutdown } }
}

function parseHost(text: string): string {
  if (text.trim() === "") throw new UsageError("host must not be empty")
  return text
}

function parsePort(text: string): number {
  return parseInteger("port", text, 0, 65535)
}

function parseInteger(name: string, text: string, min: number, max: number): number {
  const value = Number(text)
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new UsageError(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`)
  }
  return value
}
