/**
 * What every client subcommand shares: reading its flags (node:util's parseArgs, with one-line
 * errors), the connection options (--host, --port, --token, --tls, --ca, and DSMQ_HOST,
 * DSMQ_PORT, DSMQ_TOKEN), and turning any failure into one line on stderr and an exit code.
 */
import { readFileSync } from "node:fs"
import { type ParseArgsOptionsConfig, parseArgs } from "node:util"
import { type Client, ConnectionClosedError, type ConnectOptions, connect, DsmqError } from "../client.ts"
import { DEFAULT_HOST, DEFAULT_PORT } from "../config/settings.ts"
import { CommandLineError, parseDuration, parseInteger, UsageError } from "../config/values.ts"

/** Exit codes: 0 done, 1 the command failed (or found nothing), 2 the command line cannot be read. */
export const ExitCode = { ok: 0, failed: 1, usage: 2 } as const

export type Env = Record<string, string | undefined>

/** A failure to report in one line and exit with `code`. */
export class CommandFailure extends Error {
  override readonly name = "CommandFailure"

  constructor(
    message: string,
    readonly code: number = ExitCode.failed,
  ) {
    super(message)
  }
}

export const CLIENT_OPTIONS = {
  host: { type: "string" },
  port: { type: "string", short: "p" },
  token: { type: "string" },
  tls: { type: "boolean" },
  ca: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsOptionsConfig

export const CLIENT_HELP = `Connection:
  --host HOST      the server (default 127.0.0.1, or DSMQ_HOST)
  -p, --port PORT  its TCP port (default 30008, or DSMQ_PORT)
  --token TOKEN    the token, when the server requires one (or DSMQ_TOKEN)
  --tls            connect with TLS, verifying the server against the system's CAs
  --ca FILE        ... or against this PEM certificate (implies --tls)
  -h, --help       show this help`

/** Parses `argv` for `dsmq <command>`; a mistake is a CommandLineError naming the flag. */
export function parseCommand<T extends ParseArgsOptionsConfig>(argv: readonly string[], options: T) {
  try {
    return parseArgs({ args: [...argv], options, allowPositionals: true, strict: true })
  } catch (error) {
    const code = (error as { code?: string }).code
    const message = error instanceof Error ? error.message : String(error)
    const flag = /'(-[^' ]+)/.exec(message)?.[1] ?? ""
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") throw new CommandLineError(`unknown option ${flag}`)
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      throw new CommandLineError(message.includes("argument missing") ? `${flag} needs a value` : `${flag} takes no value`)
    }
    throw new CommandLineError(message)
  }
}

/**
 * A client subcommand's command line: its own flags and the connection flags. With --help,
 * prints `help` and returns null.
 */
export function readClientCommand<T extends ParseArgsOptionsConfig>(argv: readonly string[], options: T, help: string) {
  const parsed = parseCommand(argv, { ...CLIENT_OPTIONS, ...options } as typeof CLIENT_OPTIONS & T)
  if ((parsed.values as { help?: boolean }).help === true) {
    process.stdout.write(help)
    return null
  }
  return parsed
}

/** Runs requests on the server; any failure becomes one line that names it. */
export async function asking<T>(target: Target, work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } catch (error) {
    throw new CommandFailure(describeFailure(error, target))
  }
}

/** A whole number flag, or `fallback` when not given. */
export function wholeNumber(name: string, text: string | undefined, min: number, fallback: number): number {
  if (text === undefined) return fallback
  try {
    return parseInteger(name, text, min, Number.MAX_SAFE_INTEGER)
  } catch (error) {
    if (error instanceof UsageError) throw new CommandLineError(error.message)
    throw error
  }
}

/** A duration flag ("30", "500ms", "5m") in milliseconds, from 0 to `maxSeconds`. */
export function durationOption(name: string, text: string, maxSeconds: number): number {
  try {
    return parseDuration(name, text, maxSeconds, true)
  } catch (error) {
    if (error instanceof UsageError) throw new CommandLineError(error.message)
    throw error
  }
}

