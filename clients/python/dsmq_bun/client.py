"""The fast API: the binary protocol (docs/PROTOCOL.md) from Python.

    with dsmq_bun.connect(port=30008) as client:
        updates = client.subscribe("sensors/temp")
        client.put("sensors/temp", b"21.5")          # fire and forget, pipelined
        seq = client.put_ack("sensors/temp", "21.6")  # returns once stored
        for message in updates:
            print(message.seq, message.topic, message.text())
            if message.seq == seq:
                break
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from typing import Callable, Iterable, Union

from . import frames
from .connection import Connection
from .errors import ClientClosed, ConnectionLost, DsmqError, ERROR_CODES, MessageTooLarge
from .frames import HEADER, Message, MalformedReply, Reply
from .subscription import Subscription, is_pattern
from .transport import PlainTransport, TlsTransport, open_socket

Payload = Union[bytes, bytearray, memoryview, str]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 30008
#: Topics whose encoded form is kept, so a put of a known topic encodes only its payload.
TOPIC_CACHE_SIZE = 4096
#: Errors worth another attempt at connecting: the server is not up (yet, or again).
RETRYABLE = (ConnectionRefusedError, ConnectionResetError, TimeoutError)

log = logging.getLogger("dsmq_bun")


def _log_error(error: DsmqError) -> None:
    log.error("the server refused a request nobody waited for: %s", error)


def connect(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None, tls: bool | ssl.SSLContext | None = None, **options: object) -> Client:
    """The same as ``Client(...)``."""
    return Client(host, port, token, tls, **options)  # type: ignore[arg-type]


class Client:
    """A connection to a dsmq server over the binary protocol.

    ``token``: presented in HELLO when the server has tokens. ``tls``: True (verify against the
    system's CAs) or an ``ssl.SSLContext``. ``cursor``: read through the server's named cursor
    of that name (resumes where the last connection with the name stopped). ``retries`` and
    ``retry_delay`` (doubled per attempt up to ``max_retry_delay``) apply while the server is
    not up; with ``reconnect=True`` a call after the connection was lost connects again the
    same way (requests in flight when it was lost raise ``ConnectionLost``, and subscriptions
    end with it: subscribe again). ``on_error`` receives errors for requests nobody waits for
    (a refused ``put``); by default they are logged to the "dsmq_bun" logger.

    One thread may write while another reads (iterates a subscription, waits in ``get_wait``);
    any mix of threads is safe.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        token: str | None = None,
        tls: bool | ssl.SSLContext | None = None,
        *,
        cursor: str | None = None,
        reconnect: bool = False,
        retries: int = 10,
        retry_delay: float = 0.01,
        max_retry_delay: float = 1.0,
        connect_timeout: float = 10.0,
        server_hostname: str | None = None,
        on_error: Callable[[DsmqError], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._token = token
        self._tls = _tls_context(tls)
        self._server_hostname = server_hostname or host
        self._cursor = cursor
        self._reconnect = reconnect
        self._retries = retries
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._connect_timeout = connect_timeout
        self._on_error = on_error or _log_error
        self._topic_fields: dict[str, bytes] = {}
        self._reconnect_lock = threading.Lock()
        self._closed = False
        self._connection = self._connect()

    # ------------------------------------------------------------------------- properties

    @property
    def max_frame_bytes(self) -> int:
        """Largest frame the server accepts (from its WELCOME)."""
        return self._connection.max_frame_bytes

    @property
    def closed(self) -> bool:
        """True after ``close()``, or once the connection is lost (and ``reconnect`` is off)."""
        return self._closed or (self._connection.failure is not None and not self._reconnect)

    # ------------------------------------------------------------------------- puts

    def put(self, topic: str, payload: Payload) -> None:
        """Puts a message without waiting: many go out in one write. Errors go to ``on_error``."""
        field = self._topic_fields.get(topic) or self._topic_field(topic)
        body = _bytes(payload)
        length = frames.MIN_LENGTH + len(field) + len(body)
        connection = self._connection
        if connection.failure is not None:
            connection = self._live()
        if length > connection.max_frame_bytes:
            raise _too_large(length, connection.max_frame_bytes)
        connection.write(HEADER.pack(length, frames.PUT, 0, connection.next_id()), field, body)

    def put_ack(self, topic: str, payload: Payload) -> int:
        """Puts a message and returns its sequence number once the server has stored it."""
        field = self._topic_field(topic)
        body = _bytes(payload)
        ack = self._request(lambda rid: frames.frame(frames.PUT, frames.FLAG_ACK, rid, field + body), frames.PUT_ACK)
        return ack.value.seq  # type: ignore[union-attr]

    def put_many(self, entries: Iterable[tuple[str, Payload]]) -> None:
        """Puts many messages in one frame, stored in one transaction, without waiting."""
        connection = self._live()
        data = self._check_size(frames.put_many(connection.next_id(), _entries(entries)), connection)
        header = data[: frames.HEADER_BYTES]
        connection.write(header, b"", data[frames.HEADER_BYTES :])

    def put_many_ack(self, entries: Iterable[tuple[str, Payload]]) -> range:
        """Puts many messages in one transaction; returns their sequence numbers."""
        listed = _entries(entries)
        ack = self._request(lambda rid: frames.put_many(rid, listed, ack=True), frames.PUT_ACK)
        first, count = ack.value  # type: ignore[misc]
        return range(first, first + count)

    def flush(self) -> None:
        """Sends the puts still buffered now, from this thread."""
        self._live().flush()

    # ------------------------------------------------------------------------- reads

    def get(self, topic: str) -> Message | None:
        """The oldest message on ``topic`` this connection has not read, or None."""
        return self._message(frames.GET, topic)

    def get_latest(self, topic: str) -> Message | None:
        """The newest unread message on ``topic`` (older ones count as read), or None."""
        return self._message(frames.GET_LATEST, topic)

    def get_wait(self, topic: str, timeout: float = 10.0) -> Message | None:
        """Like ``get``, but the server waits up to ``timeout`` seconds (at most 3600) for a
        message to be put; None when none came."""
        timeout_ms = max(0, round(timeout * 1000))
        field = self._topic_field(topic)
        if timeout_ms > frames.MAX_WAIT_MS:
            raise ValueError(f"a get_wait timeout is at most {frames.MAX_WAIT_MS // 1000} s, not {timeout}")
        reply = self._request(lambda rid: frames.frame(frames.GET_WAIT, 0, rid, timeout_ms.to_bytes(4, "big") + field))
        return _message_of(reply)

    def subscribe(self, topic: str) -> Subscription:
        """Every unread and then every new message of ``topic``, pushed as it is put.

        A topic with ``+`` or ``#`` levels is a pattern: its messages are routed by name
        on this side, so patterns work as soon as the server accepts them.
        """
        field = self._topic_field(topic)
        connection = self._live()
        subscription = Subscription(connection, topic, self._unsubscribe)
        connection.add_subscription(subscription, is_pattern(topic))
        try:
            rid = connection.next_id()
            _expect(connection.request(rid, frames.frame(frames.SUBSCRIBE, 0, rid, field)), frames.OK)
        except BaseException:
            connection.remove_subscription(subscription)
            raise
        return subscription

    # ------------------------------------------------------------------------- other requests

    def ping(self, body: bytes = b"") -> float:
        """A round trip; returns its seconds. When it returns, every request sent before it
        has been handled (replies come in order)."""
        started = time.perf_counter()
        reply = self._request(lambda rid: frames.ping(rid, body), frames.PONG)
        if reply.value != body:
            raise MalformedReply("PONG does not carry the PING's bytes")
        return time.perf_counter() - started

    def stats(self) -> dict[str, object]:
        """The server's counters (connections, puts, deliveries, stored messages, ...)."""
        reply = self._request(frames.stats, frames.STATS_REPLY)
        return json.loads(reply.value)  # type: ignore[arg-type]

    def topics(self, pattern: str | None = None, limit: int = 1000, after: str = "") -> dict[str, object]:
        """One page of the topic catalogue: ``{"topics": [{"topic", "messages", "bytes", "firstSeq",
        "lastSeq", "lastPutAt", "subscribers"}, ...], "next": NAME}`` (``next`` only when more
        follow: pass it as ``after``). Only topics this client may read; ``pattern`` narrows them."""
        reply = self._request(lambda rid: frames.topics(rid, limit, after, pattern), frames.TOPICS_REPLY)
        return json.loads(reply.value)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------- closing

    def close(self, timeout: float = 5.0) -> None:
        """Sends what is buffered, lets the server answer what it got, and closes (waiting at
        most ``timeout`` seconds). Puts sent before are then stored. Calling it again is a no-op."""
        self._closed = True
        self._connection.close(timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<dsmq_bun.Client {self.host}:{self.port} {state}>"

    # ------------------------------------------------------------------------- internals

    def _connect(self) -> Connection:
        delay = self._retry_delay
        for attempt in range(self._retries + 1):
            try:
                return self._open()
            except RETRYABLE:
                if attempt == self._retries:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, self._max_retry_delay)
        raise AssertionError("unreachable")

    def _open(self) -> Connection:
        sock = open_socket(self.host, self.port, self._connect_timeout)
        try:
            if self._tls is None:
                transport = PlainTransport(sock)
            else:
                transport = TlsTransport(sock, self._tls, self._server_hostname)
            connection = Connection(transport, self._on_error)
        except BaseException:
            sock.close()
            raise
        try:
            if isinstance(transport, TlsTransport):
                transport.handshake(connection.send_lock)
            rid = connection.next_id()
            hello = frames.hello(rid, self._token)
            welcome = _expect(connection.request(rid, hello, self._connect_timeout), frames.WELCOME)
            version, max_frame_bytes = welcome.value  # type: ignore[misc]
            if version != frames.VERSION:
                raise MalformedReply(f"the server answered HELLO with version {version}")
            connection.welcomed(max_frame_bytes)
            if self._cursor is not None:
                rid = connection.next_id()
                _expect(connection.request(rid, frames.cursor(rid, self._cursor)), frames.OK)
        except BaseException:
            connection.close(0)
            raise
        return connection

    def _live(self) -> Connection:
        """The connection, connected again first if it was lost and ``reconnect`` is on."""
        connection = self._connection
        if connection.failure is None and not self._closed:
            return connection
        if self._closed:
            raise ClientClosed("the client was closed")
        if not self._reconnect or isinstance(connection.failure, ClientClosed):
            raise connection.failure  # type: ignore[misc]
        with self._reconnect_lock:
            if self._connection is connection:
                connection.close(0)  # releases the socket of the lost connection
                self._connection = self._connect()
            return self._connection

    def _request(self, build: Callable[[int], bytes], expected: int | None = None) -> Reply:
        connection = self._live()
        rid = connection.next_id()
        reply = connection.request(rid, self._check_size(build(rid), connection))
        return reply if expected is None else _expect(reply, expected)

    def _message(self, op: int, topic: str) -> Message | None:
        # The hot path of a round trip, so without the generic _request's indirections.
        field = self._topic_fields.get(topic) or self._topic_field(topic)
        connection = self._connection
        if connection.failure is not None or self._closed:
            connection = self._live()
        rid = connection.next_id()
        reply = connection.request(rid, HEADER.pack(frames.MIN_LENGTH + len(field), op, 0, rid) + field)
        if reply.op == frames.EMPTY:
            return None
        return _expect(reply, frames.MESSAGE).value  # type: ignore[return-value]

    def _unsubscribe(self, subscription: Subscription) -> None:
        connection = subscription._connection  # noqa: SLF001 - the subscription's own connection
        if not connection.remove_subscription(subscription):
            return
        with connection.lock:
            subscription.end(None)
        if connection.failure is None:
            rid = connection.next_id()
            field = self._topic_field(subscription.topic)
            _expect(connection.request(rid, frames.frame(frames.UNSUBSCRIBE, 0, rid, field)), frames.OK)

    def _topic_field(self, topic: str) -> bytes:
        field = self._topic_fields.get(topic)
        if field is None:
            field = frames.topic_field(topic)
            if len(self._topic_fields) >= TOPIC_CACHE_SIZE:
                self._topic_fields.clear()
            self._topic_fields[topic] = field
        return field

    @staticmethod
    def _check_size(data: bytes, connection: Connection) -> bytes:
        length = len(data) - 4
        if length > connection.max_frame_bytes > 0:
            raise _too_large(length, connection.max_frame_bytes)
        return data


def _tls_context(tls: bool | ssl.SSLContext | None) -> ssl.SSLContext | None:
    if tls is None or tls is False:
        return None
    if tls is True:
        return ssl.create_default_context()
    if isinstance(tls, ssl.SSLContext):
        return tls
    raise TypeError(f"tls must be True, False, None or an ssl.SSLContext, not {type(tls).__name__}")


def _bytes(payload: Payload) -> bytes:
    if isinstance(payload, (bytes, bytearray)):
        return payload  # type: ignore[return-value]
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, memoryview):
        return payload.tobytes()
    raise TypeError(f"a payload is bytes or str, not {type(payload).__name__}")


def _entries(entries: Iterable[tuple[str, Payload]]) -> list[tuple[str, bytes]]:
    return [(topic, _bytes(payload)) for topic, payload in entries]


def _too_large(length: int, maximum: int) -> MessageTooLarge:
    return MessageTooLarge(
        f"a frame of {length} bytes is larger than the server's maximum of {maximum}: nothing was sent",
        ERROR_CODES["too_large"],
    )


def _expect(reply: Reply, op: int) -> Reply:
    if reply.op != op:
        raise MalformedReply(f"reply opcode 0x{reply.op:02x} where 0x{op:02x} was expected")
    return reply


def _message_of(reply: Reply) -> Message | None:
    if reply.op == frames.EMPTY:
        return None
    return _expect(reply, frames.MESSAGE).value  # type: ignore[return-value]


__all__ = ["Client", "ConnectionLost", "connect"]
