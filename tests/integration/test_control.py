"""The control socket and acceptctl: every command against a running
acceptd, the peer check, draining, kill, reload, bad requests, and clients
that cannot stall the relay; connection ids in the connection lines."""

import json
import os
import shutil
import re
import pwd
import socket
import stat
import subprocess
import time

import pytest

import observe
import peers

pytestmark = pytest.mark.skipif(not observe.have_acceptctl(),
                                reason="set ACCEPTCTL to the built acceptctl")


def test_stats_is_json_with_the_counters(acceptd, backends, sockdir):
    echo = backends.echo()
    p = observe.start(acceptd, sockdir, [echo.text])
    assert observe.echo_once(p.addr, b"abc") == b"abc"
    held = observe.held(p.addr, b"zz")
    try:
        st = json.loads(observe.ctl_ok(p, "stats"))
    finally:
        held.close()
    assert st["pid"] == p.pid
    assert st["connections"]["active"] == 1
    assert st["reloads"] == {"ok": 0, "failed": 0}
    [lst] = st["listeners"]
    assert lst["name"] == "t" and lst["configured"] is True
    assert lst["sockets"] == 1 and lst["active"] == 1
    assert lst["ends"]["client_fin"] == 1 and lst["ends"]["killed"] == 0
    assert lst["bytes_in"] == 5 and lst["bytes_out"] == 5
    assert lst["connects"] == 2
    [b] = st["backends"]
    assert b["listener"] == "t" and b["address"] == echo.text
    assert b["up"] is True and b["disabled"] is False
    assert b["active"] == 1 and b["total"] == 2 and b["failures"] == 0


def test_connection_ids_match_show_conns(acceptd, backends, sockdir):
    """Every connect and conn line starts with id=N; show conns lists the
    open connections by that id, with their bytes so far."""
    p = observe.start(acceptd, sockdir, [backends.echo().text])
    a = observe.held(p.addr, b"first")
    b = observe.held(p.addr, b"second-one")
    try:
        connects = p.wait_lines(2, "connect")
        ids = [c["id"] for c in connects]
        assert len(set(ids)) == 2 and all(i.isdigit() for i in ids)
        rows = observe.table(observe.ctl_ok(p, "show", "conns"))
        assert sorted(r["ID"] for r in rows) == sorted(ids)
        by_id = {r["ID"]: r for r in rows}
        for c, n in zip(connects, (5, 10)):
            r = by_id[c["id"]]
            assert r["LISTENER"] == "t"
            assert r["CLIENT"] == c["client"]
            assert r["BACKEND"] == c["backend"]
            assert r["STATE"] == "relaying"
            assert float(r["AGE"]) >= 0
            assert int(r["BYTES_IN"]) == n and int(r["BYTES_OUT"]) == n
        lines = [l for l in p.text().splitlines()
                 if re.search(r": (conn|connect) ", l)]
        assert len(lines) == 2
        for line in lines:
            assert re.search(r": (conn|connect) id=\d+ listener=", line), line
    finally:
        a.close()
        b.close()
    closed = p.wait_lines(2, "conn")
    assert sorted(c["id"] for c in closed) == sorted(ids)
    assert observe.table(observe.ctl_ok(p, "show", "conns")) == []


def test_show_backends_states(acceptd, backends, sockdir):
    echo = backends.echo()
    refused = backends.refuser()
    p = observe.start(acceptd, sockdir, [refused.text, echo.text],
                      balance="first")
    assert observe.echo_once(p.addr, b"x") == b"x"
    rows = observe.table(observe.ctl_ok(p, "show", "backends"))
    by = {r["BACKEND"]: r for r in rows}
    dead, live = by["t/" + refused.text], by["t/" + echo.text]
    assert dead["STATE"] == "down" and dead["FAILURES"] == "1"
    assert live["STATE"] == "up" and live["FAILURES"] == "0"
    assert live["TOTAL"] == "1" and live["ACTIVE"] == "0"
    assert live["ROLE"] == "primary" and live["LAST_CHECK"] == "-"
    observe.ctl_ok(p, "disable", "t/" + echo.text)
    rows = observe.table(observe.ctl_ok(p, "show", "backends"))
    assert {r["BACKEND"]: r["STATE"] for r in rows}["t/" + echo.text] == \
        "disabled"


