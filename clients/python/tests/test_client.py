"""Every call of the fast API against a real server process."""

from __future__ import annotations

import queue
import threading
import unittest

import dsmq_bun
from dsmq_bun import BadField, ClientClosed, DsmqError, Message, MessageTooLarge
from dsmq_bun.subscription import compile_pattern, is_pattern

from server_process import ServerProcess

#: Bound on every wait in these tests; none should come near it.
PATIENCE = 30.0


class ServerTestCase(unittest.TestCase):
    """One server for the class; tests keep apart by their topics."""

    server_args: tuple[str, ...] = ()
    server: ServerProcess

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = ServerProcess(*cls.server_args)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()

    def client(self, **options: object) -> dsmq_bun.Client:
        client = dsmq_bun.Client(self.server.host, self.server.port, **options)  # type: ignore[arg-type]
        self.addCleanup(client.close)
        return client

    def run_in_thread(self, work, *args):
        """Runs ``work`` in a thread; returns a function that joins it (bounded) and gives its result."""
        result: dict[str, object] = {}

        def target() -> None:
            try:
                result["value"] = work(*args)
            except BaseException as error:  # noqa: BLE001 - handed to the test thread
                result["error"] = error

        thread = threading.Thread(target=target, daemon=True)
        thread.start()

        def join():
            thread.join(PATIENCE)
            self.assertFalse(thread.is_alive(), f"{work.__name__} did not finish within {PATIENCE} s")
            if "error" in result:
                raise result["error"]  # type: ignore[misc]
            return result.get("value")

        return join


