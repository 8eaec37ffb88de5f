/**
 * Tells the wire protocols on the TCP port apart from a connection's first bytes. Each
 * detector answers for its own protocol; STREAM_DETECTORS tries them in order, and the first
 * that claims the bytes wins:
 * - a binary connection starts with a HELLO frame, whose first byte (the top of a small
 *   length) is 0x00;
 * - generation 2 starts with the exact header prefix `{"msg_length": `;
 * - HTTP (upstream 1.x WebSocket clients connecting to this port, or a curl) starts with a
 *   method token in capitals and a space, such as `GET `;
 * - anything else is taken for a generation 1 JSON stream (whose decoder refuses what is not
 *   a JSON object).
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
  /** HTTP on the TCP port, served by the HTTP port's handlers (until a WebSocket upgrade names its own). */
  http: "http",
} as const
export type WireProtocol = (typeof WireProtocol)[keyof typeof WireProtocol]

/** A detector's answer: the bytes are its protocol's, are not, or cannot tell yet. */
export const Detection = { yes: "yes", no: "no", undecided: "undecided" } as const
export type Detection = (typeof Detection)[keyof typeof Detection]

export interface StreamDetector {
  readonly protocol: WireProtocol
  detect(firstBytes: Uint8Array): Detection
}

const PREFIX_BYTES = new TextEncoder().encode(HEADER_PREFIX)

/** In the order they are tried; the last claims whatever the others did not. */
export const STREAM_DETECTORS: readonly StreamDetector[] = [
  {
    protocol: WireProtocol.binary,
    detect: (firstBytes) => (firstBytes.length === 0 ? Detection.undecided : firstBytes[0] === 0x00 ? Detection.yes : Detection.no),
  },
  {
    protocol: WireProtocol.jsonHeader,
    detect(firstBytes) {
      const checked = Math.min(firstBytes.length, PREFIX_BYTES.length)
      for (let i = 0; i < checked; i++) {
        if (firstBytes[i] !== PREFIX_BYTES[i]) return Detection.no
      }
      return checked === PREFIX_BYTES.length ? Detection.yes : Detection.undecided
    },
  },
  { protocol: WireProtocol.http, detect: detectHttpMethod },
  { protocol: WireProtocol.jsonStream, detect: () => Detection.yes },
]

/** The protocol the bytes seen so far belong to, or null while they could still be more than one. */
export function detectProtocol(firstBytes: Uint8Array): WireProtocol | null {
  for (const detector of STREAM_DETECTORS) {
    const answer = detector.detect(firstBytes)
    if (answer === Detection.yes) return detector.protocol
    if (answer === Detection.undecided) return null
  }
  return null
}

/** The longest method token waited for (`OPTIONS`, `CONNECT` and the WebDAV ones fit). */
const MAX_METHOD_BYTES = 16
const SPACE = 0x20

/** A method token (capital letters) followed by a space: `GET `, `POST `. */
function detectHttpMethod(firstBytes: Uint8Array): Detection {
  const checked = Math.min(firstBytes.length, MAX_METHOD_BYTES + 1)
  for (let i = 0; i < checked; i++) {
    const byte = firstBytes[i]!
    if (byte === SPACE) return i > 0 ? Detection.yes : Detection.no
    if (byte < 0x41 || byte > 0x5a) return Detection.no
  }
  return checked > MAX_METHOD_BYTES ? Detection.no : Detection.undecided
}