def test_show_backends_reports_health_checks(acceptd, backends, sockdir):
    echo = backends.echo()
    p = observe.start(acceptd, sockdir, [echo.text],
                      health_check={"interval": "200ms", "timeout": "100ms"})
    row = observe.wait_for(
        lambda: [r for r in observe.table(observe.ctl_ok(p, "show",
                                                         "backends"))
                 if r["LAST_CHECK"].startswith("passed")],
        what="a passed check")[0]
    assert row["LAST_CHECK"].endswith("s ago")


def test_disable_drains_and_enable_restores(acceptd, backends, sockdir):
    one = backends.echo()
    two = backends.echo()
    p = observe.start(acceptd, sockdir, [one.text, two.text])
    # Round robin: one connection on each backend, left open.
    a = observe.held(p.addr, b"a")
    b = observe.held(p.addr, b"b")
    try:
        assert one.accepted == 1 and two.accepted == 1
        out = observe.ctl_ok(p, "disable", "t/" + one.text)
        assert "disabled" in out
        observe.wait_for(lambda: "backend %s disabled" % one.text in
                         p.text(), what="the log line")
        # New connections all go to the other backend ...
        for _ in range(4):
            assert observe.echo_once(p.addr, b"n") == b"n"
        assert one.accepted == 1 and two.accepted == 5
        # ... while the one already on the disabled backend goes on.
        a.sendall(b"still here")
        assert peers.recv_exact(a, 10) == b"still here"
        s = observe.parse(observe.scrape(p))
        assert observe.value(s, "acceptd_backend_disabled", listener="t",
                             backend=one.text) == 1
        assert observe.value(s, "acceptd_backend_connections_active",
                             listener="t", backend=one.text) == 1
        observe.ctl_ok(p, "enable", "t/" + one.text)
        for _ in range(4):
            assert observe.echo_once(p.addr, b"n") == b"n"
        assert one.accepted > 1 and one.accepted + two.accepted == 10
    finally:
        a.close()
        b.close()
    # Disabling every backend: new clients find none (end=no_backend).
    observe.ctl_ok(p, "disable", "t/" + one.text)
    observe.ctl_ok(p, "disable", "t/" + two.text)
    assert observe.closed_at_once(p.addr)
    observe.wait_for(lambda: p.lines("conn")[-1]["end"] == "no_backend",
                     what="end=no_backend")


def test_disabled_backend_stays_disabled_across_reload(acceptd, backends,
                                                        sockdir):
    one = backends.echo()
    two = backends.echo()
    p = observe.start(acceptd, sockdir, [one.text, two.text])
    observe.ctl_ok(p, "disable", "t/" + one.text)
    assert observe.ctl_ok(p, "reload") == "reloaded\n"
    for _ in range(3):
        assert observe.echo_once(p.addr, b"n") == b"n"
    assert one.accepted == 0 and two.accepted == 3


def test_disable_and_enable_errors(acceptd, backends, sockdir):
    echo = backends.echo()
    p = observe.start(acceptd, sockdir, [echo.text])
    for arg, msg in (("t/127.0.0.1:1", "listener 't' has no backend "
                      "127.0.0.1:1"),
                     ("nope/" + echo.text, "no listener named 'nope'"),
                     (echo.text, "expected LISTENER/ADDRESS"),
                     ("t/", "expected LISTENER/ADDRESS")):
        for cmd in ("disable", "enable"):
            r = observe.ctl(p, cmd, arg)
            assert r.returncode == 1, (cmd, arg, r)
            assert msg in r.stderr, r.stderr


