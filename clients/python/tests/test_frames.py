"""The codec against the shared vectors (test/vectors/binary-protocol.json), which the
TypeScript tests check against the server's codec: requests encode to the vectors' bytes,
replies decode to their meaning, and what a decoder must refuse is refused."""

from __future__ import annotations

import json
import os
import unittest

from dsmq_bun import frames
from dsmq_bun.errors import BadField
from dsmq_bun.frames import ErrorReply, MalformedReply, Message, PutAck, Welcome, read_reply

from server_process import REPOSITORY

with open(os.path.join(REPOSITORY, "test", "vectors", "binary-protocol.json"), encoding="utf-8") as _file:
    VECTORS = json.load(_file)

REQUESTS = [vector for vector in VECTORS["frames"] if vector["direction"] == "request"]
REPLIES = [vector for vector in VECTORS["frames"] if vector["direction"] == "reply"]

REPLY_NAMES = {
    frames.OK: "OK",
    frames.WELCOME: "WELCOME",
    frames.PUT_ACK: "PUT_ACK",
    frames.MESSAGE: "MESSAGE",
    frames.EMPTY: "EMPTY",
    frames.PONG: "PONG",
    frames.STATS_REPLY: "STATS",
    frames.TOPICS_REPLY: "TOPICS",
    frames.DELIVER: "DELIVER",
    frames.ERROR: "ERROR",
}
TOPIC_REQUESTS = {
    "GET": frames.GET,
    "GET_LATEST": frames.GET_LATEST,
    "SUBSCRIBE": frames.SUBSCRIBE,
    "UNSUBSCRIBE": frames.UNSUBSCRIBE,
}


def from_hex(text: str) -> bytes:
    return bytes.fromhex(text.replace("|", "").replace(" ", ""))


def encode_request(value: dict) -> bytes:
    """The request a vector means, built with the client's encoders."""
    op, rid = value["op"], value["requestId"]
    if op == "HELLO":
        return frames.hello(rid, value["token"], value["version"], value.get("putTimes", False))
    if op == "PUT":
        return frames.put(rid, value["topic"], bytes.fromhex(value["payloadHex"]), value["ack"])
    if op == "PUT_MANY":
        entries = [(entry["topic"], bytes.fromhex(entry["payloadHex"])) for entry in value["entries"]]
        return frames.put_many(rid, entries, value["ack"])
    if op in TOPIC_REQUESTS:
        return frames.topic_request(TOPIC_REQUESTS[op], rid, value["topic"])
    if op == "GET_WAIT":
        return frames.get_wait(rid, value["topic"], value["timeoutMs"])
    if op == "PING":
        return frames.ping(rid, bytes.fromhex(value["bodyHex"]))
    if op == "STATS":
        return frames.stats(rid)
    if op == "CURSOR":
        return frames.cursor(rid, value["name"])
    if op == "FROM":
        return frames.from_seq(rid, value["seq"])
    if op == "TOPICS":
        return frames.topics(rid, value["limit"], value["after"], value["match"])
    raise AssertionError(f"no encoder for {op}")


def meaning_of(data: bytes) -> dict:
    """A decoded reply written as the vectors write it."""
    reply = read_reply(data)
    meaning: dict = {"op": REPLY_NAMES[reply.op], "requestId": reply.request_id}
    value = reply.value
    if isinstance(value, Message):
        meaning.update(seq=value.seq, missed=value.missed)
        if value.put_at is not None:
            meaning["putAt"] = value.put_at
        meaning.update(topic=value.topic, payloadHex=value.payload.hex())
    elif isinstance(value, Welcome):
        meaning.update(version=value.version, maxFrameBytes=value.max_frame_bytes)
    elif isinstance(value, PutAck):
        meaning.update(seq=value.seq, count=value.count)
    elif isinstance(value, ErrorReply):
        meaning.update(fatal=value.fatal, code=value.code, text=value.text)
    elif isinstance(value, bytes):
        meaning["bodyHex"] = value.hex()
    return meaning


class SharedVectors(unittest.TestCase):
    def test_the_file_covers_every_opcode(self) -> None:
        self.assertEqual({vector["value"]["op"] for vector in REPLIES}, set(REPLY_NAMES.values()))
        self.assertEqual(
            {vector["value"]["op"] for vector in REQUESTS},
            {"HELLO", "PUT", "PUT_MANY", "GET_WAIT", "PING", "STATS", "CURSOR", "TOPICS", "FROM", *TOPIC_REQUESTS},
        )

    def test_requests_encode_to_the_vectors_bytes(self) -> None:
        for vector in REQUESTS:
            with self.subTest(vector["name"]):
                self.assertEqual(encode_request(vector["value"]).hex(), from_hex(vector["hex"]).hex())

    def test_replies_decode_to_the_vectors_meaning(self) -> None:
        for vector in REPLIES:
            with self.subTest(vector["name"]):
                self.assertEqual(meaning_of(from_hex(vector["hex"])), vector["value"])

    def test_replies_decode_inside_a_larger_buffer(self) -> None:
        stream = b"".join(from_hex(vector["hex"]) for vector in REPLIES)
        at = 0
        for vector in REPLIES:
            size = len(from_hex(vector["hex"]))
            with self.subTest(vector["name"]):
                expected = read_reply(from_hex(vector["hex"]))
                self.assertEqual(read_reply(memoryview(stream), at, at + size), expected)
            at += size

    def test_replies_a_decoder_must_refuse_are_refused(self) -> None:
        rejected = [vector for vector in VECTORS["rejected"] if vector["direction"] == "reply"]
        self.assertGreaterEqual(len(rejected), 5)
        for vector in rejected:
            with self.subTest(vector["name"]):
                with self.assertRaises(MalformedReply) as caught:
                    read_reply(from_hex(vector["hex"]))
                self.assertEqual(caught.exception.code_name, "malformed_frame")
                self.assertTrue(caught.exception.fatal)

    def test_requests_the_server_would_refuse_are_not_encoded(self) -> None:
        refused = [vector for vector in VECTORS["rejected"] if "value" in vector]
        self.assertGreaterEqual(len(refused), 3)
        for vector in refused:
            with self.subTest(vector["name"]):
                with self.assertRaises(BadField) as caught:
                    encode_request(vector["value"])
                self.assertEqual(caught.exception.code_name, vector["error"])


class TopicChecks(unittest.TestCase):
    def test_topics_the_server_refuses_are_refused_here(self) -> None:
        for topic in ["a\x00b", "tab\there", "del\x7f", "x" * 1025, "é" * 513, "lone \ud800"]:
            with self.subTest(topic=topic[:20]):
                with self.assertRaises(BadField):
                    frames.topic_field(topic)
        with self.assertRaises(TypeError):
            frames.topic_field(b"bytes")  # type: ignore[arg-type]

    def test_the_longest_topics_are_allowed(self) -> None:
        self.assertEqual(len(frames.topic_field("x" * 1024)), 1026)
        self.assertEqual(len(frames.topic_field("é" * 512)), 1026)
        self.assertEqual(frames.topic_field(""), b"\x00\x00")


if __name__ == "__main__":
    unittest.main()
