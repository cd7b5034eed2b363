"""acceptd's life in-process: readiness, reload on SIGHUP, graceful stop,
the watchdog, STATUS=, and the privilege drop. Each test owns the notify
socket acceptd reports to ($NOTIFY_SOCKET) and checks the exact messages;
acceptd, clients and backends run on loopback."""

import hashlib
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import lifecycle
import peers
from conftest import SANITIZERS, SMALL, conf_text, free_port

MB = 1024 * 1024
READY_STATUS = ["READY", "STATUS"]
RELOADING = ["RELOADING", "MONOTONIC_USEC"]
pytestmark = pytest.mark.skipif(
    not lifecycle.NOTIFIES, reason="acceptd built without libsystemd: "
    "these tests follow its sd_notify messages")
STATUS_RE = re.compile(
    r"^(stopping: )?(reload failed: .*; )?\d+ listeners? on \d+ sockets?, "
    r"\d+ connections? active, \d+ served, \d+ backends? down"
    r"(; last reload ok)?$")


@pytest.fixture
def daemons():
    """Factory: daemons.start(text, args=..., env=..., wrapper=...)."""
    d = lifecycle.Daemons()
    yield d
    problems = d.finish()
    if problems:
        pytest.fail("\n".join(problems))


def conf(listeners, **settings):
    settings.setdefault("log_level", "info")
    settings.setdefault("shutdown_timeout", "5s")
    return conf_text(listeners, **settings)


def listener(listen, backends, name="t", **opts):
    l = {"name": name, "listen": listen, "backends": backends}
    l.update(opts)
    return l


def loopback(port):
    return "127.0.0.1:%d" % port


def tagged(tag):
    """A backend that reads the whole request, then answers with its tag
    and the request, then FIN: the answer says who served it."""
    def handler(srv, c):
        data = peers.recv_all(c)
        c.sendall(tag + b":" + data)
        c.shutdown(socket.SHUT_WR)
        srv.record(len(data))
    return handler


