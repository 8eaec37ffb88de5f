/**
 * Limits every protocol shares, so a request usable on one is usable on all. What a topic may
 * be (its length, its characters) is src/topic/topic-name.ts.
 */

/** Longest get_wait, in milliseconds (an hour). */
export const MAX_WAIT_MS = 3_600_000
