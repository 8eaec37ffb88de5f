"""One connection to the server: the write buffer, the reader role, and who waits for what.

Writing: frames are appended to one buffer. A request that waits for its reply sends the
buffer at once from the calling thread; fire-and-forget puts leave it to a flusher thread,
which wakes when there is something to send and so writes whatever piled up meanwhile in one
``sendall`` (the batching comes for free from the GIL: the putting thread keeps running while
the flusher waits its turn).

Reading: there is no reader thread. Whoever waits (for a reply, or for a subscription's next
message) takes the reader role, receives, and hands every frame to its owner; the others wait
on a condition and one of them takes the role over when the reader is done. A caller waiting
for its own reply thus reads it itself, with no hand-over between threads. What nobody waits
for stays in the kernel's buffers, where the server's flow control sees it: a subscriber that
stops reading slows nobody and loses nothing. The flusher reads what has already arrived after
each write, so errors for fire-and-forget puts are reported even when nobody else reads.
"""

from __future__ import annotations

import itertools
import ssl
import struct
import threading
import time
from typing import TYPE_CHECKING, Callable

from . import frames
from .errors import ClientClosed, ConnectionLost, DsmqError, server_error
from .frames import DELIVER, ERROR, MalformedReply, Reply, read_reply

if TYPE_CHECKING:
    from .transport import PlainTransport
    from .subscription import Subscription

#: Bytes buffered before a put sends them itself rather than leave them to the flusher: bounds
#: what a fast producer can pile up in memory and makes it feel the socket's backpressure.
FLUSH_AT = 256 * 1024
#: Messages held for subscriptions that the application has not taken yet, past which the
#: flusher stops reading ahead (the server then keeps the rest in its store).
SUBSCRIPTION_BUFFER = 10_000
#: Chunks the flusher reads ahead per write, so it returns to writing soon.
DRAIN_CHUNKS = 16
#: Largest reply before WELCOME says the maximum frame; after it, replies may exceed the
#: maximum by their own fields (a MESSAGE is 8 bytes longer than its PUT), with room to spare.
FIRST_REPLY_BYTES = 64 * 1024
REPLY_SLACK_BYTES = 64 * 1024

_LENGTH = struct.Struct(">I")
_MAX_REQUEST_ID = 0xFFFFFFFF


class _Slot:
    """A request waiting for its reply."""

    __slots__ = ("reply", "error", "done")

    def __init__(self) -> None:
        self.reply: Reply | None = None
        self.error: DsmqError | None = None
        self.done = False


