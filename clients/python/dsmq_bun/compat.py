"""A drop-in for upstream dsmq 1.4's ``dsmq.client``: change one import line.

    from dsmq.client import connect      # before
    from dsmq_bun.compat import connect  # after

The same calls, arguments, return values (``""`` when there is nothing) and errors as
upstream's client, over the binary protocol on the server's TCP port (30008) instead of
JSON over WebSocket. Where upstream polled, this waits on the server: ``get_wait`` returns the
moment a message is put, with upstream's overall patience (about 10 s) unless given a timeout.

Differences, all on paths upstream never took successfully:
- a message body that is not a ``str`` is sent as its JSON text (upstream's server stored
  numbers as their text too), and what ``json.dumps`` refuses raises ``TypeError`` as upstream;
- a message over the server's ``--max-message-bytes`` raises ``MessageTooLarge`` before
  sending (upstream's server dropped the connection);
- ``shutdown_server()`` on a server started without ``--allow-shutdown`` raises
  ``ShutdownRefused``;
- after ``close()``, calls raise ``ClientClosed`` (a ``ConnectionError``) where upstream raised
  websockets' ``ConnectionClosedOK``.
"""

from __future__ import annotations

import json
import socket
import ssl
import time

from .client import Client
from .errors import ClientClosed, ConnectionLost, DsmqError, ERROR_CODES, ShutdownRefused

_default_host = "127.0.0.1"
_default_port = 30008

# As upstream: connecting is tried this many times, waiting _initial_retry * 2**i between tries,
# and get_wait's patience is what upstream's polling added up to (10.23 s).
_n_retries = 10
_initial_retry = 0.01  # seconds
#: How long shutdown_server waits for the server to close the connection it asked on.
_shutdown_timeout = 5.0  # seconds

_SHUTDOWN_REQUEST = b'{"action": "shutdown", "topic": ""}'


def connect(host=_default_host, port=_default_port, verbose=False, *, token=None, tls=None):
    """Connects to a dsmq server, retrying with back-off while it is not up; raises
    ``ConnectionRefusedError("Could not connect to dsmq server.")`` when it never comes."""
    return DSMQClientSideConnection(host, port, verbose=verbose, token=token, tls=tls)


class DSMQClientSideConnection:
    def __init__(self, host, port, verbose=False, *, token=None, tls=None):
        self.uri = f"tcp://{host}:{port}"
        self.host = host
        self.port = port
        self.verbose = verbose
        self._token = token
        self._tls = tls
        self._client = None
        # True once the server went away: reads then answer "" and puts do nothing, as upstream.
        self._lost = False
        self._closed = False
        if self.verbose:
            print(f"Connecting to dsmq server at {self.uri}")
        for i_retry in range(_n_retries):
            try:
                self._client = Client(host, port, token, tls, retries=0)
                break
            except ConnectionRefusedError:
                time.sleep(_initial_retry * 2**i_retry)
                if self.verbose:
                    print("    ...trying again")
        if self._client is None:
            raise ConnectionRefusedError("Could not connect to dsmq server.")
        self.time_of_last_request = time.time()

    def get(self, topic):
        """The oldest message on ``topic`` this connection has not read, or ``""``."""
        return self._read(lambda client: client.get(topic))

    def get_latest(self, topic):
        """The newest message on ``topic`` not read yet (older ones count as read), or ``""``."""
        return self._read(lambda client: client.get_latest(topic))

    def get_wait(self, topic, timeout=None):
        """Like ``get``, but waits on the server for a message to be put: up to ``timeout``
        seconds, by default as long as upstream's retries took (about 10 s). ``""`` if none."""
        patience = _initial_retry * (2**_n_retries - 1) if timeout is None else timeout
        return self._read(lambda client: client.get_wait(topic, patience))

    def put(self, topic, msg_body):
        """Puts ``msg_body`` on ``topic``. It is stored when this returns (upstream's
        ``time.sleep`` between a put and another client's get is no longer needed)."""
        body = msg_body if isinstance(msg_body, str) else json.dumps(msg_body)
        client = self._usable()
        if client is None:
            return
        try:
            client.put_ack(topic, body)
        except ClientClosed:
            raise
        except ConnectionLost:
            self._lost = True
        self.time_of_last_request = time.time()

    def shutdown_server(self):
        """Stops the server (it must run with ``--allow-shutdown``), once it has handled this
        connection's requests."""
        client = self._usable()
        if client is not None:
            try:
                client.ping()
            except ConnectionLost:
                self._lost = True
        # The binary protocol has no shutdown; upstream's JSON request on a connection of its own.
        with socket.create_connection((self.host, self.port), timeout=_shutdown_timeout) as raw:
            sock = self._wrap(raw)
            if self._token is not None:
                sock.sendall(json.dumps({"action": "auth", "token": self._token}).encode())
            sock.sendall(_SHUTDOWN_REQUEST)
            reply = _read_to_end(sock)
        if b"shutdown_refused" in reply:
            raise ShutdownRefused(
                "the server refused to shut down: start it with --allow-shutdown",
                ERROR_CODES["shutdown_refused"],
            )

    def close(self):
        """Closes the connection (puts already made are stored). Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._client.close()

    def _read(self, call):
        client = self._usable()
        if client is None:
            return ""
        try:
            message = call(client)
        except ClientClosed:
            raise
        except ConnectionLost:
            self._lost = True
            return ""
        self.time_of_last_request = time.time()
        return "" if message is None else message.text("replace")

    def _usable(self):
        """The client, None when the server went away, ClientClosed after close()."""
        if self._closed:
            raise ClientClosed("the connection was closed with close()")
        return None if self._lost else self._client

    def _wrap(self, raw):
        if self._tls is None or self._tls is False:
            return raw
        context = ssl.create_default_context() if self._tls is True else self._tls
        return context.wrap_socket(raw, server_hostname=self.host)


def _read_to_end(sock):
    """What the server sends until it closes the connection (bounded by the socket timeout)."""
    chunks = []
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    except (socket.timeout, ConnectionResetError, ssl.SSLError):
        pass
    return b"".join(chunks)


__all__ = ["DSMQClientSideConnection", "DsmqError", "connect"]
