/**
 * Every server setting, once: its name (the long flag without dashes, the configuration file's
 * key, and after `DSMQ_` in upper snake case its environment variable), what it takes, its
 * default and its help line. The command line, the environment and the file (sources.ts) all
 * go through this table, so a setting accepts the same values wherever it is given.
 */
import { DEFAULT_MAX_CURSORS } from "../broker/broker.ts"
import { DEFAULT_RETENTION } from "../broker/retention.ts"
import {
  formatDuration,
  formatSize,
  oneOf,
  parseAge,
  parseCount,
  parseDuration,
  parseHost,
  parseInteger,
  parseSize,
  UsageError,
} from "./values.ts"

export type Section = "Listening" | "Limits" | "Access" | "Storage" | "Retention" | "Bridge"

interface SettingBase {
  readonly section: Section
  /** One sentence or two; the help wraps it and adds the default. */
  readonly help: string
}

/** A setting that is on or off: a bare flag, `true`/`false` in the file, `1`/`0` in the environment. */
export interface Switch extends SettingBase {
  readonly kind: "switch"
}

/** A setting with a value; `parse` turns its text into what the server takes, or throws a UsageError naming `label`. */
export interface Valued<T> extends SettingBase {
  readonly kind: "value"
  /** Shown after the flag in the help: SIZE, DURATION, FILE, … */
  readonly valueName: string
  /** The default as a user would write it; undefined: unset unless given. */
  readonly default: string | undefined
  /** A file name: in a configuration file, relative to the file's folder. */
  readonly isPath?: boolean
  /** The flag may be given more than once; its values are joined by newlines for `parse`. */
  readonly repeatable?: boolean
  parse(text: string, label: string): T
}

export type Setting = Switch | Valued<unknown>

const onOff = (section: Section, help: string): Switch => ({ kind: "switch", section, help })

function valued<T>(
  section: Section,
  valueName: string,
  defaultText: string | undefined,
  help: string,
  parse: (text: string, label: string) => T,
  extra: { isPath?: boolean; repeatable?: boolean } = {},
): Valued<T> {
  return { kind: "value", section, valueName, default: defaultText, help, parse, ...extra }
}

const file = (section: Section, help: string): Valued<string> =>
  valued(
    section,
    "FILE",
    undefined,
    help,
    (text, label) => {
      if (text === "") throw new UsageError(`${label} must not be empty`)
      return text
    },
    { isPath: true },
  )

/** Values given by repeating the flag, or separated by commas (in the environment, or one flag). */
const list = (section: Section, valueName: string, help: string): Valued<string[]> =>
  valued(
    section,
    valueName,
    undefined,
    help,
    (text, label) => {
      const items = text
        .split(/[\n,]/)
        .map((item) => item.trim())
        .filter((item) => item !== "")
      if (items.length === 0) throw new UsageError(`${label} must not be empty`)
      return items
    },
    { repeatable: true },
  )

const name = (section: Section, valueName: string, help: string): Valued<string> =>
  valued(section, valueName, undefined, help, (text, label) => {
    if (text.trim() === "") throw new UsageError(`${label} must not be empty`)
    return text.trim()
  })

const count = (section: Section, defaultValue: number, help: string): Valued<number> =>
  valued(section, "N", String(defaultValue), help, (text, label) => parseInteger(label, text, 1, 1_000_000))

/** A size from `min` to `max` bytes (2 GiB unless told); never "none". */
const boundedSize = (section: Section, defaultBytes: number | undefined, min: number, help: string, max = 2 ** 31 - 1): Valued<number> =>
  valued(section, "SIZE", defaultBytes === undefined ? undefined : formatSize(defaultBytes), help, (text, label) => {
    const size = text === "none" ? Number.NaN : parseSize(label, text)!
    if (!(size >= min && size <= max)) {
      const range = `${formatSize(min)} to ${formatSize(max === 2 ** 31 - 1 ? 2 ** 31 : max)}`
      throw new UsageError(`${label} must be a size from ${range} (like 64KiB or 1MiB); got ${JSON.stringify(text)}`)
    }
    return size
  })

/** A duration in seconds (plain numbers) or with a unit; returns milliseconds. */
const duration = (section: Section, defaultMs: number | undefined, maxSeconds: number, allowZero: boolean, help: string) =>
  valued(section, "DURATION", defaultMs === undefined ? undefined : formatDuration(defaultMs), help, (text, label) =>
    parseDuration(label, text, maxSeconds, allowZero),
  )

export const DEFAULT_HOST = "127.0.0.1"
export const DEFAULT_PORT = 30008
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 5000
/** --auth-timeout's default, in seconds. */
export const DEFAULT_AUTH_TIMEOUT_SECONDS = 10
/** --max-buffered-bytes' default, when --max-memory is not given either: the store's default cap. */
export const DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024
/** Output waiting for one slow reader before its requests stop running: a few large replies. */
export const MAX_OUTBOUND_BYTES = 4 * 1024 * 1024
const retention = DEFAULT_RETENTION.defaults