class Calls(ServerTestCase):
    def test_connect_says_hello_and_learns_the_maximum_frame(self) -> None:
        client = self.client()
        self.assertEqual(client.max_frame_bytes, 1024 * 1024)
        self.assertFalse(client.closed)
        self.assertIsInstance(client.ping(), float)

    def test_put_ack_returns_consecutive_sequence_numbers(self) -> None:
        client = self.client()
        first = client.put_ack("calls/ack", "one")
        self.assertEqual(client.put_ack("calls/ack", b"two"), first + 1)
        self.assertEqual(client.put_ack("calls/ack", memoryview(b"three")), first + 2)

    def test_get_reads_oldest_first_and_each_once(self) -> None:
        writer, reader = self.client(), self.client()
        self.assertIsNone(reader.get("calls/get"))
        seq = writer.put_ack("calls/get", "a")
        writer.put("calls/get", "b")
        writer.ping()
        self.assertEqual(reader.get("calls/get"), Message(seq, "calls/get", b"a"))
        message = reader.get("calls/get")
        assert message is not None
        self.assertEqual((message.seq, message.text()), (seq + 1, "b"))
        self.assertIsNone(reader.get("calls/get"))

    def test_a_pattern_get_reads_every_matching_topic_in_put_order(self) -> None:
        writer, reader = self.client(), self.client()
        first = writer.put_ack("calls/pattern/b", "1")
        writer.put_ack("calls/patternx/a", "no")
        writer.put_ack("calls/pattern/a/deep", "2")
        got = [reader.get("calls/pattern/#"), reader.get("calls/pattern/#"), reader.get("calls/pattern/#")]
        self.assertEqual(got[0], Message(first, "calls/pattern/b", b"1"))
        self.assertEqual((got[1].topic, got[1].text()) if got[1] else None, ("calls/pattern/a/deep", "2"))
        self.assertIsNone(got[2])

    def test_topics_lists_the_catalogue_a_page_at_a_time(self) -> None:
        client = self.client()
        for name in ["calls/cat/b", "calls/cat/a", "calls/cat/c"]:
            client.put_ack(name, "x")
        page = client.topics("calls/cat/#", limit=2)
        self.assertEqual([entry["topic"] for entry in page["topics"]], ["calls/cat/a", "calls/cat/b"])  # type: ignore[index,union-attr]
        rest = client.topics("calls/cat/#", limit=2, after=page["next"])  # type: ignore[arg-type]
        self.assertEqual([entry["topic"] for entry in rest["topics"]], ["calls/cat/c"])  # type: ignore[index,union-attr]
        self.assertNotIn("next", rest)

    def test_get_latest_skips_to_the_newest(self) -> None:
        writer, reader = self.client(), self.client()
        for i in range(5):
            writer.put("calls/latest", f"m{i}")
        writer.ping()
        latest = reader.get_latest("calls/latest")
        assert latest is not None
        self.assertEqual(latest.text(), "m4")
        self.assertIsNone(reader.get_latest("calls/latest"))
        self.assertIsNone(reader.get("calls/latest"))

    def test_get_wait_is_answered_when_a_message_is_put(self) -> None:
        writer, reader = self.client(), self.client()
        join = self.run_in_thread(reader.get_wait, "calls/wait", PATIENCE)
        # The reader's wait is pending on the server once a round trip behind it returns.
        self.assertIsNone(reader.get("calls/other"))
        seq = writer.put_ack("calls/wait", "here")
        message = join()
        self.assertEqual((message.seq, message.text()), (seq, "here"))

    def test_get_wait_returns_none_after_its_timeout(self) -> None:
        reader = self.client()
        self.assertIsNone(reader.get_wait("calls/never", 0.05))
        self.assertIsNone(reader.get_wait("calls/never", 0))
        with self.assertRaises(ValueError):
            reader.get_wait("calls/never", 3601)

    def test_put_many_stores_in_order_in_one_transaction(self) -> None:
        writer, reader = self.client(), self.client()
        seqs = writer.put_many_ack([("calls/many", "a"), ("calls/many2", b"\x00"), ("calls/many", "c")])
        self.assertEqual(len(seqs), 3)
        writer.put_many([("calls/many", "d")])
        self.assertEqual(writer.put_many_ack([]), range(seqs.stop + 1, seqs.stop + 1))
        got = [reader.get("calls/many") for _ in range(3)]
        self.assertEqual([m.text() for m in got if m], ["a", "c", "d"])
        self.assertEqual([m.seq for m in got if m][:2], [seqs[0], seqs[2]])
        self.assertEqual(reader.get("calls/many2"), Message(seqs[1], "calls/many2", b"\x00"))

    def test_subscribe_delivers_unread_then_new_messages_in_order(self) -> None:
        writer, reader = self.client(), self.client()
        self.assertIsNone(reader.get("calls/sub"))  # the reader's cursor starts before this put
        first = writer.put_ack("calls/sub", "unread")
        with reader.subscribe("calls/sub") as subscription:
            writer.put("calls/sub", "new")
            writer.flush()
            received = [subscription.get(PATIENCE), next(subscription)]
            self.assertEqual([(m.seq, m.text()) for m in received if m], [(first, "unread"), (first + 1, "new")])
            self.assertIsNone(subscription.get(0.05))
        self.assertTrue(subscription.ended)
        # After unsubscribing nothing more is delivered and the iterator stops.
        writer.put_ack("calls/sub", "after")
        reader.ping()
        self.assertEqual(list(subscription), [])

    def test_subscribing_twice_to_one_topic_is_refused(self) -> None:
        reader = self.client()
        reader.subscribe("calls/twice")
        with self.assertRaises(ValueError):
            reader.subscribe("calls/twice")

    def test_patterns_match_as_the_servers_rule(self) -> None:
        # Pushes for a pattern carry the matching topic's name; they are routed here by this rule.
        cases = {
            "lab/+/temp": (["lab/a/temp", "lab/b/temp"], ["lab/temp", "lab/a/temp/x", "lab/a/hum"]),
            "lab/#": (["lab", "lab/a", "lab/a/b"], ["labs", "other/lab"]),
            "+/#": (["a", "a/b"], []),
        }
        for pattern, (matching, other) in cases.items():
            self.assertTrue(is_pattern(pattern))
            matches = compile_pattern(pattern)
            for topic in matching:
                self.assertTrue(matches(topic), f"{pattern} should match {topic}")
            for topic in other:
                self.assertFalse(matches(topic), f"{pattern} should not match {topic}")
        for name in ("lab/temp", "a+b/c", "lab/#x"):
            self.assertFalse(is_pattern(name))

    def test_stats_returns_the_servers_counters(self) -> None:
        client = self.client()
        before = client.stats()
        client.put_ack("calls/stats", "x")
        after = client.stats()
        self.assertEqual(after["puts"], before["puts"] + 1)  # type: ignore[operator]
        self.assertGreaterEqual(after["connections"], 1)  # type: ignore[operator]
        self.assertEqual(after["lastSeq"], after["puts"])

    def test_ping_returns_after_everything_sent_before_it(self) -> None:
        writer, reader = self.client(), self.client()
        for i in range(1000):
            writer.put("calls/ping", str(i))
        writer.ping(b"echo me")
        self.assertEqual(len([reader.get("calls/ping") for _ in range(1000)]), 1000)
        self.assertIsNone(reader.get("calls/ping"))

    def test_a_named_cursor_resumes_where_the_last_connection_stopped(self) -> None:
        writer = self.client()
        with dsmq_bun.connect(self.server.host, self.server.port, cursor="calls-worker") as first:
            writer.put_ack("calls/cursor", "1")
            self.assertEqual(first.get("calls/cursor").text(), "1")  # type: ignore[union-attr]
        writer.put_ack("calls/cursor", "2")
        with dsmq_bun.connect(self.server.host, self.server.port, cursor="calls-worker") as second:
            self.assertEqual(second.get("calls/cursor").text(), "2")  # type: ignore[union-attr]
            with self.assertRaises(DsmqError) as caught:
                dsmq_bun.connect(self.server.host, self.server.port, cursor="calls-worker")
            self.assertEqual(caught.exception.code_name, "cursor_busy")


