/**
 * The one argument parser of the bench scripts: node's util.parseArgs (`--name value`,
 * `--name=value`, `-h`), plus what each option's value must be: a number in a range, one of
 * some choices, a comma-separated list, or a string a check accepts. A bad command line prints
 * what is wrong and the script's usage, and exits 2; `--help` prints the usage and exits 0.
 */
import { parseArgs } from "node:util"

export type OptionSpec =
  | { readonly type: "boolean" }
  | { readonly type: "string"; readonly check?: (text: string) => void }
  | { readonly type: "number"; readonly min: number; readonly max: number; readonly integer?: boolean }
  | { readonly type: "choice"; readonly choices: readonly string[] }
  /** Comma-separated, and the option may be repeated; with `choices`, each item must be one of them. */
  | { readonly type: "list"; readonly choices?: readonly string[] }

/** What an option's value is once parsed; undefined when it was not given (a boolean: false). */
export type OptionValue<S extends OptionSpec> = S extends { type: "boolean" }
  ? boolean
  : S extends { type: "number" }
    ? number | undefined
    : S extends { type: "choice"; choices: readonly (infer C)[] }
      ? C | undefined
      : S extends { type: "list"; choices: readonly (infer C)[] }
        ? C[] | undefined
        : S extends { type: "list" }
          ? string[] | undefined
          : string | undefined

export type OptionValues<Specs extends Record<string, OptionSpec>> = { -readonly [K in keyof Specs]: OptionValue<Specs[K]> }

export class BenchUsageError extends Error {
  override readonly name = "BenchUsageError"
}

/** Parses `argv` against `specs` (keys are the option names without `--`); "help" for -h/--help. */
export function parseOptions<Specs extends Record<string, OptionSpec>>(
  argv: readonly string[],
  specs: Specs,
): OptionValues<Specs> | "help" {
  const config: Record<string, { type: "boolean" | "string"; multiple?: boolean }> = {}
  for (const [name, spec] of Object.entries(specs)) {
    config[name] = { type: spec.type === "boolean" ? "boolean" : "string", ...(spec.type === "list" ? { multiple: true } : {}) }
  }
  let values: Record<string, string | boolean | string[] | undefined>
  try {
    values = parseArgs({ args: [...argv], options: { ...config, help: { type: "boolean", short: "h" } }, strict: true }).values
  } catch (error) {
    throw new BenchUsageError((error as Error).message)
  }
  if (values.help === true) return "help"
  const parsed: Record<string, unknown> = {}
  for (const [name, spec] of Object.entries(specs)) parsed[name] = parsedValue(`--${name}`, spec, values[name])
  return parsed as OptionValues<Specs>
}

/** parseOptions for a script's entry point: usage and exit on -h or a bad command line. */
export function parseOptionsOrExit<Specs extends Record<string, OptionSpec>>(
  script: string,
  usage: string,
  argv: readonly string[],
  specs: Specs,
): OptionValues<Specs> {
  try {
    const parsed = parseOptions(argv, specs)
    if (parsed !== "help") return parsed
    process.stdout.write(usage)
    process.exit(0)
  } catch (error) {
    if (!(error instanceof BenchUsageError)) throw error
    process.stderr.write(`${script}: ${error.message}\n\n${usage}`)
    process.exit(2)
  }
}

function parsedValue(flag: string, spec: OptionSpec, raw: string | boolean | string[] | undefined): unknown {
  if (spec.type === "boolean") return raw === true
  if (raw === undefined) return undefined
  const text = Array.isArray(raw) ? raw.join(",") : String(raw)
  switch (spec.type) {
    case "string":
      try {
        spec.check?.(text)
      } catch (error) {
        throw new BenchUsageError(error instanceof Error ? error.message : String(error))
      }
      return text
    case "number": {
      const value = Number(text)
      if (
        text.trim() === "" ||
        !Number.isFinite(value) ||
        value < spec.min ||
        value > spec.max ||
        (spec.integer && !Number.isInteger(value))
      ) {
        const kind = spec.integer ? "a whole number" : "a number"
        throw new BenchUsageError(`${flag} must be ${kind} from ${spec.min} to ${spec.max}, got ${JSON.stringify(text)}`)
      }
      return value
    }
    case "choice":
      if (!spec.choices.includes(text))
        throw new BenchUsageError(`${flag} must be one of ${spec.choices.join(", ")}, got ${JSON.stringify(text)}`)
      return text
    case "list": {
      const items = text.split(",").filter((item) => item !== "")
      const unknown = spec.choices === undefined ? undefined : items.find((item) => !spec.choices!.includes(item))
      if (unknown !== undefined) throw new BenchUsageError(`${flag}: unknown "${unknown}" (have: ${spec.choices!.join(", ")})`)
      return items
    }
  }
}