export const SETTINGS = {
  host: valued("Listening", "HOST", DEFAULT_HOST, "address to listen on", (text) => parseHost(text)),
  port: valued("Listening", "PORT", String(DEFAULT_PORT), "TCP port (also serves HTTP and WebSocket); 0 picks a free one", (text, label) =>
    parseInteger(label, text, 0, 65535),
  ),
  "http-port": valued(
    "Listening",
    "PORT",
    undefined,
    "the separate HTTP and WebSocket port; 0 picks a free one (default: the TCP port + 1, so 30009; 0 when the TCP port is 0)",
    (text, label) => parseInteger(label, text, 0, 65535),
  ),
  "no-http": onOff("Listening", "no separate HTTP/WebSocket port (the TCP port still serves both)"),
  "tls-cert": file("Listening", "PEM certificate (chain): TLS on the TCP port, HTTPS and WSS on the HTTP port; with --tls-key"),
  "tls-key": file("Listening", "PEM private key of --tls-cert"),
  "max-message-bytes": boundedSize("Limits", DEFAULT_MAX_MESSAGE_BYTES, 64, "largest request accepted"),
  "max-connections": count("Limits", 1024, "open TCP and WebSocket connections"),
  "max-outbound-bytes": boundedSize(
    "Limits",
    MAX_OUTBOUND_BYTES,
    64 * 1024,
    "replies waiting for one slow client before its requests stop running",
  ),
  "max-buffered-bytes": boundedSize(
    "Limits",
    undefined,
    1024 * 1024,
    "bytes held for all clients together (input, queued requests, unsent replies); past it the connections holding the most pause and new ones are refused (default: as --max-memory, 256MiB)",
    2 ** 50,
  ),
  "max-subscriptions": count("Limits", 1024, "subscriptions per connection"),
  "max-pending-waits": count("Limits", 1024, "GET_WAITs pending per binary connection"),
  "max-cursors": count(
    "Limits",
    DEFAULT_MAX_CURSORS,
    "topics one connection (or HTTP read) may keep a read position for; past it, reads of more topics get too_many_cursors",
  ),
  "idle-timeout": duration(
    "Limits",
    0,
    86_400,
    true,
    "close TCP connections silent for this long (rounded up to whole seconds); 0: never (TCP keepalive still finds dead peers)",
  ),
  "auth-timeout": duration(
    "Limits",
    DEFAULT_AUTH_TIMEOUT_SECONDS * 1000,
    3600,
    true,
    "with tokens: time to authenticate, with a first frame of at most 16KiB; without: time to finish a started first request; 0: no limit",
  ),
  "shutdown-timeout": duration(
    "Limits",
    DEFAULT_SHUTDOWN_TIMEOUT_MS,
    3600,
    true,
    "on SIGINT/SIGTERM, how long clients may take to read their last replies before they are disconnected",
  ),
  "allow-shutdown": onOff("Limits", 'obey the dsmq "shutdown" action (refused by default)'),
  "auth-file": file(
    "Access",
    'tokens and the topics each may read and write, JSON: {"tokens": [{"name": "lab", "token": "...", "read": ["lab/#"], "write": ["lab/#"]}]}; or the same JSON in DSMQ_AUTH, or [[auth.tokens]] in the configuration file',
  ),
  "allow-anonymous-legacy": onOff(
    "Access",
    "with tokens: let upstream JSON clients that send no auth action in (with the anonymousLegacy permissions, default all)",
  ),
  db: file("Storage", "keep messages and named cursors in this SQLite file (WAL mode); in memory when not given"),
  sync: valued(
    "Storage",
    "normal|full",
    "normal",
    "with --db: normal survives a crash of the server process, full also a power loss (slower puts)",
    (text, label) => oneOf(label, text, ["normal", "full"] as const),
  ),
  "max-memory": valued(
    "Retention",
    "SIZE",
    formatSize(DEFAULT_RETENTION.maxStoreBytes),
    "cap on the store: messages, topics and named cursors",
    (text, label) => parseSize(label, text),
  ),
  "max-messages": valued("Retention", "N", String(retention.maxMessages ?? "none"), "messages kept per topic", (text, label) =>
    parseCount(label, text),
  ),
  "max-topic-bytes": valued("Retention", "SIZE", formatSize(retention.maxBytes), "payload bytes kept per topic", (text, label) =>
    parseSize(label, text),
  ),
  "max-age": valued("Retention", "AGE", "none", "oldest message kept (500ms, 10m, 1h; plain numbers are seconds)", (text, label) =>
    parseAge(label, text),
  ),
  "full-policy": valued("Retention", "POLICY", retention.policy, "at a limit: drop-oldest, or reject new puts", (text, label) =>
    oneOf(label, text, ["drop-oldest", "reject"] as const),
  ),
  "retention-config": file(
    "Retention",
    'per-topic rules, JSON: {"rules": [{"pattern": "lab/#", "maxAge": "10m", "maxMessages": 1000, "maxBytes": "1MiB", "policy": "reject"}]}, or [[retention]] tables in the configuration file; the first matching pattern wins',
  ),
  "bridge-nats": list(
    "Bridge",
    "URL",
    "NATS servers to bridge topics with (nats://host:4222, tls://host:4222); repeat the flag or separate with commas",
  ),
  "bridge-export": list(
    "Bridge",
    "PATTERN",
    "send local messages of this topic or pattern to NATS (repeatable); also [[bridge.export]] tables",
  ),
  "bridge-import": list(
    "Bridge",
    "PATTERN",
    "put NATS messages of this pattern's subjects on local topics (repeatable); also [[bridge.import]] tables",
  ),
  "bridge-stream": name(
    "Bridge",
    "NAME",
    "a JetStream stream for the exports given by flag: exactly once into it; created for their subjects if missing",
  ),
  "bridge-prefix": name("Bridge", "SUBJECT", "put before every bridged subject (site1: lab/temp is site1.lab.temp)"),
  "bridge-name": name(
    "Bridge",
    "NAME",
    "this broker's name in the Dsmq-Origin header and JetStream consumer names (default HOSTNAME-PORT)",
  ),
  "bridge-creds": file(
    "Bridge",
    "a NATS credentials file (.creds); or DSMQ_BRIDGE_TOKEN, or DSMQ_BRIDGE_USER and DSMQ_BRIDGE_PASSWORD, in the environment (never on the command line)",
  ),
  "bridge-tls-ca": file("Bridge", "PEM certificate(s) to verify NATS servers with (TLS: tls:// URLs, or servers that require it)"),
} as const satisfies Record<string, Setting>

