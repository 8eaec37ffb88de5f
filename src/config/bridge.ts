/**
 * The NATS bridge's configuration: from flags and the environment (--bridge-nats,
 * --bridge-export, --bridge-import, …) and from the configuration file's `[bridge]` table with
 * `[[bridge.export]]` and `[[bridge.import]]` rules. Rules from both add up; a setting given by
 * flag or environment wins over the table's. Credentials come from a file or the environment,
 * never the command line.
 */
import { readFileSync } from "node:fs"
import { hostname } from "node:os"
import { dirname, isAbsolute, resolve } from "node:path"
import type { BridgeAuth, BridgeConfig, BridgeRule } from "../bridge/config.ts"
import { checkPrefix, SubjectError } from "../bridge/subjects.ts"
import { isPattern, patternProblem } from "../topic/pattern.ts"
import { topicProblem } from "../topic/topic-name.ts"
import type { SettingValues } from "./settings.ts"
import type { ConfigFile } from "./sources.ts"
import { UsageError } from "./values.ts"

const TABLE_KEYS = new Set(["nats", "export", "import", "stream", "prefix", "name", "creds", "tls-ca"])
const RULE_KEYS = new Set(["pattern", "stream"])

export function bridgeConfig(
  values: SettingValues,
  file: ConfigFile | undefined,
  env: Record<string, string | undefined>,
  port: number,
): BridgeConfig | null {
  const table = bridgeTable(file)
  const where = `${file?.path}: bridge`
  const fromTable = (key: string): string | undefined => {
    const value = table?.[key]
    if (value === undefined) return undefined
    if (typeof value !== "string" || value.trim() === "") throw new UsageError(`${where}.${key} must be a non-empty string`)
    return value.trim()
  }
  const tablePath = (key: string): string | undefined => {
    const value = fromTable(key)
    return value === undefined || isAbsolute(value) ? value : resolve(dirname(resolve(file!.path)), value)
  }
  const servers = values["bridge-nats"] ?? serversOf(table?.nats, `${where}.nats`)
  const flagStream = values["bridge-stream"] ?? fromTable("stream") ?? null
  const exports = [
    ...(values["bridge-export"] ?? []).map((pattern) => rule(pattern, flagStream, "--bridge-export")),
    ...rulesOf(table?.export, `${where}.export`),
  ]
  const imports = [
    ...(values["bridge-import"] ?? []).map((pattern) => rule(pattern, null, "--bridge-import")),
    ...rulesOf(table?.import, `${where}.import`),
  ]
  if (servers === undefined) {
    if (exports.length > 0 || imports.length > 0) throw new UsageError("bridge rules need a NATS server: give --bridge-nats URL")
    return null
  }
  if (exports.length === 0 && imports.length === 0) {
    throw new UsageError("--bridge-nats needs something to bridge: give --bridge-export PATTERN or --bridge-import PATTERN")
  }
  let prefix: string
  try {
    prefix = checkPrefix(values["bridge-prefix"] ?? fromTable("prefix") ?? "")
  } catch (error) {
    if (error instanceof SubjectError) throw new UsageError(error.message)
    throw error
  }
  const tlsCa = values["bridge-tls-ca"] ?? tablePath("tls-ca")
  const tls = tlsCa !== undefined ? { ca: readText(tlsCa, "--bridge-tls-ca") } : servers.some((url) => url.startsWith("tls://")) ? {} : null
  return {
    servers,
    auth: credentials(values["bridge-creds"] ?? tablePath("creds"), env),
    tls,
    prefix,
    name: values["bridge-name"] ?? fromTable("name") ?? `${hostname()}-${port}`,
    exports,
    imports,
  }
}

function bridgeTable(file: ConfigFile | undefined): Record<string, unknown> | undefined {
  if (file?.bridge === undefined) return undefined
  const table = file.bridge
  if (typeof table !== "object" || table === null || Array.isArray(table))
    throw new UsageError(`${file.path}: bridge must be a [bridge] table`)
  const unknown = Object.keys(table).find((key) => !TABLE_KEYS.has(key))
  if (unknown !== undefined) throw new UsageError(`${file.path}: bridge: unknown key ${JSON.stringify(unknown)}`)
  return table as Record<string, unknown>
}

function serversOf(value: unknown, where: string): string[] | undefined {
  if (value === undefined) return undefined
  const list = typeof value === "string" ? [value] : value
  if (!Array.isArray(list) || list.length === 0 || !list.every((url) => typeof url === "string" && url !== "")) {
    throw new UsageError(`${where} must be a server URL or a list of them`)
  }
  return list as string[]
}

function rulesOf(value: unknown, where: string): BridgeRule[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw new UsageError(`${where} must be [[${where.split(": ")[1]}]] tables`)
  return value.map((entry, i) => {
    const at = `${where}[${i}]`
    if (typeof entry !== "object" || entry === null) throw new UsageError(`${at} must be a table with a pattern`)
    const unknown = Object.keys(entry).find((key) => !RULE_KEYS.has(key))
    if (unknown !== undefined) throw new UsageError(`${at}: unknown key ${JSON.stringify(unknown)}`)
    const { pattern, stream } = entry as { pattern?: unknown; stream?: unknown }
    if (typeof pattern !== "string") throw new UsageError(`${at} needs a pattern`)
    if (stream !== undefined && (typeof stream !== "string" || stream === "")) throw new UsageError(`${at}.stream must be a stream name`)
    return rule(pattern, (stream as string | undefined) ?? null, at)
  })
}

function rule(pattern: string, stream: string | null, where: string): BridgeRule {
  const problem = topicProblem(pattern) ?? (isPattern(pattern) ? patternProblem(pattern) : null)
  if (problem !== null) throw new UsageError(`${where} ${JSON.stringify(pattern)}: ${problem}`)
  if (stream !== null && !/^[^\s.*>/\\]+$/.test(stream)) {
    throw new UsageError(
      `${where}: ${JSON.stringify(stream)} is not a valid JetStream stream name (no spaces, ".", "*", ">", "/" or "\\\\")`,
    )
  }
  return { pattern, stream }
}

/** A .creds file, or a token, or a user and password from the environment: one of them at most. */
function credentials(credsFile: string | undefined, env: Record<string, string | undefined>): BridgeAuth | null {
  const token = env.DSMQ_BRIDGE_TOKEN
  const user = env.DSMQ_BRIDGE_USER
  const pass = env.DSMQ_BRIDGE_PASSWORD
  const given = [credsFile !== undefined, token !== undefined, user !== undefined || pass !== undefined].filter(Boolean).length
  if (given > 1)
    throw new UsageError("give NATS credentials one way: --bridge-creds, DSMQ_BRIDGE_TOKEN, or DSMQ_BRIDGE_USER with DSMQ_BRIDGE_PASSWORD")
  if (credsFile !== undefined) return { kind: "creds", creds: new TextEncoder().encode(readText(credsFile, "--bridge-creds")) }
  if (token !== undefined) return { kind: "token", token }
  if (user !== undefined || pass !== undefined) {
    if (user === undefined || pass === undefined) throw new UsageError("DSMQ_BRIDGE_USER and DSMQ_BRIDGE_PASSWORD go together")
    return { kind: "user", user, pass }
  }
  return null
}

function readText(path: string, label: string): string {
  try {
    return readFileSync(path, "utf8")
  } catch (error) {
    throw new UsageError(`${label} ${path}: ${error instanceof Error ? error.message : String(error)}`)
  }
}
