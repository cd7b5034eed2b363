"""Socket activation and the fd store, emulated without systemd: sockets
handed over by systemd-socket-activate (acceptd starts on the first
client), and a test notify socket that keeps the fds acceptd stores
(SCM_RIGHTS) and hands them to the next acceptd through LISTEN_FDS,
LISTEN_FDNAMES and LISTEN_PID, as systemd does across a restart."""

import array
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import conftest
import lifecycle

pytestmark = pytest.mark.skipif(
    not lifecycle.NOTIFIES,
    reason="built without libsystemd: acceptd takes no sockets from "
    "systemd and keeps none in its fd store")

ACTIVATE = shutil.which("systemd-socket-activate")
TIMEOUT = conftest.START_TIMEOUT


@pytest.fixture
def daemons():
    d = lifecycle.Daemons()
    yield d
    problems = d.finish()
    if problems:
        pytest.fail("\n".join(problems))


def conf(listeners, **settings):
    settings.setdefault("shutdown_timeout", "3s")
    settings.setdefault("log_level", "debug")
    return conftest.conf_text(listeners, **settings)


def ask(port, payload=b"hello", timeout=TIMEOUT):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            data = s.recv(65536)
            if not data:
                return out
            out += data


def wait_text(d, text, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while text not in d.text():
        assert time.monotonic() < deadline, "no %r in:\n%s" % (text, d.text())
        time.sleep(0.02)


def activated(daemons, text, ports, names=None, accept=False):
    """acceptd under systemd-socket-activate listening on ports."""
    if ACTIVATE is None:
        pytest.skip("systemd-socket-activate is not installed")
    # systemd-socket-activate passes on only the variables -E names.
    wrapper = [ACTIVATE, "-E", "NOTIFY_SOCKET"]
    for p in ports:
        wrapper += ["-l", "127.0.0.1:%d" % p]
    if names:
        wrapper.append("--fdname=" + ":".join(names))
    if accept:
        wrapper.append("--accept")
    d = daemons.start(text, wait=False, wrapper=wrapper)
    wait_text(d, "Listening on 127.0.0.1:%d as %d." % (ports[-1],
                                                       2 + len(ports)))
    return d


def test_socket_activation_without_names_starts_on_first_client(daemons,
                                                                 backends):
    echo = backends.echo()
    port = conftest.free_port()
    d = activated(daemons, conf([{"name": "web",
                                  "listen": ["127.0.0.1:%d" % port],
                                  "backends": [echo.text]}]),
                  [port])
    wait_text(d, "Listening on 127.0.0.1:%d" % port)
    assert "acceptd: " not in d.text()    # not started before a client
    assert ask(port) == b"hello"
    d.wait_ready()
    wait_text(d, "listener 'web': 127.0.0.1:%d taken from systemd "
              "(socket unit, fd named 'unknown')" % port)
    before = d.sockets()
    assert list(before) == ["127.0.0.1:%d" % port]
    # A reload keeps the activated socket.
    d.reload()
    assert d.sockets() == before
    assert ask(port, b"again") == b"again"


def test_socket_activation_matches_fds_by_name_and_address(daemons,
                                                           backends):
    echo = backends.echo()
    p1, p2, p3 = (conftest.free_port() for _ in range(3))
    # "api" has two addresses: both fds are named "api", and each goes
    # to the listen address it is bound to.
    text = conf([
        {"name": "web", "listen": ["127.0.0.1:%d" % p1],
         "backends": [echo.text]},
        {"name": "api", "listen": ["127.0.0.1:%d" % p3, "127.0.0.1:%d" % p2],
         "backends": [echo.text]}])
    d = activated(daemons, text, [p1, p2, p3], names=["web", "api", "api"])
    assert ask(p2) == b"hello"
    d.wait_ready()
    for name, p in (("web", p1), ("api", p2), ("api", p3)):
        wait_text(d, "listener '%s': 127.0.0.1:%d taken from systemd "
                  "(socket unit or fd store, fd named '%s')" % (name, p, name))
    assert ask(p1) == b"hello" and ask(p3) == b"hello"
    assert sorted(d.sockets()) == sorted("127.0.0.1:%d" % p
                                         for p in (p1, p2, p3))
    conns = d.wait_lines(3)
    assert sorted(c["listener"] for c in conns) == ["api", "api", "web"]


def test_socket_unit_fd_matching_nothing_is_a_startup_error(daemons,
                                                            backends):
    echo = backends.echo()
    port, other = conftest.free_port(), conftest.free_port()
    d = activated(daemons, conf([{"name": "web",
                                  "listen": ["127.0.0.1:%d" % port],
                                  "backends": [echo.text]}]),
                  [other], names=["acceptd.socket"])
    d.expected_rc = 1
    try:
        socket.create_connection(("127.0.0.1", other), timeout=2).close()
    except OSError:
        pass
    assert d.wait(TIMEOUT) == 1, d.text()
    assert "socket 127.0.0.1:%d (fd 3, named 'acceptd.socket') from the " \
        "socket unit matches no listen address" % other in d.text()


def test_accept_yes_is_refused(daemons, backends):
    echo = backends.echo()
    port = conftest.free_port()
    d = activated(daemons, conf([{"name": "web",
                                  "listen": ["127.0.0.1:%d" % port],
                                  "backends": [echo.text]}]),
                  [port], accept=True)
    wait_text(d, "Listening on 127.0.0.1:%d" % port)
    try:
        ask(port, timeout=5)
    except OSError:
        pass
    wait_text(d, "Accept=yes is not supported")
    d.expected_rc = None     # systemd-socket-activate goes on listening


class Store:
    """What systemd does with FDSTORE=1 / FDSTOREREMOVE=1, on the test's
    own notify socket: keeps each fd under its FDNAME (one copy per
    socket, as systemd deduplicates)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.fds = []          # [name, fd]
        self.messages = []

    def poll(self):
        while True:
            fds = array.array("i")
            try:
                data, anc, _, _ = self.sock.recvmsg(
                    65536, socket.CMSG_SPACE(16 * fds.itemsize))
            except BlockingIOError:
                return
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(value[:len(value) - len(value) %
                                        fds.itemsize])
            f = lifecycle.parse_notify(data.decode())
            self.messages.append(f)
            if f.get("FDSTOREREMOVE") == "1":
                for e in [e for e in self.fds if e[0] == f["FDNAME"]]:
                    os.close(e[1])
                    self.fds.remove(e)
            for fd in fds:
                if f.get("FDSTORE") != "1" or self.has(fd):
                    os.close(fd)
                else:
                    self.fds.append([f.get("FDNAME", "stored"), fd])

    def has(self, fd):
        ino = os.fstat(fd).st_ino
        return any(os.fstat(e[1]).st_ino == ino for e in self.fds)

    def wait(self, pred, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, self.messages
            time.sleep(0.01)
            self.poll()

    def names(self):
        return sorted(e[0] for e in self.fds)

    def start(self, text, workdir, extra=()):
        """Start acceptd with the stored fds (and extra (name, fd) pairs)
        as fds 3, 4, ..., LISTEN_PID its own pid, NOTIFY_SOCKET us."""
        entries = [tuple(e) for e in self.fds] + list(extra)
        # Above 3 + n, so that no renumbering overwrites another.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for _, fd in entries]
        redirs = " ".join("%d<&%d %d<&-" % (3 + i, h, h)
                          for i, h in enumerate(high))
        env = dict(os.environ)
        for k in ("JOURNAL_STREAM", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(k, None)
        env["NOTIFY_SOCKET"] = self.path
        for k in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"):
            env.pop(k, None)
        if entries:
            env.update(LISTEN_FDS=str(len(entries)),
                       LISTEN_FDNAMES=":".join(n for n, _ in entries))
        log = os.path.join(workdir, "acceptd-%d.log" % len(self.messages))
        conf_path = os.path.join(workdir, "acceptd.conf")
        with open(conf_path, "w") as f:
            f.write(text)
        with open(log, "wb") as logf:
            proc = subprocess.Popen(
                ["/bin/bash", "-c", '%sexec "$@" %s'
                 % ("export LISTEN_PID=$$; " if entries else "", redirs),
                 "sh", conftest.ACCEPTD, "-c", conf_path],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
                pass_fds=high)
        for h in high:
            os.close(h)
        proc.log = log
        return proc

    def close(self):
        for _, fd in self.fds:
            os.close(fd)
        self.fds = []
        self.sock.close()


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def wait_ready(store, proc, start):
    store.wait(lambda: proc.poll() is not None or any(
        "READY" in m for m in store.messages[start:]))
    assert proc.poll() is None, read(proc.log)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("acceptd did not stop:\n" + read(proc.log))
    assert rc == 0, read(proc.log)


def test_fd_store_restart_refuses_no_client(tmp_path, sockdir, backends):
    echo = backends.echo()
    port = conftest.free_port()
    text = conf([{"name": "web", "listen": ["127.0.0.1:%d" % port],
                  "backends": [echo.text]}])
    store = Store(os.path.join(sockdir, "notify"))
    procs = []
    stop_loop = threading.Event()
    counts = {"ok": 0, "refused": []}

    def loop():
        deadline = time.monotonic() + 3 * TIMEOUT
        while not stop_loop.is_set() and time.monotonic() < deadline:
            try:
                if ask(port, b"x") == b"x":
                    counts["ok"] += 1
            except OSError as e:
                counts["refused"].append(str(e))

    t = threading.Thread(target=loop)
    try:
        procs.append(store.start(text, str(tmp_path)))
        wait_ready(store, procs[0], 0)
        store.wait(lambda: store.names() == ["web"])
        assert {"FDSTORE": "1", "FDNAME": "web"} in store.messages
        t.start()
        store.wait(lambda: counts["ok"] >= 20)
        stop(procs[0])
        # Between the two, clients wait in the stored socket's backlog.
        time.sleep(0.3)
        n = len(store.messages)
        before = counts["ok"]
        procs.append(store.start(text, str(tmp_path)))
        wait_ready(store, procs[1], n)
        store.wait(lambda: counts["ok"] >= before + 20)
        stop_loop.set()
        t.join()
        assert counts["refused"] == [], counts
        log = read(procs[1].log)
        assert "listener 'web': 127.0.0.1:%d taken from systemd (socket " \
            "unit or fd store, fd named 'web')" % port in log, log
        # Unchanged: nothing removed, nothing stored twice.
        assert store.names() == ["web"]
        assert not any("FDSTOREREMOVE" in m or m.get("FDNAME") == "web"
                       for m in store.messages[n:]), store.messages[n:]
    finally:
        stop_loop.set()
        if t.is_alive():
            t.join()
        for p in procs:
            if p.poll() is None:
                stop(p)
        store.close()


def test_stored_fds_matching_nothing_are_removed(tmp_path, sockdir,
                                                 backends):
    echo = backends.echo()
    port, api, gone = (conftest.free_port() for _ in range(3))
    olds = []
    for p in (api, gone):
        o = socket.socket()
        o.bind(("127.0.0.1", p))
        o.listen(8)
        olds.append(o)
    text = conf([{"name": "web", "listen": ["127.0.0.1:%d" % port],
                  "backends": [echo.text]},
                 {"name": "api", "listen": ["127.0.0.1:%d" % api],
                  "backends": [echo.text]}])
    store = Store(os.path.join(sockdir, "notify"))
    proc = None
    try:
        # Stored fds of listeners that are no more: "renamed" is bound to
        # an address of "api" (taken, and stored again as "api"); "old" to
        # an address no listener has (closed, removed from the store).
        proc = store.start(text, str(tmp_path), extra=[
            ("renamed", olds[0].fileno()), ("old", olds[1].fileno())])
        for o in olds:
            o.close()
        wait_ready(store, proc, 0)
        store.wait(lambda: store.names() == ["api", "web"])
        log = read(proc.log)
        assert "socket 127.0.0.1:%d from the fd store (named 'old') matches " \
            "no listen address: closing it" % gone in log, log
        assert "listener 'api': 127.0.0.1:%d taken from systemd" % api in log
        for name in ("old", "renamed"):
            assert {"FDSTOREREMOVE": "1", "FDNAME": name} in store.messages
        assert ask(api) == b"hello"
        with pytest.raises(OSError):
            ask(gone, timeout=2)
        # A reload that removes a listener removes its socket from the store.
        n = len(store.messages)
        with open(os.path.join(str(tmp_path), "acceptd.conf"), "w") as f:
            f.write(conf([{"name": "web", "listen": ["127.0.0.1:%d" % port],
                           "backends": [echo.text]}]))
        proc.send_signal(signal.SIGHUP)
        store.wait(lambda: any("READY" in m for m in store.messages[n + 1:]))
        store.wait(lambda: store.names() == ["web"])
        assert {"FDSTOREREMOVE": "1", "FDNAME": "api"} in store.messages[n:]
        assert not any(m.get("FDNAME") == "web" for m in store.messages[n:])
        with pytest.raises(OSError):
            ask(api, timeout=2)
        assert ask(port) == b"hello"
    finally:
        if proc is not None and proc.poll() is None:
            stop(proc)
        for o in olds:
            o.close()
        store.close()
