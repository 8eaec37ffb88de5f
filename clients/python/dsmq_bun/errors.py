"""Exceptions, with the server's stable error codes (docs/PROTOCOL.md, "Errors")."""

from __future__ import annotations

#: Code numbers as in ERROR frames, by their stable names.
ERROR_CODES: dict[str, int] = {
    "malformed_frame": 1,
    "too_large": 2,
    "bad_json": 3,
    "not_an_object": 4,
    "unknown_action": 5,
    "bad_field": 6,
    "shutdown_refused": 7,
    "unsupported_version": 8,
    "topic_full": 9,
    "store_full": 10,
    "cursor_busy": 11,
    "unauthorized": 12,
    "forbidden": 13,
    "limit_exceeded": 14,
}
ERROR_NAMES: dict[int, str] = {code: name for name, code in ERROR_CODES.items()}


class DsmqError(Exception):
    """An error the server reported, or one the client found before sending.

    ``code`` is the numeric code of ERROR frames (``None`` for a lost connection),
    ``code_name`` its stable name (``"bad_field"``), ``fatal`` whether the server closed
    the connection after it.
    """

    def __init__(self, text: str, code: int | None = None, fatal: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.code_name = ERROR_NAMES.get(code, "unknown") if code is not None else None
        self.fatal = fatal

    def __str__(self) -> str:
        return self.text if self.code_name is None else f"{self.code_name}: {self.text}"


class ConnectionLost(DsmqError, ConnectionError):
    """The connection is gone (the server closed it, went away, or sent a fatal error).

    Requests that were waiting for a reply raise it, and so does a subscription once it has
    handed out the messages that arrived before the loss.
    """


class ClientClosed(ConnectionLost):
    """The client was closed by its own ``close()``; it cannot be used any more."""


class MessageTooLarge(DsmqError, ValueError):
    """A request larger than the server's maximum frame: refused before anything was sent."""


class BadField(DsmqError, ValueError):
    """A field the server would refuse (a topic too long, with a control character, ...)."""


class Unauthorized(DsmqError, PermissionError):
    """Tokens are configured and this client's token is missing or not valid (fatal)."""


class Forbidden(DsmqError, PermissionError):
    """The token may not read or write this topic."""


class ShutdownRefused(DsmqError, PermissionError):
    """``shutdown`` asked of a server not started with ``--allow-shutdown``."""


_BY_CODE: dict[int, type[DsmqError]] = {
    ERROR_CODES["too_large"]: MessageTooLarge,
    ERROR_CODES["bad_field"]: BadField,
    ERROR_CODES["unauthorized"]: Unauthorized,
    ERROR_CODES["forbidden"]: Forbidden,
    ERROR_CODES["shutdown_refused"]: ShutdownRefused,
}


def server_error(code: int, text: str, fatal: bool) -> DsmqError:
    """The exception for an ERROR frame: a subclass where one names the code, else DsmqError."""
    return _BY_CODE.get(code, DsmqError)(text, code, fatal)
