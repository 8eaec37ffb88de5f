"""Byte streams under the client: plain TCP, or TLS kept in memory BIOs.

One thread may send while another receives. Callers serialize their sends (the connection's
send lock); receives are serialized by the connection's reader role. TLS goes through
``ssl.MemoryBIO`` rather than ``SSLSocket`` so that a send and a receive running at once touch
the TLS state only under a short lock, never while waiting on the network.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading

#: Bytes asked of the kernel per receive: a few hundred frames of small messages at once.
RECV_BYTES = 64 * 1024


def open_socket(host: str, port: int, timeout: float | None) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    # Requests are batched by the client itself; Nagle's delay would only add latency.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


class PlainTransport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> bytes | None:
        """Bytes received, b"" at the end of the stream, or None: ``timeout`` passed first (or, with
        TLS, only part of a record came)."""
        if timeout is not None and not _readable(self.sock, timeout):
            return None
        return self.sock.recv(RECV_BYTES)

    def recv_ready(self) -> bytes | None:
        """What has arrived already, without waiting: None when nothing has."""
        try:
            return self.sock.recv(RECV_BYTES, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None

    def end(self) -> None:
        """Says we will send nothing more (the server then finishes and closes its side)."""
        _shutdown(self.sock, socket.SHUT_WR)

    def abort(self) -> None:
        """Wakes any receive at once; the stream is unusable afterwards."""
        _shutdown(self.sock, socket.SHUT_RDWR)

    def close(self) -> None:
        self.sock.close()


class TlsTransport(PlainTransport):
    """TLS over a plain socket: records are made and read in memory, I/O happens outside the lock.

    Every read of the outgoing BIO happens together with its send under the caller's send lock,
    so records reach the wire in the order the TLS engine made them.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str | None) -> None:
        super().__init__(sock)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname)
        self._lock = threading.Lock()
        self._send_lock: threading.Lock | None = None

    def handshake(self, send_lock: threading.Lock) -> None:
        """Runs the TLS handshake (before any other use); ``send_lock`` is the connection's."""
        self._send_lock = send_lock
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self._outgoing.read())
                data = self.sock.recv(RECV_BYTES)
                if not data:
                    raise ConnectionResetError("the server closed the connection during the TLS handshake") from None
                self._incoming.write(data)
        self.sock.sendall(self._outgoing.read())

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        with self._lock:
            self._tls.write(data)
            records = self._outgoing.read()
        self.sock.sendall(records)

    def recv(self, timeout: float | None = None) -> bytes | None:
        raw = super().recv(timeout)
        return raw if raw is None else self._decrypt(raw)

    def recv_ready(self) -> bytes | None:
        raw = super().recv_ready()
        return raw if raw is None else self._decrypt(raw)

    def end(self) -> None:
        send_lock = self._send_lock
        if send_lock is not None and send_lock.acquire(timeout=1.0):
            try:
                with self._lock:
                    try:
                        self._tls.unwrap()  # queues close_notify; the peer's answer is not awaited
                    except (ssl.SSLError, ValueError):
                        pass
                    records = self._outgoing.read()
                try:
                    self.sock.sendall(records)
                except OSError:
                    pass
            finally:
                send_lock.release()
        super().end()

    def _decrypt(self, raw: bytes) -> bytes | None:
        """Plaintext of ``raw`` (b"" once the stream has ended: EOF, or the peer's close_notify)."""
        if not raw:
            return b""
        parts = []
        with self._lock:
            self._incoming.write(raw)
            while True:
                try:
                    parts.append(self._tls.read(RECV_BYTES))
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    return b""
            answer = self._outgoing.pending
        if answer:
            self._send_answer()
        # A partial record gives no plaintext yet: None, as for "nothing arrived".
        return b"".join(parts) or None

    def _send_answer(self) -> None:
        """Sends what reading made the TLS engine say (a key update), unless a send is under way:
        then that send takes it along, and waiting here could deadlock against it."""
        send_lock = self._send_lock
        if send_lock is None or not send_lock.acquire(blocking=False):
            return
        try:
            with self._lock:
                records = self._outgoing.read()
            self.sock.sendall(records)
        finally:
            send_lock.release()


def _readable(sock: socket.socket, timeout: float) -> bool:
    readable, _, _ = select.select([sock], [], [], max(0.0, timeout))
    return bool(readable)


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass
