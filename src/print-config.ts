/**
 * `dsmq serve --print-config`: the settings in force, as a TOML file would give them, each
 * with where it came from. Tokens are redacted; everything else reads back as it is.
 */
import type { RetentionLimits } from "./broker/retention.ts"
import { SETTINGS, type SettingName } from "./config/settings.ts"
import type { GivenSettings } from "./config/sources.ts"
import { formatDuration, formatSize } from "./config/values.ts"
import type { ServerOptions } from "./start-server.ts"

export function printConfig(options: ServerOptions, given: GivenSettings): string {
  const lines = ["# The settings in force (flag > environment > file > default), as a configuration file."]
  for (const [name, setting] of Object.entries(SETTINGS)) {
    const source = given.get(name as SettingName)
    const from = source === undefined ? "default" : source.label
    if (setting.kind === "switch") {
      lines.push(`${name} = ${source?.value === true}  # ${from}`)
      continue
    }
    if (name === "http-port" && source === undefined) {
      lines.push(options.httpPort === null ? "# http-port: off (no-http)" : `http-port = ${options.httpPort}  # the TCP port + 1`)
      continue
    }
    // Repeated flags are joined by commas, which read back the same.
    const text = source === undefined ? setting.default : String(source.value).replaceAll("\n", ",")
    if (name.startsWith("bridge-")) {
      // The bridge is written whole as a [bridge] table below, flags and file together.
      lines.push(text === undefined ? `# ${name}: not set` : `# ${name} = ${tomlValue(text)} (see [bridge] below)  # ${from}`)
      continue
    }
    lines.push(text === undefined ? `# ${name}: not set` : `${name} = ${tomlValue(text)}  # ${from}`)
  }
  const auth = options.auth ?? null
  if (auth !== null) {
    lines.push("", "[auth]")
    for (const token of auth.tokens) {
      lines.push("", "[[auth.tokens]]", `name = ${JSON.stringify(token.name)}`, 'token = "<redacted>"')
      lines.push(`read = ${JSON.stringify(token.read)}`, `write = ${JSON.stringify(token.write)}`)
    }
    if (auth.anonymousLegacy !== null) {
      const { read, write } = auth.anonymousLegacy
      lines.push("", "[auth.anonymous-legacy]", `read = ${JSON.stringify(read)}`, `write = ${JSON.stringify(write)}`)
    }
  }
  for (const rule of options.retention?.rules ?? []) {
    lines.push("", "[[retention]]", `pattern = ${JSON.stringify(rule.pattern)}`, ...ruleLines(rule.limits))
  }
  lines.push(...bridgeLines(options, given))
  return `${lines.join("\n")}\n`
}

/** The bridge as a [bridge] table; credentials as the file names they came from, never their contents. */
function bridgeLines(options: ServerOptions, given: GivenSettings): string[] {
  const bridge = options.bridge ?? null
  if (bridge === null) return []
  const lines = ["", "[bridge]", `nats = ${JSON.stringify(bridge.servers)}`, `name = ${JSON.stringify(bridge.name)}`]
  if (bridge.prefix !== "") lines.push(`prefix = ${JSON.stringify(bridge.prefix)}`)
  for (const [setting, key] of [
    ["bridge-creds", "creds"],
    ["bridge-tls-ca", "tls-ca"],
  ] as const) {
    const source = given.get(setting)
    if (source !== undefined) lines.push(`${key} = ${JSON.stringify(String(source.value))}  # ${source.label}`)
  }
  if (bridge.auth !== null && bridge.auth.kind !== "creds") lines.push("# credentials: from the environment (not printed)")
  for (const [kind, rules] of [
    ["export", bridge.exports],
    ["import", bridge.imports],
  ] as const) {
    for (const rule of rules) {
      lines.push("", `[[bridge.${kind}]]`, `pattern = ${JSON.stringify(rule.pattern)}`)
      if (rule.stream !== null) lines.push(`stream = ${JSON.stringify(rule.stream)}`)
    }
  }
  return lines
}

function ruleLines(limits: Partial<RetentionLimits>): string[] {
  const lines: string[] = []
  if (limits.maxAgeMs !== undefined) lines.push(`max-age = "${limits.maxAgeMs === null ? "none" : formatDuration(limits.maxAgeMs)}"`)
  if (limits.maxMessages !== undefined) lines.push(`max-messages = ${limits.maxMessages === null ? '"none"' : limits.maxMessages}`)
  if (limits.maxBytes !== undefined) lines.push(`max-topic-bytes = "${formatSize(limits.maxBytes)}"`)
  if (limits.policy !== undefined) lines.push(`full-policy = "${limits.policy}"`)
  return lines
}

/** Whole numbers bare, everything else a quoted string (JSON's escapes are TOML's). */
function tomlValue(text: string): string {
  return /^\d+$/.test(text) ? text : JSON.stringify(text)
}
