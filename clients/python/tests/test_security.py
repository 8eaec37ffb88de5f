"""Tokens and TLS against real server processes."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import unittest

import dsmq_bun
from dsmq_bun import ConnectionLost, DsmqError, Forbidden, Unauthorized
from dsmq_bun.compat import connect as compat_connect

from server_process import ServerProcess
from test_client import PATIENCE

LAB_TOKEN = "lab-token-0123456789abcdef"
VIEWER_TOKEN = "viewer-token-0123456789abcdef"


class Tokens(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.directory = tempfile.mkdtemp(prefix="dsmq-py-auth-")
        auth_file = os.path.join(cls.directory, "auth.json")
        with open(auth_file, "w", encoding="utf-8") as file:
            json.dump(
                {
                    "tokens": [
                        {"name": "lab", "token": LAB_TOKEN, "read": ["lab/#"], "write": ["lab/#"]},
                        {"name": "viewer", "token": VIEWER_TOKEN, "read": ["lab/#"], "write": []},
                    ]
                },
                file,
            )
        cls.server = ServerProcess("--auth-file", auth_file)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)

    def connect(self, token: str | None, **options: object) -> dsmq_bun.Client:
        client = dsmq_bun.Client(self.server.host, self.server.port, token, retries=0, **options)  # type: ignore[arg-type]
        self.addCleanup(client.close)
        return client

    def test_a_valid_token_reads_and_writes_its_topics(self) -> None:
        lab, viewer = self.connect(LAB_TOKEN), self.connect(VIEWER_TOKEN)
        subscription = viewer.subscribe("lab/temp")
        seq = lab.put_ack("lab/temp", "21.5")
        message = subscription.get(PATIENCE)
        assert message is not None
        self.assertEqual((message.seq, message.text()), (seq, "21.5"))

    def test_no_token_or_a_wrong_one_is_refused_at_connect(self) -> None:
        for token in (None, "not-a-valid-token-at-all"):
            with self.subTest(token=token):
                with self.assertRaises(Unauthorized) as caught:
                    dsmq_bun.Client(self.server.host, self.server.port, token, retries=0)
                self.assertEqual((caught.exception.code, caught.exception.code_name), (12, "unauthorized"))
                self.assertTrue(caught.exception.fatal)
                self.assertIsInstance(caught.exception, PermissionError)

    def test_topics_outside_the_token_are_forbidden_and_the_connection_goes_on(self) -> None:
        viewer = self.connect(VIEWER_TOKEN)
        with self.assertRaises(Forbidden) as caught:
            viewer.put_ack("lab/temp", "not allowed")
        self.assertEqual((caught.exception.code, caught.exception.fatal), (13, False))
        with self.assertRaises(Forbidden):
            viewer.get("other/topic")
        self.assertIsNone(viewer.get("lab/temp"))

    def test_a_refused_put_nobody_waits_for_goes_to_on_error(self) -> None:
        reported: list[DsmqError] = []
        round_trips: list[float] = []

        called = threading.Event()

        def on_error(error: DsmqError) -> None:
            reported.append(error)
            round_trips.append(viewer.ping())  # a callback may make requests of its own
            called.set()

        viewer = self.connect(VIEWER_TOKEN, on_error=on_error)
        viewer.put("lab/temp", "fire and forget")
        viewer.ping()  # makes sure someone reads: this call, or the flusher reading ahead
        self.assertTrue(called.wait(PATIENCE))
        self.assertEqual([(type(error), error.code) for error in reported], [(Forbidden, 13)])
        self.assertEqual(len(round_trips), 1)

    def test_compat_connect_takes_a_token(self) -> None:
        lab = compat_connect(self.server.host, self.server.port, token=LAB_TOKEN)
        self.addCleanup(lab.close)
        reader = compat_connect(self.server.host, self.server.port, token=VIEWER_TOKEN)
        self.addCleanup(reader.close)
        lab.put("lab/compat", "hello")
        self.assertEqual(reader.get("lab/compat"), "hello")


@unittest.skipIf(shutil.which("openssl") is None, "openssl is needed to make a test certificate")
class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        # A throwaway self-signed certificate for 127.0.0.1, made for this run.
        cls.directory = tempfile.mkdtemp(prefix="dsmq-py-tls-")
        cls.cert = os.path.join(cls.directory, "cert.pem")
        key = os.path.join(cls.directory, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            + ["-keyout", key, "-out", cls.cert, "-days", "1", "-subj", "/CN=127.0.0.1"]
            + ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True,
            capture_output=True,
        )
        cls.server = ServerProcess("--tls-cert", cls.cert, "--tls-key", key)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)

    def test_the_address_line_says_tls(self) -> None:
        self.assertIn("tls://", self.server.first_line)

    def test_requests_pushes_and_pipelined_puts_over_tls(self) -> None:
        writer = dsmq_bun.Client(self.server.host, self.server.port, tls=self.context())
        self.addCleanup(writer.close)
        reader = dsmq_bun.connect(self.server.host, self.server.port, tls=self.context())
        self.addCleanup(reader.close)
        subscription = reader.subscribe("tls/t")
        seq = writer.put_ack("tls/t", b"\x00secret\xff")
        count = 20_000
        for i in range(count):
            writer.put("tls/t", b"%d" % i)
        # The reader's thread takes pushes while this thread sends requests on the same client.
        received = []

        def read() -> None:
            for _ in range(count + 1):
                received.append(subscription.get(PATIENCE))

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        for _ in range(20):
            self.assertIsNone(reader.get("tls/nothing"))
        thread.join(PATIENCE)
        self.assertFalse(thread.is_alive())
        self.assertEqual(received[0].payload, b"\x00secret\xff")  # type: ignore[union-attr]
        self.assertEqual(received[0].seq, seq)  # type: ignore[union-attr]
        self.assertEqual([m.payload for m in received[1:]], [b"%d" % i for i in range(count)])  # type: ignore[union-attr]

    def test_a_certificate_that_is_not_trusted_is_refused(self) -> None:
        with self.assertRaises(ssl.SSLCertVerificationError):
            dsmq_bun.Client(self.server.host, self.server.port, tls=True, retries=0)

    def test_close_over_tls_stores_what_was_put(self) -> None:
        writer = dsmq_bun.Client(self.server.host, self.server.port, tls=self.context())
        reader = dsmq_bun.Client(self.server.host, self.server.port, tls=self.context())
        self.addCleanup(reader.close)
        for i in range(1000):
            writer.put("tls/close", b"%d" % i)
        writer.close()
        self.assertEqual(reader.get_latest("tls/close").payload, b"999")  # type: ignore[union-attr]
        with self.assertRaises(ConnectionLost):
            writer.ping()


if __name__ == "__main__":
    unittest.main()
