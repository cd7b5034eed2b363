"""The relay: integrity, half-close, resets, backpressure, connect retries,
timeouts, address families, real servers, connection lines and stopping.
One behaviour per test; acceptd, clients and backends run on loopback."""

import hashlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import time

import pytest

import peers
from conftest import (SANITIZERS, SMALL, WORKERS, free_port, free_port_both,
                      have_ipv6)

MB = 1024 * 1024
BIG = 4 * MB if SMALL else 100 * MB


@pytest.mark.usefixtures("relay_mode")
def test_integrity_100mb_each_way_on_one_connection(acceptd, backends):
    srv = backends.hasher()
    p = acceptd.simple([srv.text])
    client = peers.exchange(p.addr, BIG, BIG)
    peers.check_exchange(client, srv.wait_results(1))
    line = p.wait_lines(1)[0]
    assert line["bytes_in"] == str(BIG + 24)
    assert line["bytes_out"] == str(BIG)
    assert line["end"] in ("client_fin", "backend_fin")


@pytest.mark.usefixtures("relay_mode")
def test_integrity_16_concurrent_connections(acceptd, backends):
    srv = backends.hasher()
    p = acceptd.simple([srv.text])
    each = BIG // 16
    threads = [peers.Thread(peers.exchange, p.addr, each, each)
               for _ in range(16)]
    for t in threads:
        t.start()
    clients = [t.join(120) for t in threads]
    results = srv.wait_results(16)
    for c in clients:
        peers.check_exchange(c, results)
    assert len(p.wait_lines(16)) == 16


@pytest.mark.usefixtures("relay_mode")
def test_client_half_close_receives_whole_reply(acceptd, backends):
    srv = backends.server(peers.reply_after_eof(2 * MB))
    p = acceptd.simple([srv.text])
    s = peers.connect(p.addr)
    request = os.urandom(MB)
    s.sendall(request)
    s.shutdown(socket.SHUT_WR)
    reply = peers.recv_all(s)
    s.close()
    r = srv.wait_results(1)[0]
    assert r["recv_len"] == MB
    assert reply[:64] == r["recv"].encode()
    assert len(reply) == 64 + 2 * MB
    assert hashlib.sha256(reply).hexdigest() == r["reply"]
    line = p.wait_lines(1)[0]
    assert line["end"] == "client_fin"


@pytest.mark.usefixtures("relay_mode")
def test_backend_half_close_client_keeps_sending(acceptd, backends):
    srv = backends.server(peers.fin_first(MB))
    p = acceptd.simple([srv.text])
    s = peers.connect(p.addr)
    got = peers.recv_all(s)  # the backend's bytes, then its FIN
    assert len(got) == MB
    body = os.urandom(3 * MB)
    s.sendall(body)  # the other direction still flows
    s.shutdown(socket.SHUT_WR)
    assert s.recv(1) == b""
    s.close()
    r = srv.wait_results(1)[0]
    assert hashlib.sha256(got).hexdigest() == r["sent"]
    assert r["recv_len"] == len(body)
    assert r["recv"] == hashlib.sha256(body).hexdigest()
    assert p.wait_lines(1)[0]["end"] == "backend_fin"


@pytest.mark.usefixtures("relay_mode")
def test_transfer_after_fin_outlives_fin_timeout(acceptd, backends):
    # 15 blocks, one every 0.2 s: 3 s of transfer with fin_timeout 1s.
    srv = backends.server(peers.trickle(1000, 0.2, 15))
    p = acceptd.simple([srv.text], fin_timeout="1s")
    s = peers.connect(p.addr)
    s.sendall(b"request")
    s.shutdown(socket.SHUT_WR)
    start = time.monotonic()
    got = peers.recv_all(s)
    s.close()
    assert len(got) == 15000
    assert time.monotonic() - start > 2.5
    assert p.wait_lines(1)[0]["end"] == "client_fin"


@pytest.mark.usefixtures("relay_mode")
def test_inactive_half_closed_connection_ends_with_fin_timeout(acceptd,
                                                               backends):
    srv = backends.server(peers.silent)
    p = acceptd.simple([srv.text], fin_timeout="1s", idle_timeout="1m")
    s = peers.connect(p.addr, timeout=10)
    s.sendall(b"bye")
    s.shutdown(socket.SHUT_WR)
    start = time.monotonic()
    assert s.recv(1) == b""
    elapsed = time.monotonic() - start
    s.close()
    assert 0.8 < elapsed < 2.5
    assert p.wait_lines(1)[0]["end"] == "fin_timeout"


