/**
 * Command-line options, parsed in one place: `parseCommandLine` reads argv alone (upstream's
 * positional form `server.ts [host] [port]` as well as flags), `loadServerOptions` then reads
 * the files it names (src/config/files.ts).
 */
import type { AuthConfig } from "./auth/auth.ts"
import { DEFAULT_RETENTION, type RetentionConfig, type RetentionLimits } from "./broker/retention.ts"
import { readAuth, readPem, readRetentionRules } from "./config/files.ts"
import { formatSize, oneOf, parseAge, parseCount, parseHost, parseInteger, parsePort, parseSize, UsageError } from "./config/values.ts"
import {
  DEFAULT_HOST,
  DEFAULT_LIMITS,
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_PORT,
  type ServerLimits,
  type ServerOptions,
} from "./start-server.ts"
import type { SyncLevel } from "./store/store.ts"

export { UsageError }

const retentionDefaults = DEFAULT_RETENTION.defaults

export const USAGE = `Usage: bun run src/server.ts [host] [port] [options]

A dsmq-compatible message broker.

Options:
  --host HOST               address to listen on (default ${DEFAULT_HOST})
  --port PORT               TCP port; 0 picks a free one (default ${DEFAULT_PORT})
  --http-port PORT          HTTP and WebSocket port; 0 picks a free one
                            (default: the TCP port + 1, so ${DEFAULT_PORT + 1}; 0 when the TCP port is 0)
  --no-http                 no separate HTTP/WebSocket port (the TCP port still serves both)
  --max-message-bytes N     largest request accepted, in bytes (default ${DEFAULT_MAX_MESSAGE_BYTES})
  --allow-shutdown          obey the dsmq "shutdown" action (refused by default)
  --shutdown-timeout SECS   on SIGINT/SIGTERM, how long clients may take to read their last
                            replies before they are disconnected (default 5)
  --idle-timeout SECS       close TCP connections silent for this long (default: never;
                            TCP keepalive still finds dead peers)
  --auth-timeout SECS       with tokens: time to authenticate, with a first frame of at most
                            16KiB; without: time to finish a started first request; 0: no
                            limit (default ${DEFAULT_LIMITS.authTimeoutSeconds})
  --max-connections N       open TCP and WebSocket connections (default ${DEFAULT_LIMITS.maxConnections})
  --max-outbound-bytes SIZE replies waiting for one slow client before its requests stop
                            running (default ${formatSize(DEFAULT_LIMITS.maxOutboundBytes)})
  --max-subscriptions N     subscriptions per connection (default ${DEFAULT_LIMITS.maxSubscriptions})
  --max-pending-waits N     GET_WAITs pending per binary connection (default ${DEFAULT_LIMITS.maxPendingWaits})

Access (open to anyone who can connect unless tokens are configured):
  --auth-file FILE          tokens and the topics each may read and write, JSON:
                            {"tokens": [{"name": "lab", "token": "...", "read": ["lab/#"],
                            "write": ["lab/#"]}]}; or the same JSON in the DSMQ_AUTH
                            environment variable
  --allow-anonymous-legacy  with tokens: let upstream JSON clients that send no auth action
                            in (with the file's "anonymousLegacy" permissions, default all)
  --tls-cert FILE           PEM certificate (chain): TLS on the TCP port, HTTPS and WSS on
  --tls-key FILE            the HTTP port; both or neither

Storage (in memory unless --db is given):
  --db FILE                 keep messages and named cursors in a SQLite file (WAL mode)
  --sync normal|full        with --db: normal survives a crash of the server process,
                            full also a power loss (slower puts) (default normal)

Retention (what the store keeps; sizes take KiB/MiB/GiB, ages s/m/h; "none" for no limit):
  --max-memory SIZE         cap on all stored messages (default ${formatSize(DEFAULT_RETENTION.maxStoreBytes)})
  --max-messages N          messages per topic (default ${retentionDefaults.maxMessages ?? "none"})
  --max-topic-bytes SIZE    payload bytes per topic (default ${formatSize(retentionDefaults.maxBytes)})
  --max-age AGE             oldest message kept (default ${retentionDefaults.maxAgeMs ?? "none"})
  --full-policy POLICY      at a limit: drop-oldest (default) or reject new puts
  --retention-config FILE   per-topic rules, JSON: {"rules": [{"pattern": "lab/#",
                            "maxAge": "10m", "maxMessages": 1000, "maxBytes": "1MiB",
                            "policy": "reject"}]}; the first matching pattern wins

  -h, --help                show this help
`

export type ParsedCommand = { readonly kind: "help" } | { readonly kind: "serve"; readonly options: ServerOptions }

/** What the command line says, before any file it names is read. */
export interface CommandLine {
  /** The options that need no file; `auth`, `tls` and the retention rules come from the files below. */
  readonly options: Omit<ServerOptions, "auth" | "tls" | "retention">
  readonly retention: Omit<RetentionConfig, "rules">
  readonly authFile: string | undefined
  readonly allowAnonymousLegacy: boolean
  readonly tlsCert: string | undefined
  readonly tlsKey: string | undefined
  readonly retentionConfig: string | undefined
}

/** Parses argv and reads the files it names; `env` supplies DSMQ_AUTH. */
export function parseArguments(argv: readonly string[], env: Record<string, string | undefined> = {}): ParsedCommand {
  const parsed = parseCommandLine(argv)
  return parsed.kind === "help" ? parsed : { kind: "serve", options: loadServerOptions(parsed.commandLine, env) }
}