class Connection:
    def __init__(self, transport: PlainTransport, on_error: Callable[[DsmqError], None]) -> None:
        self.transport = transport
        self.max_frame_bytes = 0
        self._on_error = on_error
        self._ids = itertools.count()
        # Guards what follows; `cond` (on the same lock) is where threads wait for the reader.
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self._followers = 0
        self._reading = False
        self._closing = False
        self.failure: ConnectionLost | None = None
        self._pending: dict[int, _Slot] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._patterns: list[Subscription] = []
        self.buffered_messages = 0
        # Reassembly of a frame split across receives (only the reader touches these).
        self._parts: list[bytes] = []
        self._have = 0
        self._need = 4
        self._max_reply = FIRST_REPLY_BYTES
        # Writing: frames go into _buffer under _buffer_lock; _send_lock keeps sends in order.
        self.send_lock = threading.Lock()
        self._buffer_lock = threading.Lock()
        self._buffer = bytearray()
        self._wake = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="dsmq-flusher", daemon=True)
        self._flusher.start()

    def next_id(self) -> int:
        return next(self._ids) % _MAX_REQUEST_ID + 1

    def welcomed(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._max_reply = max_frame_bytes + REPLY_SLACK_BYTES

    # ------------------------------------------------------------------------- writing

    def write(self, header: bytes, field: bytes, payload: bytes) -> None:
        """Queues one frame given in parts (no copy of the payload but into the buffer)."""
        if self.failure is not None or self._closing:
            raise self._unusable()
        with self._buffer_lock:
            buffer = self._buffer
            buffer += header
            buffer += field
            buffer += payload
            size = len(buffer)
        if size >= FLUSH_AT:
            self.flush()
        elif not self._wake.is_set():
            self._wake.set()

    def flush(self) -> None:
        """Sends everything queued, from this thread."""
        with self.send_lock:
            with self._buffer_lock:
                data = self._buffer
                if not data:
                    return
                self._buffer = bytearray()
            try:
                self.transport.sendall(data)
            except (OSError, ssl.SSLError) as error:
                self.lose(ConnectionLost(f"sending to the server failed: {error}"))
                raise self._unusable() from error

    def _flush_loop(self) -> None:
        wake = self._wake
        while True:
            wake.wait()
            wake.clear()
            if self.failure is not None:
                return
            try:
                self.flush()
            except DsmqError:
                return
            self._read_ahead()

    # ------------------------------------------------------------------------- requests

    def request(self, request_id: int, data: bytes, timeout: float | None = None) -> Reply:
        """Sends one request (after everything queued before it) and returns its reply.
        Raises TimeoutError when ``timeout`` seconds pass first."""
        if self._closing:
            raise self._unusable()
        return self._round_trip(request_id, data, timeout)

    def _round_trip(self, request_id: int, data: bytes, timeout: float | None) -> Reply:
        slot = _Slot()
        with self.lock:
            if self.failure is not None:
                raise self.failure
            self._pending[request_id] = slot
        with self.send_lock:
            # Behind the puts still queued, in the same write.
            with self._buffer_lock:
                if self._buffer:
                    self._buffer += data
                    data = self._buffer
                    self._buffer = bytearray()
            try:
                self.transport.sendall(data)
            except (OSError, ssl.SSLError) as error:
                self.lose(ConnectionLost(f"sending to the server failed: {error}"))
                raise self._unusable() from error
        with self.lock:
            lead = not self._reading
            if lead:
                self._reading = True
        if lead:
            errors: list[DsmqError] = []
            try:
                self._read_reply(request_id, slot, timeout, errors)
            finally:
                with self.lock:
                    self._reading = False
                    if self._followers:
                        self.cond.notify_all()
            self._report(errors)
        else:
            self.wait(lambda: slot.done, timeout)
        if not slot.done:
            with self.lock:
                self._pending.pop(request_id, None)
            raise TimeoutError(f"no reply within {timeout} s")
        if slot.error is not None:
            raise slot.error
        assert slot.reply is not None
        return slot.reply

    def _read_reply(self, request_id: int, slot: _Slot, timeout: float | None, errors: list[DsmqError]) -> None:
        """Reads (holding the reader role) until ``slot`` has its reply. Most often the next
        chunk is that reply and nothing else: it is then read on a short path."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._parts:
            try:
                data = self.transport.recv(timeout)
            except (OSError, ssl.SSLError) as error:
                self.lose(self._lost(f"receiving from the server failed: {error}"))
                return
            if data == b"":
                self.lose(self._lost("the server closed the connection"))
                return
            if data is not None:
                if len(data) >= frames.HEADER_BYTES and data[4] != DELIVER and data[4] != ERROR:
                    length, _, _, reply_to = frames.HEADER.unpack_from(data)
                    if reply_to == request_id and length + 4 == len(data):
                        try:
                            reply = read_reply(data)
                        except MalformedReply as error:
                            self.lose(_fatal(error))
                            return
                        with self.lock:
                            if self._pending.pop(request_id, None) is slot:
                                slot.reply = reply
                                slot.done = True
                        return
                with self.lock:
                    self._feed(data, errors)
                    if self._followers:
                        self.cond.notify_all()
                    if slot.done or self.failure is not None:
                        return
        self._read_until(lambda: slot.done, deadline, errors)

    def add_subscription(self, subscription: Subscription, is_pattern: bool) -> None:
        with self.lock:
            if self.failure is not None or self._closing:
                raise self._unusable()
            if subscription.topic in self._subscriptions:
                raise ValueError(f"already subscribed to {subscription.topic!r} on this connection")
            self._subscriptions[subscription.topic] = subscription
            if is_pattern:
                self._patterns.append(subscription)

    def remove_subscription(self, subscription: Subscription) -> bool:
        with self.lock:
            if self._subscriptions.get(subscription.topic) is not subscription:
                return False
            del self._subscriptions[subscription.topic]
            if subscription in self._patterns:
                self._patterns.remove(subscription)
            return True

    # ------------------------------------------------------------------------- reading

    def wait(self, ready: Callable[[], bool], timeout: float | None = None) -> None:
        """Returns once ``ready()`` (checked under ``lock``), the connection is lost, or
        ``timeout`` seconds passed, reading from the socket if nobody else is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while True:
                if ready() or self.failure is not None:
                    return
                if not self._reading:
                    self._reading = True
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                self._followers += 1
                try:
                    self.cond.wait(remaining)
                finally:
                    self._followers -= 1
        errors: list[DsmqError] = []
        try:
            self._read_until(ready, deadline, errors)
        finally:
            with self.lock:
                self._reading = False
                if self._followers:
                    self.cond.notify_all()
        self._report(errors)

    def _report(self, errors: list[DsmqError]) -> None:
        """Hands errors nobody waited for to ``on_error``, outside the reader role, so that the
        callback may itself make requests."""
        for error in errors:
            self._on_error(error)

    def _read_until(self, ready: Callable[[], bool], deadline: float | None, errors: list[DsmqError]) -> None:
        lock = self.lock
        receive = self.transport.recv
        while True:
            remaining = None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
            try:
                data = receive(remaining)
            except (OSError, ssl.SSLError) as error:
                self.lose(self._lost(f"receiving from the server failed: {error}"))
                return
            if data is None:
                continue
            if not data:
                self.lose(self._lost("the server closed the connection"))
                return
            with lock:
                self._feed(data, errors)
                if self._followers:
                    self.cond.notify_all()
                if ready() or self.failure is not None:
                    return

    def _read_ahead(self) -> None:
        """Takes in what has already arrived, without waiting, when nobody is reading."""
        with self.lock:
            if self._reading or self.failure is not None or self.buffered_messages >= SUBSCRIPTION_BUFFER:
                return
            self._reading = True
        errors: list[DsmqError] = []
        try:
            for _ in range(DRAIN_CHUNKS):
                try:
                    data = self.transport.recv_ready()
                except (OSError, ssl.SSLError) as error:
                    self.lose(self._lost(f"receiving from the server failed: {error}"))
                    return
                if data is None:
                    return
                if not data:
                    self.lose(self._lost("the server closed the connection"))
                    return
                with self.lock:
                    self._feed(data, errors)
        finally:
            with self.lock:
                self._reading = False
                if self._followers:
                    self.cond.notify_all()
        self._report(errors)

    def _feed(self, data: bytes, errors: list[DsmqError]) -> None:
        """Splits received bytes into frames and dispatches them (under ``lock``)."""
        if self._parts:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            buffer = b"".join(self._parts)
            self._parts = []
        else:
            buffer = data
        position = 0
        size = len(buffer)
        need = 4
        unpack_length = _LENGTH.unpack_from
        while size - position >= 4:
            (length,) = unpack_length(buffer, position)
            if length < frames.MIN_LENGTH or length > self._max_reply:
                self._lose_locked(_fatal(MalformedReply(f"a frame length of {length} bytes")))
                return
            end = position + 4 + length
            if end > size:
                need = 4 + length
                break
            self._dispatch(buffer, position, end, errors)
            if self.failure is not None:
                return
            position = end
        if position < size:
            rest = buffer[position:]
            self._parts = [rest]
            self._have = len(rest)
            self._need = need

    def _dispatch(self, buffer: bytes, start: int, end: int, errors: list[DsmqError]) -> None:
        try:
            reply = read_reply(buffer, start, end)
        except MalformedReply as error:
            self._lose_locked(_fatal(error))
            return
        if reply.op == DELIVER:
            message = reply.value
            subscription = self._subscriptions.get(message.topic)  # type: ignore[union-attr]
            if subscription is None:
                subscription = self._match(message.topic)  # type: ignore[union-attr]
            # After unsubscribe, pushes already on the wire are dropped.
            if subscription is not None:
                subscription.queue.append(message)
                self.buffered_messages += 1
            return
        slot = self._pending.pop(reply.request_id, None)
        if reply.op == ERROR:
            info = reply.value
            error = server_error(info.code, info.text, info.fatal)  # type: ignore[union-attr]
            if slot is not None:
                slot.error = error
                slot.done = True
            else:
                errors.append(error)
            if error.fatal:
                self._lose_locked(_fatal(error))
            return
        if slot is not None:
            slot.reply = reply
            slot.done = True

    def _match(self, topic: str) -> Subscription | None:
        for subscription in self._patterns:
            if subscription.matches(topic):
                return subscription
        return None

    # ------------------------------------------------------------------------- closing

    def close(self, timeout: float) -> None:
        """Sends what is queued and waits (up to ``timeout``) until the server has run it, then
        tells the server we are done and waits for it to close: every put sent is then stored.

        The round trip comes first because the server drops requests it has received but not
        yet run when the client half-closes (it runs a few dozen per turn)."""
        with self.lock:
            if self.failure is not None or self._closing:
                already = True
            else:
                already = False
                self._closing = True
        if not already:
            deadline = time.monotonic() + timeout
            request_id = self.next_id()
            try:
                self._round_trip(request_id, frames.ping(request_id), timeout)
            except (DsmqError, TimeoutError):
                pass
            self.transport.end()
            self.wait(lambda: False, max(0.0, deadline - time.monotonic()))
            self.lose(ClientClosed("the client was closed"))
        self._wake.set()
        self.transport.close()

    def lose(self, error: ConnectionLost) -> None:
        with self.lock:
            self._lose_locked(error)

    def _lose_locked(self, error: ConnectionLost) -> None:
        if self.failure is not None:
            return
        self.failure = error
        for slot in self._pending.values():
            slot.error = error
            slot.done = True
        self._pending.clear()
        for subscription in self._subscriptions.values():
            subscription.end(None if isinstance(error, ClientClosed) else error)
        self._subscriptions.clear()
        self._patterns.clear()
        self._wake.set()
        self.transport.abort()
        self.cond.notify_all()

    def _lost(self, text: str) -> ConnectionLost:
        return ClientClosed("the client was closed") if self._closing else ConnectionLost(text)

    def _unusable(self) -> ConnectionLost:
        return self.failure if self.failure is not None else ClientClosed("the client is closing")


def _fatal(error: DsmqError) -> ConnectionLost:
    """The connection's end because of ``error`` (a fatal ERROR, or a frame that makes no sense)."""
    lost = ConnectionLost(f"the connection ended: {error}", error.code, True)
    lost.__cause__ = error
    return lost
