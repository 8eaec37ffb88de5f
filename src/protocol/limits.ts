/** Limits every protocol shares, so a topic usable on one is usable on all. */

/** Longest topic, in UTF-8 bytes. */
export const MAX_TOPIC_BYTES = 1024
/** Longest get_wait, in milliseconds (an hour). */
export const MAX_WAIT_MS = 3_600_000
