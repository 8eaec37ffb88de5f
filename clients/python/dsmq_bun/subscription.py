"""A subscription: the messages of one topic (or pattern) as they are put, as an iterator."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Callable, Iterator

from .errors import ConnectionLost
from .frames import Message

if TYPE_CHECKING:
    from .connection import Connection


def is_pattern(topic: str) -> bool:
    """``+`` as a level (any one level) or ``#`` as the last level (that level and all below)."""
    levels = topic.split("/")
    return "+" in levels or levels[-1] == "#"


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """The server's pattern rule: ``a/b`` exact, ``a/#`` a and everything below, ``+`` one level."""
    levels = pattern.split("/")
    multi = levels[-1] == "#"
    fixed = levels[:-1] if multi else levels

    def matches(topic: str) -> bool:
        parts = topic.split("/")
        too_short_or_long = len(parts) < len(fixed) if multi else len(parts) != len(fixed)
        if too_short_or_long:
            return False
        return all(level == "+" or level == part for level, part in zip(fixed, parts))

    return matches


class Subscription:
    """Every message of ``topic`` this connection has not read yet, then each new one as it is
    put, in order, each once.

    Iterating blocks until the next message. The iterator stops after ``unsubscribe()`` or the
    client's ``close()``; when the connection is lost it first hands out the messages that
    arrived, then raises ``ConnectionLost`` (a ``ConnectionError``): it never just stops.
    ``get(timeout)`` is the same with a bound on the wait.
    """

    def __init__(self, connection: Connection, topic: str, unsubscribe: Callable[[Subscription], None]) -> None:
        self.topic = topic
        self.queue: deque[Message] = deque()
        self._connection = connection
        self._unsubscribe = unsubscribe
        self._matches = compile_pattern(topic) if is_pattern(topic) else None
        self._ended = False
        self._error: ConnectionLost | None = None

    @property
    def is_pattern(self) -> bool:
        return self._matches is not None

    @property
    def ended(self) -> bool:
        """True once no further message will come (those received may still be waiting)."""
        return self._ended

    def matches(self, topic: str) -> bool:
        return self._matches is not None and self._matches(topic)

    def get(self, timeout: float | None = None) -> Message | None:
        """The next message; None when ``timeout`` seconds pass first or the subscription ended.
        Raises ``ConnectionLost`` once the connection is gone and nothing is left."""
        connection = self._connection
        queue = self.queue
        if not queue and not self._ended:
            connection.wait(lambda: bool(queue) or self._ended, timeout)
        with connection.lock:
            if queue:
                connection.buffered_messages -= 1
                return queue.popleft()
            if self._error is not None:
                raise self._error
            return None

    def unsubscribe(self) -> None:
        """Stops the pushes; messages already received can still be taken."""
        if not self._ended:
            self._unsubscribe(self)

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        message = self.get()
        if message is None:
            raise StopIteration
        return message

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._ended and self._connection.failure is None:
            self.unsubscribe()

    def end(self, error: ConnectionLost | None) -> None:
        """Called by the connection (under its lock): no more messages will come."""
        self._ended = True
        self._error = error

    def __repr__(self) -> str:
        state = "ended" if self._ended else "live"
        return f"<Subscription {self.topic!r} {state}, {len(self.queue)} waiting>"
