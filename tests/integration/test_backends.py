"""Backend pools: balancing (roundrobin, weights, leastconn, source, first,
backup), passive health (back-off, no_backend), active health checks,
health carried over a reload, and backend host names resolved with a
DNS server the test runs (followed without a reload, last good answer
kept). One behaviour per test; everything on loopback."""

import os
import re
import signal
import socket
import threading
import time

import pytest

import peers
from conftest import RELOAD_TIMEOUT, SANITIZERS, free_port, have_ipv6
from dnsserver import DNSServer

SLACK = 1.5 if SANITIZERS else 0.6    # scheduling slack for timings


class Backend:
    """An echo backend on a fixed address that can be killed (its port
    then refuses connections) and started again on the same address.
    Connections that send bytes are clients; those that close without a
    byte are health probes."""

    def __init__(self, host="127.0.0.1", port=0):
        self.host = host
        self.lock = threading.Lock()
        self.clients = 0
        self.probes = 0
        self.sock = None
        self.conns = []
        self.start(port)

    def start(self, port=None):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port if port is None else port))
        s.listen(128)
        s.settimeout(0.1)
        self.sock = s
        self.port = s.getsockname()[1]
        self.text = peers.address_text(s)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, args=(s,),
                                        daemon=True)
        self._thread.start()

    def _loop(self, s):
        while not self._stop:
            try:
                c, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(10)
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        try:
            first = True
            while True:
                d = c.recv(65536)
                if first:
                    with self.lock:
                        if d:
                            self.clients += 1
                        else:
                            self.probes += 1
                    first = False
                if not d:
                    break
                c.sendall(d)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()

    def kill(self):
        """Stop listening: connects to the port are refused."""
        self._stop = True
        self._thread.join(5)
        self.sock.close()

    def counts(self):
        with self.lock:
            return self.clients, self.probes

    def close(self):
        if not self._stop:
            self.kill()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


@pytest.fixture
def pool():
    """Backend factory: pool(host=..., port=...); all closed at the end."""
    made = []

    def make(**kw):
        b = Backend(**kw)
        made.append(b)
        return b
    yield make
    for b in made:
        b.close()


@pytest.fixture
def dns(tmp_path):
    """A DNS server on loopback and a resolv.conf that names it."""
    d = DNSServer()
    d.conf = d.resolv_conf(str(tmp_path / "resolv.conf"))
    yield d
    d.close()


def echo_once(addr, data=b"x", source=None):
    """One short exchange through acceptd; returns the reply."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        if source is not None:
            s.bind((source, 0))
        s.connect(addr)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return peers.recv_all(s)
    finally:
        s.close()


def wait_for_text(p, pattern, timeout):
    """Wait until acceptd's log matches pattern; returns the time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, p.text()):
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError("no %r in the log after %ss:\n%s"
                         % (pattern, timeout, p.text()))


def backends_of(p, n):
    """The backend of each of the first n connection lines."""
    return [l["backend"] for l in p.wait_lines(n)[:n]]


def test_roundrobin_spreads_300_connections_within_10_percent(acceptd,
                                                              pool):
    bs = [pool() for _ in range(3)]
    p = acceptd.simple([b.text for b in bs],
                       settings={"log_connections": "none"})
    for i in range(300):
        assert echo_once(p.addr, b"%d" % i) == b"%d" % i
    for b in bs:
        assert 90 <= b.counts()[0] <= 110, [x.counts() for x in bs]


def test_roundrobin_honours_weights_without_bursts(acceptd, pool):
    bs = [pool() for _ in range(3)]
    groups = [{"address": b.text, "weight": w} for b, w in zip(bs, (1, 2, 5))]
    p = acceptd.simple(groups)
    for _ in range(80):
        echo_once(p.addr)
    order = backends_of(p, 80)
    for b, w in zip(bs, (1, 2, 5)):
        assert 9 * w <= order.count(b.text) <= 11 * w
    # Smooth: the heaviest never gets more than 5 in a row (a burst
    # would be 5 in a row at each turn and a long run overall).
    run = longest = 0
    for x in order:
        run = run + 1 if x == bs[2].text else 0
        longest = max(longest, run)
    assert longest <= 2, order[:16]


