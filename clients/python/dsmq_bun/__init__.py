"""dsmq_bun: a Python client for dsmq for Bun.

``dsmq_bun.Client`` / ``dsmq_bun.connect`` speak the binary protocol (pipelined puts, pushes,
acknowledgements, binary payloads); ``dsmq_bun.compat.connect`` is a drop-in for upstream
dsmq 1.4's ``dsmq.client.connect``. Standard library only.
"""

from .client import DEFAULT_HOST, DEFAULT_PORT, Client, connect
from .errors import (
    BadField,
    ClientClosed,
    ConnectionLost,
    DsmqError,
    Forbidden,
    MessageTooLarge,
    ShutdownRefused,
    Unauthorized,
)
from .frames import Message
from .subscription import Subscription

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "BadField",
    "Client",
    "ClientClosed",
    "ConnectionLost",
    "DsmqError",
    "Forbidden",
    "Message",
    "MessageTooLarge",
    "ShutdownRefused",
    "Subscription",
    "Unauthorized",
    "connect",
]