def test_kill_closes_one_connection(acceptd, backends, sockdir):
    p = observe.start(acceptd, sockdir, [backends.echo().text])
    victim = observe.held(p.addr, b"v")
    other = observe.held(p.addr, b"o")
    try:
        [vid, oid] = [c["id"] for c in p.wait_lines(2, "connect")]
        out = observe.ctl_ok(p, "kill", vid)
        assert out == "connection %s closed\n" % vid
        victim.settimeout(5)
        assert peers.recv_all(victim) == b""
        [line] = p.wait_lines(1, "conn")
        assert line["id"] == vid and line["end"] == "killed"
        assert line["bytes_in"] == "1" and line["bytes_out"] == "1"
        other.sendall(b"alive")
        assert peers.recv_exact(other, 5) == b"alive"
        rows = observe.table(observe.ctl_ok(p, "show", "conns"))
        assert [r["ID"] for r in rows] == [oid]
        r = observe.ctl(p, "kill", vid)
        assert r.returncode == 1
        assert "no open connection with id %s" % vid in r.stderr
        for bad in ("abc", "-1", "0", "1x", "99999999999999999999999"):
            r = observe.ctl(p, "kill", bad)
            assert r.returncode == 1 and "expected a connection id" in \
                r.stderr, (bad, r)
        s = observe.parse(observe.scrape(p))
        assert observe.value(s, "acceptd_listener_connections_total",
                             listener="t", end="killed") == 1
    finally:
        victim.close()
        other.close()


def test_reload_answers_with_the_result(acceptd, backends, sockdir):
    echo = backends.echo()
    p = observe.start(acceptd, sockdir, [echo.text])
    assert observe.ctl_ok(p, "reload") == "reloaded\n"
    observe.wait_for(lambda: "reload requested from the control socket"
                     in p.text(), what="the log line")
    with open(p.conf) as f:
        good = f.read()
    with open(p.conf, "a") as f:
        f.write("bogus_setting = 1;\nlisteners = (\n")
    r = observe.ctl(p, "reload")
    assert r.returncode == 1
    assert r.stderr.startswith("acceptctl: reload failed: the running "
                               "configuration is kept\n"), r.stderr
    # Every error as FILE:LINE: message, the same as the log's.
    errors = r.stderr.splitlines()[1:]
    assert errors and all(e.startswith(p.conf + ":") for e in errors), errors
    observe.wait_for(lambda: all(e in p.text() for e in errors),
                     what="the errors in the log")
    # The running configuration still serves.
    assert observe.echo_once(p.addr, b"ok") == b"ok"
    # A bad value (not a syntax error) gives FILE:LINE: setting ...
    with open(p.conf, "w") as f:
        f.write(good.replace('log_connections = "all";',
                             'log_connections = "some";'))
    r = observe.ctl(p, "reload")
    assert r.returncode == 1
    assert "%s:" % p.conf in r.stderr and "log_connections" in r.stderr
    with open(p.conf, "w") as f:
        f.write(good)
    assert observe.ctl_ok(p, "reload") == "reloaded\n"
    st = json.loads(observe.ctl_ok(p, "stats"))
    assert st["reloads"] == {"ok": 2, "failed": 2}


def test_control_socket_moves_with_a_reload(acceptd, backends, sockdir):
    p = observe.start(acceptd, sockdir, [backends.echo().text])
    moved = os.path.join(sockdir, "moved.sock")
    with open(p.conf) as f:
        text = f.read()
    with open(p.conf, "w") as f:
        f.write(text.replace(p.control, moved))
    # The answer comes on the old socket; then only the new one serves.
    assert observe.ctl_ok(p, "reload") == "reloaded\n"
    assert not os.path.exists(p.control)
    assert stat.S_IMODE(os.stat(moved).st_mode) == 0o600
    old = p.control
    p.control = moved
    assert "ID" in observe.ctl_ok(p, "show", "conns")
    p.control = old
    r = observe.ctl(p, "stats")
    assert r.returncode == 1 and "cannot connect" in r.stderr


def test_bad_requests_get_clear_errors(acceptd, backends, sockdir):
    p = observe.start(acceptd, sockdir, [backends.echo().text])
    cases = [
        (b"frobnicate\n", b"ERROR unknown command 'frobnicate'"),
        (b"show\n", b"ERROR unknown command 'show'"),
        (b"show things\n", b"ERROR unknown command 'show things'"),
        (b"stats now\n", b"ERROR usage: stats"),
        (b"kill\n", b"ERROR usage: kill ID"),
        (b"disable a b\n", b"ERROR usage: disable LISTENER/ADDRESS"),
        (b"\n", b"ERROR empty request"),
        (b"a b c d e f\n", b"ERROR too many words"),
        (b"x" * 5000, b"ERROR request longer than 1024 bytes"),
        (b"x" * 1025 + b"\n", b"ERROR request longer than 1024 bytes"),
        (b"x" * 1024 + b"\n", b"ERROR unknown command 'xxxx"),
    ]
    for req, want in cases:
        got = observe.raw(p.control, req)
        assert got.startswith(want) and got.endswith(b"\n"), (req, got)
    # Without a newline, EOF ends the request; CRLF is fine too.
    assert observe.raw(p.control, b"help").startswith(b"OK\nstats\n")
    assert observe.raw(p.control, b"show conns\r\n").startswith(b"OK\nID ")
    # acceptctl refuses what it does not know before connecting.
    for args in (["frob"], ["show"], ["kill"], ["stats", "x"], []):
        r = observe.ctl(p, *args)
        assert r.returncode == 2 and "usage: acceptctl" in r.stderr, args


