/**
 * What a WebSocket message may be: the first one decided the connection's protocol, text for
 * upstream 1.x JSON (one message, one request) or binary for binary frames; a message of the
 * other kind, or a request past the frame limit, is an error the connection reports.
 */
import { ProtocolError } from "../protocol/errors.ts"

export function webSocketMessageProblem(message: string | Uint8Array, binaryFrames: boolean, maxFrameBytes: number): ProtocolError | null {
  if (typeof message !== "string") {
    return binaryFrames ? null : new ProtocolError("malformed_frame", "a binary message on a WebSocket that sends JSON text")
  }
  if (binaryFrames) return new ProtocolError("malformed_frame", "a text message on a WebSocket that sends binary frames")
  // UTF-8 bytes are counted only past the limit in UTF-16 units, the cheap test most requests pass.
  if (message.length <= maxFrameBytes || Buffer.byteLength(message) <= maxFrameBytes) return null
  return new ProtocolError("too_large", `request is larger than the maximum of ${maxFrameBytes} bytes`)
}
