import type { BrokerError, BrokerErrorCode } from "../broker/errors.ts"

/**
 * Errors the broker reports to clients. Every error has a stable numeric code (for binary
 * frames) and a stable name (for JSON replies); the text is for people and may change.
 */
export const ErrorCode = {
  /** The byte stream cannot be split into requests any more; the connection is closed. */
  malformed_frame: 1,
  /** A request (or its declared length) is larger than the configured maximum. */
  too_large: 2,
  /** The request body is not valid UTF-8 JSON. */
  bad_json: 3,
  /** The request is valid JSON but not an object. */
  not_an_object: 4,
  /** `action` is missing, not a string, or not one the server knows (binary: an unknown opcode). */
  unknown_action: 5,
  /** A field the action needs is missing, of the wrong type or out of range. */
  bad_field: 6,
  /** `shutdown` was asked for but the server was not started with --allow-shutdown. */
  shutdown_refused: 7,
  /** A binary HELLO asks for a protocol version the server does not speak. */
  unsupported_version: 8,
  /** The topic is at its retention limit and its policy is to refuse new puts. */
  topic_full: 9,
  /** The store is at its memory cap and nothing can be dropped to make room for this put. */
  store_full: 10,
  /** A named cursor is in use by another connection. */
  cursor_busy: 11,
  /** Tokens are configured and the client presented none, or one that is not valid. */
  unauthorized: 12,
  /** The client's token does not permit this topic (read or write). */
  forbidden: 13,
  /** A per-connection limit (subscriptions, pending waits) or the server's connection limit. */
  limit_exceeded: 14,
  /** A read of one more topic than the connection may keep cursors for (--max-cursors). */
  too_many_cursors: 15,
} as const

export type ErrorName = keyof typeof ErrorCode

export class ProtocolError extends Error {
  override readonly name = "ProtocolError"
  readonly code: number

  constructor(
    readonly errorName: ErrorName,
    text: string,
    options?: ErrorOptions,
  ) {
    super(text, options)
    this.code = ErrorCode[errorName]
  }
}

/** The wire name of each broker refusal: binary ERROR frames carry its ErrorCode, JSON replies the name. */
export const ERROR_NAME_BY_BROKER_CODE = {
  topic_full: "topic_full",
  store_full: "store_full",
  cursor_busy: "cursor_busy",
  invalid_argument: "bad_field",
  too_many_cursors: "too_many_cursors",
} as const satisfies Record<BrokerErrorCode, ErrorName>

/** A broker refusal in the form every wire protocol reports; the text is the broker's. */
export function protocolErrorOf(error: BrokerError): ProtocolError {
  return new ProtocolError(ERROR_NAME_BY_BROKER_CODE[error.code], error.message, { cause: error })
}
