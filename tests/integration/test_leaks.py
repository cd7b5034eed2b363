"""No descriptor or memory is kept by a connection once it is over: 20,000
short connections of every kind (served, reset by the client, reset by
the backend, denied, over a limit, backend down, bad PROXY header), then
acceptd's descriptors are back to their idle count and its RSS grew by
less than 8 MB."""

import os
import socket
import threading
import time

import pytest

import peers
from conftest import SANITIZERS, SMALL, VALGRIND, free_port

TOTAL = 2000 if SMALL else 20000
CLIENTS = 8                 # client threads
RSS_GROWTH_KB = 8 * 1024
DEADLINE = 240.0            # seconds for the whole load, at most
IO = 10.0
PAYLOAD = b"leak-check " * 20

pytestmark = pytest.mark.skipif(
    VALGRIND, reason="20,000 connections are too slow under valgrind")


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def reset_at_once(srv, c):
    """Backend: read the first bytes, then reset the connection."""
    c.recv(4096)
    peers.set_linger_reset(c)
    srv.record("reset")


def drain(s):
    """Read until EOF or reset; True if the connection ended."""
    try:
        while s.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return True


def open_to(addr):
    s = socket.create_connection(addr, timeout=IO)
    s.settimeout(IO)
    return s


def served(addr):
    """Send a request, half-close, get the whole echo back."""
    s = open_to(addr)
    try:
        s.sendall(PAYLOAD)
        s.shutdown(socket.SHUT_WR)
        got = peers.recv_all(s)
        assert got == PAYLOAD, "echo of %d bytes, got %d" % (len(PAYLOAD),
                                                            len(got))
    finally:
        s.close()


def client_reset(addr):
    """Send a request and reset at once."""
    s = open_to(addr)
    try:
        s.sendall(PAYLOAD)
    except (ConnectionResetError, BrokenPipeError):
        pass
    peers.set_linger_reset(s)
    s.close()


def closed_by_acceptd(addr, data=PAYLOAD):
    """Send something, then wait for acceptd (or the backend) to end it."""
    s = open_to(addr)
    try:
        try:
            s.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            pass
        drain(s)
    finally:
        s.close()


class Load:
    """The kinds of connection, one listener (or behaviour) each."""

    def __init__(self, addrs):
        self.kinds = [
            ("served", lambda: served(addrs["echo"])),
            ("client_reset", lambda: client_reset(addrs["echo"])),
            ("backend_reset", lambda: closed_by_acceptd(addrs["reset"])),
            ("denied", lambda: closed_by_acceptd(addrs["deny"])),
            ("limit", lambda: closed_by_acceptd(addrs["cap"])),
            ("backend_down", lambda: closed_by_acceptd(addrs["down"])),
            ("bad_proxy", lambda: closed_by_acceptd(
                addrs["proxy"], b"PROXY TCP4 not-an-address\r\n")),
        ]
        self.lock = threading.Lock()
        self.done = {k: 0 for k, _ in self.kinds}
        self.errors = []

    def run(self, total, deadline):
        """total connections from CLIENTS threads, kinds interleaved."""
        nexti = [0]

        def worker():
            while time.monotonic() < deadline:
                with self.lock:
                    i = nexti[0]
                    if i >= total or len(self.errors) > 10:
                        return
                    nexti[0] += 1
                name, fn = self.kinds[i % len(self.kinds)]
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - reported below
                    with self.lock:
                        self.errors.append("%s: %r" % (name, e))
                    continue
                with self.lock:
                    self.done[name] += 1

        threads = [threading.Thread(target=worker, daemon=True)
                   for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(1.0, deadline - time.monotonic() + 5))
        assert not self.errors, self.errors[:10]
        assert sum(self.done.values()) == total, (self.done, total)


def wait_fds(pid, want, timeout=20.0):
    """Wait until acceptd holds want descriptors; the count last seen."""
    deadline = time.monotonic() + timeout
    n = fd_count(pid)
    while n != want and time.monotonic() < deadline:
        time.sleep(0.1)
        n = fd_count(pid)
    return n


