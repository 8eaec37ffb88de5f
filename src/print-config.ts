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
    const text = source === undefined ? setting.default : String(source.value)
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
  return `${lines.join("\n")}\n`
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
