"""Streams: pipelined puts, pushes to subscribers that stall, every byte value, threads at
once, and the server going away under a client."""

from __future__ import annotations

import socket
import threading
import unittest

import dsmq_bun
from dsmq_bun import ConnectionLost, Message, frames
from dsmq_bun.frames import MalformedReply

from server_process import ServerProcess, free_port
from test_client import PATIENCE, ServerTestCase


class Pipelining(ServerTestCase):
    def test_100000_puts_are_stored_in_order_and_pushed_each_once(self) -> None:
        count = 100_000
        writer, reader = self.client(), self.client()
        subscription = reader.subscribe("pipe/100k")
        before = writer.stats()["puts"]
        for i in range(count):
            writer.put("pipe/100k", b"%d" % i)
        writer.ping()
        self.assertEqual(writer.stats()["puts"], before + count)  # type: ignore[operator]
        received = []
        for _ in range(count):
            message = subscription.get(PATIENCE)
            assert message is not None, f"message {len(received)} did not come"
            received.append(message)
        self.assertEqual([int(m.payload) for m in received], list(range(count)))
        seqs = [m.seq for m in received]
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + count)))
        self.assertIsNone(subscription.get(0.05))

    def test_a_subscriber_that_stalls_loses_nothing_and_slows_no_writer(self) -> None:
        # 48 MiB: far more than the server holds for one subscriber (4 MiB) plus socket buffers.
        count, payload = 12_000, 4096
        writer, reader = self.client(), self.client()
        subscription = reader.subscribe("pipe/stall")
        first = None
        for i in range(count):
            body = i.to_bytes(4, "big") * (payload // 4)
            if i == 0:
                first = writer.put_ack("pipe/stall", body)
            else:
                writer.put("pipe/stall", body)
        # Every put was stored while the subscriber read nothing.
        last = writer.put_ack("pipe/stall", b"end")
        self.assertEqual(last, first + count)  # type: ignore[operator]
        self.assertEqual(len(subscription.queue), 0)
        for i in range(count):
            message = subscription.get(PATIENCE)
            assert message is not None
            self.assertEqual((message.seq, message.payload[:4], len(message.payload)), (first + i, i.to_bytes(4, "big"), payload))  # type: ignore[operator]
        self.assertEqual(subscription.get(PATIENCE), Message(last, "pipe/stall", b"end"))

    def test_a_writer_thread_and_a_reader_thread_share_one_client(self) -> None:
        count = 20_000
        shared, other = self.client(), self.client()
        subscription = shared.subscribe("pipe/shared-in")

        def read() -> list[bytes]:
            return [subscription.get(PATIENCE).payload for _ in range(count)]  # type: ignore[union-attr]

        def write() -> None:
            for i in range(count):
                shared.put("pipe/shared-out", b"%d" % i)
            shared.ping()

        join_reader = self.run_in_thread(read)
        join_writer = self.run_in_thread(write)
        for i in range(count):
            other.put("pipe/shared-in", b"%d" % i)
        # Requests of a third thread meanwhile get their own replies.
        for _ in range(50):
            self.assertIsNone(shared.get("pipe/nothing"))
        join_writer()
        self.assertEqual(join_reader(), [b"%d" % i for i in range(count)])
        self.assertEqual([other.get("pipe/shared-out").payload for _ in range(3)], [b"0", b"1", b"2"])  # type: ignore[union-attr]


class Payloads(ServerTestCase):
    def test_every_byte_value_round_trips(self) -> None:
        writer, reader = self.client(), self.client()
        subscription = reader.subscribe("bytes/push")
        everything = bytes(range(256))
        writer.put("bytes/get", everything)
        writer.put("bytes/push", everything)
        for value in range(256):
            writer.put("bytes/one", bytes([value]))
        writer.put_many([("bytes/many", bytes([value]) * 3) for value in range(256)])
        writer.ping()
        self.assertEqual(reader.get("bytes/get").payload, everything)  # type: ignore[union-attr]
        self.assertEqual(subscription.get(PATIENCE).payload, everything)  # type: ignore[union-attr]
        self.assertEqual([reader.get("bytes/one").payload for _ in range(256)], [bytes([v]) for v in range(256)])  # type: ignore[union-attr]
        self.assertEqual([reader.get("bytes/many").payload for _ in range(256)], [bytes([v]) * 3 for v in range(256)])  # type: ignore[union-attr]

    def test_empty_and_largest_payloads_round_trip(self) -> None:
        writer, reader = self.client(), self.client()
        largest = bytes(range(256)) * ((writer.max_frame_bytes - 6 - 2 - len("bytes/big")) // 256)
        largest += b"\xff" * (writer.max_frame_bytes - 6 - 2 - len("bytes/big") - len(largest))
        subscription = reader.subscribe("bytes/big")
        writer.put("bytes/big", b"")
        writer.put("bytes/big", largest)
        writer.put("bytes/big", "text é 温度")
        self.assertEqual(subscription.get(PATIENCE).payload, b"")  # type: ignore[union-attr]
        self.assertEqual(subscription.get(PATIENCE).payload, largest)  # type: ignore[union-attr]
        self.assertEqual(subscription.get(PATIENCE).text(), "text é 温度")  # type: ignore[union-attr]


class ServerGone(unittest.TestCase):
    """The server is killed under clients that are waiting: each gets a clear exception."""

    def test_waiting_calls_and_subscriptions_raise_connection_lost(self) -> None:
        server = ServerProcess()
        self.addCleanup(server.stop)
        writer = dsmq_bun.Client(server.host, server.port)
        reader = dsmq_bun.Client(server.host, server.port)
        waiter = dsmq_bun.Client(server.host, server.port)
        subscription = reader.subscribe("gone/t")
        for i in range(100):
            writer.put("gone/t", b"%d" % i)
        writer.ping()
        outcomes: dict[str, object] = {}

        def iterate() -> None:
            taken = []
            try:
                for message in subscription:
                    taken.append(message)
                outcomes["iterate"] = "stopped silently"
            except ConnectionLost as error:
                outcomes["iterate"] = error
            outcomes["taken"] = len(taken)

        def wait() -> None:
            try:
                outcomes["wait"] = waiter.get_wait("gone/never", 3600)
            except ConnectionLost as error:
                outcomes["wait"] = error

        threads = [threading.Thread(target=iterate, daemon=True), threading.Thread(target=wait, daemon=True)]
        for thread in threads:
            thread.start()
        self.assertIsNone(waiter.get("gone/other"))  # the get_wait is on the server by now
        server.kill()
        for thread in threads:
            thread.join(PATIENCE)
            self.assertFalse(thread.is_alive(), "a call still waits after the server died")
        self.assertIsInstance(outcomes["iterate"], ConnectionLost)
        self.assertIsInstance(outcomes["iterate"], ConnectionError)
        self.assertEqual(outcomes["taken"], 100)
        self.assertIsInstance(outcomes["wait"], ConnectionLost)
        with self.assertRaises(ConnectionLost):
            for i in range(10_000):  # the loss is noticed at the latest when a write fails
                writer.put_ack("gone/t", b"after")
        self.assertTrue(writer.closed and waiter.closed)
        for client in (writer, reader, waiter):
            client.close()

    def test_reconnect_connects_again_with_back_off(self) -> None:
        port = free_port()
        first = ServerProcess(port=port)
        self.addCleanup(first.stop)
        client = dsmq_bun.Client(first.host, port, reconnect=True, retries=50, retry_delay=0.01, max_retry_delay=0.2)
        self.addCleanup(client.close)
        client.put_ack("again/t", "before")
        first.kill()
        with self.assertRaises(ConnectionLost):
            client.get_wait("again/t", 3600)
        second = ServerProcess(port=port)
        self.addCleanup(second.stop)
        self.assertFalse(client.closed)
        self.assertEqual(client.put_ack("again/t", "after"), 1)  # a new server: a new store
        self.assertEqual(client.get("again/t").text(), "after")  # type: ignore[union-attr]

    def test_without_reconnect_a_refused_connection_raises_at_once(self) -> None:
        with self.assertRaises(ConnectionRefusedError):
            dsmq_bun.Client("127.0.0.1", free_port(), retries=0)


class MisbehavingServer(unittest.TestCase):
    """A fake server on a plain socket: what the client does with frames that make no sense."""

    def serve(self, script) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)

        def run() -> None:
            connection, _ = listener.accept()
            with connection:
                hello = connection.recv(4096)
                script(connection, hello)

        threading.Thread(target=run, daemon=True).start()
        return listener.getsockname()[1]

    @staticmethod
    def welcome(connection: socket.socket, hello: bytes) -> None:
        request_id = int.from_bytes(hello[6:10], "big")
        connection.sendall(frames.frame(frames.WELCOME, 0, request_id, b"\x01" + (1 << 20).to_bytes(4, "big")))

    def test_an_unknown_reply_ends_the_connection_with_a_clear_error(self) -> None:
        def script(connection: socket.socket, hello: bytes) -> None:
            self.welcome(connection, hello)
            connection.recv(4096)
            connection.sendall(frames.frame(0x90, 0, 2))
            connection.recv(4096)

        client = dsmq_bun.Client("127.0.0.1", self.serve(script), retries=0)
        self.addCleanup(client.close)
        with self.assertRaises(ConnectionLost) as caught:
            client.get("t")
        self.assertIsInstance(caught.exception.__cause__, MalformedReply)
        self.assertEqual(caught.exception.code_name, "malformed_frame")

    def test_a_server_that_stops_mid_frame_gives_connection_lost(self) -> None:
        def script(connection: socket.socket, hello: bytes) -> None:
            self.welcome(connection, hello)
            connection.recv(4096)
            connection.sendall(frames.frame(frames.MESSAGE, 0, 2, bytes(8) + b"\x00\x01t" + b"x" * 100)[:50])

        client = dsmq_bun.Client("127.0.0.1", self.serve(script), retries=0)
        self.addCleanup(client.close)
        with self.assertRaises(ConnectionLost):
            client.get("t")

    def test_a_server_that_never_answers_hello_times_out(self) -> None:
        done = threading.Event()
        self.addCleanup(done.set)
        port = self.serve(lambda connection, hello: done.wait(PATIENCE))
        with self.assertRaises(TimeoutError):
            dsmq_bun.Client("127.0.0.1", port, retries=0, connect_timeout=0.2)


if __name__ == "__main__":
    unittest.main()
