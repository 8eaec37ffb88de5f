/**
 * What a topic name may be, the same on every protocol: at most MAX_TOPIC_BYTES of UTF-8,
 * well-formed Unicode, no control characters. Levels are separated by `/` (empty levels are
 * allowed). `+` and `#` are pattern characters (src/topic/pattern.ts): a topic that contains
 * one cannot be written to, as in MQTT, so that no pattern is ever also the name of a topic.
 */

/** Longest topic, in UTF-8 bytes: room for any path-like name, small enough to index. */
export const MAX_TOPIC_BYTES = 1024
export const LEVEL_SEPARATOR = "/"
/** In a pattern: any one level. */
export const SINGLE_LEVEL_WILDCARD = "+"
/** In a pattern, as the last level: the levels before it and everything below them. */
export const MULTI_LEVEL_WILDCARD = "#"

/** Control characters (C0 and DEL) are not allowed in topics: they are always a client's bug. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/
const PATTERN_CHARACTER = /[+#]/

/** What is wrong with a topic name, or null when it can be read (writing also needs `patternCharacterInTopic`). */
export function topicProblem(topic: string): string | null {
  return nameProblem(topic, "topic")
}

/**
 * What is wrong with `text` as a topic or a pattern (`subject`: how the error names it): its
 * length, a control character, a lone surrogate; null when none of these.
 */
export function nameProblem(text: string, subject: string): string | null {
  // A UTF-8 byte is at most 3 per UTF-16 unit: short names skip the byte count.
  if (text.length > MAX_TOPIC_BYTES / 3 && utf8Length(text) > MAX_TOPIC_BYTES) {
    return `${subject} is longer than ${MAX_TOPIC_BYTES} bytes of UTF-8`
  }
  if (CONTROL_CHARACTER.test(text)) return `${subject} contains a control character (U+0000 to U+001F, or U+007F)`
  // A lone surrogate (JSON allows "\ud800") has no UTF-8 form: the store would keep U+FFFD, so
  // two different topics would become one name.
  if (!text.isWellFormed()) return `${subject} contains a lone surrogate (U+D800 to U+DFFF): it is not valid Unicode`
  return null
}

/** Why `topic` cannot be written to (it contains `+` or `#`), or null when it can. */
export function patternCharacterInTopic(topic: string): string | null {
  return patternCharacterIn(topic, "topic", "a topic name")
}

/** Why `name` cannot name a cursor (it contains `+` or `#`), or null when it can. */
export function patternCharacterInCursorName(name: string): string | null {
  return patternCharacterIn(name, "cursor name", "a cursor name")
}

function patternCharacterIn(name: string, subject: string, what: string): string | null {
  const found = PATTERN_CHARACTER.exec(name)
  if (found === null) return null
  return `${subject} ${JSON.stringify(name)} contains "${found[0]}": "${SINGLE_LEVEL_WILDCARD}" and "${MULTI_LEVEL_WILDCARD}" are pattern characters and cannot be part of ${what}`
}

/** Bytes of `text` in UTF-8 (a lone surrogate counts as U+FFFD, 3 bytes), without encoding it. */
export function utf8Length(text: string): number {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    if (unit < 0x80) bytes += 1
    else if (unit < 0x800) bytes += 2
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4
      i++
    } else bytes += 3
  }
  return bytes
}