class Refusals(ServerTestCase):
    def test_a_message_over_the_limit_is_refused_before_sending(self) -> None:
        client = self.client()
        room = client.max_frame_bytes - 6 - 2 - len("big")
        seq = client.put_ack("big", b"\xab" * room)
        with self.assertRaises(MessageTooLarge) as caught:
            client.put("big", b"\xab" * (room + 1))
        self.assertEqual((caught.exception.code, caught.exception.code_name), (2, "too_large"))
        with self.assertRaises(MessageTooLarge):
            client.put_ack("big", b"\xab" * (room + 1))
        with self.assertRaises(MessageTooLarge):
            client.put_many([("big", b"\xab" * room)])
        # Nothing was sent: the connection goes on and the store got nothing more.
        self.assertEqual(client.put_ack("big", b"small"), seq + 1)
        self.assertIsInstance(client, dsmq_bun.Client)

    def test_bad_topics_are_refused_here_with_the_servers_code(self) -> None:
        client = self.client()
        for call in (lambda: client.put("a\nb", "x"), lambda: client.get("x" * 1025), lambda: client.subscribe("\x00")):
            with self.assertRaises(BadField) as caught:
                call()
            self.assertEqual(caught.exception.code, 6)
        with self.assertRaises(TypeError):
            client.put("t", 12)  # type: ignore[arg-type]
        client.ping()

    def test_errors_the_server_reports_carry_its_code_and_keep_the_connection(self) -> None:
        # Two GET_WAITs on one topic from one connection: the server refuses whichever is second.
        client, writer = self.client(), self.client()
        results: queue.Queue[object] = queue.Queue()
        for _ in range(2):
            self.run_in_thread(lambda: results.put(self._wait_or_error(client, "refusals/wait")))
        refused = results.get(timeout=PATIENCE)
        self.assertIsInstance(refused, BadField)
        assert isinstance(refused, BadField)
        self.assertEqual((refused.code, refused.code_name, refused.fatal), (6, "bad_field", False))
        self.assertIn("GET_WAIT", refused.text)
        writer.put_ack("refusals/wait", "answer")
        self.assertEqual(results.get(timeout=PATIENCE).text(), "answer")  # type: ignore[attr-defined]
        client.ping()

    @staticmethod
    def _wait_or_error(client: dsmq_bun.Client, topic: str) -> object:
        try:
            return client.get_wait(topic, PATIENCE)
        except DsmqError as error:
            return error

    def test_close_returns_once_every_put_sent_before_is_stored(self) -> None:
        reader = self.client()
        for _ in range(3):
            writer = dsmq_bun.Client(self.server.host, self.server.port)
            for i in range(20_000):
                writer.put("closed/all", b"%d" % i)
            writer.close()
            self.assertEqual(reader.get_latest("closed/all").payload, b"19999")  # type: ignore[union-attr]

    def test_closed_clients_refuse_every_call(self) -> None:
        client = self.client()
        client.put("closed/t", "stored before close")
        client.close()
        client.close()
        self.assertTrue(client.closed)
        for call in (lambda: client.put("t", "x"), lambda: client.get("t"), client.ping, lambda: client.subscribe("t")):
            with self.assertRaises(ClientClosed):
                call()
        reader = self.client()
        self.assertIsNone(reader.get("closed/t"))  # the reader connected after the put was stored


class Limits(ServerTestCase):
    server_args = ("--max-subscriptions", "1")

    def test_a_limit_is_reported_with_its_code(self) -> None:
        client = self.client()
        client.subscribe("limits/a")
        with self.assertRaises(DsmqError) as caught:
            client.subscribe("limits/b")
        self.assertEqual((caught.exception.code, caught.exception.code_name), (14, "limit_exceeded"))
        client.ping()


if __name__ == "__main__":
    unittest.main()
