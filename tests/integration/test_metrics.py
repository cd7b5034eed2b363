"""metrics: GET /metrics in the Prometheus text format, its counters after
known traffic, promtool's verdict, and scrapers that cannot stall the
relay."""

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

import observe
from conftest import RELOAD_TIMEOUT, free_port


def test_scrape_passes_promtool(acceptd, backends, sockdir):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus, "
                    "which ./bootstrap installs)")
    echo = backends.echo()
    refused = backends.refuser()
    p = observe.start(acceptd, sockdir, [refused.text, echo.text])
    for i in range(3):
        assert observe.echo_once(p.addr, b"x" * i) == b"x" * i
    text = observe.scrape(p)
    r = subprocess.run([promtool, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=30)
    # promtool prints each lint problem; a clean scrape prints nothing.
    assert r.returncode == 0 and r.stdout + r.stderr == "", (
        r.stdout + r.stderr + "\n" + text)


def test_counters_follow_known_traffic(acceptd, backends, sockdir):
    echo = backends.echo()
    refused = backends.refuser()
    port, tport, dport = free_port(), free_port(), free_port()
    p = acceptd.start(
        [{"name": "t", "listen": ["127.0.0.1:%d" % tport],
          "backends": [echo.text]},
         {"name": "dead", "listen": ["127.0.0.1:%d" % dport],
          "backends": [refused.text], "retries": 0}],
        metrics="127.0.0.1:%d" % port)
    p.metrics_port = port
    addr, dead = ("127.0.0.1", tport), ("127.0.0.1", dport)
    sizes = [1, 100, 4096, 70000]
    for n in sizes:
        payload = os.urandom(n)
        assert observe.echo_once(addr, payload) == payload
    assert observe.closed_at_once(dead)
    open_conn = observe.held(addr, b"12345")
    try:
        s = observe.parse(observe.scrape(p))
        lst = {"listener": "t"}
        assert observe.value(s, "acceptd_listener_connections_total",
                             end="client_fin", **lst) == len(sizes)
        for end in ("error", "killed", "connect_failed", "no_backend"):
            assert observe.value(s, "acceptd_listener_connections_total",
                                 end=end, **lst) == 0
        assert observe.value(s, "acceptd_listener_connections_total",
                             listener="dead", end="connect_failed") == 1
        assert observe.value(s, "acceptd_listener_connections_active",
                             **lst) == 1
        assert observe.value(s, "acceptd_listener_connections_active",
                             listener="dead") == 0
        assert observe.value(s, "acceptd_connections_active") == 1
        # Bytes relayed each way, the open connection's included.
        assert observe.value(s, "acceptd_listener_received_bytes_total",
                             **lst) == sum(sizes) + 5
        assert observe.value(s, "acceptd_listener_sent_bytes_total",
                             **lst) == sum(sizes) + 5
        assert observe.value(s, "acceptd_listener_received_bytes_total",
                             listener="dead") == 0
        # Every connection connected once, within the histogram.
        n = len(sizes) + 1
        assert observe.value(
            s, "acceptd_listener_connect_duration_seconds_count",
            **lst) == n
        assert observe.value(
            s, "acceptd_listener_connect_duration_seconds_bucket",
            le="+Inf", **lst) == n
        assert observe.value(
            s, "acceptd_listener_connect_duration_seconds_bucket",
            le="10", **lst) == n
        assert 0 < observe.value(
            s, "acceptd_listener_connect_duration_seconds_sum", **lst) < 10
        assert observe.value(
            s, "acceptd_listener_connect_duration_seconds_count",
            listener="dead") == 0
        # The refusing backend failed once and is marked down.
        ref = {"listener": "dead", "backend": refused.text}
        ok = {"listener": "t", "backend": echo.text}
        assert observe.value(s, "acceptd_backend_connect_failures_total",
                             **ref) == 1
        assert observe.value(s, "acceptd_backend_up", **ref) == 0
        assert observe.value(s, "acceptd_backend_up", **ok) == 1
        assert observe.value(s, "acceptd_backend_connect_failures_total",
                             **ok) == 0
        assert observe.value(s, "acceptd_backend_connections_total",
                             **ok) == n
        assert observe.value(s, "acceptd_backend_connections_active",
                             **ok) == 1
        assert observe.value(s, "acceptd_backend_disabled", **ok) == 0
        assert observe.value(s, "acceptd_listener_sockets", **lst) == 1
        assert observe.value(s, "acceptd_listener_capped_sockets",
                             **lst) == 0
        assert observe.value(s, "acceptd_log_dropped_lines_total") == 0
        start = observe.value(s, "acceptd_start_time_seconds")
        assert abs(start - time.time()) < 120
    finally:
        open_conn.close()
    observe.wait_for(lambda: len(p.lines("conn")) == n + 1,
                     what="the held connection's line")

    # Reloads by result: one good, one broken.
    p.signal(signal.SIGHUP)
    observe.wait_for(lambda: "reloaded:" in p.text(),
                     timeout=RELOAD_TIMEOUT, what="a reload")
    with open(p.conf, "a") as f:
        f.write("listeners = (\n")
    p.signal(signal.SIGHUP)
    observe.wait_for(lambda: "reload failed" in p.text(),
                     timeout=RELOAD_TIMEOUT, what="a failure")
    s = observe.parse(observe.scrape(p))
    assert observe.value(s, "acceptd_reloads_total", result="ok") == 1
    assert observe.value(s, "acceptd_reloads_total", result="failed") == 1
    # Counters carry over the reload; the closed connection counted.
    assert observe.value(s, "acceptd_listener_connections_total",
                         listener="t", end="client_fin") == n
    assert observe.value(s, "acceptd_listener_connections_active",
                         listener="t") == 0


def test_other_paths_answer_404(acceptd, backends, sockdir):
    p = observe.start(acceptd, sockdir, [backends.echo().text])
    for path in ("/", "/metric", "/metrics/x", "/favicon.ico"):
        status, _, _ = observe.fetch(p.metrics_port, path)
        assert status == 404, path
    status, _, body = observe.fetch(p.metrics_port, "/metrics?x=1")
    assert status == 200 and "acceptd_build_info" in body
    status, _, body = observe.fetch(p.metrics_port, method="HEAD")
    assert status == 200 and body == ""
    status, _, _ = observe.fetch(p.metrics_port, method="POST")
    assert status >= 400


def test_metrics_address_in_use_is_a_startup_error(acceptd, backends,
                                                    sockdir):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        p = acceptd.simple([backends.echo().text], wait=False,
                           settings={"metrics": "127.0.0.1:%d" % port})
        p.expected_rc = 1
        assert p.wait(30) == 1
        assert "metrics: cannot listen on 127.0.0.1:%d" % port in p.text()
    finally:
        taken.close()


def test_slow_scrapers_do_not_stall_the_relay(acceptd, backends, sockdir):
    """Scrapers that never read, or never send, hold only their own
    connections: the relay goes on at full speed, extra scrapers wait in
    the backlog, and scrapes work again once they are gone."""
    p = observe.start(acceptd, sockdir, [backends.echo().text])
    # Enough connections and open sessions for a large answer.
    opened = [observe.held(p.addr) for _ in range(20)]
    stalled = []
    try:
        for i in range(12):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            s.settimeout(5)
            s.connect(("127.0.0.1", p.metrics_port))
            if i % 2 == 0:
                # A request whose answer is never read.
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
            stalled.append(s)
        t0 = time.monotonic()
        for i in range(20):
            payload = os.urandom(20000)
            assert observe.echo_once(p.addr, payload) == payload
        assert time.monotonic() - t0 < 5
        # Beyond the cap of 8, a scraper is not served yet.
        late = socket.socket()
        late.settimeout(1)
        late.connect(("127.0.0.1", p.metrics_port))
        late.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        with pytest.raises(socket.timeout):
            late.recv(1)
        late.close()
        observe.wait_for(lambda: "metrics: 8 scrape connections open" in
                         p.text(), what="the log line")
    finally:
        for s in stalled:
            s.close()
        for s in opened:
            s.close()
    body = observe.wait_for(lambda: _try_scrape(p), what="a scrape")
    assert "acceptd_listener_connections_total" in body


def _try_scrape(p):
    try:
        status, _, body = observe.fetch(p.metrics_port, timeout=2)
    except (OSError, socket.timeout):
        return None
    return body if status == 200 else None