@pytest.mark.usefixtures("relay_mode")
def test_client_reset_is_passed_to_backend(acceptd, backends):
    srv = backends.server(peers.reader)
    p = acceptd.simple([srv.text])
    s = peers.connect(p.addr)
    s.sendall(b"some bytes")
    time.sleep(0.3)
    peers.set_linger_reset(s)
    s.close()
    how, data = srv.wait_results(1)[0]
    assert how == "ConnectionResetError"
    assert data == b"some bytes"
    assert p.wait_lines(1)[0]["end"] == "client_reset"


@pytest.mark.usefixtures("relay_mode")
def test_backend_reset_is_passed_to_client(acceptd, backends):
    srv = backends.server(peers.reset_after_request)
    p = acceptd.simple([srv.text])
    s = peers.connect(p.addr, timeout=10)
    s.sendall(b"request")
    with pytest.raises(ConnectionResetError):
        while s.recv(65536):
            pass
    s.close()
    assert p.wait_lines(1)[0]["end"] == "backend_reset"


@pytest.mark.usefixtures("relay_mode")
def test_slow_reader_keeps_memory_bounded(acceptd, backends):
    buffer_size = 256 * 1024
    limit = 2048 * MB
    srv = backends.server(peers.blaster(limit, 15))
    p = acceptd.simple([srv.text], buffer_size="256k")
    base = p.rss_kb()
    s = peers.connect(p.addr)
    received = 0
    peak = base
    deadline = time.monotonic() + (2 if SMALL else 4)
    while time.monotonic() < deadline:
        received += len(s.recv(64 * 1024))
        time.sleep(0.01)
        peak = max(peak, p.rss_kb())
    sent = srv.sent
    s.close()
    # The backend is held back: what it sent is what the client read plus
    # the buffers in between (two kernel sockets each way, two acceptd
    # buffers), far below what it would send unthrottled.
    assert sent - received < 64 * MB, (sent, received)
    if not SANITIZERS:
        growth = (peak - base) * 1024
        assert growth < 4 * buffer_size + 4 * MB, (base, peak)
    assert p.wait_lines(1)[0]["end"] == "client_reset"



def test_failover_when_first_backend_refuses(acceptd, backends):
    bad = backends.refuser()
    good = backends.echo()
    p = acceptd.simple([bad.text, good.text])
    for i in range(4):
        s = peers.connect(p.addr)
        s.sendall(b"ping %d" % i)
        s.shutdown(socket.SHUT_WR)
        assert peers.recv_all(s) == b"ping %d" % i
        s.close()
    lines = p.wait_lines(4)
    assert all(l["backend"] == good.text for l in lines)
    assert all(l["end"] == "client_fin" for l in lines)
    assert good.accepted == 4


def test_failover_from_missing_unix_backend(acceptd, backends, sockdir):
    # A unix connect to a missing path fails at once (ENOENT), not later.
    good = backends.echo()
    missing = "unix:" + os.path.join(sockdir, "missing.sock")
    p = acceptd.simple([missing, good.text])
    for i in range(2):
        assert echo_once(p.addr, b"ping %d" % i) == b"ping %d" % i
    assert [l["backend"] for l in p.wait_lines(2)] == [good.text] * 2


def test_round_robin_spreads_connections(acceptd, backends):
    a = backends.echo()
    b = backends.echo()
    p = acceptd.simple([a.text, b.text])
    for _ in range(6):
        s = peers.connect(p.addr)
        s.sendall(b"x")
        s.shutdown(socket.SHUT_WR)
        assert peers.recv_all(s) == b"x"
        s.close()
    assert (a.accepted, b.accepted) == (3, 3)


def test_all_backends_refusing_closes_client_promptly(acceptd, backends):
    r1 = backends.refuser()
    r2 = backends.refuser()
    p = acceptd.simple([r1.text, r2.text], retries=3)
    s = peers.connect(p.addr, timeout=10)
    start = time.monotonic()
    s.sendall(b"hello")
    try:
        assert s.recv(1) == b""
    except ConnectionResetError:
        pass
    assert time.monotonic() - start < 2
    s.close()
    line = p.wait_lines(1)[0]
    assert line["end"] == "connect_failed"
    assert line["backend"] == "-"


