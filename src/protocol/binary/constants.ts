/** The binary protocol's numbers (docs/PROTOCOL.md): framing, opcodes, flags and limits. */

/** The protocol version HELLO asks for and WELCOME answers with. */
export const BINARY_VERSION = 1
/** HELLO starts with "DSMQ", so a connection is told apart from the JSON protocols by its first bytes. */
export const MAGIC = new Uint8Array([0x44, 0x53, 0x4d, 0x51]) // "DSMQ"
/** u32 length, u8 opcode, u8 flags, u32 request id. */
export const HEADER_BYTES = 10
/** The length field that starts every frame: it counts the bytes after itself. */
export const LENGTH_BYTES = 4
/** The smallest legal value of the length field: opcode, flags and request id. */
export const MIN_LENGTH = HEADER_BYTES - LENGTH_BYTES

export const Op = {
  hello: 0x01,
  put: 0x02,
  putMany: 0x03,
  get: 0x04,
  getLatest: 0x05,
  getWait: 0x06,
  subscribe: 0x07,
  unsubscribe: 0x08,
  ping: 0x09,
  stats: 0x0a,
  cursor: 0x0b,
  topics: 0x0c,
  from: 0x0d,
  ok: 0x80,
  welcome: 0x81,
  putAck: 0x82,
  message: 0x83,
  empty: 0x84,
  pong: 0x85,
  statsReply: 0x86,
  deliver: 0x87,
  topicsReply: 0x88,
  error: 0xff,
} as const
export type Op = (typeof Op)[keyof typeof Op]

export const Flag = {
  /** On PUT and PUT_MANY: answer with PUT_ACK. */
  ack: 0x01,
  /** On ERROR: the server closes the connection after this frame. */
  fatal: 0x01,
  /** On MESSAGE and DELIVER: a u32 count of messages the reader missed follows the seq. */
  missed: 0x01,
  /** On HELLO: every MESSAGE and DELIVER of this connection carries its message's put time. */
  putTimes: 0x02,
  /** On MESSAGE and DELIVER: an f64 put time (milliseconds since the epoch) follows the seq and the missed count. */
  putTime: 0x02,
} as const

/** Longest cursor name, in UTF-8 bytes: a name is a key, kept per connection and in the store. */
export const MAX_CURSOR_NAME_BYTES = 256

/** Most topics one TOPICS request (or GET /topics page) may ask for. */
export const MAX_TOPICS_PAGE = 10_000
