"""The binary protocol's frames (docs/PROTOCOL.md): pure bytes <-> values, no I/O.

Every frame is ``u32 length | u8 opcode | u8 flags | u32 request id | body``, big-endian.
Requests are built as ``bytes``; replies are read from any buffer with ``read_reply``.
"""

from __future__ import annotations

import struct
from typing import NamedTuple, Union

from .errors import BadField, DsmqError, ERROR_CODES

VERSION = 1
MAGIC = b"DSMQ"
HEADER = struct.Struct(">IBBI")
HEADER_BYTES = HEADER.size  # 10
#: The length field counts the bytes after it: opcode, flags, request id and body.
MIN_LENGTH = HEADER_BYTES - 4
#: Longest topic in UTF-8 bytes, as on every protocol of the server.
MAX_TOPIC_BYTES = 1024
#: Longest GET_WAIT the server accepts: an hour.
MAX_WAIT_MS = 3_600_000
MAX_CURSOR_NAME_BYTES = 256

# Requests, client to server.
HELLO = 0x01
PUT = 0x02
PUT_MANY = 0x03
GET = 0x04
GET_LATEST = 0x05
GET_WAIT = 0x06
SUBSCRIBE = 0x07
UNSUBSCRIBE = 0x08
PING = 0x09
STATS = 0x0A
CURSOR = 0x0B
TOPICS = 0x0C
FROM = 0x0D
# Replies and pushes, server to client.
OK = 0x80
WELCOME = 0x81
PUT_ACK = 0x82
MESSAGE = 0x83
EMPTY = 0x84
PONG = 0x85
STATS_REPLY = 0x86
DELIVER = 0x87
TOPICS_REPLY = 0x88
ERROR = 0xFF

#: On PUT and PUT_MANY: answer with PUT_ACK.
FLAG_ACK = 0x01
#: On ERROR: the server closes the connection after this frame.
FLAG_FATAL = 0x01
#: On MESSAGE and DELIVER: a u32 count of messages the reader missed follows the seq.
FLAG_MISSED = 0x01
#: On HELLO: every MESSAGE and DELIVER of the connection carries its put time.
FLAG_PUT_TIMES = 0x02
#: On MESSAGE and DELIVER: an f64 put time (ms since the epoch) follows the seq and the missed count.
FLAG_PUT_TIME = 0x02

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_SEQ_MISSED = struct.Struct(">QI")
_F64 = struct.Struct(">d")
_SEQ_COUNT = struct.Struct(">QI")
_WAIT = struct.Struct(">I")
_WELCOME = struct.Struct(">BI")

_MALFORMED = ERROR_CODES["malformed_frame"]


class Message:
    """A message read or pushed: ``seq``, ``topic``, ``payload`` (bytes), ``missed`` and ``put_at``.

    ``missed`` counts messages of the topic before this one that retention removed before this
    reader got them (0 almost always). ``put_at`` is when it was put, in milliseconds since the
    epoch, on a connection that asked for put times; otherwise None.
    """

    __slots__ = ("seq", "topic", "payload", "missed", "put_at")

    def __init__(self, seq: int, topic: str, payload: bytes, missed: int = 0, put_at: float | None = None) -> None:
        self.seq = seq
        self.topic = topic
        self.payload = payload
        self.missed = missed
        self.put_at = put_at

    def text(self, errors: str = "strict") -> str:
        """The payload decoded as UTF-8."""
        return self.payload.decode("utf-8", errors)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.seq, self.topic, self.payload, self.missed) == (other.seq, other.topic, other.payload, other.missed)

    def __hash__(self) -> int:
        return hash((self.seq, self.topic, self.payload))

    def __repr__(self) -> str:
        missed = f", missed={self.missed}" if self.missed else ""
        return f"Message(seq={self.seq}, topic={self.topic!r}, payload={self.payload!r}{missed})"


class Welcome(NamedTuple):
    version: int
    max_frame_bytes: int


class PutAck(NamedTuple):
    seq: int
    count: int


