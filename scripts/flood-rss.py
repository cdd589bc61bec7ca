#!/usr/bin/env python3
"""Floods one node with N connections that each declare a 16 MiB body, send
MIB MiB of it at once and then stall; prints the node's VmRSS before and
while the flood holds (after HOLD seconds), and whether a ping on a fresh
connection is answered. Usage: flood-rss.py PID HOST:PORT N MIB HOLD"""
import socket, sys, time, threading, xmlrpc.client

pid, addr, n, mib, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
host, port = addr.split(":")

def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

before = rss()
socks = []
head = (f"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {16 << 20}\r\n\r\n").encode()
chunk = b" " * (mib << 20)
def flood_one():
    s = socket.create_connection((host, int(port)))
    s.sendall(head)
    socks.append(s)
    try:
        s.sendall(chunk)  # blocks once the server stops reading
    except OSError:
        pass
threads = [threading.Thread(target=flood_one, daemon=True) for _ in range(n)]
for t in threads:
    t.start()
time.sleep(hold)
during = rss()
t0 = time.time()
ok = xmlrpc.client.ServerProxy(f"http://{addr}").surfstore.ping()
ping_ms = (time.time() - t0) * 1e3
print(f"connections {n}, {mib} MiB sent each ({n * mib} MiB total): "
      f"VmRSS {before} kB before, {during} kB during; ping {ok} in {ping_ms:.1f} ms")