def ask(port, payload=b"ping", timeout=10):
    """One short request through acceptd; returns the whole answer."""
    s = peers.connect(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return peers.recv_all(s)
    finally:
        s.close()


def refused(port):
    try:
        s = peers.connect(("127.0.0.1", port), timeout=5)
    except ConnectionRefusedError:
        return True
    s.close()
    return False


def check_status(text):
    assert STATUS_RE.match(text), text
    return text


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = v.split()
    return out


# Readiness and STATUS=.

def test_ready_after_binding_with_status(daemons, backends):
    srv = backends.server(tagged(b"A"))
    port = free_port()
    d = daemons.start(conf([listener([loopback(port)], [srv.text])]))
    assert ask(port) == b"A:ping"  # accepting once READY=1 came
    assert d.notifier.events() == [READY_STATUS]
    ready = d.notifier.wait(lambda f: "READY" in f)
    status = check_status(d.notifier.messages[ready][1]["STATUS"])
    assert status == ("1 listener on 1 socket, 0 connections active, "
                      "0 served, 0 backends down")


def test_status_is_kept_current_and_rate_limited(daemons, backends):
    srv = backends.echo()
    port = free_port()
    d = daemons.start(conf([listener([loopback(port)], [srv.text])]))
    held = [peers.connect(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        start = len(d.notifier.messages)
        i = d.notifier.wait(lambda f: "3 connections active" in
                            f.get("STATUS", ""), start, timeout=5)
        assert d.notifier.events(start) == []  # only STATUS= refreshes
        check_status(d.notifier.messages[i][1]["STATUS"])
        # Many connections come and go: STATUS= follows at its own pace.
        start = len(d.notifier.messages)
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 4:
            assert ask(port) == b"ping"
            n += 1
        d.notifier.poll()
        refreshes = d.notifier.messages[start:]
        assert n > 20
        assert 1 <= len(refreshes) <= 3, d.notifier.raw(start)
        for _, f, _ in refreshes:
            assert list(f) == ["STATUS"]
            check_status(f["STATUS"])
    finally:
        for s in held:
            s.close()


# Reload.

def test_reload_notifies_and_new_connections_use_new_config(daemons,
                                                           backends,
                                                           relay_mode):
    a = backends.server(tagged(b"A"))
    b = backends.server(tagged(b"B"))
    port = free_port()
    d = daemons.start(conf([listener([loopback(port)], [a.text],
                                     **relay_mode)]))
    before = d.sockets()
    # A connection established before the reload stays on backend A.
    old = peers.connect(("127.0.0.1", port))
    old.sendall(b"first half ")
    start = len(d.notifier.messages)

    reloading, ready, sent = d.reload(conf([listener([loopback(port)],
                                                     [b.text],
                                                     **relay_mode)]))
    assert int(reloading["MONOTONIC_USEC"]) >= int(sent * 1e6)
    assert int(reloading["MONOTONIC_USEC"]) <= int(time.monotonic() * 1e6)
    assert d.notifier.events(start) == [RELOADING, READY_STATUS]
    assert check_status(ready["STATUS"]).endswith("; last reload ok")
    assert ask(port) == b"B:ping"
    assert d.sockets() == before  # the same socket, never closed

    old.sendall(b"second half")
    old.shutdown(socket.SHUT_WR)
    assert peers.recv_all(old) == b"A:first half second half"
    old.close()
    assert "reloaded: " in d.text()


def test_reload_with_invalid_file_keeps_running_config(daemons, backends):
    a = backends.server(tagged(b"A"))
    b = backends.server(tagged(b"B"))
    port = free_port()
    good = conf([listener([loopback(port)], [a.text])])
    d = daemons.start(good)
    before = d.sockets()
    bad = conf([listener([loopback(port)], [b.text])]).replace(
        "shutdown_timeout", "idle_timout = 1;\nshutdown_timeout")
    start = len(d.notifier.messages)

    _, ready, _ = d.reload(bad)
    assert d.notifier.events(start) == [RELOADING, READY_STATUS]
    status = check_status(ready["STATUS"])
    assert status.startswith("reload failed: %s:2: unknown setting "
                             "'idle_timout'" % d.conf), status
    assert "%s:2: unknown setting 'idle_timout'" % d.conf in d.text()
    assert ask(port) == b"A:ping"
    assert d.sockets() == before
    # The failure stays in STATUS= until a reload succeeds.
    time.sleep(2.5)
    d.notifier.poll()
    assert "reload failed: " in d.notifier.messages[-1][1]["STATUS"]

    _, ready, _ = d.reload(conf([listener([loopback(port)], [b.text])]))
    assert check_status(ready["STATUS"]).endswith("; last reload ok")
    assert "reload failed" not in ready["STATUS"]
    assert ask(port) == b"B:ping"


@pytest.mark.parametrize("include,error", [
    ("conf.d", ':1: @include "conf.d": '),
    # stat() says file, read() fails: libconfig 1.5 exit()s on it.
    ("../" * 12 + "proc/self/mem", ": configuration could not be read "
     "(the parser exited with status ")])
def test_reload_of_file_libconfig_cannot_read_keeps_serving(daemons, backends,
                                                           include, error):
    a = backends.server(tagged(b"A"))
    port = free_port()
    text = conf([listener([loopback(port)], [a.text])])
    d = daemons.start(text)
    os.mkdir(os.path.join(d.dir, "conf.d"))
    _, ready, _ = d.reload('@include "%s"\n' % include + text)
    status = check_status(ready["STATUS"])
    assert status.startswith("reload failed: " + d.conf + error), status
    assert d.proc.poll() is None
    assert ask(port) == b"A:ping"
    _, ready, _ = d.reload(text)
    assert ready["STATUS"].endswith("; last reload ok")


def test_reload_that_cannot_bind_changes_nothing(daemons, backends):
    a = backends.server(tagged(b"A"))
    b = backends.server(tagged(b"B"))
    p1, p2 = free_port(), free_port()
    d = daemons.start(conf([listener([loopback(p1)], [a.text])]))
    before = d.sockets()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    pbusy = busy.getsockname()[1]
    try:
        # p2 is bound first, then the busy port fails: p2 is closed again.
        _, ready, _ = d.reload(conf([listener(
            [loopback(p1), loopback(p2), loopback(pbusy)], [b.text])]))
        status = check_status(ready["STATUS"])
        assert re.match(r"reload failed: %s:\d+: listener 't': cannot "
                        r"listen on 127\.0\.0\.1:%d: Address already in use"
                        % (re.escape(d.conf), pbusy), status), status
        assert d.sockets() == before
        assert refused(p2)
        assert ask(p1) == b"A:ping"
    finally:
        busy.close()


def test_reload_adds_and_removes_listen_addresses(daemons, backends, sockdir):
    a = backends.server(tagged(b"A"))
    pa, pb, pc = free_port(), free_port(), free_port()
    path = os.path.join(sockdir, "web.sock")
    d = daemons.start(conf([listener([loopback(pa), loopback(pb)],
                                     [a.text])]))
    before = d.sockets()
    assert set(before) == {loopback(pa), loopback(pb)}

    _, ready, _ = d.reload(conf([
        listener([loopback(pb)], [a.text]),
        listener([loopback(pc), "unix:" + path], [a.text], name="u")]))
    assert ready["STATUS"].startswith("2 listeners on 3 sockets, ")
    after = d.sockets()
    assert set(after) == {loopback(pb), loopback(pc), "unix:" + path}
    assert after[loopback(pb)] == before[loopback(pb)]
    assert refused(pa)
    assert ask(pb) == b"A:ping"
    assert ask(pc) == b"A:ping"
    s = peers.connect(path)
    s.sendall(b"unix")
    s.shutdown(socket.SHUT_WR)
    assert peers.recv_all(s) == b"A:unix"
    s.close()
    lines = d.wait_lines(3)
    assert [l["listener"] for l in lines] == ["t", "u", "u"]

    # The unix listener goes: its socket closes, its file stays.
    _, ready, _ = d.reload(conf([listener([loopback(pb)], [a.text])]))
    assert set(d.sockets()) == {loopback(pb)}
    assert os.path.exists(path)
    with pytest.raises(ConnectionRefusedError):
        peers.connect(path, timeout=5)
    assert "listener 'u': closing unix:%s" % path in d.text()


def test_reload_applies_a_new_backlog_in_place(daemons, backends):
    a = backends.server(tagged(b"A"))
    port = free_port()

    def backlog():
        out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port],
                             capture_output=True, text=True, check=True)
        return int(out.stdout.split()[2])  # Send-Q of a listening socket

    d = daemons.start(conf([listener([loopback(port)], [a.text],
                                     backlog=100)]))
    before = d.sockets()
    assert backlog() == 100
    d.reload(conf([listener([loopback(port)], [a.text], backlog=37)]))
    assert backlog() == 37
    assert d.sockets() == before


def test_reload_changing_a_bind_option_rebinds_or_restores(daemons,
                                                          backends):
    a = backends.server(tagged(b"A"))
    port = free_port()
    d = daemons.start(conf([listener([loopback(port)], [a.text])]))
    first = d.sockets()[loopback(port)]

    _, ready, _ = d.reload(conf([listener([loopback(port)], [a.text],
                                          reuseport=True)]))
    assert ready["STATUS"].endswith("; last reload ok")
    second = d.sockets()[loopback(port)]
    assert second != first  # a new socket, with SO_REUSEPORT
    assert ask(port) == b"A:ping"

    # Changed back, next to an address that cannot be bound: the old
    # socket was closed for the new one, and is bound again as it was.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        _, ready, _ = d.reload(conf([listener(
            [loopback(port), loopback(busy.getsockname()[1])], [a.text])]))
        assert ready["STATUS"].startswith("reload failed: ")
    finally:
        busy.close()
    assert set(d.sockets()) == {loopback(port)}
    assert ask(port) == b"A:ping"
    # Still the SO_REUSEPORT socket: another one may join it.
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", port))
    other.close()


