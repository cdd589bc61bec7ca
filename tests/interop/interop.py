#!/usr/bin/env python3
"""Interop with Python's standard library only (xmlrpc.client, no pip).

Starts 5 nodes with run-server.sh on free loopback ports and checks the
behaviour API.md promises, from the point of view of the assignment's client.
Exits 0 when every check passes; prints the failing check and exits 1 otherwise.

    python3 tests/interop/interop.py            # what `cargo test` runs
    python3 tests/interop/interop.py --keep-logs
"""

import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
M = 5


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print(f"  ok  {what}", flush=True)


def wait_until(what, deadline_s, probe):
    """Polls `probe` until it returns something other than None/False (0 is a
    node id, so it counts); the bound is the spec's."""
    start = time.monotonic()
    while True:
        try:
            v = probe()
        except (ConnectionError, OSError, xmlrpc.client.Fault):
            v = None
        if v is not None and v is not False:
            took = time.monotonic() - start
            print(f"  ok  {what} ({took * 1000:.0f} ms)", flush=True)
            return v
        if time.monotonic() - start > deadline_s:
            raise Failure(f"{what}: not within {deadline_s} s")
        time.sleep(0.01)


class Cluster:
    def __init__(self, tmp):
        self.ports = free_ports(M)
        self.addrs = [f"localhost:{p}" for p in self.ports]
        self.config = os.path.join(tmp, "config.txt")
        with open(self.config, "w") as f:
            f.write(f"M: {M}\n\n")
            for i, a in enumerate(self.addrs):
                f.write(f"metadata{i}: {a}\n")
        self.logs = [open(os.path.join(tmp, f"node{i}.log"), "wb") for i in range(M)]
        self.procs = []
        for i in range(M):
            self.procs.append(subprocess.Popen(
                [os.path.join(REPO, "run-server.sh"), self.config, str(i)],
                stdout=self.logs[i], stderr=subprocess.STDOUT, cwd=tmp))
        self.local = threading.local()

    def proxy(self, i):
        # One ServerProxy per thread per node: xmlrpc.client is not thread-safe.
        cache = getattr(self.local, "proxies", None)
        if cache is None:
            cache = self.local.proxies = {}
        if i not in cache:
            cache[i] = xmlrpc.client.ServerProxy(f"http://{self.addrs[i]}", allow_none=True)
        return cache[i].surfstore

    def leaders(self):
        out = []
        for i in range(M):
            try:
                if self.proxy(i).isLeader():
                    out.append(i)
            except (ConnectionError, OSError):
                pass
        return out

    def one_leader(self):
        ls = self.leaders()
        return ls[0] if len(ls) == 1 else None

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in self.logs:
            f.close()


