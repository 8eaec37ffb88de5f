/**
 * What a connection needs for each wire protocol: the decoder that splits its byte stream into
 * frames (none for WebSocket text, where each message is one request) and the session that
 * runs the requests. Which protocol a TCP connection speaks is decided from its first bytes
 * (src/protocol/detect.ts); a WebSocket's, from its first message's type. A new protocol is
 * one more entry here (and a detector, if it arrives on the TCP port).
 */
import type { Reader } from "../broker/broker.ts"
import { BinaryDecoder } from "../protocol/binary/decoder.ts"
import type { FrameDecoder, FrameSink } from "../protocol/decoder.ts"
import { WireProtocol } from "../protocol/detect.ts"
import { JsonHeaderDecoder } from "../protocol/json-header.ts"
import { JsonStreamDecoder } from "../protocol/json-stream.ts"
import { BinarySession } from "./binary-session.ts"
import { JsonSession } from "./json-session.ts"
import type { Session, SessionHost } from "./session.ts"

/** A protocol whose requests this server's sessions run. */
export interface RequestProtocol {
  readonly relayed: false
  /** null: requests arrive whole (one per WebSocket text message). */
  readonly decoder: ((sink: FrameSink, maxFrameBytes: number) => FrameDecoder) | null
  readonly session: (host: SessionHost, reader: Reader) => Session<unknown>
}

/** A protocol whose bytes are piped to the internal HTTP listener (src/net/http-relay.ts): Bun.serve speaks it. */
export interface RelayedProtocol {
  readonly relayed: true
}

export type WireProtocolEntry = RequestProtocol | RelayedProtocol

export const WIRE_PROTOCOLS: Readonly<Record<WireProtocol, WireProtocolEntry>> = {
  [WireProtocol.binary]: {
    relayed: false,
    decoder: (sink, maxFrameBytes) => new BinaryDecoder(sink, maxFrameBytes),
    session: (host, reader) => new BinarySession(host, reader),
  },
  [WireProtocol.jsonHeader]: {
    relayed: false,
    decoder: (sink, maxFrameBytes) => new JsonHeaderDecoder(sink, maxFrameBytes),
    session: (host, reader) => new JsonSession(host, reader, WireProtocol.jsonHeader),
  },
  [WireProtocol.jsonStream]: {
    relayed: false,
    decoder: (sink, maxFrameBytes) => new JsonStreamDecoder(sink, maxFrameBytes),
    session: (host, reader) => new JsonSession(host, reader, WireProtocol.jsonStream),
  },
  [WireProtocol.webSocketJson]: {
    relayed: false,
    decoder: null,
    session: (host, reader) => new JsonSession(host, reader, WireProtocol.webSocketJson),
  },
  [WireProtocol.webSocketBinary]: {
    relayed: false,
    decoder: (sink, maxFrameBytes) => new BinaryDecoder(sink, maxFrameBytes),
    session: (host, reader) => new BinarySession(host, reader),
  },
  [WireProtocol.http]: { relayed: true },
}