class Keeper:
    """While the load runs: read acceptd's sd_notify messages (a reader
    that never reads would block it once the datagram queue is full, which
    systemd never lets happen), and keep the held connection busy (the
    echo backend gives up on a connection silent for 60 s)."""

    def __init__(self, p, held):
        self.p = p
        self.held = held
        self.errors = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        last = time.monotonic()
        while not self.stop.is_set():
            self.p.read_notify()
            del self.p.notices[:]
            if time.monotonic() - last >= 5.0:
                last = time.monotonic()
                try:
                    self.held.sendall(b"ping")
                    assert peers.recv_exact(self.held, 4) == b"ping"
                except (OSError, AssertionError) as e:
                    self.errors.append("held connection: %r" % e)
                    return
            self.stop.wait(0.2)

    def close(self):
        """Stop; the held connection is the caller's again."""
        self.stop.set()
        self.thread.join(15)
        assert not self.errors, self.errors


def settle_fds(pid, timeout=10.0):
    """acceptd's descriptor count once it holds steady for a second."""
    deadline = time.monotonic() + timeout
    seen = [fd_count(pid)]
    while time.monotonic() < deadline:
        time.sleep(0.2)
        seen.append(fd_count(pid))
        if len(seen) >= 6 and len(set(seen[-6:])) == 1:
            break
    return seen[-1]


def test_mixed_short_connections_leave_nothing_behind(acceptd, backends):
    echo = backends.echo()
    resetter = backends.server(reset_at_once)
    down = backends.refuser()
    addrs = {}
    listeners = []
    for name, backend, opts in (
            ("echo", echo.text, {}),
            ("reset", resetter.text, {}),
            ("deny", echo.text, {"deny": ["127.0.0.0/8"]}),
            ("cap", echo.text, {"max_connections_per_ip": 1}),
            ("down", down.text, {"retries": 0}),
            ("proxy", echo.text, {"accept_proxy": True})):
        port = free_port()
        addrs[name] = ("127.0.0.1", port)
        l = {"name": name, "listen": ["127.0.0.1:%d" % port],
             "backends": [backend]}
        l.update(opts)
        listeners.append(l)
    p = acceptd.start(listeners, log_level="notice",
                      log_connections="none")
    # The one connection the "cap" listener allows, held all along.
    held = open_to(addrs["cap"])
    held.sendall(b"held")
    assert peers.recv_exact(held, 4) == b"held"
    keeper = Keeper(p, held)

    try:
        # Warm up (every path once allocates what it keeps), then idle.
        Load(addrs).run(7 * 20, time.monotonic() + 60)
        base_fds = settle_fds(p.pid)
        base_rss = p.rss_kb()

        load = Load(addrs)
        start = time.monotonic()
        load.run(TOTAL, start + DEADLINE)
        elapsed = time.monotonic() - start

        fds = wait_fds(p.pid, base_fds)
        rss = p.rss_kb()
        print("%d connections in %.1fs (%s); descriptors %d -> %d; "
              "RSS %d -> %d kB" % (TOTAL, elapsed, load.done, base_fds, fds,
                                   base_rss, rss))
        assert fds == base_fds, ("%d descriptors open after the load, %d "
                                 "before:\n%s" % (fds, base_fds,
                                                  sorted(os.listdir(
                                                      "/proc/%d/fd" % p.pid))))
        if not SANITIZERS:
            assert rss - base_rss < RSS_GROWTH_KB, (
                "RSS grew by %d kB over %d connections"
                % (rss - base_rss, TOTAL))

        # Still serving, the held connection included.
        served(addrs["echo"])
        keeper.close()
        held.sendall(b"more")
        assert peers.recv_exact(held, 4) == b"more"
    finally:
        keeper.stop.set()
        held.close()