def call_in_thread(fn):
    box = {}

    def run():
        try:
            box["value"] = fn()
        except Exception as e:  # noqa: BLE001 - reported to the main thread
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def scenario(c):
    print("ping", flush=True)
    wait_until("all 5 nodes answer ping", 120, lambda: all(c.proxy(i).ping() is True for i in range(M)))
    check(c.proxy(0).members() == c.addrs, "members lists every node in id order")

    print("leader", flush=True)
    leader = wait_until("exactly one leader", 5, c.one_leader)
    # Stable: still the same single leader a few heartbeats later.
    time.sleep(0.5)
    check(c.leaders() == [leader], f"leader {leader} is stable")
    L = c.proxy(leader)

    print("version rules", flush=True)
    check(L.tester_getversion("a.txt") == 0, "an unknown file is version 0")
    check(L.updatefile("a.txt", 1, ["h1", "h2"]) is True, "create at version 1")
    check(L.updatefile("a.txt", 1, ["x"]) is False, "same version again is refused")
    check(L.updatefile("a.txt", 3, ["x"]) is False, "skipping a version is refused")
    check(L.updatefile("a.txt", 2, ["h3"]) is True, "version 2 after 1")
    check(L.updatefile("new.txt", 2, ["x"]) is False, "a new file must start at 1")
    check(L.updatefile("ints", 1, [1, 2, 3]) is True, "a hashlist of ints")
    weird = "dír/ünï <&>\"' 😀 \t x.txt"
    check(L.updatefile(weird, 1, ["0"]) is True, "unicode and XML-special filename")
    check(L.updatefile(weird, 2, ["0"]) is True, "tombstones are versioned like any update")
    digest = hashlib.sha256(b"x").digest()
    check(L.updatefile("digests", 1, [digest, 7, digest.hex(), b""]) is True,
          "a hashlist of sha256().digest() bytes (sent as base64), an int and a hex string")
    try:
        L.updatefile("floats", 1, ["h", 1.5])
        raise Failure("a double in a hashlist was accepted")
    except xmlrpc.client.Fault as f:
        check(f.faultCode == 3 and "hashlist[1] is double" in f.faultString,
              f"a double in a hashlist is BadRequest naming it ({f.faultString})")
    m = L.getfileinfomap()
    check(m["a.txt"] == [2, ["h3"]], "getfileinfomap shows the latest version and hashlist")
    check(m["ints"] == [1, [1, 2, 3]], "a hashlist of ints comes back as ints")
    version, got = m["digests"]
    check(version == 1 and [type(h) for h in got] == [xmlrpc.client.Binary, int, str, xmlrpc.client.Binary]
          and got[0].data == digest and got[1] == 7 and got[2] == digest.hex() and got[3].data == b"",
          "the digests come back as base64 (bytes), the int as an int, the hex as a string")
    builtin = xmlrpc.client.ServerProxy(f"http://{c.addrs[leader]}", use_builtin_types=True)
    check(builtin.surfstore.getfileinfomap()["digests"] == [1, [digest, 7, digest.hex(), b""]],
          "with use_builtin_types the digests are bytes again")
    check("floats" not in m, "the refused update left no file")
    check(m[weird] == [2, ["0"]], "the special filename round-trips exactly")

    print("followers", flush=True)
    follower = (leader + 1) % M
    try:
        c.proxy(follower).updatefile("f", 1, [])
        raise Failure("a follower accepted updatefile")
    except xmlrpc.client.Fault as f:
        check(f.faultCode == 2 and c.addrs[leader] in f.faultString,
              f"follower refuses updatefile with NotLeader naming the leader ({f.faultString})")
    try:
        c.proxy(follower).getfileinfomap()
        raise Failure("a follower answered getfileinfomap")
    except xmlrpc.client.Fault as f:
        check(f.faultCode == 2, "follower refuses getfileinfomap with NotLeader")
    try:
        L.nosuchmethod()
        raise Failure("an unknown method answered")
    except xmlrpc.client.Fault as f:
        check(f.faultCode == 4, "unknown method is NoSuchMethod")
    try:
        L.updatefile("a.txt", "one", [])
        raise Failure("a string version was accepted")
    except xmlrpc.client.Fault as f:
        check(f.faultCode == 3, "a mistyped argument is BadRequest")

    print("replication", flush=True)
    check(L.updatefile("r.txt", 1, ["r1"]) is True, "write r.txt")
    wait_until("all nodes apply r.txt within 1 s", 1,
               lambda: all(c.proxy(i).tester_getversion("r.txt") == 1 for i in range(M)))

    print("minority crash", flush=True)
    f1, f2 = [i for i in range(M) if i != leader][:2]
    for f in (f1, f2):
        check(c.proxy(f).crash() is True, f"crash follower {f}")
        check(c.proxy(f).isCrashed() is True, f"follower {f} reports crashed")
    check(c.proxy(f1).crash() is True, "crashing a crashed node has no effect")
    check(c.proxy(f1).isLeader() is False, "a crashed node is not leader")
    try:
        c.proxy(f1).getfileinfomap()
        raise Failure("a crashed node answered getfileinfomap")
    except xmlrpc.client.Fault as e:
        check(e.faultCode == 1 and e.faultString.startswith("isCrashed"), "a crashed node refuses with isCrashed")
    check(L.updatefile("r.txt", 2, ["r2"]) is True, "writes succeed with 2 of 5 crashed")
    check(L.updatefile("m.txt", 1, ["m1"]) is True, "another write with 2 of 5 crashed")
    alive = [i for i in range(M) if i not in (f1, f2)]
    wait_until("live nodes apply the writes", 1,
               lambda: all(c.proxy(i).tester_getversion("r.txt") == 2 for i in alive))
    check(all(c.proxy(f).tester_getversion("r.txt") == 1 for f in (f1, f2)),
          "crashed nodes stay behind and keep their state (version 1)")
    for f in (f1, f2):
        check(c.proxy(f).restore() is True, f"restore {f}")
    wait_until("restored nodes catch up within 2 s", 2,
               lambda: all(c.proxy(f).tester_getversion("m.txt") == 1 and
                           c.proxy(f).tester_getversion("r.txt") == 2 for f in (f1, f2)))

    print("leader crash", flush=True)
    check(L.updatefile("before-crash", 1, ["b"]) is True, "a committed write before the leader crash")
    old = leader
    check(c.proxy(old).crash() is True, f"crash leader {old}")
    # The crashed old leader answers isLeader False, so one leader is a new one.
    leader = wait_until("a new leader within 2 s", 2, c.one_leader)
    check(leader != old, f"the new leader is {leader}, not the crashed {old}")
    L = c.proxy(leader)
    m = L.getfileinfomap()
    check(m["before-crash"] == [1, ["b"]] and m["r.txt"] == [2, ["r2"]] and m["a.txt"] == [2, ["h3"]],
          "no committed write lost")
    check(L.updatefile("after-crash", 1, ["c"]) is True, "the new leader takes writes")
    check(c.proxy(old).restore() is True, "restore the old leader")
    wait_until("old leader rejoins as a follower and catches up", 2,
               lambda: c.proxy(old).tester_getversion("after-crash") == 1 and not c.proxy(old).isLeader())

    print("majority crash", flush=True)
    others = [i for i in range(M) if i != leader][:3]
    for f in others:
        c.proxy(f).crash()
    ut, ubox = call_in_thread(lambda: c.proxy(leader).updatefile("blocked.txt", 1, ["z"]))
    gt, gbox = call_in_thread(lambda: c.proxy(leader).getfileinfomap())
    ut.join(1.0)
    gt.join(0.1)
    check(ut.is_alive() and gt.is_alive(), "updatefile and getfileinfomap block with 3 of 5 crashed")
    check(c.proxy(leader).isLeader() is True, "the leader does not step down for lack of answers")
    for f in others:
        c.proxy(f).restore()
    ut.join(5)
    gt.join(5)
    check(not ut.is_alive() and ubox.get("value") is True,
          f"updatefile completes after restore ({ubox})")
    check(not gt.is_alive() and "error" not in gbox and gbox["value"]["a.txt"] == [2, ["h3"]],
          "getfileinfomap completes after restore")
    wait_until("every node applies blocked.txt", 2,
               lambda: all(c.proxy(i).tester_getversion("blocked.txt") == 1 for i in range(M)))


def main():
    keep = "--keep-logs" in sys.argv
    tmp = tempfile.mkdtemp(prefix="surfstore-interop-")
    c = Cluster(tmp)
    ok = False
    try:
        scenario(c)
        ok = True
    except Failure as e:
        print(f"FAIL: {e}", flush=True)
    finally:
        c.stop()
    if not ok or keep:
        for i in range(M):
            path = os.path.join(tmp, f"node{i}.log")
            print(f"--- {path} (last 30 lines)")
            with open(path, errors="replace") as f:
                print("".join(f.readlines()[-30:]))
    print("interop: PASS" if ok else "interop: FAIL", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