class ErrorReply(NamedTuple):
    code: int
    fatal: bool
    text: str


#: What a reply carries: None (OK, EMPTY), bytes (PONG, STATS), or one of the classes above.
ReplyValue = Union[None, bytes, Welcome, PutAck, Message, ErrorReply]


class Reply(NamedTuple):
    op: int
    flags: int
    request_id: int
    value: ReplyValue


class MalformedReply(DsmqError):
    """A frame from the server that does not follow the protocol (the connection cannot go on)."""

    def __init__(self, text: str) -> None:
        super().__init__(f"bad frame from server: {text}", _MALFORMED, True)


# ----------------------------------------------------------------------------- requests


def topic_field(topic: str) -> bytes:
    """A topic as written in frames: u16 byte length, then UTF-8. Refuses what the server would."""
    if not isinstance(topic, str):
        raise TypeError(f"a topic must be a str, not {type(topic).__name__}")
    try:
        encoded = topic.encode("utf-8")
    except UnicodeEncodeError:
        raise BadField("topic contains a lone surrogate: it is not valid Unicode", ERROR_CODES["bad_field"]) from None
    if len(encoded) > MAX_TOPIC_BYTES:
        raise BadField(f"topic is longer than {MAX_TOPIC_BYTES} bytes of UTF-8", ERROR_CODES["bad_field"])
    if any(byte < 0x20 or byte == 0x7F for byte in encoded):
        raise BadField("topic contains a control character (U+0000 to U+001F, or U+007F)", ERROR_CODES["bad_field"])
    return _U16.pack(len(encoded)) + encoded


def frame(op: int, flags: int, request_id: int, body: bytes = b"") -> bytes:
    return HEADER.pack(MIN_LENGTH + len(body), op, flags, request_id) + body


def hello(request_id: int, token: str | None = None, version: int = VERSION, put_times: bool = False) -> bytes:
    body = MAGIC + bytes([version])
    if token is not None:
        encoded = token.encode("utf-8")
        body += _U16.pack(len(encoded)) + encoded
    return frame(HELLO, FLAG_PUT_TIMES if put_times else 0, request_id, body)


def put(request_id: int, topic: str, payload: bytes, ack: bool = False) -> bytes:
    return frame(PUT, FLAG_ACK if ack else 0, request_id, topic_field(topic) + payload)


def put_many(request_id: int, entries: list[tuple[str, bytes]], ack: bool = False) -> bytes:
    parts = [_U32.pack(len(entries))]
    for topic, payload in entries:
        parts.append(topic_field(topic))
        parts.append(_U32.pack(len(payload)))
        parts.append(payload)
    return frame(PUT_MANY, FLAG_ACK if ack else 0, request_id, b"".join(parts))


def topic_request(op: int, request_id: int, topic: str) -> bytes:
    """GET, GET_LATEST, SUBSCRIBE or UNSUBSCRIBE."""
    return frame(op, 0, request_id, topic_field(topic))


def get_wait(request_id: int, topic: str, timeout_ms: int) -> bytes:
    if not 0 <= timeout_ms <= MAX_WAIT_MS:
        raise BadField(f"a GET_WAIT timeout is 0 to {MAX_WAIT_MS} ms, not {timeout_ms}", ERROR_CODES["bad_field"])
    return frame(GET_WAIT, 0, request_id, _WAIT.pack(timeout_ms) + topic_field(topic))


def ping(request_id: int, body: bytes = b"") -> bytes:
    return frame(PING, 0, request_id, body)


def stats(request_id: int) -> bytes:
    return frame(STATS, 0, request_id)


def topics(request_id: int, limit: int = 1000, after: str = "", match: str | None = None) -> bytes:
    """TOPICS: one page of the topic catalogue (at most ``limit`` names after ``after``, matching ``match``)."""
    body = _U32.pack(limit) + topic_field(after) + (b"" if match is None else topic_field(match))
    return frame(TOPICS, 0, request_id, body)


