#!/usr/bin/env python3
"""Python's standard library against TLS nodes, run by tests/tls.rs.

usage: client.py CA PORT [PORT...]

With exactly ssl.create_default_context(cafile=CA) and
xmlrpc.client.ServerProxy("https://localhost:PORT/RPC2", context=ctx):
finds the leader, updatefile + getfileinfomap on it, waits for every node to
apply the write (the peers replicate over HTTPS), putblock on a follower and
getblock from every node. Then: a client without the CA fails certificate
verification; a plain http:// call to a TLS port fails, and the node goes on
serving over HTTPS. Prints "tls-python: PASS" at the end; any failure raises.
"""

import hashlib
import ssl
import sys
import time
import xmlrpc.client

DEADLINE_S = 20


def proxy(port, context):
    return xmlrpc.client.ServerProxy(f"https://localhost:{port}/RPC2", context=context)


def until(what, probe):
    """Polls probe() until it returns a true value, at most DEADLINE_S."""
    end = time.monotonic() + DEADLINE_S
    last = None
    while time.monotonic() < end:
        try:
            got = probe()
            if got:
                return got
            last = got
        except Exception as e:  # a node still starting, a leader changing
            last = repr(e)
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def main():
    ca = sys.argv[1]
    ports = [int(p) for p in sys.argv[2:]]
    ctx = ssl.create_default_context(cafile=ca)
    nodes = [proxy(p, ctx) for p in ports]

    def leader():
        for i, n in enumerate(nodes):
            if n.surfstore.isLeader():
                return (i,)
        return None

    (li,) = until("a leader", leader)
    lead = nodes[li]
    block = b"a block sent over TLS\n" * 100
    h = hashlib.sha256(block).hexdigest()
    assert lead.surfstore.updatefile("tls.txt", 1, [h]) is True
    got = lead.surfstore.getfileinfomap()
    assert got["tls.txt"] == [1, [h]], got
    for i, n in enumerate(nodes):
        until(f"node {i} to apply tls.txt v1",
              lambda n=n: n.surfstore.tester_getversion("tls.txt") == 1)

    follower = nodes[(li + 1) % len(nodes)]
    assert follower.surfstore.putblock(xmlrpc.client.Binary(block)) is True
    for i, n in enumerate(nodes):
        data = n.surfstore.getblock(h).data
        assert data == block, f"node {i} returned {len(data)} bytes"

    # No CA: the system's store does not know ours.
    try:
        xmlrpc.client.ServerProxy(f"https://localhost:{ports[0]}/RPC2").surfstore.ping()
        raise AssertionError("a client without the CA was served")
    except ssl.SSLCertVerificationError as e:
        print(f"without the CA: {e}")

    # Plain HTTP to a TLS port: refused, and the node goes on.
    plain = xmlrpc.client.ServerProxy(f"http://localhost:{ports[0]}/RPC2")
    try:
        plain.surfstore.ping()
        raise AssertionError("a plain http:// call to a TLS port was answered")
    except (xmlrpc.client.ProtocolError, OSError, xmlrpc.client.Fault) as e:
        print(f"plain http: {e!r}")
        if isinstance(e, xmlrpc.client.ProtocolError):
            assert e.errcode == 400, e
    assert nodes[0].surfstore.ping() is True
    assert lead.surfstore.updatefile("tls.txt", 2, [h]) is True
    print("tls-python: PASS")


if __name__ == "__main__":
    main()