def tag_echo(tag):
    """A backend that says its tag, then echoes until EOF, then FIN."""
    def handler(srv, c):
        c.sendall(tag + b":")
        n = 0
        while True:
            d = c.recv(peers.CHUNK)
            if not d:
                break
            c.sendall(d)
            n += len(d)
        c.shutdown(socket.SHUT_WR)
        srv.record(n)
    return handler


def stream(port, stop):
    """One long connection through a tag_echo backend: send random bytes
    at a steady pace until stop is set, then FIN; hash both directions."""
    s = peers.connect(("127.0.0.1", port), timeout=30)
    sent = hashlib.sha256()
    n_sent = [0]

    def send():
        while not stop.is_set():
            chunk = os.urandom(16384)
            sent.update(chunk)
            s.sendall(chunk)
            n_sent[0] += len(chunk)
            time.sleep(0.005)
        s.shutdown(socket.SHUT_WR)

    t = peers.Thread(send)
    t.start()
    tag = peers.recv_exact(s, 2)
    got, n = peers.recv_hash(s)
    t.join()
    s.close()
    return tag, sent.hexdigest(), n_sent[0], got, n


def test_reload_under_load_refuses_and_breaks_nothing(daemons, backends,
                                                      relay_mode):
    """Short connections at full speed and one long stream, while 20
    SIGHUPs alternate the backend list between A and B."""
    a = backends.server(tag_echo(b"A"))
    b = backends.server(tag_echo(b"B"))
    port = free_port()
    texts = [conf([listener([loopback(port)], [x.text], **relay_mode)],
                  log_connections="none") for x in (a, b)]
    d = daemons.start(texts[0])
    sockets = d.sockets()
    stop = threading.Event()
    st = peers.Thread(stream, port, stop)
    st.start()
    while a.accepted < 1:
        time.sleep(0.01)

    errors = []
    done = []  # (started, ended, backend tag) of each short connection

    def client(k):
        n = 0
        while not stop.is_set():
            payload = b"%d-%d" % (k, n)
            t = time.monotonic()
            try:
                answer = ask(port, payload)
            except OSError as ex:
                errors.append(repr(ex))
                continue
            if answer[2:] != payload or answer[:2] not in (b"A:", b"B:"):
                errors.append("short or wrong answer %r" % answer)
            done.append((t, time.monotonic(), answer[:1]))
            n += 1

    clients = [peers.Thread(client, k) for k in range(2)]
    for c in clients:
        c.start()
    t0 = time.monotonic()
    start = len(d.notifier.messages)
    windows = []  # [after reload i, before reload i + 1, its backend]
    for i in range(20):
        time.sleep(max(0, t0 + 0.5 * (i + 1) - time.monotonic()))
        _, ready, sent = d.reload(texts[(i + 1) % 2])
        if windows:
            windows[-1][1] = sent
        windows.append([time.monotonic(), None, (b"A", b"B")[(i + 1) % 2]])
        assert ready["STATUS"].endswith("; last reload ok"), ready
    time.sleep(0.3)
    windows[-1][1] = time.monotonic()
    stop.set()
    for c in clients:
        c.join(30)
    tag, sent, n_sent, got, n_got = st.join(30)

    assert errors == []
    assert len(done) > 200, len(done)
    assert d.sockets() == sockets  # one listening socket all along
    assert d.notifier.events(start) == [RELOADING, READY_STATUS] * 20
    assert tag == b"A:"
    assert n_got == n_sent > MB
    assert got == sent  # the stream went through every reload intact
    # A connection made after a reload ended, and done before the next
    # one began, went to the backend of that reload.
    for lo, hi, want in windows:
        inside = [c[2] for c in done if lo <= c[0] and c[1] <= hi]
        assert inside and set(inside) == {want}, (lo, hi, want, inside)