def from_seq(request_id: int, seq: int) -> bytes:
    """FROM: the connection reads the messages after ``seq`` (0: all the server keeps)."""
    if not 0 <= seq < 2**53:
        raise BadField(f"FROM takes a sequence number from 0 to 2^53 - 1, not {seq}", ERROR_CODES["bad_field"])
    return frame(FROM, 0, request_id, _U64.pack(seq))


def cursor(request_id: int, name: str) -> bytes:
    encoded = name.encode("utf-8")
    if not 1 <= len(encoded) <= MAX_CURSOR_NAME_BYTES:
        raise BadField(f"a cursor name has 1 to {MAX_CURSOR_NAME_BYTES} bytes", ERROR_CODES["bad_field"])
    return frame(CURSOR, 0, request_id, _U16.pack(len(encoded)) + encoded)


# ----------------------------------------------------------------------------- replies


def _topic_at(buffer: bytes | bytearray | memoryview, at: int, end: int) -> tuple[str, int]:
    if end - at < 2:
        raise MalformedReply("the topic length is past the end of the frame")
    (length,) = _U16.unpack_from(buffer, at)
    at += 2
    if length > MAX_TOPIC_BYTES:
        raise MalformedReply(f"topic is longer than {MAX_TOPIC_BYTES} bytes")
    if at + length > end:
        raise MalformedReply("the topic is past the end of the frame")
    try:
        topic = bytes(buffer[at : at + length]).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedReply("topic is not valid UTF-8") from None
    return topic, at + length


def read_reply(buffer: bytes | bytearray | memoryview, start: int = 0, end: int | None = None) -> Reply:
    """Reads the one frame in ``buffer[start:end]`` (header included). Raises MalformedReply."""
    if end is None:
        end = len(buffer)
    if end - start < HEADER_BYTES:
        raise MalformedReply("a frame is shorter than its header")
    length, op, flags, request_id = HEADER.unpack_from(buffer, start)
    if start + 4 + length != end:
        raise MalformedReply(f"the length field says {length}, the frame has {end - start - 4}")
    at = start + HEADER_BYTES
    size = end - at
    if op == DELIVER or op == MESSAGE:
        if flags & FLAG_MISSED:
            if size < 12:
                raise MalformedReply("a message frame ends early")
            seq, missed = _SEQ_MISSED.unpack_from(buffer, at)
            at += 12
        else:
            if size < 8:
                raise MalformedReply("a message frame ends early")
            (seq,) = _U64.unpack_from(buffer, at)
            missed = 0
            at += 8
        put_at = None
        if flags & FLAG_PUT_TIME:
            if end - at < 8:
                raise MalformedReply("a message frame ends early")
            (put_at,) = _F64.unpack_from(buffer, at)
            at += 8
        topic, at = _topic_at(buffer, at, end)
        return Reply(op, flags, request_id, Message(seq, topic, bytes(buffer[at:end]), missed, put_at))
    if op == OK or op == EMPTY:
        if size != 0:
            raise MalformedReply(f"{size} unexpected bytes after opcode 0x{op:02x}")
        return Reply(op, flags, request_id, None)
    if op == PUT_ACK:
        if size < 12:
            raise MalformedReply("a PUT_ACK ends early")
        return Reply(op, flags, request_id, PutAck(*_SEQ_COUNT.unpack_from(buffer, at)))
    if op == PONG or op == STATS_REPLY or op == TOPICS_REPLY:
        return Reply(op, flags, request_id, bytes(buffer[at:end]))
    if op == WELCOME:
        if size < 5:
            raise MalformedReply("a WELCOME ends early")
        return Reply(op, flags, request_id, Welcome(*_WELCOME.unpack_from(buffer, at)))
    if op == ERROR:
        if size < 2:
            raise MalformedReply("an ERROR ends early")
        (code,) = _U16.unpack_from(buffer, at)
        text = bytes(buffer[at + 2 : end]).decode("utf-8", "replace")
        return Reply(op, flags, request_id, ErrorReply(code, bool(flags & FLAG_FATAL), text))
    raise MalformedReply(f"unknown reply opcode 0x{op:02x}")
