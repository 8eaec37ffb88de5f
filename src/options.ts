/**
 * The server's options, from the command line, the environment and a configuration file
 * (flag > environment > file > default; src/config/sources.ts), each value parsed by the
 * settings table (src/config/settings.ts), then checked together and turned into the options
 * `startServer` takes.
 */
import { type AuthConfig, AuthError, authConfigOf } from "./auth/auth.ts"
import type { RetentionRule } from "./broker/retention.ts"
import { bridgeConfig } from "./config/bridge.ts"
import { readAuth, readPem, readRetentionRules, retentionRulesOf, TOML_RULE_KEYS } from "./config/files.ts"
import { DEFAULT_MAX_BUFFERED_BYTES, SETTINGS, type SettingName, type SettingValues, settingsHelp, type Valued } from "./config/settings.ts"
import {
  type ConfigFile,
  type Given,
  type GivenSettings,
  mergeSources,
  readCommandLine,
  readConfigFile,
  readEnvironment,
} from "./config/sources.ts"
import { CommandLineError, UsageError } from "./config/values.ts"
import { printConfig } from "./print-config.ts"
import type { ServerOptions } from "./start-server.ts"

export { CommandLineError, UsageError }

export const USAGE = `Usage: dsmq serve [host] [port] [options]
       bun run src/server.ts [host] [port] [options]

A dsmq-compatible message broker. Every option can also be given in a TOML file (--config,
keys are the option names without dashes) or in an environment variable (DSMQ_ and the name
in upper snake case: DSMQ_PORT, DSMQ_MAX_MESSAGE_BYTES); a flag wins over the environment,
the environment over the file.

  --config FILE             read settings from this TOML file (or DSMQ_CONFIG); see dsmq.example.toml
  --print-config            print the settings in force (tokens redacted) and exit
${settingsHelp()}

  -V, --version             print the version and exit
  -h, --help                show this help
`

export type ParsedCommand =
  | { readonly kind: "help" }
  | { readonly kind: "version" }
  | { readonly kind: "print-config"; readonly text: string }
  | { readonly kind: "serve"; readonly options: ServerOptions }

/** Reads argv, the environment and the file either names, into the server's options. */
export function parseArguments(argv: readonly string[], env: Record<string, string | undefined> = {}): ParsedCommand {
  const commandLine = readCommandLine(argv)
  if (commandLine.kind !== "serve") return commandLine
  const configPath = commandLine.config ?? env.DSMQ_CONFIG
  const file = configPath === undefined ? undefined : readConfigFile(configPath)
  const given = mergeSources(commandLine.flags, readEnvironment(env), file?.settings ?? new Map())
  const values = parseValues(given)
  const options = toServerOptions(values, given, file, env)
  if (commandLine.printConfig) return { kind: "print-config", text: printConfig(options, given) }
  return { kind: "serve", options }
}

/** Each setting's value: parsed from where it was given, else from its default. */
function parseValues(given: GivenSettings): SettingValues {
  const values: Record<string, unknown> = {}
  for (const [name, setting] of Object.entries(SETTINGS)) {
    const source = given.get(name as SettingName)
    if (setting.kind === "switch") values[name] = source?.value === true
    else if (source !== undefined) values[name] = parseGiven(setting, source)
    else values[name] = setting.default === undefined ? undefined : setting.parse(setting.default, `--${name}`)
  }
  return values as SettingValues
}

/** A bad value on the command line is a CommandLineError; elsewhere the label names the variable or file. */
function parseGiven(setting: Valued<unknown>, given: Given): unknown {
  try {
    return setting.parse(String(given.value), given.label)
  } catch (error) {
    if (error instanceof UsageError && given.source === "flag") throw new CommandLineError(error.message)
    throw error
  }
}

