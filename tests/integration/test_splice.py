"""The splice relay: pipes are really used (and only with splice = true),
taken only while bytes are in flight so idle connections cost no extra
descriptor, counted in the default connection cap so that a full load of
stalled transfers never runs out of descriptors, and half-closes and
resets with bytes still in a pipe. acceptd, clients and backends run on
loopback; descriptors are counted in /proc/PID/fd."""

import hashlib
import os
import re
import resource
import select
import socket
import time

import pytest

import peers
from conftest import SMALL, VALGRIND, WORKERS, free_port
from hostile import log_lines, wait_for

MB = 1024 * 1024
# Pipes a worker keeps at most (RELAY_PIPES_MAX in src/acceptd.h; fewer
# under a low RLIMIT_NOFILE, see pool_pipes).
PIPES_MAX = 32
# A backend stops sending once nothing went out for this long: every
# buffer between it and the client (sockets, acceptd's pipe or buffer)
# is full.
STALL = 3.0 if VALGRIND else 1.0
# A send or receive that takes longer than this is a failure.
IO = 60.0

needs_fd_counts = pytest.mark.skipif(
    VALGRIND, reason="valgrind opens descriptors of its own in acceptd")


def fd_targets(pid):
    """What each open descriptor of process pid points to."""
    out = []
    fddir = "/proc/%d/fd" % pid
    for fd in os.listdir(fddir):
        try:
            out.append(os.readlink(os.path.join(fddir, fd)))
        except OSError:
            pass  # closed meanwhile
    return out


def pipe_fds(pid):
    """Pipe descriptors (both ends) open in process pid."""
    return sum(t.startswith("pipe:") for t in fd_targets(pid))


def small_rcvbuf_connect(addr, size=32 * 1024):
    """A client with a small receive buffer, so that a download it does
    not read fills the buffers in acceptd soon."""
    return peers.connect(addr, timeout=IO, rcvbuf=size)


def send_until_stalled(c, limit, stall=STALL):
    """Send random bytes until the peer took none for `stall` seconds (or
    limit bytes went out); returns (bytes sent, their sha256)."""
    block = os.urandom(peers.CHUNK)
    h = hashlib.sha256()
    n = 0
    c.settimeout(stall)
    while n < limit:
        try:
            k = c.send(block[:min(len(block), limit - n)])
        except socket.timeout:
            break
        h.update(block[:k])
        n += k
    c.settimeout(IO)
    return n, h.hexdigest()


def stalling_download(limit):
    """Backend: read a 16-byte id, send until the client side stalls, then
    FIN; records {"id", "len", "sha256"} (at the stall, before the FIN)."""
    def handler(srv, c):
        cid = peers.recv_exact(c, 16)
        n, digest = send_until_stalled(c, limit)
        srv.record({"id": cid, "len": n, "sha256": digest})
        c.shutdown(socket.SHUT_WR)
        peers.recv_all(c)  # until the client is done
    return handler


def read_download(s):
    """Client side of stalling_download: (length, sha256) until EOF."""
    got, n = peers.recv_hash(s)
    return n, got


def quiet_cpu(p, seconds=1.0):
    """acceptd's CPU time over `seconds`."""
    cpu0 = p.cpu_seconds()
    time.sleep(seconds)
    return p.cpu_seconds() - cpu0


def test_stalled_download_holds_a_pipe_only_with_splice(acceptd, backends,
                                                        relay_mode):
    """A client that does not read: once every buffer is full, acceptd
    holds a pipe with the bytes (splice) or none (copy), stops reading
    from the backend without spinning, and delivers everything once the
    client reads."""
    srv = backends.server(stalling_download(1024 * MB))
    p = acceptd.simple([srv.text])
    base = pipe_fds(p.pid)
    s = small_rcvbuf_connect(p.addr)
    try:
        cid = os.urandom(16)
        s.sendall(cid)
        r = srv.wait_results(1, timeout=IO)[0]
        assert r["id"] == cid
        assert 0 < r["len"] < 1024 * MB  # held back, not unthrottled
        assert quiet_cpu(p) < 0.3, "acceptd spins while the client stalls"
        if not VALGRIND:
            held = pipe_fds(p.pid) - base
            if relay_mode["splice"]:
                assert held >= 2, "no pipe holds the stalled bytes"
                assert held <= 2 * PIPES_MAX * WORKERS
            else:
                assert held == 0, "splice = false opened %d pipe fds" % held
        n, digest = read_download(s)
    finally:
        s.close()
    assert (n, digest) == (r["len"], r["sha256"])
    line = p.wait_lines(1)[0]
    assert line["bytes_out"] == str(r["len"])
    assert line["bytes_in"] == "16"
    assert line["end"] == "backend_fin"