def test_leastconn_sends_new_clients_to_the_idle_backend(acceptd, pool):
    a, b = pool(), pool()
    p = acceptd.simple([a.text, b.text], balance="leastconn",
                       settings={"log_connections": "all"})
    held = []
    try:
        for _ in range(4):
            s = peers.connect(p.addr, timeout=10)
            s.sendall(b"x")
            assert s.recv(1) == b"x"
            held.append(s)
        lines = p.wait_lines(4, kind="connect")
        where = {int(l["client"].rsplit(":", 1)[1]): l["backend"]
                 for l in lines}
        on = {s: where[s.getsockname()[1]] for s in held}
        assert sorted(on.values()) == sorted([a.text, a.text, b.text,
                                              b.text])
        # Close the two long-lived ones on b: only a has some now.
        for s in [s for s in held if on[s] == b.text]:
            s.close()
        held = [s for s in held if on[s] == a.text]
        p.wait_lines(2)
        for _ in range(6):
            echo_once(p.addr)
        assert [l["backend"] for l in p.wait_lines(8)[2:]] == [b.text] * 6
    finally:
        for s in held:
            s.close()


def test_source_same_client_same_backend_in_two_processes(acceptd, pool):
    bs = [pool() for _ in range(4)]
    texts = [b.text for b in bs]
    p1 = acceptd.simple(texts, balance="source", name="one")
    p2 = acceptd.simple(texts, balance="source", name="two")
    sources = ["127.0.%d.%d" % (i // 200, 10 + i % 200) for i in range(24)]
    for src in sources:
        for p in (p1, p2, p1):
            echo_once(p.addr, source=src)
    l1 = p1.wait_lines(48)
    l2 = p2.wait_lines(24)
    chosen = {}
    for l in l1 + l2:
        ip = l["client"].rsplit(":", 1)[0]
        chosen.setdefault(ip, set()).add(l["backend"])
    assert set(chosen) == set(sources)
    assert all(len(v) == 1 for v in chosen.values()), chosen
    # And the clients are spread, not all on one backend.
    assert len({next(iter(v)) for v in chosen.values()}) >= 3


def test_first_uses_order_and_backup_only_without_primaries(acceptd, pool):
    a, b, c = pool(), pool(), pool()
    p = acceptd.simple([a.text, b.text, {"address": c.text,
                                         "backup": True}],
                       balance="first", retries=3)
    for _ in range(4):
        echo_once(p.addr)
    assert backends_of(p, 4) == [a.text] * 4
    a.kill()
    for _ in range(3):
        echo_once(p.addr)
    assert backends_of(p, 7)[4:] == [b.text] * 3
    b.kill()
    for _ in range(3):
        echo_once(p.addr)
    assert backends_of(p, 10)[7:] == [c.text] * 3


def test_backup_gets_nothing_while_a_primary_is_up(acceptd, pool):
    a, b, c = pool(), pool(), pool()
    p = acceptd.simple([a.text, b.text, {"address": c.text,
                                         "backup": True}])
    for _ in range(10):
        echo_once(p.addr)
    order = backends_of(p, 10)
    assert order.count(a.text) == 5 and order.count(b.text) == 5
    assert c.counts()[0] == 0


def test_after_a_failed_connect_later_clients_do_not_wait(acceptd,
                                                          backends):
    hole = backends.blackhole()
    good = backends.echo()
    p = acceptd.simple([hole.text, good.text], connect_timeout="800ms",
                       settings={"log_level": "debug"})
    start = time.monotonic()
    assert echo_once(p.addr) == b"x"    # the blackhole first: waits
    assert time.monotonic() - start > 0.7
    for i in range(6):
        start = time.monotonic()
        assert echo_once(p.addr, b"%d" % i) == b"%d" % i
        assert time.monotonic() - start < 0.5
    assert backends_of(p, 7) == [good.text] * 7
    down = re.findall(r"backend %s is down: connect timed out; next try "
                      r"in 1s" % re.escape(hole.text), p.text())
    assert len(down) == 1
    assert p.text().count("%s: connect failed" % hole.text) == 1


def test_backoff_doubles_while_the_backend_keeps_failing(acceptd,
                                                         backends):
    bad = backends.refuser()
    good = backends.echo()
    p = acceptd.simple([bad.text, good.text],
                       settings={"log_level": "debug"})
    for i in range(2):
        echo_once(p.addr)
    wait_for_text(p, r"backend %s is down: connect failed: Connection "
                  r"refused; next try in 1s" % re.escape(bad.text), 5)
    for want in ("2s", "4s"):
        before = p.text().count("%s: connect failed" % bad.text)
        # Within the back-off, nobody tries it.
        for i in range(4):
            echo_once(p.addr)
        assert p.text().count("%s: connect failed" % bad.text) == before
        time.sleep(float(want[0]) / 2 + 0.1)
        # Over: one connection tries it again (its turn comes within a
        # few), fails, and goes on to the good one.
        again = r"%s still failing: Connection refused; next try in %s" % (
            re.escape(bad.text), want)
        for i in range(6):
            echo_once(p.addr)
            if re.search(again, p.text()):
                break
        wait_for_text(p, again, 5)
    assert p.text().count("is down") == 1
    assert all(l["end"] == "client_fin" for l in p.lines())


def test_no_backend_when_all_are_down_connect_failed_when_all_fail(
        acceptd, backends):
    bad = backends.refuser()
    p = acceptd.simple([bad.text])
    for _ in range(2):
        s = peers.connect(p.addr, timeout=10)
        try:
            s.sendall(b"x")
            assert s.recv(1) == b""
        except ConnectionResetError:
            pass
        finally:
            s.close()
    ends = [l["end"] for l in p.wait_lines(2)]
    assert ends == ["connect_failed", "no_backend"]


def test_health_checks_take_a_killed_backend_out_and_back(acceptd, pool):
    a, b = pool(), pool()
    hc = {"interval": "500ms", "timeout": "300ms", "rise": 2, "fall": 2}
    p = acceptd.simple([a.text, b.text], health_check=hc,
                       settings={"log_level": "debug"})
    # Both are checked; probes are connections without a byte.
    deadline = time.monotonic() + 5
    while b.counts()[1] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b.counts()[1] >= 2
    killed = time.monotonic()
    b.kill()
    down = wait_for_text(p, r"backend %s is down: 2 health checks failed"
                         % re.escape(b.text), 5)
    assert down - killed <= 0.5 * 2 + SLACK
    assert not re.search(r"backend %s is down: connect" % re.escape(b.text),
                         p.text())
    # Back, but down until rise checks pass: clients go to a only.
    b.start()
    restarted = time.monotonic()
    for _ in range(6):
        echo_once(p.addr)
    up = wait_for_text(p, r"backend %s is up: 2 health checks passed"
                       % re.escape(b.text), 5)
    assert up - restarted <= 0.5 * 2 + SLACK
    assert backends_of(p, 6) == [a.text] * 6
    assert b.counts()[0] == 0
    for _ in range(6):
        echo_once(p.addr)
    assert backends_of(p, 12)[6:].count(b.text) == 3
    assert "%s: connect failed" % b.text not in p.text()


def test_health_state_is_kept_across_a_reload(acceptd, pool):
    a, b = pool(), pool()
    hc = {"interval": "400ms", "timeout": "200ms", "rise": 6, "fall": 1}
    p = acceptd.simple([a.text, b.text], health_check=hc)
    b.kill()
    wait_for_text(p, r"backend %s is down" % re.escape(b.text), 5)
    b.start()
    # rise 6 x 400ms: it stays down for over 2s while checks pass.
    time.sleep(0.3)
    p.signal(signal.SIGHUP)
    wait_for_text(p, r"reloaded", RELOAD_TIMEOUT)
    for _ in range(6):
        echo_once(p.addr)
    assert b.counts()[0] == 0, p.text()
    assert backends_of(p, 6) == [a.text] * 6
    wait_for_text(p, r"backend %s is up" % re.escape(b.text), 6)
    assert p.text().count("backend %s is down" % b.text) == 1


def test_host_name_followed_without_reload(acceptd, pool, dns):
    a = pool(host="127.0.0.2")
    b = pool(host="127.0.0.3", port=a.port)
    dns.set("app.acceptd.test", ["127.0.0.2"])
    p = acceptd.simple(["app.acceptd.test:%d" % a.port],
                       resolve_interval="1s",
                       settings={"resolv_conf": dns.conf})
    for _ in range(3):
        echo_once(p.addr)
    assert backends_of(p, 3) == [a.text] * 3
    dns.set("app.acceptd.test", ["127.0.0.3"])
    deadline = time.monotonic() + 5
    n = 3
    while time.monotonic() < deadline:
        echo_once(p.addr)
        n += 1
        if backends_of(p, n)[-1] == b.text:
            break
        time.sleep(0.1)
    assert backends_of(p, n)[-1] == b.text
    # Both addresses: one endpoint each, taken in turn.
    dns.set("app.acceptd.test", ["127.0.0.2", "127.0.0.3"])
    wait_for_text(p, r"app\.acceptd\.test resolves to 127\.0\.0\.2, "
                  r"127\.0\.0\.3", 5)
    for _ in range(4):
        echo_once(p.addr)
    last = backends_of(p, n + 4)[n:]
    assert sorted(last) == sorted([a.text, b.text] * 2)
    assert "SIGHUP" not in p.text() and "reloaded" not in p.text()


@pytest.mark.skipif(not have_ipv6(), reason="no IPv6 on loopback")
def test_host_name_gives_ipv4_and_ipv6_endpoints(acceptd, pool, dns):
    a = pool(host="127.0.0.1")
    b = pool(host="::1", port=a.port)
    dns.set("both.acceptd.test", ["127.0.0.1", "::1"])
    p = acceptd.simple([{"address": "both.acceptd.test:%d" % a.port,
                         "weight": 2}],
                       settings={"resolv_conf": dns.conf})
    for _ in range(4):
        echo_once(p.addr)
    assert sorted(backends_of(p, 4)) == sorted([a.text, b.text] * 2)


def test_failed_lookup_keeps_the_last_answer_and_logs_once(acceptd, pool,
                                                           dns):
    a = pool(host="127.0.0.2")
    dns.set("keep.acceptd.test", ["127.0.0.2"])
    p = acceptd.simple(["keep.acceptd.test:%d" % a.port],
                       resolve_interval="1s",
                       settings={"resolv_conf": dns.conf})
    queries = dns.count("keep.acceptd.test")
    dns.fail("keep.acceptd.test")
    deadline = time.monotonic() + 10
    while dns.count("keep.acceptd.test") < queries + 6 and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert dns.count("keep.acceptd.test") >= queries + 6
    for _ in range(3):
        echo_once(p.addr)
    assert backends_of(p, 3) == [a.text] * 3
    assert p.text().count("keep.acceptd.test: lookup failed") == 1
    assert "keeping its last addresses (127.0.0.2)" in p.text()
    dns.set("keep.acceptd.test", ["127.0.0.2"])
    wait_for_text(p, r"keep\.acceptd\.test resolves again", 5)


def test_name_that_never_resolves_is_a_startup_error(acceptd, dns):
    dns.set("other.acceptd.test", ["127.0.0.1"])
    p = acceptd.simple(["127.0.0.1:1", "missing.acceptd.test:80"],
                       wait=False, settings={"resolv_conf": dns.conf})
    p.expected_rc = 1
    assert p.wait(20) == 1
    assert re.search(r"acceptd\.conf:\d+: setting 'backends': "
                     r"\"missing\.acceptd\.test:80\": cannot resolve "
                     r"\"missing\.acceptd\.test\"", p.text()), p.text()
    assert "READY=1" not in "".join(p.notices)


def test_reload_with_a_name_that_never_resolves_keeps_running(acceptd,
                                                              pool, dns):
    a = pool()
    p = acceptd.simple([a.text], settings={"resolv_conf": dns.conf})
    with open(p.conf) as f:
        text = f.read()
    with open(p.conf, "w") as f:
        f.write(text.replace('backends = [ "%s" ]' % a.text,
                             'backends = [ "%s", "gone.acceptd.test:80" ]'
                             % a.text))
    p.signal(signal.SIGHUP)
    wait_for_text(p, r"reload failed", RELOAD_TIMEOUT)
    assert re.search(r"acceptd\.conf:\d+: setting 'backends': "
                     r"\"gone\.acceptd\.test:80\": cannot resolve",
                     p.text())
    assert echo_once(p.addr) == b"x"
    assert backends_of(p, 1) == [a.text]


def test_slow_dns_never_holds_up_connections(acceptd, pool, dns):
    a = pool(host="127.0.0.2")
    dns.set("slow.acceptd.test", ["127.0.0.2"])
    p = acceptd.simple(["slow.acceptd.test:%d" % a.port],
                       resolve_interval="1s",
                       settings={"resolv_conf": dns.conf})
    dns.hang("slow.acceptd.test")
    start = time.monotonic()
    worst = 0.0
    while time.monotonic() - start < 3:
        t = time.monotonic()
        assert echo_once(p.addr) == b"x"
        worst = max(worst, time.monotonic() - t)
    assert dns.count("slow.acceptd.test") >= 2
    assert worst < (1.0 if SANITIZERS else 0.5), worst
