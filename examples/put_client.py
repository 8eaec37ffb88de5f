"""Put a few messages on a dsmq topic, then exit.

    python3 examples/put_client.py [host] [port] [topic] [count]

Defaults: 127.0.0.1 30008 greetings 5. Start the get client first: a reader only
sees messages put after it connected. A put gets no reply, so there is nothing to read.
"""
import json
import socket
import sys

host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 30008
topic = sys.argv[3] if len(sys.argv) > 3 else "greetings"
count = int(sys.argv[4]) if len(sys.argv) > 4 else 5

with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.connect((host, port))
    for i in range(count):
        message_content = {"action": "put", "topic": topic, "message": f"Hello! {i}"}
        msg = json.dumps(message_content)
        s.sendall(bytes(msg, "utf-8"))

print(f"sent {count} messages to {topic!r}")
