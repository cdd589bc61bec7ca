#!/usr/bin/env python3
"""Writes fuzz/corpus/http_request/: the exact bytes Python's stdlib
xmlrpc.client.ServerProxy sends (headers and body), captured by a local
socket on an ephemeral port that answers each call with <boolean>1</boolean>.

Run from anywhere: python3 fuzz/seed_http.py
"""

import os
import socket
import threading
import xmlrpc.client

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "http_request")
REPLY = (b"<?xml version='1.0'?>\n<methodResponse><params><param><value>"
         b"<boolean>1</boolean></value></param></params></methodResponse>\n")

captured = []


def serve(listener):
    while True:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if b"\r\n\r\n" not in data:
                    break
                head, rest = data.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    rest += conn.recv(65536)
                captured.append(head + b"\r\n\r\n" + rest[:length])
                data = rest[length:]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: "
                             + str(len(REPLY)).encode() + b"\r\n\r\n" + REPLY)


def main():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    port = listener.getsockname()[1]
    p = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2", allow_none=True)
    h = "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"
    p.surfstore.ping()
    p.surfstore.getfileinfomap()
    p.surfstore.updatefile("a file.txt", 1, [h, h])
    p.surfstore.updatefile("gone", 2, ["0"])
    p.surfstore.updatefile("é <&> \r\n", 1, [])
    p.surfstore.getblock(h)
    p.surfstore.putblock(xmlrpc.client.Binary(b"\x00\x01block data"))
    p.surfstore.hasblocks([h, h[::-1]])
    p.surfstore.isLeader()
    p.surfstore.isCrashed()
    p.surfstore.crash()
    p.surfstore.restore()
    p.surfstore.tester_getversion("a file.txt")
    p.surfstore.members()
    p.surfstore.appendEntries({"from": 0, "to": 1, "term": 3, "prev_index": 2, "prev_term": 1,
                               "commit": 2, "read_seq": 0,
                               "entries": xmlrpc.client.Binary(b"")})
    p.surfstore.requestVote({"from": 0, "to": 1, "term": 3, "last_index": 2, "last_term": 1})
    p.echo([1, 2.5, True, None, {"k": [b"x"]}], 2**31 - 1)
    m = xmlrpc.client.MultiCall(p)
    m.surfstore.ping()
    m.surfstore.isLeader()
    m()
    os.makedirs(OUT, exist_ok=True)
    for i, req in enumerate(captured):
        with open(os.path.join(OUT, f"python_{i:02}.http"), "wb") as f:
            f.write(req)
    # Two calls on one keep-alive connection, as ServerProxy reuses it.
    with open(os.path.join(OUT, "python_keepalive.http"), "wb") as f:
        f.write(captured[0] + captured[1])
    print(f"{len(captured) + 1} requests written to {OUT}")


if __name__ == "__main__":
    main()
