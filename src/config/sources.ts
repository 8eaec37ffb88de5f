/**
 * Where settings come from: the command line, the environment (`DSMQ_` + the name in upper
 * snake case) and a TOML configuration file (`--config`). Each source yields the settings it
 * gives, as text, with a label that names where it was given; `mergeSources` applies the
 * precedence flag > environment > file. Values are parsed later, by the table (settings.ts).
 */
import { readFileSync } from "node:fs"
import { dirname, isAbsolute, resolve } from "node:path"
import { environmentName, SETTINGS, type SettingName, settingOf } from "./settings.ts"
import { CommandLineError, UsageError } from "./values.ts"

export type SourceKind = "flag" | "environment" | "file" | "default"

/** One setting as a source gave it. */
export interface Given {
  /** The text to parse; true for a switch that is on, false for one turned off. */
  readonly value: string | boolean
  /** Where it was given, for errors and --print-config: "--port", "DSMQ_PORT", "dsmq.toml: port". */
  readonly label: string
  readonly source: SourceKind
}

export type GivenSettings = ReadonlyMap<SettingName, Given>

export type CommandLine =
  | { readonly kind: "help" }
  | { readonly kind: "version" }
  | { readonly kind: "serve"; readonly flags: GivenSettings; readonly config: string | undefined; readonly printConfig: boolean }

/** Reads argv: `--name VALUE`, `--name=VALUE`, switches, and upstream's positional `[host] [port]`. */
export function readCommandLine(argv: readonly string[]): CommandLine {
  const flags = new Map<SettingName, Given>()
  const positional: string[] = []
  let config: string | undefined
  let printConfig = false
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!
    if (!argument.startsWith("-") || argument === "-") {
      positional.push(argument)
      continue
    }
    const equals = argument.indexOf("=")
    const flag = argument.startsWith("--") && equals > 0 ? argument.slice(0, equals) : argument
    const inline = flag === argument ? undefined : argument.slice(equals + 1)
    const value = (): string => {
      if (inline !== undefined) return inline
      const next = argv[++i]
      if (next === undefined) throw new CommandLineError(`${flag} needs a value`)
      return next
    }
    if (flag === "-h" || flag === "--help") return { kind: "help" }
    if (flag === "-V" || flag === "--version") return { kind: "version" }
    if (flag === "--config") {
      config = value()
      continue
    }
    if (flag === "--print-config") {
      printConfig = true
      continue
    }
    const name = flag.slice(2)
    const setting = flag.startsWith("--") ? settingOf(name) : undefined
    if (setting === undefined) throw new CommandLineError(`unknown option ${flag}`)
    if (setting.kind === "switch") {
      if (inline !== undefined) throw new CommandLineError(`${flag} takes no value`)
      flags.set(name as SettingName, { value: true, label: flag, source: "flag" })
    } else {
      const earlier = setting.repeatable === true ? flags.get(name as SettingName)?.value : undefined
      const text = value()
      flags.set(name as SettingName, { value: earlier === undefined ? text : `${earlier}\n${text}`, label: flag, source: "flag" })
    }
  }
  if (positional.length > 2) throw new CommandLineError(`expected at most [host] [port], got ${positional.join(" ")}`)
  if (positional[0] !== undefined) flags.set("host", { value: positional[0], label: "host", source: "flag" })
  if (positional[1] !== undefined) flags.set("port", { value: positional[1], label: "port", source: "flag" })
  return { kind: "serve", flags, config, printConfig }
}

const TRUE = new Set(["1", "true", "yes", "on"])
const FALSE = new Set(["0", "false", "no", "off", ""])

/** The settings the environment gives: DSMQ_PORT, DSMQ_MAX_MESSAGE_BYTES, …; DSMQ_CONFIG names the file. */
export function readEnvironment(env: Record<string, string | undefined>): GivenSettings {
  const given = new Map<SettingName, Given>()
  for (const [name, setting] of Object.entries(SETTINGS)) {
    const label = environmentName(name)
    const text = env[label]
    if (text === undefined) continue
    if (setting.kind === "switch") {
      const lower = text.trim().toLowerCase()
      if (!TRUE.has(lower) && !FALSE.has(lower))
        throw new UsageError(`${label} must be 1 or 0 (true or false), got ${JSON.stringify(text)}`)
      given.set(name as SettingName, { value: TRUE.has(lower), label, source: "environment" })
    } else given.set(name as SettingName, { value: text, label, source: "environment" })
  }
  return given
}

/** What a configuration file holds: settings by name, and the `[auth]`, `[[retention]]` and `[bridge]` tables. */
export interface ConfigFile {
  readonly path: string
  readonly settings: GivenSettings
  /** The `[auth]` table as written, or undefined. */
  readonly auth: unknown
  /** The `[[retention]]` tables as written, or undefined. */
  readonly retention: unknown
  /** The `[bridge]` table as written, or undefined. */
  readonly bridge: unknown
}

/** Reads a TOML configuration file; every failure is one UsageError naming the file (and the key). */
export function readConfigFile(path: string): ConfigFile {
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch (error) {
    throw new UsageError(`--config ${path}: ${(error as { code?: string }).code === "ENOENT" ? "no such file" : String(error)}`)
  }
  let table: Record<string, unknown>
  try {
    table = Bun.TOML.parse(text) as Record<string, unknown>
  } catch (error) {
    throw new UsageError(`${path}: not valid TOML (${error instanceof Error ? error.message : String(error)})`)
  }
  const folder = dirname(resolve(path))
  const settings = new Map<SettingName, Given>()
  for (const [key, value] of Object.entries(table)) {
    if (key === "auth" || key === "retention" || key === "bridge") continue
    const setting = settingOf(key)
    const label = `${path}: ${key}`
    if (setting === undefined) throw new UsageError(`${path}: unknown key ${JSON.stringify(key)}`)
    if (setting.kind === "switch") {
      if (typeof value !== "boolean") throw new UsageError(`${label} must be true or false`)
      settings.set(key as SettingName, { value, label, source: "file" })
      continue
    }
    if (typeof value !== "string" && typeof value !== "number") throw new UsageError(`${label} must be a string or a number`)
    const textValue = String(value)
    // A file names other files relative to itself, so /etc/dsmq/dsmq.toml can say "tokens.json".
    const resolved = setting.isPath === true && !isAbsolute(textValue) && textValue !== "" ? resolve(folder, textValue) : textValue
    settings.set(key as SettingName, { value: resolved, label, source: "file" })
  }
  return { path, settings, auth: table.auth, retention: table.retention, bridge: table.bridge }
}

/** The settings in force: each from the first source that gives it, flags first. */
export function mergeSources(...sources: GivenSettings[]): GivenSettings {
  const merged = new Map<SettingName, Given>()
  for (const source of sources) for (const [name, given] of source) if (!merged.has(name)) merged.set(name, given)
  return merged
}
