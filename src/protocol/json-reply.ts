/**
 * Replies of the JSON protocols. Upstream clients read only `message`; `seq` and `error` are
 * extra fields they ignore. An error reply carries an empty `message`, like "nothing there".
 */

import { WireProtocol } from "./detect.ts"
import type { ProtocolError } from "./errors.ts"
import { encodeHeader } from "./json-header.ts"

const utf8 = new TextDecoder()

export const EMPTY_REPLY = '{"message":""}'

/**
 * `missed`: messages retention removed before this one that the reader never got (shown when > 0).
 * `topic`: the message's topic, given for a read of a pattern (upstream clients never send one).
 */
export function messageReply(seq: number, payload: Uint8Array, missed: number | null = 0, topic: string | null = null): string {
  const lost = missed === null || missed === 0 ? "" : `,"missed":${missed}`
  const from = topic === null ? "" : `,"topic":${JSON.stringify(topic)}`
  return `{"message":${JSON.stringify(utf8.decode(payload))},"seq":${seq}${lost}${from}}`
}

/**
 * The reply upstream 1.x sends over WebSocket, byte for byte: Python's `json.dumps` output,
 * with ": " after the key and non-ASCII characters escaped, and no other field.
 */
export function upstreamMessageReply(payload: Uint8Array, topic: string | null = null): string {
  const from = topic === null ? "" : `, "topic": ${asciiJson(topic)}`
  return `{"message": ${asciiJson(utf8.decode(payload))}${from}}`
}

export const UPSTREAM_EMPTY_REPLY = '{"message": ""}'

function asciiJson(text: string): string {
  // Each UTF-16 unit above 0x7f becomes \uXXXX, as Python's ensure_ascii does.
  return JSON.stringify(text).replace(/[\u0080-\uffff]/g, (unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, "0")}`)
}

export function ackReply(seq: number): string {
  return `{"message":"","seq":${seq}}`
}

export function errorReply(error: ProtocolError): string {
  return `{"message":"","error":{"code":"${error.errorName}","text":${JSON.stringify(error.message)}}}`
}

/** Adds the framing a protocol needs around one reply body. */
export function frameReply(protocol: WireProtocol, body: string): string {
  return protocol === WireProtocol.jsonHeader ? encodeHeader(Buffer.byteLength(body)) + body : body
}
