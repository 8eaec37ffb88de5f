"""dsmq_bun.compat: upstream dsmq 1.4's integration-test flows, and its client's behaviour.

The flows are upstream's (src/dsmq/tests of dsmq 1.4): each starts a server, runs clients,
and ends with ``shutdown_server()``. Upstream slept 10 ms between a put and another client's
read ("it takes a moment for the write to complete"); here ``put`` returns once the message
is stored, so the flows run without those sleeps.
"""

from __future__ import annotations

import contextlib
import io
import threading
import unittest

from dsmq_bun import ClientClosed, MessageTooLarge, ShutdownRefused, compat
from dsmq_bun.compat import connect

from server_process import ServerProcess, free_port
from test_client import PATIENCE


class UpstreamFlows(unittest.TestCase):
    """One server per flow, started with --allow-shutdown, as upstream started one per test."""

    def setUp(self) -> None:
        self.server = ServerProcess("--allow-shutdown")
        self.addCleanup(self.server.stop)
        self.host, self.port = self.server.host, self.server.port

    def assert_server_stopped(self) -> None:
        self.assertEqual(self.server.wait_exit(), 0)

    def test_client_server(self) -> None:
        mq = connect(self.host, self.port)
        n_iter = 11
        for i in range(n_iter):
            mq.put("test", f"msg_{i}")
        for i in range(n_iter):
            msg = mq.get("test")
        self.assertEqual(msg, "msg_10")
        mq.shutdown_server()
        mq.close()
        self.assert_server_stopped()
        # Upstream retries for about 10 s before giving up; the same ten tries, paced faster.
        with _fast_retries():
            with self.assertRaises(ConnectionRefusedError) as caught:
                connect(self.host, self.port)
        self.assertEqual(str(caught.exception), "Could not connect to dsmq server.")

    def test_write_one_read_one(self) -> None:
        write_client = connect(self.host, self.port)
        read_client = connect(self.host, self.port)
        self.assertEqual(read_client.get("test"), "")
        write_client.put("test", "test_msg")
        self.assertEqual(read_client.get("test"), "test_msg")
        self.assertEqual(read_client.get("test"), "")
        write_client.shutdown_server()
        write_client.close()
        read_client.close()
        self.assert_server_stopped()

    def test_get_wait(self) -> None:
        write_client = connect(self.host, self.port)
        read_client = connect(self.host, self.port)
        write_client.put("test", "test_msg")
        self.assertEqual(read_client.get_wait("test"), "test_msg")
        write_client.shutdown_server()
        write_client.close()
        read_client.close()
        self.assert_server_stopped()

    def test_get_latest(self) -> None:
        write_client = connect(self.host, self.port)
        read_client = connect(self.host, self.port)
        for i in range(5):
            write_client.put("test", f"test_msg {i}")
        self.assertEqual(read_client.get_latest("test"), "test_msg 4")
        self.assertEqual(read_client.get_latest("test"), "")
        write_client.shutdown_server()
        write_client.close()
        read_client.close()
        self.assert_server_stopped()

    def test_multitopics(self) -> None:
        write_client = connect(self.host, self.port)
        read_client = connect(self.host, self.port)
        write_client.put("test_A", "test_msg_A")
        write_client.put("test_B", "test_msg_B")
        self.assertEqual(read_client.get_wait("test_A"), "test_msg_A")
        self.assertEqual(read_client.get_wait("test_B"), "test_msg_B")
        write_client.shutdown_server()
        write_client.close()
        read_client.close()
        self.assert_server_stopped()

    def test_client_history_cutoff(self) -> None:
        write_client = connect(self.host, self.port)
        write_client.put("test", "test_msg")
        read_client = connect(self.host, self.port)
        self.assertEqual(read_client.get("test"), "")
        write_client.shutdown_server()
        write_client.close()
        read_client.close()
        self.assert_server_stopped()

    def test_two_write_clients(self) -> None:
        write_client_a = connect(self.host, self.port)
        write_client_b = connect(self.host, self.port)
        read_client = connect(self.host, self.port)
        write_client_a.put("test", "test_msg_A")
        write_client_b.put("test", "test_msg_B")
        self.assertEqual(read_client.get_wait("test"), "test_msg_A")
        self.assertEqual(read_client.get_wait("test"), "test_msg_B")
        write_client_a.shutdown_server()
        write_client_a.close()
        write_client_b.close()
        read_client.close()
        self.assert_server_stopped()

    def test_two_read_clients(self) -> None:
        write_client = connect(self.host, self.port)
        read_client_a = connect(self.host, self.port)
        read_client_b = connect(self.host, self.port)
        write_client.put("test", "test_msg")
        self.assertEqual(read_client_a.get_wait("test"), "test_msg")
        self.assertEqual(read_client_b.get_wait("test"), "test_msg")
        write_client.shutdown_server()
        write_client.close()
        read_client_a.close()
        read_client_b.close()
        self.assert_server_stopped()

    def test_speed_writing(self) -> None:
        write_client = connect(self.host, self.port)
        read_client = connect(self.host, self.port)
        with self._beside(self._speed_write) as writes:
            write_client.put("test", "test_msg")
            self.assertEqual(read_client.get_wait("test"), "test_msg")
        self.assertGreater(writes[0], 0)
        read_client.close()
        write_client.shutdown_server()
        write_client.close()
        self.assert_server_stopped()

    def test_speed_reading(self) -> None:
        write_client = connect(self.host, self.port)
        read_client = connect(self.host, self.port)
        with self._beside(self._speed_read) as reads:
            write_client.put("test", "test_msg")
            self.assertEqual(read_client.get_wait("test"), "test_msg")
        self.assertGreater(reads[0], 0)
        read_client.close()
        write_client.shutdown_server()
        write_client.close()
        self.assert_server_stopped()

    def _speed_write(self, stop_flag: threading.Event, count: list[int]) -> None:
        fast_write_client = connect(self.host, self.port)
        while True:
            fast_write_client.put("speed_test", "speed")
            count[0] += 1
            if stop_flag.is_set():
                break
        fast_write_client.close()

    def _speed_read(self, stop_flag: threading.Event, count: list[int]) -> None:
        fast_read_client = connect(self.host, self.port)
        while True:
            fast_read_client.get("speed_test")
            count[0] += 1
            if stop_flag.is_set():
                break
        fast_read_client.close()

    @contextlib.contextmanager
    def _beside(self, work):
        """Runs ``work`` in a thread (upstream: a process) until the block ends; yields its count."""
        stop_flag, count = threading.Event(), [0]
        thread = threading.Thread(target=work, args=(stop_flag, count), daemon=True)
        thread.start()
        try:
            yield count
        finally:
            stop_flag.set()
            thread.join(PATIENCE)
        self.assertFalse(thread.is_alive())