def test_connect_timeout_tries_next_backend(acceptd, backends):
    hole = backends.blackhole()
    good = backends.echo()
    p = acceptd.simple([hole.text, good.text], connect_timeout="500ms")
    s = peers.connect(p.addr, timeout=10)
    start = time.monotonic()
    s.sendall(b"after a timeout")
    s.shutdown(socket.SHUT_WR)
    assert peers.recv_all(s) == b"after a timeout"
    elapsed = time.monotonic() - start
    s.close()
    assert 0.4 < elapsed < 3
    line = p.wait_lines(1)[0]
    assert line["backend"] == good.text
    assert "timed out" in p.text()


@pytest.mark.usefixtures("relay_mode")
def test_client_bytes_before_connect_arrive_first(acceptd, backends):
    hole = backends.blackhole()
    good = backends.echo()
    p = acceptd.simple([hole.text, good.text], connect_timeout="800ms")
    s = peers.connect(p.addr, timeout=10)
    early = os.urandom(20000)
    s.sendall(early)  # while acceptd still waits on the first backend
    assert good.accepted == 0
    late = os.urandom(50000)
    time.sleep(1.2)
    s.sendall(late)
    s.shutdown(socket.SHUT_WR)
    assert peers.recv_all(s) == early + late
    s.close()
    assert good.first_bytes[0] == early[:len(good.first_bytes[0])]
    assert good.wait_results(1) == [len(early) + len(late)]


@pytest.mark.usefixtures("relay_mode")
def test_idle_timeout_spares_one_way_download(acceptd, backends):
    # 3 s of download with a client that never sends; idle_timeout 1s.
    srv = backends.server(peers.trickle(1000, 0.25, 12))
    p = acceptd.simple([srv.text], idle_timeout="1s")
    s = peers.connect(p.addr, timeout=10)
    got = peers.recv_all(s)
    s.close()
    assert len(got) == 12000
    assert p.wait_lines(1)[0]["end"] == "backend_fin"


def test_idle_timeout_closes_idle_connection(acceptd, backends):
    srv = backends.echo()
    p = acceptd.simple([srv.text], idle_timeout="2s")
    s = peers.connect(p.addr, timeout=10)
    s.sendall(b"once")
    assert s.recv(10) == b"once"
    start = time.monotonic()
    assert s.recv(1) == b""
    elapsed = time.monotonic() - start
    s.close()
    assert 1.0 <= elapsed <= 3.0
    assert srv.wait_results(1) == [4]  # the backend was closed too
    assert p.wait_lines(1)[0]["end"] == "idle_timeout"


def echo_once(addr, data=b"ping"):
    s = peers.connect(addr, timeout=10)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = peers.recv_all(s)
    s.close()
    return got


@pytest.mark.usefixtures("relay_mode")
@pytest.mark.skipif(not have_ipv6(), reason="no IPv6 loopback")
def test_ipv6_listener_and_backend(acceptd, backends):
    srv = backends.echo(host="::1")
    port = free_port("::1")
    p = acceptd.simple([srv.text], listen=["[::1]:%d" % port])
    assert echo_once(("::1", port)) == b"ping"
    line = p.wait_lines(1)[0]
    assert line["client"].startswith("[::1]:")
    assert line["backend"] == srv.text


@pytest.mark.usefixtures("relay_mode")
def test_unix_listener(acceptd, backends, sockdir):
    srv = backends.echo()
    path = os.path.join(sockdir, "listen.sock")
    p = acceptd.simple([srv.text], listen=["unix:" + path])
    assert os.stat(path).st_mode & 0o777 == 0o666
    assert echo_once(path) == b"ping"
    assert p.wait_lines(1)[0]["client"] == "unix:"
    assert p.stop() == 0
    assert os.path.exists(path)  # never removed at exit


def test_unix_listener_replaces_stale_socket(acceptd, backends, sockdir):
    srv = backends.echo()
    path = os.path.join(sockdir, "stale.sock")
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(path)
    old.close()  # the file stays, nothing listens
    p = acceptd.simple([srv.text], listen=["unix:" + path])
    assert echo_once(path) == b"ping"
    p.wait_lines(1)


def test_unix_listener_in_use_is_a_bind_error(acceptd, backends, sockdir):
    srv = backends.echo()
    path = os.path.join(sockdir, "busy.sock")
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    busy.bind(path)
    busy.listen(1)
    try:
        p = acceptd.simple([srv.text], listen=["unix:" + path], wait=False)
        p.expected_rc = 1
        assert p.wait(10) == 1
        assert "listener 't': cannot listen on unix:%s" % path in p.text()
        assert os.path.exists(path)
    finally:
        busy.close()