def slow_file(text):
    """The same configuration, behind 15 MB of comments: reading it takes
    a moment, long enough to send signals meanwhile."""
    pad = ("# " + "x" * 78 + "\n") * 190000
    return pad + text


def test_reload_reads_off_the_loop_and_coalesces_sighups(daemons,
                                                         backends):
    a = backends.server(tagged(b"A"))
    b = backends.server(tagged(b"B"))
    port = free_port()
    d = daemons.start(conf([listener([loopback(port)], [a.text])]))
    d.write_conf(slow_file(conf([listener([loopback(port)], [b.text])])))
    start = len(d.notifier.messages)
    d.signal(signal.SIGHUP)
    i = d.notifier.wait(lambda f: "RELOADING" in f, start, proc=d.proc)
    # While the file is being read, the loop serves (old configuration),
    # and more SIGHUPs only ask for one more reload.
    t0 = time.monotonic()
    answers = []
    for _ in range(5):
        d.signal(signal.SIGHUP)
        answers.append(ask(port))
    served = time.monotonic() - t0
    first = d.notifier.wait(lambda f: "READY" in f, i + 1, proc=d.proc)
    took = d.notifier.messages[first][0] - d.notifier.messages[i][0]
    assert served < took, (served, took)
    assert answers == [b"A:ping"] * 5
    d.notifier.wait(lambda f: "READY" in f, first + 1, proc=d.proc)
    time.sleep(0.5)
    assert d.notifier.events(start) == [RELOADING, READY_STATUS] * 2
    assert ask(port) == b"B:ping"
    assert d.text().count("reloading ") == 2


