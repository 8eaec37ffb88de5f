/**
 * Topic patterns, as in MQTT: a topic name matches itself; `+` stands for any one level;
 * `#`, as the last level, for the levels before it and everything below them (`lab/#` is
 * `lab`, `lab/a`, `lab/a/b`, ...; `#` alone is every topic). Each must fill a whole level:
 * `a+`, `a#b` and `a/#/b` are not patterns. Levels are separated by `/` and may be empty.
 */
import { BoundedCache } from "./bounded-cache.ts"
import { LEVEL_SEPARATOR, MULTI_LEVEL_WILDCARD, nameProblem, SINGLE_LEVEL_WILDCARD } from "./topic-name.ts"

export class PatternError extends Error {
  override readonly name = "PatternError"
}

/** A pattern split into levels once, for matching without splitting it again. */
export interface Pattern {
  readonly text: string
  /** The levels before a trailing `#`: names, or `+` for any one level. */
  readonly levels: readonly string[]
  /** True when the pattern ends in `#`: it also matches everything below `levels`. */
  readonly andBelow: boolean
}

export type TopicMatcher = (topic: string) => boolean

/**
 * Compiled patterns kept for reuse: more than any configuration holds, and a bound on what
 * patterns sent by clients (wildcard reads, later) can cost in memory.
 */
const MAX_COMPILED_PATTERNS = 1024
const compiled = new BoundedCache<string, TopicMatcher>(MAX_COMPILED_PATTERNS)

/** What is wrong with `pattern`, naming it and the rule it breaks; null when it is a pattern. */
export function patternProblem(pattern: string): string | null {
  const quoted = `pattern ${JSON.stringify(pattern)}`
  const problem = nameProblem(pattern, quoted)
  if (problem !== null) return problem
  const levels = pattern.split(LEVEL_SEPARATOR)
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!
    if (level.includes(MULTI_LEVEL_WILDCARD)) {
      if (level !== MULTI_LEVEL_WILDCARD) return `${quoted}: "#" must fill a whole level, as in "a/#"`
      if (i !== levels.length - 1) return `${quoted}: "#" must be the last level (it stands for everything below)`
    } else if (level.includes(SINGLE_LEVEL_WILDCARD) && level !== SINGLE_LEVEL_WILDCARD) {
      return `${quoted}: "+" must fill a whole level, as in "a/+/b"`
    }
  }
  return null
}

/** `pattern` split into levels; throws PatternError when it is not a pattern. */
export function parsePattern(pattern: string): Pattern {
  const problem = patternProblem(pattern)
  if (problem !== null) throw new PatternError(problem)
  const levels = pattern.split(LEVEL_SEPARATOR)
  const andBelow = levels[levels.length - 1] === MULTI_LEVEL_WILDCARD
  return { text: pattern, levels: andBelow ? levels.slice(0, -1) : levels, andBelow }
}

/** A function that tells whether a topic matches `pattern`; compiled once and cached. Throws PatternError. */
export function compilePattern(pattern: string): TopicMatcher {
  let matcher = compiled.get(pattern)
  if (matcher === undefined) {
    matcher = matcherOf(parsePattern(pattern))
    compiled.set(pattern, matcher)
  }
  return matcher
}

function matcherOf(pattern: Pattern): TopicMatcher {
  const { text, levels, andBelow } = pattern
  if (!andBelow && !levels.includes(SINGLE_LEVEL_WILDCARD)) return (topic) => topic === text
  return (topic) => matchesPattern(pattern, topic)
}

/** Whether `topic` matches `pattern`, walking the topic's levels in place (no split, no copies). */
export function matchesPattern(pattern: Pattern, topic: string): boolean {
  const { levels, andBelow } = pattern
  // Where the topic's next level starts; past the end once its last level was taken.
  let start = 0
  for (const level of levels) {
    if (start > topic.length) return false
    let end = topic.indexOf(LEVEL_SEPARATOR, start)
    if (end === -1) end = topic.length
    if (level !== SINGLE_LEVEL_WILDCARD && (end - start !== level.length || !topic.startsWith(level, start))) return false
    start = end + 1
  }
  return andBelow || start === topic.length + 1
}

/** Whether a name given for reading is a pattern (holds `+` or `#`) rather than one topic. */
export function isPattern(name: string): boolean {
  return name.includes(SINGLE_LEVEL_WILDCARD) || name.includes(MULTI_LEVEL_WILDCARD)
}

/**
 * Whether some topic matches both patterns (a token's `lab/#` and a subscription's `#` do;
 * `lab/#` and `office/+` do not). Both must be valid patterns; exact names are patterns too.
 */
export function patternsOverlap(a: string, b: string): boolean {
  const left = a.split(LEVEL_SEPARATOR)
  const right = b.split(LEVEL_SEPARATOR)
  for (let i = 0; ; i++) {
    const l = left[i]
    const r = right[i]
    // `#` matches the rest, including nothing at all (`lab/#` matches `lab`).
    if (l === MULTI_LEVEL_WILDCARD || r === MULTI_LEVEL_WILDCARD) return true
    if (l === undefined || r === undefined) return l === r
    if (l !== r && l !== SINGLE_LEVEL_WILDCARD && r !== SINGLE_LEVEL_WILDCARD) return false
  }
}