/** Reads the token, TLS and retention files a command line names, into the server's options. */
export function loadServerOptions(commandLine: CommandLine, env: Record<string, string | undefined>): ServerOptions {
  const { options, retention, tlsCert, tlsKey } = commandLine
  const auth = readAuth(commandLine.authFile, env.DSMQ_AUTH, commandLine.allowAnonymousLegacy)
  const tls = tlsCert === undefined ? undefined : { cert: readPem("--tls-cert", tlsCert), key: readPem("--tls-key", tlsKey!) }
  const rules = commandLine.retentionConfig === undefined ? [] : readRetentionRules(commandLine.retentionConfig)
  return { ...options, retention: { ...retention, rules }, auth, ...(tls === undefined ? {} : { tls }) }
}

export function parseCommandLine(
  argv: readonly string[],
): { readonly kind: "help" } | { readonly kind: "serve"; readonly commandLine: CommandLine } {
  let host = DEFAULT_HOST
  let port = DEFAULT_PORT
  let httpPort: number | null | undefined
  let maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES
  let allowShutdown = false
  let limits: Partial<ServerLimits> = {}
  let tlsCert: string | undefined
  let tlsKey: string | undefined
  let authFile: string | undefined
  let allowAnonymousLegacy = false
  let shutdownTimeoutMs: number | undefined
  let idleTimeoutSeconds: number | undefined
  let db: string | undefined
  let sync: SyncLevel = "normal"
  let maxStoreBytes = DEFAULT_RETENTION.maxStoreBytes
  let defaults: RetentionLimits = DEFAULT_RETENTION.defaults
  let retentionConfig: string | undefined
  const positional: string[] = []

  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!
    const [flag, inlineValue] =
      argument.startsWith("--") && argument.includes("=")
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
      case "--max-connections":
        limits = { ...limits, maxConnections: parseInteger("--max-connections", value(), 1, 1_000_000) }
        break
      case "--max-outbound-bytes": {
        const size = parseSize("--max-outbound-bytes", value())
        if (size === null || size < 64 * 1024) throw new UsageError("--max-outbound-bytes must be at least 64KiB")
        limits = { ...limits, maxOutboundBytes: size }
        break
      }
      case "--max-subscriptions":
        limits = { ...limits, maxSubscriptions: parseInteger("--max-subscriptions", value(), 1, 1_000_000) }
        break
      case "--max-pending-waits":
        limits = { ...limits, maxPendingWaits: parseInteger("--max-pending-waits", value(), 1, 1_000_000) }
        break
      case "--tls-cert":
        tlsCert = value()
        break
      case "--tls-key":
        tlsKey = value()
        break
      case "--auth-file":
        authFile = value()
        break
      case "--allow-anonymous-legacy":
        allowAnonymousLegacy = true
        break
      case "--shutdown-timeout":
        shutdownTimeoutMs = parseInteger("--shutdown-timeout", value(), 0, 3600) * 1000
        break
      case "--auth-timeout":
        limits = { ...limits, authTimeoutSeconds: parseInteger("--auth-timeout", value(), 0, 3600) }
        break
      case "--idle-timeout":
        idleTimeoutSeconds = parseInteger("--idle-timeout", value(), 0, 86_400)
        break
      case "--db":
        db = value()
        break
      case "--sync":
        sync = oneOf("--sync", value(), ["normal", "full"])
        break
      case "--max-memory":
        maxStoreBytes = parseSize("--max-memory", value())
        break
      case "--max-messages":
        defaults = { ...defaults, maxMessages: parseCount("--max-messages", value()) }
        break
      case "--max-topic-bytes":
        defaults = { ...defaults, maxBytes: parseSize("--max-topic-bytes", value()) }
        break
      case "--max-age":
        defaults = { ...defaults, maxAgeMs: parseAge("--max-age", value()) }
        break
      case "--full-policy":
        defaults = { ...defaults, policy: oneOf("--full-policy", value(), ["drop-oldest", "reject"]) }
        break
      case "--retention-config":
        retentionConfig = value()
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
  if (sync !== "normal" && db === undefined) throw new UsageError("--sync needs --db")
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new UsageError("--tls-cert and --tls-key go together")
  const options = {
    host,
    port,
    httpPort,
    maxMessageBytes,
    allowShutdown,
    ...(db === undefined ? {} : { db, sync }),
    ...(shutdownTimeoutMs === undefined ? {} : { shutdownTimeoutMs }),
    ...(idleTimeoutSeconds === undefined ? {} : { idleTimeoutSeconds }),
    retention: { defaults, rules: [], maxStoreBytes },
    ...(Object.keys(limits).length === 0 ? {} : { limits }),
  }
  return {
    kind: "serve",
    commandLine: { options, retention: { defaults, maxStoreBytes }, authFile, allowAnonymousLegacy, tlsCert, tlsKey, retentionConfig },
  }
}

/** The warning to print when the server is reachable from other machines without tokens. */
export function exposureWarning(host: string, auth: AuthConfig | null): string | null {
  const loopback = host === "localhost" || host === "::1" || host.startsWith("127.")
  if (loopback || auth !== null) return null
  return (
    `WARNING: listening on ${host} without authentication: anyone who can reach these ports can ` +
    "read and write every topic. Configure tokens (--auth-file or DSMQ_AUTH) on shared networks."
  )
}