def test_log_level_from_command_line_outlives_reloads(daemons, backends):
    srv = backends.echo()

    def text(level):
        return conf([listener([loopback(free_port())], [srv.text])],
                    log_level=level)

    d = daemons.start(text("error"), args=["-l", "notice"])
    d.reload()
    d.reload()
    assert d.text().count(": notice: reloaded: ") == 2

    # Without -l, a reload applies the file's log_level.
    d2 = daemons.start(text("notice"))
    d2.reload(open(d2.conf).read().replace('"notice"', '"error"'))
    d2.reload()
    assert d2.text().count(": notice: reloading ") == 1
    assert ": notice: reloaded: " not in d2.text()


# Stopping.

def paced_exchange(port, n, pause):
    """hasher() client sending n bytes in 64 KiB steps, pausing between
    them, while receiving n bytes; returns what exchange() returns."""
    cid = os.urandom(16)
    up = hashlib.sha256()
    s = peers.connect(("127.0.0.1", port))

    def send():
        s.sendall(cid + n.to_bytes(8, "big"))
        left = n
        while left:
            chunk = os.urandom(min(65536, left))
            up.update(chunk)
            s.sendall(chunk)
            left -= len(chunk)
            time.sleep(pause)
        s.shutdown(socket.SHUT_WR)

    t = peers.Thread(send)
    t.start()
    got, k = peers.recv_hash(s)
    t.join()
    s.close()
    return {"id": cid, "sent": up.hexdigest(), "sent_len": n,
            "recv": got, "recv_len": k}


def test_sigterm_stopping_lets_transfers_in_flight_finish(daemons, backends,
                                                          relay_mode):
    srv = backends.hasher()
    port = free_port()
    d = daemons.start(conf([listener([loopback(port)], [srv.text],
                                     **relay_mode)],
                           shutdown_timeout="30s"))
    size = 2 * MB if SMALL else 8 * MB
    clients = [peers.Thread(paced_exchange, port, size, 0.01)
               for _ in range(3)]
    for c in clients:
        c.start()
    while srv.accepted < 3:
        time.sleep(0.01)
    start = len(d.notifier.messages)
    d.signal(signal.SIGTERM)
    i = d.notifier.wait(lambda f: "STOPPING" in f, start, proc=d.proc)
    assert d.notifier.events(start) == [["STOPPING", "STATUS"]]
    status = check_status(d.notifier.messages[i][1]["STATUS"])
    assert status.startswith("stopping: ") and "3 connections active" in \
        status
    assert refused(port)  # new clients: refused at once
    results = [c.join(60) for c in clients]
    server = srv.wait_results(3)
    for r in results:
        peers.check_exchange(r, server)
    assert d.wait(15) == 0
    ends = [l["end"] for l in d.lines()]
    assert len(ends) == 3 and set(ends) <= {"client_fin", "backend_fin"}


def test_sigterm_closes_endless_connections_after_shutdown_timeout(
        daemons, backends):
    srv = backends.echo()
    port = free_port()
    d = daemons.start(conf([listener([loopback(port)], [srv.text])],
                           shutdown_timeout="1s"))
    held = [peers.connect(("127.0.0.1", port), timeout=10) for _ in range(2)]
    for s in held:
        s.sendall(b"hi")
        assert s.recv(2) == b"hi"
    start = len(d.notifier.messages)
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    for s in held:
        assert s.recv(1) == b""
    assert d.wait(10) == 0
    assert 0.9 < time.monotonic() - t0 < 4
    assert d.notifier.events(start) == [["STOPPING", "STATUS"]]
    assert [l["end"] for l in d.lines()] == ["shutdown", "shutdown"]
    for s in held:
        s.close()