def test_acceptctl_without_acceptd(sockdir):
    r = observe.ctl(type("P", (), {"control": os.path.join(sockdir, "no")}),
                    "stats")
    assert r.returncode == 1
    assert "cannot connect" in r.stderr and "No such file" in r.stderr


def _as_nobody():
    nobody = pwd.getpwnam("nobody")
    os.setgid(nobody.pw_gid)
    os.setgroups([])
    os.setuid(nobody.pw_uid)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_peer_with_another_uid_is_refused(acceptd, backends, sockdir):
    p = observe.start(acceptd, sockdir, [backends.echo().text])
    os.chmod(sockdir, 0o755)
    st = os.stat(p.control)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    # A copy of acceptctl that nobody may run, wherever the build tree is.
    exe = os.path.join(sockdir, "acceptctl")
    shutil.copy(observe.ACCEPTCTL, exe)
    os.chmod(exe, 0o755)
    # First layer: the file's mode keeps other users out.
    r = observe.ctl(p, "stats", preexec_fn=_as_nobody, exe=exe)
    assert r.returncode == 1 and "Permission denied" in r.stderr, r
    # Second layer: with the mode opened up, SO_PEERCRED still refuses.
    os.chmod(p.control, 0o666)
    r = observe.ctl(p, "stats", preexec_fn=_as_nobody, exe=exe)
    assert r.returncode == 1, r
    assert "permission denied: only root and the user acceptd runs as" in \
        r.stderr, r.stderr
    uid = pwd.getpwnam("nobody").pw_uid
    observe.wait_for(lambda: "refused a client running as uid %d" % uid
                     in p.text(), what="the refusal in the log")
    # Root is still served.
    assert json.loads(observe.ctl_ok(p, "stats"))["pid"] == p.pid


def test_slow_control_clients_do_not_stall_the_relay(acceptd, backends,
                                                      sockdir):
    p = observe.start(acceptd, sockdir, [backends.echo().text])
    idle = []
    try:
        # Sessions, for a show conns answer that is never read.
        opened = [observe.held(p.addr) for _ in range(30)]
        unread = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unread.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        unread.connect(p.control)
        unread.sendall(b"show conns\n")
        idle.append(unread)
        # Clients that send nothing, or half a request.
        for i in range(8):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(p.control)
            if i % 2:
                s.sendall(b"sta")
            idle.append(s)
        try:
            t0 = time.monotonic()
            for _ in range(20):
                payload = os.urandom(20000)
                assert observe.echo_once(p.addr, payload) == payload
            assert time.monotonic() - t0 < 5
            # Eight clients are served at once: the ninth waits.
            r = observe.ctl(p, "-t", "1", "stats")
            assert r.returncode == 1 and "no answer in time" in r.stderr
        finally:
            for s in opened:
                s.close()
    finally:
        for s in idle:
            s.close()
    observe.wait_for(lambda: _client_fins(p) == 20 + 30, what="stats")


def _client_fins(p):
    r = observe.ctl(p, "-t", "2", "stats")
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)["listeners"][0]["ends"]["client_fin"]


def test_acceptctl_help_and_version():
    for opt in ("-h", "--help"):
        r = subprocess.run([observe.ACCEPTCTL, opt], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0 and "show backends" in r.stdout
    r = subprocess.run([observe.ACCEPTCTL, "-V"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("acceptctl ")
    for bad in (["-t", "0", "stats"], ["-t", "x", "stats"], ["-q"]):
        r = subprocess.run([observe.ACCEPTCTL] + bad, capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 2, bad
