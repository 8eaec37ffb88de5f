/**
 * Tells the wire protocols on the TCP port apart from a connection's first bytes: a binary
 * connection starts with a HELLO frame, whose first byte (the top of a small length) is 0x00;
 * generation 2 starts with the exact header prefix `{"msg_length": `; anything else is taken
 * for a generation 1 JSON stream (whose decoder refuses what is not a JSON object).
 */
import { HEADER_PREFIX } from "./json-header.ts"

export const WireProtocol = {
  binary: "binary",
  jsonStream: "json-stream",
  jsonHeader: "json-header",
  /** Upstream 1.x: one JSON request per WebSocket text message. */
  webSocketJson: "websocket-json",
  /** Binary frames carried in WebSocket binary messages. */
  webSocketBinary: "websocket-binary",
} as const
export type WireProtocol = (typeof WireProtocol)[keyof typeof WireProtocol]

const PREFIX_BYTES = new TextEncoder().encode(HEADER_PREFIX)

/** The protocol the bytes seen so far belong to, or null while they could still be either. */
export function detectProtocol(firstBytes: Uint8Array): WireProtocol | null {
  if (firstBytes[0] === 0x00) return WireProtocol.binary
  const checked = Math.min(firstBytes.length, PREFIX_BYTES.length)
  for (let i = 0; i < checked; i++) {
    if (firstBytes[i] !== PREFIX_BYTES[i]) return WireProtocol.jsonStream
  }
  return checked === PREFIX_BYTES.length ? WireProtocol.jsonHeader : null
}
