"""Read messages from a dsmq topic by polling with "get".

    python3 examples/get_client.py [host] [port] [topic] [count]

Defaults: 127.0.0.1 30008 greetings 5. Start this before the put client: a reader
only sees messages put after it connected. Prints each message on its own line and
exits once it has `count` of them, or after 10 s with exit status 1.
"""
import codecs
import json
import socket
import sys
import time

host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 30008
topic = sys.argv[3] if len(sys.argv) > 3 else "greetings"
count = int(sys.argv[4]) if len(sys.argv) > 4 else 5
give_up_at = time.monotonic() + 10

decoder = json.JSONDecoder()
utf8 = codecs.getincrementaldecoder("utf-8")()  # a character may be split across recvs


def read_reply(s, buffer):
    """Return the first JSON object in the reply stream and the text after it.

    Replies have no delimiter and TCP has no message boundaries: one reply can
    arrive in several recvs, so receive until a whole object can be decoded.
    """
    while True:
        try:
            reply, end = decoder.raw_decode(buffer)
            return reply, buffer[end:]
        except json.JSONDecodeError:
            pass  # not a whole object yet
        data = s.recv(1024)
        if not data:
            raise RuntimeError("Connection terminated by server")
        buffer += utf8.decode(data)


received = 0
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.settimeout(10)  # never block forever on a server that stopped answering
    s.connect((host, port))
    print(f"connected to {host}:{port}, waiting for {count} messages on {topic!r}", flush=True)

    buffer = ""
    while received < count and time.monotonic() < give_up_at:
        request_msg = json.dumps({"action": "get", "topic": topic})
        s.sendall(bytes(request_msg, "utf-8"))
        reply, buffer = read_reply(s, buffer)
        if "error" in reply:
            sys.exit(f"server refused the request: {reply['error']['text']}")
        if reply["message"] == "":
            time.sleep(0.05)  # nothing new yet: ask again shortly
            continue
        print(reply["message"], flush=True)
        received += 1

if received < count:
    sys.exit(f"gave up after 10 s with {received} of {count} messages")
