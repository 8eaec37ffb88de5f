#!/usr/bin/env python3
"""The Python client's numbers, beside upstream's pattern and the machine's floor (about 30 s).

    python3 bench/python/bench.py                 # starts its own server and echo server
    python3 bench/python/bench.py --json out.json # also writes the results as JSON
    python3 bench/python/bench.py --quick         # smaller phases, a smoke run

What it measures, each against `bun run src/server.ts` on free ports:

- puts/s from one Python thread, pipelined (`Client.put`, then one `ping` to know all were
  stored), and with `put_many` batches of 100;
- get round trip p50/p99 (`Client.get` of a stored message);
- push delivery rate to a Python subscriber (a writer process puts with `put_many`);
- upstream's pattern: JSON text over the server's WebSocket port, one round trip per get and
  one message per put, as dsmq 1.4's client does (here with a minimal standard-library
  WebSocket client, so the number is a floor for that pattern, not upstream's own cost);
- the floor: a raw Python socket round trip to a Bun echo server (bench/load/echo-server.ts)
  with a get's bytes, taken in turn with the gets so both see the same machine.

Targets: at least 100,000 puts/s from one thread; get p50 within 1.5x the echo floor's p50.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import dsmq_bun  # noqa: E402

PUT_TARGET = 100_000
RTT_RATIO_TARGET = 1.5
#: Payload of every put: 16 bytes, as the load scenarios of bench/load use small messages.
PAYLOAD = b"0123456789abcdef"
START_TIMEOUT = 60.0


def start(command: list[str], pattern: str) -> tuple[subprocess.Popen, re.Match]:
    """Starts a child and waits (bounded) for the line that says where it listens."""
    child = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    text = b""
    while b"\n" not in text:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or child.poll() is not None:
            child.kill()
            raise RuntimeError(f"{command[2]} did not start")
        if select.select([child.stdout], [], [], remaining)[0]:
            text += os.read(child.stdout.fileno(), 4096)
    match = re.search(pattern, text.decode())
    if match is None:
        child.kill()
        raise RuntimeError(f"no address in {text!r}")
    return child, match


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_us": ordered[len(ordered) // 2] * 1e6, "p99_us": ordered[int(len(ordered) * 0.99)] * 1e6}


# ----------------------------------------------------------------------------- dsmq_bun


def put_rate(port: int, count: int) -> float:
    with dsmq_bun.connect(port=port) as client:
        client.ping()
        started = time.perf_counter()
        for _ in range(count):
            client.put("bench/puts", PAYLOAD)
        client.ping()
        return count / (time.perf_counter() - started)


def put_many_rate(port: int, count: int, batch: int = 100) -> float:
    entries = [("bench/batched", PAYLOAD)] * batch
    with dsmq_bun.connect(port=port) as client:
        client.ping()
        started = time.perf_counter()
        for _ in range(count // batch):
            client.put_many(entries)
        client.ping()
        return count / (time.perf_counter() - started)


def get_round_trips(port: int, echo_port: int, count: int) -> tuple[dict[str, float], dict[str, float]]:
    """Get round trips and the echo floor's, one of each in turn, so that both see the same
    machine (an idle machine wakes up more slowly than a busy one; other work comes and goes)."""
    request = dsmq_bun.frames.topic_request(dsmq_bun.frames.GET, 1, "bench/gets")
    echo = socket.create_connection(("127.0.0.1", echo_port))
    echo.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with dsmq_bun.connect(port=port) as reader, dsmq_bun.connect(port=port) as writer:
        reader.ping()
        for _ in range(count):
            writer.put("bench/gets", PAYLOAD)
        writer.ping()
        gets, floor = [], []
        for _ in range(count):
            started = time.perf_counter()
            message = reader.get("bench/gets")
            gets.append(time.perf_counter() - started)
            assert message is not None and message.payload == PAYLOAD
            started = time.perf_counter()
            echo.sendall(request)
            got = 0
            while got < len(request):
                got += len(echo.recv(65536))
            floor.append(time.perf_counter() - started)
    echo.close()
    return percentiles(gets), percentiles(floor)


def push_rate(port: int, count: int) -> float:
    with dsmq_bun.connect(port=port) as reader:
        subscription = reader.subscribe("bench/push")
        writer = subprocess.Popen([sys.executable, __file__, "--writer", str(port), str(count)], cwd=ROOT)
        try:
            first = subscription.get(START_TIMEOUT)
            assert first is not None, "no push came"
            started = time.perf_counter()
            for _ in range(count - 1):
                assert subscription.get(START_TIMEOUT) is not None, "a push did not come"
            elapsed = time.perf_counter() - started
        finally:
            writer.wait(START_TIMEOUT)
        return (count - 1) / elapsed


def writer_process(port: int, count: int) -> None:
    """The push phase's writer, in a process of its own so it does not share the GIL."""
    batch = 500
    with dsmq_bun.connect(port=port) as client:
        for _ in range(count // batch):
            client.put_many([("bench/push", PAYLOAD)] * batch)


# ----------------------------------------------------------------------------- upstream's pattern


class MinimalWebSocket:
    """Text frames over a WebSocket, standard library only: what upstream's client does per call."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"WebSocket upgrade refused: {head[:80]!r}")

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        size = len(payload)
        header = bytes([0x81, 0x80 | size]) if size < 126 else bytes([0x81, 0x80 | 126]) + struct.pack(">H", size)
        repeated = (mask * (size // 4 + 1))[:size]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(size, "big")
        self.sock.sendall(header + mask + masked)

    def recv_text(self) -> str:
        while True:
            if len(self.buffer) >= 2:
                size = self.buffer[1] & 0x7F
                at = 2
                if size == 126:
                    size, at = struct.unpack_from(">H", self.buffer, 2)[0], 4
                elif size == 127:
                    size, at = struct.unpack_from(">Q", self.buffer, 2)[0], 10
                if len(self.buffer) >= at + size:
                    payload, self.buffer = self.buffer[at : at + size], self.buffer[at + size :]
                    return payload.decode()
            self.buffer += self.sock.recv(65536)

    def close(self) -> None:
        self.sock.close()


def websocket_put_rate(http_port: int, count: int) -> float:
    ws = MinimalWebSocket(http_port)
    message = PAYLOAD.decode()
    started = time.perf_counter()
    for _ in range(count):
        ws.send_text(json.dumps({"action": "put", "topic": "bench/ws-puts", "message": message}))
    # One get answered means every put before it was run.
    ws.send_text(json.dumps({"action": "get", "topic": "bench/none"}))
    ws.recv_text()
    elapsed = time.perf_counter() - started
    ws.close()
    return count / elapsed


def websocket_round_trips(http_port: int, count: int) -> dict[str, float]:
    writer, reader = MinimalWebSocket(http_port), MinimalWebSocket(http_port)
    reader.send_text(json.dumps({"action": "get", "topic": "bench/ws-gets"}))
    reader.recv_text()
    for _ in range(count):
        writer.send_text(json.dumps({"action": "put", "topic": "bench/ws-gets", "message": PAYLOAD.decode()}))
    writer.send_text(json.dumps({"action": "get", "topic": "bench/none"}))
    writer.recv_text()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        reader.send_text(json.dumps({"action": "get", "topic": "bench/ws-gets"}))
        reply = json.loads(reader.recv_text())
        samples.append(time.perf_counter() - started)
        assert reply["message"] == PAYLOAD.decode()
    writer.close()
    reader.close()
    return percentiles(samples)


# ----------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller phases (a smoke run)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--writer", nargs=2, type=int, metavar=("PORT", "COUNT"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.writer:
        writer_process(*options.writer)
        return
    scale = 0.1 if options.quick else 1.0
    puts, gets, pushes = int(200_000 * scale), int(20_000 * scale), int(200_000 * scale)

    server, address = start(["bun", "run", "src/server.ts", "--port", "0", "--http-port", "0"], r"tcp://[^:]+:(\d+).*https?://[^:]+:(\d+)")
    echo, echo_address = start(["bun", "run", "bench/load/echo-server.ts", "0"], r"tcp://[^:]+:(\d+)")
    port, http_port, echo_port = int(address.group(1)), int(address.group(2)), int(echo_address.group(1))
    try:
        results = {
            "machine": {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0], "python": sys.version.split()[0]},
            "puts_per_s": sorted(put_rate(port, puts) for _ in range(3))[1],
            "put_many_per_s": sorted(put_many_rate(port, puts) for _ in range(3))[1],
            **dict(zip(("get_rtt", "echo_floor_rtt"), get_round_trips(port, echo_port, gets))),
            "push_per_s": push_rate(port, pushes),
            "websocket_json_puts_per_s": websocket_put_rate(http_port, gets * 2),
            "websocket_json_get_rtt": websocket_round_trips(http_port, gets),
        }
    finally:
        for child in (server, echo):
            child.terminate()
            child.wait(10)
    ratio = results["get_rtt"]["p50_us"] / results["echo_floor_rtt"]["p50_us"]
    results["get_p50_vs_echo_floor"] = ratio
    print(report(results, ratio))
    if options.json:
        with open(options.json, "w", encoding="utf-8") as file:
            json.dump(results, file, indent=2)


def report(results: dict, ratio: float) -> str:
    machine = results["machine"]
    rtt, ws, floor = results["get_rtt"], results["websocket_json_get_rtt"], results["echo_floor_rtt"]
    rows = [
        ("puts/s, one thread, pipelined (put)", f"{results['puts_per_s']:,.0f}", f"{results['websocket_json_puts_per_s']:,.0f}", "-"),
        ("puts/s, one thread, put_many of 100", f"{results['put_many_per_s']:,.0f}", "-", "-"),
        ("get round trip p50 / p99 (µs)", f"{rtt['p50_us']:.0f} / {rtt['p99_us']:.0f}", f"{ws['p50_us']:.0f} / {ws['p99_us']:.0f}", f"{floor['p50_us']:.0f} / {floor['p99_us']:.0f}"),
        ("push delivery to a subscriber, msg/s", f"{results['push_per_s']:,.0f}", "- (polls)", "-"),
    ]
    widths = [max(len(row[i]) for row in rows + [("", "dsmq_bun (binary)", "upstream pattern (WS JSON)", "echo floor")]) for i in range(4)]
    header = ("", "dsmq_bun (binary)", "upstream pattern (WS JSON)", "echo floor")
    lines = [f"Python client, {machine['cpus']} CPUs, load {machine['load_average_1m']:.2f}, Python {machine['python']}", ""]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        lines.append("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |")
    put_ok = "yes" if results["puts_per_s"] >= PUT_TARGET else "NO"
    rtt_ok = "yes" if ratio <= RTT_RATIO_TARGET else "NO"
    lines += [
        "",
        f"target puts/s >= {PUT_TARGET:,}: {results['puts_per_s']:,.0f} ({put_ok})",
        f"target get p50 <= {RTT_RATIO_TARGET}x echo floor p50: {ratio:.2f}x ({rtt_ok})",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