/** The connection to make, from the flags and the environment. */
export interface Target {
  readonly host: string
  readonly port: number
  readonly options: ConnectOptions
}

export function targetOf(values: { host?: string; port?: string; token?: string; tls?: boolean; ca?: string }, env: Env): Target {
  const host = values.host ?? env.DSMQ_HOST ?? DEFAULT_HOST
  let port = DEFAULT_PORT
  if (values.port !== undefined) {
    try {
      port = parseInteger("--port", values.port, 1, 65535)
    } catch (error) {
      throw error instanceof UsageError ? new CommandLineError(error.message) : error
    }
  } else if (env.DSMQ_PORT !== undefined) port = parseInteger("DSMQ_PORT", env.DSMQ_PORT, 1, 65535)
  const token = values.token ?? env.DSMQ_TOKEN
  let tls: ConnectOptions["tls"]
  if (values.ca !== undefined) {
    try {
      tls = { ca: readFileSync(values.ca, "utf8") }
    } catch (error) {
      throw new CommandFailure(`--ca ${values.ca}: ${(error as { code?: string }).code === "ENOENT" ? "no such file" : String(error)}`)
    }
  } else if (values.tls === true) tls = true
  return {
    host,
    port,
    options: { host, port, ...(token === undefined ? {} : { token }), ...(tls === undefined ? {} : { tls }) },
  }
}

/** Connects without retrying (a command run by hand should say at once that no server is there). */
export async function connectTo(target: Target, extra: ConnectOptions = {}): Promise<Client> {
  try {
    return await connect({ retries: 0, onError: () => {}, ...target.options, ...extra })
  } catch (error) {
    throw new CommandFailure(describeFailure(error, target))
  }
}

/** One line for a failure of the connection or a request, naming the server where that helps. */
export function describeFailure(error: unknown, target: Target): string {
  const address = `${target.host.includes(":") ? `[${target.host}]` : target.host}:${target.port}`
  if (error instanceof CommandFailure) return error.message
  if (error instanceof DsmqError) {
    const hint =
      error.codeName === "unauthorized"
        ? " (give --token or DSMQ_TOKEN)"
        : error.codeName === "cursor_busy"
          ? " (is another dsmq using it?)"
          : ""
    return `${error.codeName}: ${error.message}${hint}`
  }
  if (error instanceof ConnectionClosedError) {
    const cause = (error as { cause?: unknown }).cause
    if (cause instanceof DsmqError) return describeFailure(cause, target)
    return `lost the connection to ${address}`
  }
  const code = (error as { code?: string } | null)?.code
  if (code === "ECONNREFUSED") return `cannot connect to ${address}: connection refused (is dsmq serve running?)`
  if (code !== undefined) return `cannot connect to ${address}: ${code}${error instanceof Error ? ` (${error.message})` : ""}`
  return error instanceof Error ? error.message : String(error)
}

/**
 * Runs a subcommand: prints its failure as `dsmq: ...` (and, for a usage mistake, a pointer to
 * the help) and exits with the code the failure carries.
 */
export async function runCommand(command: string, work: () => Promise<number>): Promise<never> {
  let code: number
  try {
    code = await work()
  } catch (error) {
    if (error instanceof CommandLineError) {
      console.error(`dsmq: ${error.message}\nsee dsmq ${command} --help`)
      code = ExitCode.usage
    } else if (error instanceof CommandFailure) {
      console.error(`dsmq: ${error.message}`)
      code = error.code
    } else if (error instanceof UsageError) {
      console.error(`dsmq: ${error.message}`)
      code = ExitCode.failed
    } else throw error
  }
  await flushStdout()
  process.exit(code)
}

/** Waits until what was written to stdout has left the process. */
export function flushStdout(): Promise<void> {
  return new Promise((resolve) => {
    if (process.stdout.writableLength === 0) resolve()
    else process.stdout.write("", () => resolve())
  })
}
