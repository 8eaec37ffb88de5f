/**
 * Reads the files (and the environment variable) the command line names: TLS certificate and
 * key, tokens, retention rules. Each failure is a UsageError naming the option and the file.
 */
import { readFileSync } from "node:fs"
import { type AuthConfig, AuthError, parseAuthConfig } from "../auth/auth.ts"
import type { FullPolicy, RetentionLimits, RetentionRule } from "../broker/retention.ts"
import { patternProblem } from "../topic/pattern.ts"
import { oneOf, parseAge, parseCount, parseSize, UsageError } from "./values.ts"

/** A PEM file's text, for --tls-cert and --tls-key. */
export function readPem(name: string, path: string): string {
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch (error) {
    throw new UsageError(`${name} ${path}: ${error instanceof Error ? error.message : String(error)}`)
  }
  if (!text.includes("-----BEGIN ")) throw new UsageError(`${name} ${path}: not a PEM file`)
  return text
}

/** Tokens from --auth-file, or from the DSMQ_AUTH environment variable; null: none. */
export function readAuth(file: string | undefined, fromEnv: string | undefined, allowAnonymousLegacy: boolean): AuthConfig | null {
  if (file !== undefined && fromEnv !== undefined) throw new UsageError("give tokens in --auth-file or DSMQ_AUTH, not both")
  if (file === undefined && fromEnv === undefined) {
    if (allowAnonymousLegacy) throw new UsageError("--allow-anonymous-legacy needs tokens (--auth-file or DSMQ_AUTH)")
    return null
  }
  try {
    if (file !== undefined) return parseAuthConfig(readFileSync(file, "utf8"), allowAnonymousLegacy, `--auth-file ${file}`)
    return parseAuthConfig(fromEnv!, allowAnonymousLegacy, "DSMQ_AUTH")
  } catch (error) {
    if (error instanceof AuthError) throw new UsageError(error.message)
    throw new UsageError(`--auth-file ${file}: ${error instanceof Error ? error.message : String(error)}`)
  }
}

/** Reads --retention-config: {"rules": [{"pattern", "maxAge", "maxMessages", "maxBytes", "policy"}]}. */
export function readRetentionRules(path: string): RetentionRule[] {
  let config: unknown
  try {
    config = JSON.parse(readFileSync(path, "utf8"))
  } catch (error) {
    throw new UsageError(`--retention-config ${path}: ${error instanceof Error ? error.message : String(error)}`)
  }
  const list = (config as { rules?: unknown } | null)?.rules
  if (!Array.isArray(list)) throw new UsageError(`--retention-config ${path}: expected {"rules": [...]}`)
  return retentionRulesOf(list, `--retention-config ${path}`, JSON_RULE_KEYS)
}

/** The names a rule's fields have: camelCase in the JSON file, the flags' names in a TOML file. */
export interface RuleKeys {
  readonly maxAge: string
  readonly maxMessages: string
  readonly maxBytes: string
  readonly policy: string
}

export const JSON_RULE_KEYS: RuleKeys = { maxAge: "maxAge", maxMessages: "maxMessages", maxBytes: "maxBytes", policy: "policy" }
export const TOML_RULE_KEYS: RuleKeys = {
  maxAge: "max-age",
  maxMessages: "max-messages",
  maxBytes: "max-topic-bytes",
  policy: "full-policy",
}

/** Retention rules from parsed entries; `source` starts every error ("--retention-config x.json", "dsmq.toml: retention"). */
export function retentionRulesOf(list: readonly unknown[], source: string, keys: RuleKeys): RetentionRule[] {
  return list.map((entry: unknown, i) => {
    const where = `${source}: rule ${i + 1}`
    if (typeof entry !== "object" || entry === null) throw new UsageError(`${where} must be an object`)
    const { pattern, ...fields } = entry as Record<string, unknown>
    const known = new Set(Object.values(keys))
    const extra = Object.keys(fields).filter((key) => !known.has(key))
    if (extra.length > 0) throw new UsageError(`${where}: unknown field ${extra[0]}`)
    if (typeof pattern !== "string" || pattern === "") throw new UsageError(`${where} needs a "pattern"`)
    const problem = patternProblem(pattern)
    if (problem !== null) throw new UsageError(`${where}: ${problem}`)
    const field = (key: string): string | undefined => (fields[key] === undefined ? undefined : String(fields[key]))
    const [maxAge, maxMessages, maxBytes, policy] = [field(keys.maxAge), field(keys.maxMessages), field(keys.maxBytes), field(keys.policy)]
    const limits: { -readonly [K in keyof RetentionLimits]?: RetentionLimits[K] } = {}
    if (maxAge !== undefined) limits.maxAgeMs = parseAge(`${where} ${keys.maxAge}`, maxAge)
    if (maxMessages !== undefined) limits.maxMessages = parseCount(`${where} ${keys.maxMessages}`, maxMessages)
    if (maxBytes !== undefined) limits.maxBytes = parseSize(`${where} ${keys.maxBytes}`, maxBytes)
    if (policy !== undefined) limits.policy = oneOf<FullPolicy>(`${where} ${keys.policy}`, policy, ["drop-oldest", "reject"])
    return { pattern, limits }
  })
}
