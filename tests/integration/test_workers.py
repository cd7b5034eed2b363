"""workers: several event-loop threads, with the caps, round robin,
counters, reload, graceful stop and watchdog as exact as with one."""

import json
import os
import signal
import socket
import threading
import time

import pytest

import observe
import peers
from conftest import (RELOAD_TIMEOUT, SANITIZERS, SMALL, conf_text,
                      free_port)

needs_ctl = pytest.mark.skipif(not observe.have_acceptctl(),
                               reason="set ACCEPTCTL to the built acceptctl")
SYSTEMD = os.environ.get("ACCEPTD_SYSTEMD", "1") != "0"


def worker_threads(pid):
    """Names of acceptd's worker threads (acceptd-wN), from /proc."""
    names = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm.startswith("acceptd-w"):
            names.append(comm)
    return sorted(names)


def stats(p):
    return json.loads(observe.ctl_ok(p, "stats"))


def concurrent(fn, n, timeout=30.0):
    """Run fn(i) in n threads at once; return the results (or raise)."""
    results = [None] * n
    errors = []

    def run(i):
        try:
            results[i] = fn(i)
        except Exception as e:      # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "clients still running"
    assert not errors, errors
    return results


@needs_ctl
def test_sessions_spread_across_worker_threads(acceptd, backends, sockdir):
    p = observe.start(acceptd, sockdir, [backends.echo().text],
                      settings={"workers": 2})
    assert worker_threads(p.pid) == ["acceptd-w0", "acceptd-w1"]
    held = [observe.held(p.addr, b"x%d" % i) for i in range(4)]
    try:
        st = stats(p)
        # The least loaded worker takes each: two and two.
        assert [w["active"] for w in st["workers"]] == [2, 2], st["workers"]
        assert st["connections"]["active"] == 4
    finally:
        for s in held:
            s.close()
    for i in range(10):
        assert observe.echo_once(p.addr, b"e%d" % i) == b"e%d" % i
    p.wait_lines(14)
    st = observe.wait_for(
        lambda: (lambda s: s if sum(w["active"] for w in s["workers"]) == 0
                 else None)(stats(p)), what="all closed")
    accepted = [w["accepted"] for w in st["workers"]]
    assert sum(accepted) == 14 and min(accepted) >= 4, accepted


@needs_ctl
def test_one_worker_runs_on_the_main_loop(acceptd, backends, sockdir):
    p = observe.start(acceptd, sockdir, [backends.echo().text],
                      settings={"workers": 1})
    assert worker_threads(p.pid) == []
    assert observe.echo_once(p.addr, b"one") == b"one"
    p.wait_lines(1)
    st = stats(p)
    assert [w["accepted"] for w in st["workers"]] == [1]


def test_auto_starts_one_worker_per_cpu(acceptd, backends):
    p = acceptd.simple([backends.echo().text], settings={"workers": "auto"})
    n = os.sysconf("SC_NPROCESSORS_ONLN")
    want = [] if n == 1 else ["acceptd-w%d" % i for i in range(n)]
    assert worker_threads(p.pid) == sorted(want)
    assert observe.echo_once(p.addr, b"auto") == b"auto"


def counting_backend(backends, hold):
    """A backend that counts the connections it has at once (and the
    most it ever had), holds each for hold seconds, then echoes."""
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    def handler(srv, c):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        try:
            data = c.recv(100)
            time.sleep(hold)
        finally:
            with lock:
                state["now"] -= 1
        c.sendall(data)
        srv.record(1)

    return backends.server(handler), state


def test_global_cap_is_exact_across_workers(acceptd, backends):
    srv, state = counting_backend(backends, 0.3)
    p = acceptd.simple([srv.text], settings={"workers": 2,
                                             "max_connections": 10})

    def client(i):
        s = peers.connect(p.addr, timeout=20)
        try:
            s.sendall(b"c%d" % i)
            return peers.recv_exact(s, len(b"c%d" % i))
        finally:
            s.close()

    got = concurrent(client, 30)
    assert got == [b"c%d" % i for i in range(30)]
    assert srv.accepted == 30
    assert state["max"] == 10, state     # reached, never passed
    ends = [l["end"] for l in p.wait_lines(30)]
    assert "limit" not in ends


def test_per_ip_limit_is_exact_across_workers(acceptd, backends):
    p = acceptd.simple([backends.echo().text],
                       settings={"workers": 2, "log_level": "info"},
                       max_connections_per_ip=3)
    conns = [peers.connect(p.addr) for _ in range(8)]
    try:
        served = 0
        for i, s in enumerate(conns):
            try:
                s.sendall(b"p%d" % i)
                if peers.recv_exact(s, 2) == b"p%d" % i:
                    served += 1
            except (ConnectionError, AssertionError, socket.timeout):
                pass
        assert served == 3
        ends = [l["end"] for l in p.wait_lines(5)]
        assert ends.count("limit") == 5, ends
        # Another address has its own three.
        other = socket.create_connection(p.addr, timeout=5,
                                         source_address=("127.0.0.2", 0))
        other.sendall(b"ok")
        assert peers.recv_exact(other, 2) == b"ok"
        other.close()
    finally:
        for s in conns:
            s.close()


