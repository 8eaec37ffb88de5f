/**
 * Topic names and NATS subjects, both ways: levels become tokens (`lab/temp` ↔ `lab.temp`),
 * behind an optional prefix (`site1` makes `site1.lab.temp`). NATS tokens may not be empty
 * nor hold `.`, `*`, `>` or whitespace, which topic levels may: such characters, and `~`
 * itself, are written `~XX` (the byte in upper-case hex), and an empty level is the token `~`.
 * So every topic has exactly one subject and comes back from it unchanged.
 *
 * Patterns map the same way, `+` to `*` and a final `#` to `>`; since `lab/#` also matches the
 * topic `lab` itself and `lab.>` does not, a `#` pattern becomes two subjects.
 */
export class SubjectError extends Error {
  override readonly name = "SubjectError"
}

/** Characters a token may not hold as they are (plus `~`, the escape). */
const ESCAPED = /[~.*>\s\p{C}]/gu
const EMPTY_LEVEL = "~"

export function escapeLevel(level: string): string {
  if (level === "") return EMPTY_LEVEL
  return level.replace(ESCAPED, (character) =>
    [...Buffer.from(character)].map((byte) => `~${byte.toString(16).toUpperCase().padStart(2, "0")}`).join(""),
  )
}

export function unescapeToken(token: string): string {
  if (token === EMPTY_LEVEL) return ""
  if (!token.includes("~")) return token
  // Escapes may spell one multi-byte character together: decode bytes, not characters.
  const bytes: number[] = []
  for (let i = 0; i < token.length; ) {
    const escaped = token[i] === "~" ? /^~([0-9A-F]{2})/.exec(token.slice(i)) : null
    if (escaped !== null) {
      bytes.push(Number.parseInt(escaped[1]!, 16))
      i += 3
    } else {
      const character = String.fromCodePoint(token.codePointAt(i)!)
      bytes.push(...Buffer.from(character))
      i += character.length
    }
  }
  return Buffer.from(bytes).toString("utf8")
}

/** A prefix must be a valid subject of literal tokens (or empty: none). */
export function checkPrefix(prefix: string): string {
  if (prefix === "") return prefix
  const bad = prefix.split(".").find((token) => token === "" || /[*>\s]/.test(token))
  if (bad !== undefined) {
    throw new SubjectError(
      `the subject prefix ${JSON.stringify(prefix)} is not a valid NATS subject (tokens separated by ".", none empty, no "*", ">" or spaces)`,
    )
  }
  return prefix
}

const withPrefix = (prefix: string, rest: string) => (prefix === "" ? rest : rest === "" ? prefix : `${prefix}.${rest}`)

export function topicToSubject(topic: string, prefix: string): string {
  return withPrefix(prefix, topic.split("/").map(escapeLevel).join("."))
}

/** The topic a subject stands for; null when it is not under the prefix. */
export function subjectToTopic(subject: string, prefix: string): string | null {
  let rest = subject
  if (prefix !== "") {
    if (!subject.startsWith(`${prefix}.`)) return null
    rest = subject.slice(prefix.length + 1)
  }
  return rest.split(".").map(unescapeToken).join("/")
}

/** The subjects to subscribe to for a topic pattern (`+` and a final `#` as in src/topic/pattern.ts). */
export function patternToSubjects(pattern: string, prefix: string): string[] {
  const levels = pattern.split("/")
  const tokens = levels.map((level) => (level === "+" ? "*" : level === "#" ? ">" : escapeLevel(level)))
  if (levels.at(-1) !== "#") return [withPrefix(prefix, tokens.join("."))]
  const parent = tokens.slice(0, -1)
  const all = withPrefix(prefix, tokens.join("."))
  // `#` alone under no prefix is every subject; otherwise the parent itself matches too.
  return parent.length === 0 ? [all] : [all, withPrefix(prefix, parent.join("."))]
}
