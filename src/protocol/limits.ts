/** Limits every protocol shares, so a topic usable on one is usable on all. */

/** Longest topic, in UTF-8 bytes. */
export const MAX_TOPIC_BYTES = 1024
/** Longest get_wait, in milliseconds (an hour). */
export const MAX_WAIT_MS = 3_600_000

/** Control characters (C0 and DEL) are not allowed in topics: they are always a client's bug. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/

/** What is wrong with a topic name, or null when it is fine (length is checked where it is read). */
export function topicProblem(topic: string): string | null {
  if (CONTROL_CHARACTER.test(topic)) return "topic contains a control character (U+0000 to U+001F, or U+007F)"
  // A lone surrogate (JSON allows "\ud800") has no UTF-8 form: the store would keep U+FFFD, so
  // two different topics would become one name.
  if (!topic.isWellFormed()) return "topic contains a lone surrogate (U+D800 to U+DFFF): it is not valid Unicode"
  return null
}