class Behaviour(unittest.TestCase):
    """What upstream's client does beyond the flows: attributes, errors, odd inputs."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = ServerProcess()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()

    def connect(self, **options):
        client = connect(self.server.host, self.server.port, **options)
        self.addCleanup(client.close)
        return client

    def test_the_signature_and_attributes_are_upstreams(self) -> None:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            client = connect(self.server.host, self.server.port, True)
        self.addCleanup(client.close)
        self.assertEqual(out.getvalue(), f"Connecting to dsmq server at tcp://{self.server.host}:{self.server.port}\n")
        self.assertEqual((client.port, client.verbose), (self.server.port, True))
        self.assertIsInstance(client.time_of_last_request, float)
        self.assertEqual((compat._default_host, compat._default_port), ("127.0.0.1", 30008))

    def test_get_wait_waits_on_the_server_and_is_answered_at_once(self) -> None:
        writer, reader = self.connect(), self.connect()
        result: list[str] = []
        thread = threading.Thread(target=lambda: result.append(reader.get_wait("behaviour/wait")), daemon=True)
        thread.start()
        writer.put("behaviour/wait", "now")
        thread.join(PATIENCE)
        self.assertEqual(result, ["now"])

    def test_get_wait_gives_up_with_an_empty_string(self) -> None:
        reader = self.connect()
        self.assertEqual(reader.get_wait("behaviour/never", timeout=0.05), "")

    def test_message_bodies_are_text_as_upstream_stored_them(self) -> None:
        writer, reader = self.connect(), self.connect()
        writer.put("behaviour/body", 5)
        writer.put("behaviour/body", "")
        writer.put("behaviour/body", "é 温度 \u2603")
        self.assertEqual(reader.get("behaviour/body"), "5")
        self.assertEqual(reader.get("behaviour/body"), "")
        self.assertEqual(reader.get("behaviour/body"), "é 温度 \u2603")
        with self.assertRaises(TypeError):
            writer.put("behaviour/body", b"bytes are not JSON")
        with self.assertRaises(MessageTooLarge):
            writer.put("behaviour/body", "x" * (2 * 1024 * 1024))

    def test_after_close_calls_raise_and_close_again_does_nothing(self) -> None:
        client = self.connect()
        client.close()
        client.close()
        for call in (lambda: client.get("t"), lambda: client.get_latest("t"), lambda: client.put("t", "m"), client.shutdown_server):
            with self.assertRaises(ClientClosed):
                call()

    def test_a_server_without_allow_shutdown_refuses_and_keeps_running(self) -> None:
        client = self.connect()
        with self.assertRaises(ShutdownRefused) as caught:
            client.shutdown_server()
        self.assertEqual(caught.exception.code_name, "shutdown_refused")
        self.assertIsInstance(caught.exception, PermissionError)
        client.put("behaviour/alive", "yes")
        self.assertEqual(self.connect().get("behaviour/alive"), "")
        self.assertIsNone(self.server.process.poll())

    def test_connecting_to_nothing_raises_connection_refused(self) -> None:
        out = io.StringIO()
        with _fast_retries(), contextlib.redirect_stdout(out), self.assertRaises(ConnectionRefusedError) as caught:
            connect("127.0.0.1", free_port(), verbose=True)
        self.assertEqual(str(caught.exception), "Could not connect to dsmq server.")
        self.assertEqual(out.getvalue().count("    ...trying again\n"), compat._n_retries)


class ServerGone(unittest.TestCase):
    def test_after_the_server_dies_reads_are_empty_and_puts_do_nothing(self) -> None:
        # As upstream's client on a connection closed abnormally: "" from gets, puts ignored.
        server = ServerProcess()
        self.addCleanup(server.stop)
        client = connect(server.host, server.port)
        client.put("gone", "stored")
        server.kill()
        for _ in range(3):
            self.assertEqual(client.get("gone"), "")
            self.assertEqual(client.get_latest("gone"), "")
            self.assertEqual(client.get_wait("gone", timeout=3600), "")
            self.assertIsNone(client.put("gone", "lost"))
        client.close()
        with self.assertRaises(ClientClosed):
            client.get("gone")


@contextlib.contextmanager
def _fast_retries():
    """Upstream's ten connection attempts, 1 ms apart at first instead of 10 ms."""
    saved = compat._initial_retry
    compat._initial_retry = 0.001
    try:
        yield
    finally:
        compat._initial_retry = saved


if __name__ == "__main__":
    unittest.main()
