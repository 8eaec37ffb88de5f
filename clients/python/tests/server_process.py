"""The server as a user runs it, ``bun run src/server.ts``, in a child process on free ports."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import time

REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SERVER = os.path.join(REPOSITORY, "src", "server.ts")
#: Bun's start-up on a busy two-core machine can take a few seconds.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
ADDRESS = re.compile(r"(?:tcp|tls)://([^\s,]+):(\d+)")
HTTP_ADDRESS = re.compile(r"https?://[^\s,]+:(\d+)")


class ServerProcess:
    """Starts on construction and returns once the server has printed its address line."""

    def __init__(self, *args: str, port: int = 0, env: dict[str, str] | None = None) -> None:
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            ["bun", "run", SERVER, "--port", str(port), "--http-port", "0", *args],
            cwd=REPOSITORY,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, **(env or {})},
        )
        self.first_line = self._read_first_line()
        match = ADDRESS.search(self.first_line)
        if match is None:
            self.stop()
            raise RuntimeError(f"no address in the server's first line: {self.first_line!r}")
        self.host = match.group(1)
        self.port = int(match.group(2))
        http = HTTP_ADDRESS.search(self.first_line)
        self.http_port = int(http.group(1)) if http else None

    def _read_first_line(self) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        text = b""
        while b"\n" not in text:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise TimeoutError(f"the server printed no address within {START_TIMEOUT} s")
            readable, _, _ = select.select([self.process.stdout], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:
                self.process.wait(STOP_TIMEOUT)
                raise RuntimeError(f"the server exited before printing its address: {self.stderr()}")
            text += chunk
        return text.split(b"\n", 1)[0].decode()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        """Gone at once, as after a crash: no goodbye to its clients."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def free_port() -> int:
    """A port nobody listens on right now (for a server that must come back on the same one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