def echo_message(addr, size):
    """A connection through an echo backend that sent size bytes and got
    them back, and stays open (the caller closes it)."""
    s = peers.connect(addr, timeout=10)
    try:
        msg = os.urandom(size)

        def send():
            s.sendall(msg)

        t = peers.Thread(send)
        t.start()
        got = peers.recv_exact(s, size)
        t.join(IO)
        assert got == msg
    except BaseException:
        s.close()
        raise
    return s


@needs_fd_counts
def test_idle_connections_hold_no_pipe(acceptd, backends):
    """After bulk transfers, 200 connections that each relayed one small
    message both ways, and 40 that each relayed 1 MB both ways (spliced),
    then wait: they cost two descriptors each (client and backend), and
    not one pipe more than the pool already had."""
    hasher = backends.hasher()
    echo = backends.echo()
    bulk_addr = ("127.0.0.1", free_port())
    echo_addr = ("127.0.0.1", free_port())
    # One worker: its pool is the one the bulk transfers filled.
    p = acceptd.start([
        {"name": "bulk", "listen": ["%s:%d" % bulk_addr],
         "backends": [hasher.text], "splice": True},
        {"name": "echo", "listen": ["%s:%d" % echo_addr],
         "backends": [echo.text], "splice": True}], workers=1)
    base = pipe_fds(p.pid)
    size = MB if SMALL else 8 * MB
    threads = [peers.Thread(peers.exchange, bulk_addr, size, size)
               for _ in range(3)]
    for t in threads:
        t.start()
    clients = [t.join(IO) for t in threads]
    results = hasher.wait_results(3)
    for c in clients:
        peers.check_exchange(c, results)
    p.wait_lines(3)
    pool = pipe_fds(p.pid)
    assert pool > base, "the bulk transfers used no pipe"
    assert pool - base <= 2 * PIPES_MAX, "more pipes than the pool holds"
    total = len(fd_targets(p.pid))

    held = []
    try:
        for i in range(200):
            held.append(echo_message(echo_addr, 20))
        for i in range(40):
            held.append(echo_message(echo_addr, MB))
        time.sleep(0.2)
        assert pipe_fds(p.pid) == pool, \
            "idle connections hold pipes: %d pipe fds, %d before" % (
                pipe_fds(p.pid), pool)
        grown = len(fd_targets(p.pid)) - total
        assert grown == 2 * len(held), "%d descriptors for %d idle " \
            "connections" % (grown, len(held))
    finally:
        for s in held:
            s.close()
    p.wait_lines(3 + len(held), timeout=20)
    assert pipe_fds(p.pid) == pool


def nofile_limit(n):
    """preexec_fn: start acceptd with RLIMIT_NOFILE n (soft and hard)."""
    def set_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return set_limit


