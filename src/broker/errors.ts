/**
 * Why the broker refuses an operation, in its own terms. The codes are stable: each protocol
 * maps them to its wire form in one place (binary and JSON in src/protocol/errors.ts, HTTP
 * statuses in src/http/http-api.ts). The message is for people and may change.
 */

export const BrokerErrorCode = {
  /** A put does not fit its topic's limits, and the topic's policy is to refuse, not to drop. */
  topicFull: "topic_full",
  /** A put does not fit the store's memory cap, and nothing may be dropped to make room. */
  storeFull: "store_full",
  /** A named cursor is in use by another reader. */
  cursorBusy: "cursor_busy",
  /** An argument the broker cannot accept, such as a topic name it does not allow. */
  invalidArgument: "invalid_argument",
  /** A read would give its reader one more topic cursor than it may hold (--max-cursors). */
  tooManyCursors: "too_many_cursors",
} as const
export type BrokerErrorCode = (typeof BrokerErrorCode)[keyof typeof BrokerErrorCode]

export class BrokerError extends Error {
  override readonly name = "BrokerError"

  constructor(
    readonly code: BrokerErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}
