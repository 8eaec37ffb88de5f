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
  return list.map((entry: unknown, i) => {
    const where = `--retention-config ${path}: rule ${i + 1}`
    if (typeof entry !== "object" || entry === null) throw new UsageError(`${where} must be an object`)
    const { pattern, maxAge, maxMessages, maxBytes, policy, ...unknown } = entry as Record<string, unknown>
    const extra = Object.keys(unknown)
    if (extra.length > 0) throw new UsageError(`${where}: unknown field ${extra[0]}`)
    if (typeof pattern !== "string" || pattern === "") throw new UsageError(`${where} needs a "pattern"`)
    const problem = patternProblem(pattern)
    if (problem !== null) throw new UsageError(`${where}: ${problem}`)
    const limits: { -readonly [K in keyof RetentionLimits]?: RetentionLimits[K] } = {}
    if (maxAge !== undefined) limits.maxAgeMs = parseAge(`${where} maxAge`, String(maxAge))
    if (maxMessages !== undefined) limits.maxMessages = parseCount(`${where} maxMessages`, String(maxMessages))
    if (maxBytes !== undefined) limits.maxBytes = parseSize(`${where} maxBytes`, String(maxBytes))
    if (policy !== undefined) limits.policy = oneOf<FullPolicy>(`${where} policy`, String(policy), ["drop-oldest", "reject"])
    return { pattern, limits }
  })
}