@pytest.mark.usefixtures("relay_mode")
def test_unix_backend(acceptd, backends):
    srv = backends.echo(unix=True)
    p = acceptd.simple([srv.text])
    assert echo_once(p.addr, b"over unix") == b"over unix"
    assert p.wait_lines(1)[0]["backend"] == srv.text


@pytest.mark.skipif(not have_ipv6(), reason="no IPv6 loopback")
def test_wildcard_listener_serves_both_families(acceptd, backends):
    srv = backends.echo()
    port = free_port_both()
    p = acceptd.simple([srv.text], listen=["*:%d" % port])
    assert echo_once(("127.0.0.1", port)) == b"ping"
    assert echo_once(("::1", port)) == b"ping"
    clients = sorted(l["client"].split(":")[0] for l in p.wait_lines(2))
    assert clients == ["127.0.0.1", "["]


def test_bind_failure_exits_1_naming_listener_and_address(acceptd,
                                                          backends):
    srv = backends.echo()
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        p = acceptd.start([
            {"name": "ok", "listen": ["127.0.0.1:%d" % free_port()],
             "backends": [srv.text]},
            {"name": "web", "listen": ["127.0.0.1:%d" % port],
             "backends": [srv.text]}], wait=False)
        p.expected_rc = 1
        assert p.wait(10) == 1
        assert ("listener 'web': cannot listen on 127.0.0.1:%d: Address "
                "already in use" % port) in p.text()
    finally:
        busy.close()