def test_second_sigint_exits_at_once(daemons, backends):
    srv = backends.echo()
    port = free_port()
    d = daemons.start(conf([listener([loopback(port)], [srv.text])],
                           shutdown_timeout="60s"))
    s = peers.connect(("127.0.0.1", port), timeout=10)
    s.sendall(b"hi")
    assert s.recv(2) == b"hi"
    d.signal(signal.SIGINT)
    d.notifier.wait(lambda f: "STOPPING" in f, proc=d.proc)
    assert d.wait(0.3) is None  # draining
    d.signal(signal.SIGINT)
    assert d.wait(5) == 0
    assert s.recv(1) == b""
    s.close()
    assert d.lines()[0]["end"] == "shutdown"


# Watchdog.

WATCHDOG_PID_IS_ME = ["/bin/sh", "-c", 'export WATCHDOG_PID=$$; exec "$@"',
                      "sh"]


def test_watchdog_is_fed_at_half_its_interval(daemons, backends):
    srv = backends.echo()
    d = daemons.start(conf([listener([loopback(free_port())], [srv.text])]),
                      env={"WATCHDOG_USEC": "400000"},
                      wrapper=WATCHDOG_PID_IS_ME)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.1:
        d.notifier.poll()
        time.sleep(0.005)
    pings = [t for t, f, _ in d.notifier.messages if "WATCHDOG" in f]
    for _, f, raw in d.notifier.messages:
        if "WATCHDOG" in f:
            assert raw == "WATCHDOG=1"
    assert 7 <= len(pings) <= 12, len(pings)
    gaps = sorted(b - a for a, b in zip(pings, pings[1:]))
    median = gaps[len(gaps) // 2]
    assert 0.17 < median < (0.35 if SANITIZERS else 0.25), gaps


def test_watchdog_meant_for_another_process_is_not_fed(daemons, backends):
    srv = backends.echo()
    d = daemons.start(conf([listener([loopback(free_port())], [srv.text])]),
                      env={"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    time.sleep(1)
    d.notifier.poll()
    assert not [f for _, f, _ in d.notifier.messages if "WATCHDOG" in f]


# Privileges.

def free_low_port():
    """A port below 1024 that nothing uses on 127.0.0.1 (binding one needs
    root or CAP_NET_BIND_SERVICE, so the kernel's port 0 cannot help)."""
    for port in range(900, 1000):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port below 1024")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.parametrize("group,gid", [(None, 65534), ("daemon", 1)])
def test_privileges_are_dropped_keeping_only_low_port_binding(
        daemons, backends, group, gid):
    a = backends.server(tagged(b"A"))
    port = free_port()
    settings = {"user": "nobody"}
    if group is not None:
        settings["group"] = group
    d = daemons.start(conf([listener([loopback(port)], [a.text])],
                           **settings))
    # READY=1 came from the new user and group: after the drop.
    i = d.notifier.wait(lambda f: "READY" in f)
    assert d.notifier.senders[i] == (d.pid, 65534, gid)
    st = proc_status(d.pid)
    assert st["Uid"] == ["65534"] * 4
    assert st["Gid"] == [str(gid)] * 4
    assert st["Groups"] == [str(gid)]
    assert st["CapEff"] == ["0000000000000400"]  # CAP_NET_BIND_SERVICE
    assert st["CapPrm"] == ["0000000000000400"]
    assert st["CapInh"] == ["0000000000000000"]
    assert st["CapAmb"] == ["0000000000000000"]
    assert "running as user nobody, group %d" % gid in d.text()
    assert ask(port) == b"A:ping"

    low = free_low_port()
    _, ready, _ = d.reload(conf([listener([loopback(port), loopback(low)],
                                          [a.text])], **settings))
    assert ready["STATUS"].endswith("; last reload ok"), ready
    assert ask(low) == b"A:ping"


def test_unknown_user_stops_startup(daemons, backends):
    srv = backends.echo()
    d = daemons.start(conf([listener([loopback(free_port())], [srv.text])],
                           user="no-such-user-acceptd"), wait=False)
    d.expected_rc = 1
    assert d.wait(10) == 1
    assert "user 'no-such-user-acceptd': no such user" in d.text()
    d.notifier.poll()
    assert d.notifier.messages == []