def pool_pipes(nofile, workers):
    """Pipes each worker may hold (acceptd.conf(5), splice): at most
    PIPES_MAX, its share of 1/64 of the open-files limit, at least 1."""
    return max(1, min(PIPES_MAX, nofile // 64 // workers))


def download(srv, c):
    """Backend: a 16-byte id, then "S": send until the client side stalls,
    then FIN; or "s": send 1000 bytes, and FIN once the client sent its.
    Records {"id", "len", "sha256"} once the bytes are sent."""
    cid = peers.recv_exact(c, 16)
    mode = peers.recv_exact(c, 1)
    if mode == b"S":
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        n, digest = send_until_stalled(c, 1024 * MB)
        srv.record({"id": cid, "len": n, "sha256": digest})
        c.shutdown(socket.SHUT_WR)
        peers.recv_all(c)
        return
    body = os.urandom(1000)
    c.sendall(body)
    srv.record({"id": cid, "len": len(body),
                "sha256": hashlib.sha256(body).hexdigest()})
    peers.recv_all(c)
    c.shutdown(socket.SHUT_WR)


def test_default_cap_leaves_room_for_every_pipe(acceptd, backends):
    """RLIMIT_NOFILE 1024, one worker, splice on: downloads stalled in
    flight hold every pipe of the pool while as many clients as the
    default cap allows are connected, and acceptd never runs out of
    descriptors: every client is served end to end, and one more waits in
    the backlog. (1024: the pool's 16 pipes then need more descriptors
    than the rest of the reserve, so a cap that left them out would run
    out.)"""
    nofile = 1024
    need = 2 * nofile + 256  # this process holds both ends of each
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip("RLIMIT_NOFILE %d is too low for the clients" % hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        check_cap_with_pipes_held(acceptd, backends, nofile)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def check_cap_with_pipes_held(acceptd, backends, nofile):
    srv = backends.server(download, backlog=1024)
    p = acceptd.simple([srv.text], preexec_fn=nofile_limit(nofile),
                       splice=True, settings={"workers": 1})
    m = re.search(r"connection cap: (\d+) from RLIMIT_NOFILE "
                  r"\(RLIMIT_NOFILE (\d+),", p.text())
    assert m, p.text()
    cap = int(m.group(1))
    # (valgrind keeps a few descriptors of the limit for itself)
    assert int(m.group(2)) == nofile or VALGRIND, m.group(0)
    pool = pool_pipes(int(m.group(2)), 1)
    stalled = pool + 2  # more than the pool: the last ones copy
    assert stalled < cap < nofile // 2, cap
    base = pipe_fds(p.pid)
    clients = []
    extra = None
    try:
        for i in range(cap):
            s = small_rcvbuf_connect(p.addr, 4096)
            clients.append((os.urandom(16), s))
            s.sendall(clients[-1][0] + (b"S" if i < stalled else b"s"))
            if i + 1 == stalled:
                # Every pipe holds bytes the clients do not read.
                srv.wait_results(stalled, timeout=IO)
                if not VALGRIND:
                    assert pipe_fds(p.pid) - base == 2 * pool, \
                        "%d pipe fds held, the pool has %d" % (
                            pipe_fds(p.pid) - base, 2 * pool)
            elif i >= stalled:
                s.settimeout(10)
                try:
                    got = peers.recv_exact(s, 1000)  # served at once
                except socket.timeout:
                    pytest.fail("client %d of %d (the cap) not served; "
                                "acceptd's log ends with:\n%s" % (
                                    i + 1, cap,
                                    "\n".join(p.text().splitlines()[-5:])))
                clients[-1] = (clients[-1][0], s, got)
        results = srv.wait_results(cap, timeout=IO)
        assert not srv.errors, srv.errors
        # Past the cap: not refused, not served, waiting in the backlog.
        extra = small_rcvbuf_connect(p.addr, 4096)
        extra_id = os.urandom(16)
        extra.sendall(extra_id + b"s")
        r, _, _ = select.select([extra], [], [], 1.0)
        assert not r, "a client past the cap was served"
        assert srv.accepted == cap
        if not VALGRIND:
            assert pipe_fds(p.pid) - base == 2 * pool
        for pattern in (r"Too many open files", r"accept failed",
                        r"no descriptor"):
            assert not log_lines(p, pattern), p.text()

        by_id = {x["id"]: x for x in results}
        for c in clients:
            cid, s = c[0], c[1]
            if len(c) == 2:
                got = read_download(s)
            else:
                s.shutdown(socket.SHUT_WR)
                assert peers.recv_all(s) == b""
                got = (len(c[2]), hashlib.sha256(c[2]).hexdigest())
            assert got == (by_id[cid]["len"], by_id[cid]["sha256"])
            s.close()
        # Slots are free: the waiting client is served now.
        last = [x for x in srv.wait_results(cap + 1, timeout=IO)
                if x["id"] == extra_id]
        assert len(last) == 1
        extra.settimeout(10)
        got = peers.recv_exact(extra, 1000)
        extra.shutdown(socket.SHUT_WR)
        assert peers.recv_all(extra) == b""
        assert hashlib.sha256(got).hexdigest() == last[0]["sha256"]
    finally:
        for c in clients:
            c[1].close()
        if extra is not None:
            extra.close()
    lines = p.wait_lines(cap + 1, timeout=30)
    ends = sorted(set(l["end"] for l in lines))
    assert ends == ["backend_fin", "client_fin"], ends
    for pattern in (r"Too many open files", r"accept failed",
                    r"no descriptor"):
        assert not log_lines(p, pattern), p.text()
    assert "pausing accepts" not in p.text()


def slow_request_reader(delay, chunk, pause):
    """Backend: wait `delay` (every buffer on the way fills meanwhile),
    then read the request slowly until EOF, then answer with its sha256
    and FIN; records {"len", "sha256"}."""
    def handler(srv, c):
        time.sleep(delay)
        h = hashlib.sha256()
        n = 0
        while True:
            d = c.recv(chunk)
            if not d:
                break
            h.update(d)
            n += len(d)
            time.sleep(pause)
        c.sendall(h.hexdigest().encode())
        c.shutdown(socket.SHUT_WR)
        srv.record({"len": n, "sha256": h.hexdigest()})
    return handler


def test_client_fin_waits_for_bytes_in_the_pipe(acceptd, backends):
    """The client sends 8 MB and its FIN while the backend does not read
    yet: bytes wait in acceptd's pipe. The backend gets every byte, then
    the FIN, and its answer still reaches the half-closed client."""
    # More than the socket buffers on the way hold (acceptd's send buffer
    # alone grows to 4 MB), so that the pipe holds bytes; splice moves
    # them in the kernel, so this size is cheap under sanitizers too.
    size = 8 * MB
    delay = 3.0 if VALGRIND else 1.5
    srv = backends.server(slow_request_reader(delay, 16 * 1024, 0.0005))
    p = acceptd.simple([srv.text], splice=True)
    base = pipe_fds(p.pid)
    s = peers.connect(p.addr)
    body = os.urandom(size)

    def send():
        s.sendall(body)
        s.shutdown(socket.SHUT_WR)

    t = peers.Thread(send)
    try:
        t.start()
        if not VALGRIND:
            wait_for(lambda: pipe_fds(p.pid) > base, timeout=delay,
                     what="a pipe holding the client's bytes")
        t.join(IO)
        answer = peers.recv_all(s)
    finally:
        s.close()
    r = srv.wait_results(1, timeout=IO)[0]
    assert r["len"] == size
    assert r["sha256"] == hashlib.sha256(body).hexdigest()
    assert answer == r["sha256"].encode()
    line = p.wait_lines(1)[0]
    assert line["bytes_in"] == str(size)
    assert line["bytes_out"] == "64"
    assert line["end"] == "client_fin"


def reset_when_stalled(srv, c):
    """Backend: "R" sends until the client side stalls, then resets the
    connection (SO_LINGER 0 close) with bytes in flight; "E" echoes."""
    if peers.recv_exact(c, 1) == b"E":
        peers.echo(srv, c)
        return
    n, _ = send_until_stalled(c, 1024 * MB)
    peers.set_linger_reset(c)
    c.close()
    srv.record(("reset", n))


def test_backend_reset_during_spliced_download(acceptd, backends):
    """The backend resets while its bytes wait in acceptd's pipe: the
    client gets a reset too, the line says backend_reset, and acceptd
    goes on serving."""
    srv = backends.server(reset_when_stalled)
    p = acceptd.simple([srv.text], splice=True)
    base = pipe_fds(p.pid)
    s = small_rcvbuf_connect(p.addr)
    received = 0
    try:
        s.sendall(b"R")
        how, sent = srv.wait_results(1, timeout=IO)[0]
        assert how == "reset" and sent > 0
        if not VALGRIND:
            # acceptd reads no more until the client does: the bytes
            # wait in the pipe, the reset behind them.
            assert pipe_fds(p.pid) > base, "no bytes were in a pipe"
        with pytest.raises(ConnectionResetError):
            while True:
                d = s.recv(peers.CHUNK)
                if not d:
                    break  # a FIN instead of the reset: fails the raises
                received += len(d)
    finally:
        s.close()
    assert received <= sent
    line = p.wait_lines(1)[0]
    assert line["end"] == "backend_reset"
    # Written to the client's socket; the reset drops what it still held.
    assert int(line["bytes_out"]) >= received
    assert p.proc.poll() is None
    # The next client is served as usual.
    s = peers.connect(p.addr, timeout=10)
    try:
        s.sendall(b"Eafter the reset")
        s.shutdown(socket.SHUT_WR)
        assert peers.recv_all(s) == b"after the reset"
    finally:
        s.close()
    assert p.wait_lines(2)[1]["end"] == "client_fin"


def download_or_hold(srv, c):
    """Backend: "H" sends until the client side stalls, then waits for the
    end (the client resets); "D" does the same, then FIN. Records
    {"len", "sha256"} at the stall."""
    mode = peers.recv_exact(c, 1)
    n, digest = send_until_stalled(c, 1024 * MB)
    srv.record({"mode": mode, "len": n, "sha256": digest})
    if mode == b"D":
        c.shutdown(socket.SHUT_WR)
    try:
        peers.recv_all(c)
    except OSError:
        pass


@needs_fd_counts
def test_client_reset_drops_the_bytes_in_its_pipe(acceptd, backends):
    """A client resets while its download waits in a pipe: the pipe, not
    empty, is closed rather than given to the next connection, whose
    download is then exactly what its backend sent."""
    srv = backends.server(download_or_hold)
    # One worker: the next connection takes pipes from the same pool.
    p = acceptd.simple([srv.text], splice=True, settings={"workers": 1})
    base = pipe_fds(p.pid)
    s = small_rcvbuf_connect(p.addr)
    try:
        s.sendall(b"H")
        srv.wait_results(1, timeout=IO)
        assert pipe_fds(p.pid) > base, "no bytes were in a pipe"
        peers.set_linger_reset(s)
    finally:
        s.close()
    assert p.wait_lines(1)[0]["end"] == "client_reset"
    assert pipe_fds(p.pid) == base, "a pipe with bytes in it was kept"
    s = small_rcvbuf_connect(p.addr)
    try:
        s.sendall(b"D")
        r = srv.wait_results(2, timeout=IO)[1]
        assert read_download(s) == (r["len"], r["sha256"])
    finally:
        s.close()
    line = p.wait_lines(2)[1]
    assert (line["end"], line["bytes_out"]) == ("backend_fin", str(r["len"]))