@pytest.mark.skipif(shutil.which("nginx") is None, reason="no nginx")
def test_curl_through_acceptd_to_nginx(acceptd, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    body = os.urandom(MB if SMALL else 8 * MB)
    (www / "blob.bin").write_bytes(body)
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text("""
daemon off;
%(user)s
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    server { listen 127.0.0.1:%(port)d; root %(d)s/www; }
}
""" % {"d": tmp_path, "port": port,
       # tmp_path is private to us: workers must run as we do.
       "user": "user root;" if os.geteuid() == 0 else ""})
    nginx = subprocess.Popen(["nginx", "-p", str(tmp_path), "-e",
                              str(tmp_path / "error.log"), "-c", str(conf)],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                time.sleep(0.05)
        p = acceptd.simple(["127.0.0.1:%d" % port])
        out = tmp_path / "out.bin"
        subprocess.run(["curl", "-sSf", "--max-time", "30", "-o", str(out),
                        "http://127.0.0.1:%d/blob.bin" % p.addr[1]],
                       check=True, timeout=40)
        assert out.read_bytes() == body
        line = p.wait_lines(1)[0]
        assert int(line["bytes_out"]) > len(body)
    finally:
        nginx.terminate()
        nginx.wait(10)


@pytest.mark.skipif(shutil.which("redis-server") is None or
                    shutil.which("redis-benchmark") is None,
                    reason="no redis")
def test_redis_benchmark_through_acceptd(acceptd, tmp_path):
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--daemonize", "no",
         "--dir", str(tmp_path), "--logfile", str(tmp_path / "redis.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                time.sleep(0.05)
        p = acceptd.simple(["127.0.0.1:%d" % port])
        n = 2000 if SMALL else 20000
        r = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p",
                            str(p.addr[1]), "-n", str(n), "-c", "20",
                            "-t", "set,get", "-q"],
                           capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stderr
        assert "error" not in (r.stdout + r.stderr).lower()
        stats = subprocess.run(["redis-cli", "-p", str(port), "info",
                                "commandstats"], capture_output=True,
                               text=True, timeout=10).stdout
        assert "cmdstat_set:calls=%d," % n in stats
        assert "cmdstat_get:calls=%d," % n in stats
    finally:
        redis.terminate()
        redis.wait(10)


@pytest.mark.parametrize("mode,conns,connects", [
    ("none", 0, 0), ("close", 2, 0), ("all", 2, 2)])
def test_log_connections_setting(acceptd, backends, mode, conns, connects):
    srv = backends.echo()
    p = acceptd.simple([srv.text], settings={"log_connections": mode})
    assert echo_once(p.addr) == b"ping"
    assert echo_once(p.addr) == b"ping"
    srv.wait_results(2)
    assert p.stop() == 0  # everything is written out by now
    assert len(p.lines("conn")) == conns
    assert len(p.lines("connect")) == connects
    for l in p.lines("connect"):
        assert l["backend"] == srv.text
        assert float(l["connect_time"]) < 1
    for l in p.lines("conn"):
        assert set(l) == {"id", "listener", "client", "backend", "duration",
                          "bytes_in", "bytes_out", "end"}
        assert (l["listener"], l["backend"], l["end"]) == \
            ("t", srv.text, "client_fin")
        assert (l["bytes_in"], l["bytes_out"]) == ("4", "4")


def test_sigterm_lets_a_transfer_in_flight_finish(acceptd, backends):
    size = 4 * MB if SMALL else 20 * MB
    srv = backends.server(peers.reply_after_eof(size))
    p = acceptd.simple([srv.text], settings={"shutdown_timeout": "20s"})
    s = peers.connect(p.addr)
    s.sendall(b"go")
    s.shutdown(socket.SHUT_WR)
    got = s.recv(65536)
    p.signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(ConnectionRefusedError):  # listener closed at once
        peers.connect(p.addr, timeout=5)
    while True:  # a slow reader: the transfer outlasts the signal
        d = s.recv(256 * 1024)
        if not d:
            break
        got += d
        time.sleep(0.002)
    s.close()
    assert len(got) == 64 + size
    assert p.wait(15) == 0
    assert p.lines("conn")[0]["end"] == "client_fin"


def test_sigterm_closes_endless_connection_after_timeout(acceptd, backends):
    srv = backends.echo()
    p = acceptd.simple([srv.text], settings={"shutdown_timeout": "1s"})
    s = peers.connect(p.addr, timeout=10)
    s.sendall(b"hi")
    assert s.recv(2) == b"hi"
    start = time.monotonic()
    p.signal(signal.SIGTERM)
    assert s.recv(1) == b""
    assert p.wait(10) == 0
    assert 0.8 < time.monotonic() - start < 4
    s.close()
    assert p.lines("conn")[0]["end"] == "shutdown"


def test_second_sigterm_exits_at_once(acceptd, backends):
    srv = backends.echo()
    p = acceptd.simple([srv.text], settings={"shutdown_timeout": "60s"})
    s = peers.connect(p.addr, timeout=10)
    s.sendall(b"hi")
    assert s.recv(2) == b"hi"
    p.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert p.wait(0.1) is None  # still draining
    p.signal(signal.SIGTERM)
    assert p.wait(5) == 0
    s.close()
    assert p.lines("conn")[0]["end"] == "shutdown"


@pytest.mark.skipif(WORKERS != 1, reason="counts descriptors as one worker on "
                    "the main loop uses them (worker threads move a spare "
                    "descriptor with each client)")
@pytest.mark.parametrize("spare", [0, 1])
def test_accept_out_of_descriptors_backs_off_without_spinning(acceptd,
                                                             backends,
                                                             spare):
    """With `spare` = 1 the last free descriptor goes to a client and its
    backend socket needs the worker's spare one; with 0, accept itself
    fails with EMFILE. Either way: no spinning, nobody turned away."""
    srv = backends.echo()
    p = acceptd.simple([srv.text])
    sessions = 8
    in_use = len(os.listdir("/proc/%d/fd" % p.pid))
    limit = in_use + 2 * sessions + spare
    resource.prlimit(p.pid, resource.RLIMIT_NOFILE, (limit, limit))
    held = [peers.connect(p.addr, timeout=10) for _ in range(sessions + 6)]
    try:
        time.sleep(0.5)
        cpu0 = p.cpu_seconds()
        time.sleep(1.5)
        assert p.cpu_seconds() - cpu0 < 0.3  # backing off, not spinning
        for s in held:
            s.sendall(b"x")
        time.sleep(0.5)
        served, waiting = [], []
        for s in held:
            s.setblocking(False)
            try:
                assert s.recv(1) == b"x"
                served.append(s)
            except BlockingIOError:
                waiting.append(s)
        assert len(served) == sessions + spare, (len(served), p.text())
        assert not p.lines("conn"), "no client may be turned away"
        for s in served:
            s.close()
            held.remove(s)
        # Descriptors are free again: the clients in the backlog are served.
        for s in waiting:
            s.settimeout(10)
            s.sendall(b"y")
            assert peers.recv_exact(s, 2) == b"xy"
        assert p.text().count("pausing accepts") == 1, p.text()
    finally:
        for s in held:
            s.close()
