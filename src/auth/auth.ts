/**
 * Authentication and topic permissions. Tokens come from a file or an environment variable
 * (never only the command line, where any user of the machine can read them), are compared
 * in constant time, and are never logged: a principal is known by its name.
 */
import { createHash, timingSafeEqual } from "node:crypto"
import { PatternError, patternProblem, patternsOverlap } from "../topic/pattern.ts"
import { SubjectIndex } from "../topic/subject-index.ts"

/** Who a connection or request acts as, and which topics it may read and write. */
export interface Principal {
  readonly name: string
  canRead(topic: string): boolean
  canWrite(topic: string): boolean
  /** Whether some topic `pattern` matches is readable: a pattern read is allowed, and delivers only readable topics. */
  mayReadSomeOf(pattern: string): boolean
}

/** Permission to read and write every topic: what everyone has when no tokens are configured. */
export const FULL_ACCESS: Principal = { name: "anyone", canRead: () => true, canWrite: () => true, mayReadSomeOf: () => true }

export interface TokenEntry {
  /** Shown in logs and errors instead of the token. */
  readonly name: string
  readonly token: string
  /** Topic patterns (src/topic/pattern.ts, as in retention rules: `lab/#`, `lab/+/temp`, exact names). */
  readonly read: readonly string[]
  readonly write: readonly string[]
}

export interface AuthConfig {
  readonly tokens: readonly TokenEntry[]
  /**
   * What clients of the upstream JSON protocols get without an `auth` request, when allowed
   * (--allow-anonymous-legacy); null: they must authenticate like everyone else.
   */
  readonly anonymousLegacy: { readonly read: readonly string[]; readonly write: readonly string[] } | null
}

export class AuthError extends Error {
  override readonly name = "AuthError"
}

export class Authenticator {
  readonly #entries: { digest: Buffer; principal: Principal }[]
  readonly #anonymousLegacy: Principal | null

  constructor(config: AuthConfig | null) {
    this.#entries = (config?.tokens ?? []).map((entry) => ({ digest: digest(entry.token), principal: principalOf(entry) }))
    this.#anonymousLegacy =
      config === null ? FULL_ACCESS : config.anonymousLegacy === null ? null : principalOf({ name: "anonymous", ...config.anonymousLegacy })
  }

  /** True when clients must present a token. */
  get required(): boolean {
    return this.#entries.length > 0
  }

  /**
   * The principal for `token`, or null when it matches none. Every configured token is
   * compared, in constant time, so the time taken says nothing about which one came close.
   */
  authenticate(token: string): Principal | null {
    if (!this.required) return FULL_ACCESS
    const presented = digest(token)
    let found: Principal | null = null
    for (const entry of this.#entries) {
      if (timingSafeEqual(presented, entry.digest)) found = entry.principal
    }
    return found
  }

  /** What a client starts as before authenticating: full access without tokens, else nothing. */
  get initial(): Principal | null {
    return this.required ? null : FULL_ACCESS
  }

  /** What an upstream JSON client starts as: `initial`, or the anonymous legacy permissions if allowed. */
  get initialLegacy(): Principal | null {
    return this.required ? this.#anonymousLegacy : FULL_ACCESS
  }
}

/** Fixed-length digests, so tokens of any length compare in constant time. */
function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest()
}

type Access = "read" | "write"

/**
 * A principal whose patterns are compiled once, into one subject index: a request costs a
 * look-up in its answers cached by topic, or one walk of the trie, however many patterns.
 * Throws AuthError for a bad pattern.
 */
function principalOf(entry: { name: string; read: readonly string[]; write: readonly string[] }): Principal {
  const access = new SubjectIndex<Access>()
  try {
    for (const pattern of entry.read) access.add(pattern, "read")
    for (const pattern of entry.write) access.add(pattern, "write")
  } catch (error) {
    if (error instanceof PatternError) throw new AuthError(`${entry.name}: ${error.message}`)
    throw error
  }
  return {
    name: entry.name,
    canRead: (topic) => access.match(topic).includes("read"),
    canWrite: (topic) => access.match(topic).includes("write"),
    mayReadSomeOf: (pattern) => entry.read.some((readable) => patternsOverlap(readable, pattern)),
  }
}

/**
 * Reads the token list: {"tokens": [{"name", "token", "read": [patterns], "write": [patterns]}],
 * "anonymousLegacy": {"read": [...], "write": [...]}} (the last only matters with
 * --allow-anonymous-legacy, and defaults to full access then).
 */
export function parseAuthConfig(text: string, allowAnonymousLegacy: boolean, source: string): AuthConfig {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new AuthError(`${source}: not valid JSON (${error instanceof Error ? error.message : String(error)})`)
  }
  return authConfigOf(value, allowAnonymousLegacy, source)
}

/** The token list from an already parsed value (JSON, or the `[auth]` table of a configuration file). */
export function authConfigOf(value: unknown, allowAnonymousLegacy: boolean, source: string): AuthConfig {
  const root = value as { tokens?: unknown; anonymousLegacy?: unknown } | null
  if (root === null || typeof root !== "object" || !Array.isArray(root.tokens) || root.tokens.length === 0) {
    throw new AuthError(`${source}: expected {"tokens": [{"name", "token", "read", "write"}, ...]} with at least one token`)
  }
  const names = new Set<string>()
  const tokens = root.tokens.map((entry: unknown, i): TokenEntry => {
    const where = `${source}: token ${i + 1}`
    const { name, token, read, write } = (entry ?? {}) as Record<string, unknown>
    if (typeof name !== "string" || name === "") throw new AuthError(`${where} needs a "name"`)
    if (names.has(name)) throw new AuthError(`${where}: the name ${JSON.stringify(name)} is used twice`)
    names.add(name)
    if (typeof token !== "string" || token.length < 16) throw new AuthError(`${where} (${name}) needs a "token" of at least 16 characters`)
    return { name, token, read: patterns(read, `${where} (${name}) read`), write: patterns(write, `${where} (${name}) write`) }
  })
  const anonymous = root.anonymousLegacy as { read?: unknown; write?: unknown } | undefined
  const anonymousLegacy = !allowAnonymousLegacy
    ? null
    : anonymous === undefined
      ? { read: ["#"], write: ["#"] }
      : {
          read: patterns(anonymous.read, `${source}: anonymousLegacy read`),
          write: patterns(anonymous.write, `${source}: anonymousLegacy write`),
        }
  return { tokens, anonymousLegacy }
}

function patterns(value: unknown, where: string): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || !value.every((pattern) => typeof pattern === "string" && pattern !== "")) {
    throw new AuthError(`${where} must be a list of topic patterns`)
  }
  for (const pattern of value as string[]) {
    const problem = patternProblem(pattern)
    if (problem !== null) throw new AuthError(`${where}: ${problem}`)
  }
  return value as string[]
}

/** The token of an `Authorization: Bearer` header, or of a `?token=` query parameter. */
export function bearerToken(request: Request, url: URL): string | null {
  const header = request.headers.get("authorization")
  if (header !== null) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
    return match?.[1] ?? ""
  }
  return url.searchParams.get("token")
}
