/**
 * Turns one JSON request body (generation 1 or 2) into a typed request, or into an error that
 * says whether the client is waiting for a reply. Upstream clients read a reply only after
 * `get`-like requests, so that flag decides whether an error can be answered in place or
 * must close the connection instead (an unexpected reply would be read as the next answer).
 */
import { isPattern, patternProblem } from "../topic/pattern.ts"
import { topicProblem } from "../topic/topic-name.ts"
import { ProtocolError } from "./errors.ts"
import { MAX_WAIT_MS } from "./limits.ts"

/** get_wait's timeout when the request names none, in seconds: about what upstream's client-side get_wait tries for. */
export const DEFAULT_WAIT_SECONDS = 10
const MAX_WAIT_SECONDS = MAX_WAIT_MS / 1000

export type Request =
  | { readonly action: "put"; readonly topic: string; readonly message: string; readonly ack: boolean }
  | { readonly action: "get" | "get_latest"; readonly topic: string }
  | { readonly action: "get_wait"; readonly topic: string; readonly timeoutMs: number }
  | { readonly action: "shutdown" }
  | { readonly action: "auth"; readonly token: string }

export interface RejectedRequest {
  readonly action: "rejected"
  readonly error: ProtocolError
  /** True when the client sent a request it expects an answer to, so the error can be that answer. */
  readonly expectsReply: boolean
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** Parses one request: bytes (TCP) or the text of a WebSocket message. */
export function parseJsonRequest(body: Uint8Array | string): Request | RejectedRequest {
  let value: unknown
  try {
    value = JSON.parse(typeof body === "string" ? body : utf8.decode(body))
  } catch (cause) {
    const why = cause instanceof TypeError ? "request is not valid UTF-8" : `request is not valid JSON (${String(cause)})`
    return reject("bad_json", why, false)
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return reject("not_an_object", "request must be a JSON object", false)
  }
  const fields = value as Record<string, unknown>
  const action = fields.action
  switch (action) {
    case "put":
      return parsePut(fields)
    case "get":
    case "get_latest": {
      const topic = readTopic(fields, true, true)
      return typeof topic === "string" ? { action, topic } : topic
    }
    case "get_wait":
      return parseGetWait(fields)
    case "shutdown":
      return { action }
    case "auth":
      return typeof fields.token === "string" && fields.token !== ""
        ? { action, token: fields.token }
        : reject("unauthorized", "'auth' needs a string field 'token'", true)
    default:
      return reject(
        "unknown_action",
        typeof action === "string"
          ? `unknown action ${JSON.stringify(action.slice(0, 64))}; known: put, get, get_latest, get_wait, shutdown, auth`
          : "request has no string field 'action'",
        false,
      )
  }
}

function parsePut(fields: Record<string, unknown>): Request | RejectedRequest {
  const ack = fields.ack === true
  if (fields.ack !== undefined && typeof fields.ack !== "boolean") {
    return reject("bad_field", "'ack' must be true or false", false)
  }
  const topic = readTopic(fields, ack)
  if (typeof topic !== "string") return topic
  const message = fields.message
  if (typeof message !== "string") {
    return reject("bad_field", `'message' must be a string, got ${describeType(message)}`, ack)
  }
  // JSON allows "\ud800", which has no UTF-8 form: storing it would silently change the message to U+FFFD.
  if (!message.isWellFormed()) {
    return reject("bad_field", "'message' contains a lone surrogate (U+D800 to U+DFFF): it is not valid Unicode", ack)
  }
  return { action: "put", topic, message, ack }
}

function parseGetWait(fields: Record<string, unknown>): Request | RejectedRequest {
  const topic = readTopic(fields, true, true)
  if (typeof topic !== "string") return topic
  const timeout = fields.timeout ?? DEFAULT_WAIT_SECONDS
  if (typeof timeout !== "number" || !(timeout >= 0 && timeout <= MAX_WAIT_SECONDS)) {
    return reject("bad_field", `'timeout' must be a number of seconds from 0 to ${MAX_WAIT_SECONDS}`, true)
  }
  return { action: "get_wait", topic, timeoutMs: Math.round(timeout * 1000) }
}

/** `topic` as a string; `forReading`: it may be a pattern (`+`, `#`), which must then be a valid one. */
function readTopic(fields: Record<string, unknown>, expectsReply: boolean, forReading = false): string | RejectedRequest {
  const topic = fields.topic
  if (typeof topic !== "string") {
    return reject("bad_field", `'topic' must be a string, got ${describeType(topic)}`, expectsReply)
  }
  const problem = topicProblem(topic) ?? (forReading && isPattern(topic) ? patternProblem(topic) : null)
  return problem === null ? topic : reject("bad_field", problem, expectsReply)
}

function reject(name: ProtocolError["errorName"], text: string, expectsReply: boolean): RejectedRequest {
  return { action: "rejected", error: new ProtocolError(name, text), expectsReply }
}

function describeType(value: unknown): string {
  if (value === undefined) return "nothing"
  if (value === null) return "null"
  if (Array.isArray(value)) return "an array"
  return typeof value === "object" ? "an object" : `a ${typeof value}`
}