def test_roundrobin_is_exact_across_workers(acceptd, backends):
    srvs = [backends.echo() for _ in range(3)]
    n = 150 if SMALL or SANITIZERS else 300
    p = acceptd.simple([s.text for s in srvs], settings={"workers": 2})
    per_thread = n // 10

    def client(t):
        for i in range(per_thread):
            assert observe.echo_once(p.addr, b"r") == b"r"

    concurrent(client, 10, timeout=60)
    counts = [s.accepted for s in srvs]
    assert sum(counts) == n
    assert all(abs(c - n // 3) <= 1 for c in counts), counts


def test_reload_under_load_with_two_workers(acceptd, backends):
    a, b = backends.echo(), backends.echo()
    port = free_port()
    listen = ["127.0.0.1:%d" % port]
    p = acceptd.simple([a.text], listen=listen, settings={"workers": 2})
    stop = threading.Event()
    failures = []
    done = [0]

    def load():
        while not stop.is_set():
            try:
                s = peers.connect(p.addr)
                s.sendall(b"L" * 1000)
                s.shutdown(socket.SHUT_WR)
                if peers.recv_all(s) != b"L" * 1000:
                    failures.append("short reply")
                s.close()
                done[0] += 1
            except OSError as e:
                failures.append(e)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(3):
            target = b if i % 2 == 0 else a
            with open(p.conf, "w") as f:
                f.write(conf_text([{"name": "t", "listen": listen,
                                    "backends": [target.text]}],
                                  workers=2, log_level="info",
                                  shutdown_timeout="5s"))
            p.signal(signal.SIGHUP)
            observe.wait_for(lambda: p.text().count("reloaded:") > i,
                             timeout=RELOAD_TIMEOUT, what="reload %d" % i)
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert not failures, failures[:5]
    assert done[0] > 20
    # After the last reload (to b), new connections go to b only.
    before = a.accepted
    for _ in range(5):
        assert observe.echo_once(p.addr, b"z") == b"z"
    assert a.accepted == before
    assert "reload failed" not in p.text()


def test_graceful_stop_drains_both_workers(acceptd, backends):
    p = acceptd.simple([backends.echo().text], settings={"workers": 2})
    held = [observe.held(p.addr, b"h%d" % i) for i in range(4)]
    p.signal(signal.SIGTERM)
    observe.wait_for(lambda: "stopping: waiting" in p.text(),
                     what="stopping")
    with pytest.raises(OSError):
        peers.connect(p.addr, timeout=2).recv(1)
    # Both workers still relay their connections.
    for i, s in enumerate(held):
        s.sendall(b"again%d" % i)
        assert peers.recv_exact(s, 6) == b"again%d" % i
    assert p.wait(0.5) is None
    for s in held:
        s.shutdown(socket.SHUT_WR)
        assert peers.recv_all(s) == b""
        s.close()
    assert p.wait(10) == 0
    ends = [l["end"] for l in p.lines()]
    assert sorted(ends) == ["client_fin"] * 4, ends


def test_shutdown_timeout_closes_both_workers(acceptd, backends):
    p = acceptd.simple([backends.echo().text],
                       settings={"workers": 2, "shutdown_timeout": "1s"})
    held = [observe.held(p.addr, b"k%d" % i) for i in range(4)]
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    assert p.wait(10) == 0
    assert time.monotonic() - t0 >= 0.9
    for s in held:
        try:
            assert s.recv(1) == b""
        except ConnectionResetError:
            pass
        s.close()
    ends = [l["end"] for l in p.lines()]
    assert ends == ["shutdown"] * 4, ends


@pytest.mark.skipif(not SYSTEMD, reason="needs libsystemd (sd_notify)")
def test_watchdog_is_fed_with_two_busy_workers(backends):
    import lifecycle
    echo = backends.echo()
    port = free_port()
    text = conf_text([{"name": "t", "listen": ["127.0.0.1:%d" % port],
                       "backends": [echo.text]}], workers=2)
    d = lifecycle.Daemon(text, env={"WATCHDOG_USEC": "400000"},
                         wrapper=["/bin/sh", "-c",
                                  'export WATCHDOG_PID=$$; exec "$@"', "sh"])
    try:
        d.wait_ready()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.1:
            observe.echo_once(("127.0.0.1", port), b"w" * 100)
            d.notifier.poll()
        pings = [f for _, f, _ in d.notifier.messages if "WATCHDOG" in f]
        assert 7 <= len(pings) <= 12, len(pings)
        assert "did not run" not in d.text()
        assert worker_threads(d.pid) == ["acceptd-w0", "acceptd-w1"]
    finally:
        d.proc.send_signal(signal.SIGTERM)
        assert d.wait(20) == 0, d.text()
        d.cleanup()


def test_reload_keeps_the_number_of_workers(acceptd, backends):
    echo = backends.echo()
    port = free_port()
    listen = ["127.0.0.1:%d" % port]
    p = acceptd.simple([echo.text], listen=listen, settings={"workers": 2})
    with open(p.conf, "w") as f:
        f.write(conf_text([{"name": "t", "listen": listen,
                            "backends": [echo.text]}], workers=3,
                          log_level="info"))
    p.signal(signal.SIGHUP)
    observe.wait_for(lambda: "reloaded:" in p.text(),
                     timeout=RELOAD_TIMEOUT, what="reload")
    assert "workers changes only when acceptd is restarted" in p.text()
    assert worker_threads(p.pid) == ["acceptd-w0", "acceptd-w1"]
    assert observe.echo_once(p.addr, b"k") == b"k"