export type SettingName = keyof typeof SETTINGS

/** What each setting holds once read: a switch is a boolean; a valued setting its parsed value, or undefined when unset. */
export type SettingValues = {
  readonly [K in SettingName]: (typeof SETTINGS)[K] extends Valued<infer T> ? T | undefined : boolean
}

export function settingOf(name: string): Setting | undefined {
  return Object.hasOwn(SETTINGS, name) ? SETTINGS[name as SettingName] : undefined
}

/** DSMQ_MAX_MESSAGE_BYTES for max-message-bytes. */
export function environmentName(name: string): string {
  return `DSMQ_${name.toUpperCase().replaceAll("-", "_")}`
}

const SECTION_TITLES: Record<Section, string> = {
  Listening: "Listening",
  Limits: "Limits (sizes take KiB/MiB/GiB; durations ms/s/m/h, plain numbers are seconds)",
  Access: "Access (open to anyone who can connect unless tokens are configured)",
  Storage: "Storage (in memory unless --db is given)",
  Retention: 'Retention (what the store keeps; "none" for no limit)',
  Bridge: "Bridge to NATS (off unless --bridge-nats is given; see docs/SCALING.md)",
}

/** The options part of `dsmq serve --help`, generated from the table. */
export function settingsHelp(): string {
  const lines: string[] = []
  for (const section of Object.keys(SECTION_TITLES) as Section[]) {
    lines.push("", `${SECTION_TITLES[section]}:`)
    for (const [name, setting] of Object.entries(SETTINGS) as [string, Setting][]) {
      if (setting.section !== section) continue
      const flag = setting.kind === "value" ? `--${name} ${setting.valueName}` : `--${name}`
      const defaultText = setting.kind === "value" && setting.default !== undefined ? ` (default ${setting.default})` : ""
      lines.push(...twoColumns(flag, setting.help + defaultText))
    }
  }
  return lines.join("\n")
}

const FLAG_COLUMN = 28
const WIDTH = 100

function twoColumns(left: string, text: string): string[] {
  const lines: string[] = []
  let line = ""
  for (const word of text.split(" ")) {
    if (line !== "" && FLAG_COLUMN + line.length + 1 + word.length > WIDTH) {
      lines.push(line)
      line = word
    } else line = line === "" ? word : `${line} ${word}`
  }
  lines.push(line)
  const first = `  ${left}`.padEnd(FLAG_COLUMN)
  return lines.map((text, i) =>
    i === 0 ? (first.length > FLAG_COLUMN ? `${first}\n${" ".repeat(FLAG_COLUMN)}${text}` : first + text) : " ".repeat(FLAG_COLUMN) + text,
  )
}