function toServerOptions(
  values: SettingValues,
  given: GivenSettings,
  file: ConfigFile | undefined,
  env: Record<string, string | undefined>,
): ServerOptions {
  const port = values.port!
  const httpPort = values["no-http"] ? null : (values["http-port"] ?? (port === 0 ? 0 : port + 1))
  if (httpPort !== null && httpPort === port && port !== 0) throw new UsageError(`--http-port must differ from the TCP port ${port}`)
  if (httpPort !== null && httpPort > 65535) throw new UsageError(`the default HTTP port ${httpPort} is out of range; give --http-port`)
  if (given.has("sync") && values.sync !== "normal" && values.db === undefined) throw new UsageError("--sync needs --db")
  const [cert, key] = [values["tls-cert"], values["tls-key"]]
  if ((cert === undefined) !== (key === undefined)) throw new UsageError("--tls-cert and --tls-key go together")
  const tls =
    cert === undefined ? undefined : { cert: readPem(labelOf(given, "tls-cert"), cert), key: readPem(labelOf(given, "tls-key"), key!) }
  const db = values.db
  return {
    host: values.host!,
    port,
    httpPort,
    maxMessageBytes: values["max-message-bytes"]!,
    allowShutdown: values["allow-shutdown"],
    ...(db === undefined ? {} : { db, sync: values.sync! }),
    shutdownTimeoutMs: values["shutdown-timeout"]!,
    // Bun's socket timeout counts whole seconds.
    idleTimeoutSeconds: Math.ceil(values["idle-timeout"]! / 1000),
    retention: {
      defaults: {
        maxAgeMs: values["max-age"] ?? null,
        maxMessages: values["max-messages"] ?? null,
        maxBytes: values["max-topic-bytes"] ?? null,
        policy: values["full-policy"]!,
      },
      rules: retentionRules(values, given, file),
      maxStoreBytes: values["max-memory"] ?? null,
    },
    limits: {
      maxConnections: values["max-connections"]!,
      maxOutboundBytes: values["max-outbound-bytes"]!,
      maxSubscriptions: values["max-subscriptions"]!,
      maxPendingWaits: values["max-pending-waits"]!,
      maxCursors: values["max-cursors"]!,
      // Tied to the store's cap: what clients make the server hold is bounded like what it stores.
      maxBufferedBytes: values["max-buffered-bytes"] ?? values["max-memory"] ?? DEFAULT_MAX_BUFFERED_BYTES,
      authTimeoutSeconds: values["auth-timeout"]! / 1000,
    },
    auth: tokens(values, given, file, env),
    ...(tls === undefined ? {} : { tls }),
    bridge: bridgeConfig(values, file, env, port),
  }
}

function labelOf(given: GivenSettings, name: SettingName): string {
  return given.get(name)?.label ?? `--${name}`
}

/**
 * The tokens: --auth-file or DSMQ_AUTH_FILE, else the JSON in DSMQ_AUTH, else the file's
 * `auth-file` or `[auth]` tokens. Two ways at the same level are refused as ambiguous.
 */
function tokens(
  values: SettingValues,
  given: GivenSettings,
  file: ConfigFile | undefined,
  env: Record<string, string | undefined>,
): AuthConfig | null {
  const allowLegacy = values["allow-anonymous-legacy"]
  const authFile: Given | undefined = given.get("auth-file")
  const fromFile = authFile?.source === "file"
  if (authFile !== undefined && !fromFile) return readAuth(values["auth-file"], env.DSMQ_AUTH, allowLegacy)
  if (env.DSMQ_AUTH !== undefined) return readAuth(undefined, env.DSMQ_AUTH, allowLegacy)
  if (file?.auth !== undefined) {
    if (fromFile) throw new UsageError(`${file.path}: give tokens in auth-file or in [auth], not both`)
    return authTable(file.auth, file.path, allowLegacy)
  }
  return readAuth(values["auth-file"], undefined, allowLegacy)
}

/** The `[auth]` table: `[[auth.tokens]]` entries and an optional `[auth.anonymous-legacy]`. */
function authTable(table: unknown, path: string, allowLegacy: boolean): AuthConfig {
  const where = `${path}: auth`
  if (typeof table !== "object" || table === null || Array.isArray(table)) throw new UsageError(`${where} must be a table`)
  const { tokens, "anonymous-legacy": anonymousLegacy, ...extra } = table as Record<string, unknown>
  const unknown = Object.keys(extra)[0]
  if (unknown !== undefined) throw new UsageError(`${where}: unknown key ${JSON.stringify(unknown)}`)
  try {
    return authConfigOf({ tokens, ...(anonymousLegacy === undefined ? {} : { anonymousLegacy }) }, allowLegacy, where)
  } catch (error) {
    if (error instanceof AuthError) throw new UsageError(error.message.replace('{"tokens": [', "[[auth.tokens]] tables ["))
    throw error
  }
}

/** --retention-config (flag or environment), else the file's `retention-config` or `[[retention]]` tables. */
function retentionRules(values: SettingValues, given: GivenSettings, file: ConfigFile | undefined): RetentionRule[] {
  const configured = given.get("retention-config")
  const tables = file?.retention
  if (configured !== undefined && configured.source !== "file") return readRetentionRules(values["retention-config"]!)
  if (tables !== undefined) {
    if (configured !== undefined) throw new UsageError(`${file!.path}: give rules in retention-config or in [[retention]], not both`)
    if (!Array.isArray(tables)) throw new UsageError(`${file!.path}: retention must be [[retention]] tables`)
    return retentionRulesOf(tables, `${file!.path}: retention`, TOML_RULE_KEYS)
  }
  return configured === undefined ? [] : readRetentionRules(values["retention-config"]!)
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
