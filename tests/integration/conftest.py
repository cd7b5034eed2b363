"""Fixtures for the integration tests: free ports from the kernel, a
private configuration per test, acceptd started and stopped by PID, its
connection log lines, and backends that are stopped after each test."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

import peers

ACCEPTD = os.environ.get("ACCEPTD", "")
SANITIZERS = os.environ.get("ACCEPTD_SANITIZERS", "") == "1"
SMALL = os.environ.get("ACCEPTD_TEST_SMALL", "") == "1"
# workers for every configuration that does not set it (make check runs
# the suite with 1 and again with 2).
WORKERS = int(os.environ.get("ACCEPTD_TEST_WORKERS", "") or "1")
# ACCEPTD_VALGRIND=1: every acceptd runs under valgrind's memcheck, which
# turns any memory error or definitely lost block into exit status 99.
VALGRIND = os.environ.get("ACCEPTD_VALGRIND", "") == "1"
VALGRIND_ARGV = ["valgrind", "--error-exitcode=99", "--leak-check=full",
                 "--errors-for-leak-kinds=definite", "--track-fds=no",
                 "--child-silent-after-fork=yes", "-q"]
START_TIMEOUT = 60.0 if VALGRIND else 30.0 if SANITIZERS else 10.0
# Waiting for a reload: a check child that hangs (a fork under a sanitizer
# runtime can) is killed after 10 s and the check made again.
RELOAD_TIMEOUT = 25.0


def acceptd_argv(argv):
    """acceptd's command line, under valgrind in ACCEPTD_VALGRIND mode."""
    return (VALGRIND_ARGV + list(argv)) if VALGRIND else list(argv)

_LINE = re.compile(r": (conn|connect) ((?:id=\d+ )?listener=.*)$")
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def pytest_collection_modifyitems(config, items):
    if ACCEPTD and os.access(ACCEPTD, os.X_OK):
        return
    skip = pytest.mark.skip(reason="set ACCEPTD to the built binary")
    for item in items:
        if "acceptd" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


_handed_out = set()


def free_port(host="127.0.0.1"):
    """A port the kernel says is free on host, never one this process was
    given before (the kernel may hand the same free port out twice)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise AssertionError("no fresh free port on %s" % host)


def free_port_both():
    """A port free on both 0.0.0.0 and [::] (for "*:port")."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s4:
            s4.bind(("0.0.0.0", 0))
            port = s4.getsockname()[1]
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    s6.bind(("::", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no port free on both families")


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def conf_value(v):
    """A Python value in libconfig syntax."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
    if isinstance(v, dict):
        return "{ " + " ".join("%s = %s;" % (k, conf_value(x))
                               for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)) and any(isinstance(x, dict) for x in v):
        return "( " + ", ".join(conf_value(x) for x in v) + " )"
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(conf_value(x) for x in v) + " ]"
    raise TypeError(v)


def conf_text(listeners, **settings):
    """A whole configuration file: global settings and listeners."""
    if WORKERS != 1 and "workers" not in settings:
        settings = dict(settings, workers=WORKERS)
    out = ["%s = %s;" % (k, conf_value(v)) for k, v in settings.items()]
    items = []
    for l in listeners:
        body = " ".join("%s = %s;" % (k, conf_value(v)) for k, v in l.items())
        items.append("  { %s }" % body)
    out.append("listeners = (\n%s\n);" % ",\n".join(items))
    return "\n".join(out) + "\n"


def parse_logfmt(text):
    """key=value pairs, values unquoted."""
    fields = {}
    for k, v in _FIELD.findall(text):
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        fields[k] = v
    return fields


class Acceptd:
    """One acceptd process with its own configuration and log file."""

    def __init__(self, workdir, sockdir, text, preexec_fn=None):
        self.dir = workdir
        self.conf = os.path.join(workdir, "acceptd.conf")
        self.log = os.path.join(workdir, "acceptd.log")
        with open(self.conf, "w") as f:
            f.write(text)
        self.notify_path = os.path.join(sockdir, "notify-%d" % id(self))
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.settimeout(0.05)
        self.notices = []
        env = dict(os.environ)
        for k in ("JOURNAL_STREAM", "LISTEN_FDS", "LISTEN_PID",
                  "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(k, None)
        env["NOTIFY_SOCKET"] = self.notify_path
        self.expected_rc = 0
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                acceptd_argv([ACCEPTD, "-c", self.conf]),
                stdin=subprocess.DEVNULL,
                stdout=logf, stderr=logf, env=env, preexec_fn=preexec_fn)
        self.pid = self.proc.pid

    def read_notify(self):
        """Collect sd_notify messages received so far."""
        while True:
            try:
                self.notices.append(self.notify.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                return
            except OSError:
                return

    def wait_ready(self, timeout=START_TIMEOUT):
        """Wait for READY=1 (or the startup line without systemd)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read_notify()
            if any("READY=1" in n for n in self.notices):
                return self
            if ": started" in self.text():
                return self
            if self.proc.poll() is not None:
                raise AssertionError("acceptd exited with %d:\n%s"
                                     % (self.proc.returncode, self.text()))
        raise AssertionError("acceptd not ready after %ss:\n%s"
                             % (timeout, self.text()))

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def lines(self, kind="conn"):
        """Connection log lines of one kind ("conn" or "connect")."""
        out = []
        for line in self.text().splitlines():
            m = _LINE.search(line)
            if m and m.group(1) == kind:
                out.append(parse_logfmt(m.group(2)))
        return out

    def wait_lines(self, n, kind="conn", timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            got = self.lines(kind)
            if len(got) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert len(got) >= n, ("%d %s lines, wanted %d:\n%s"
                               % (len(got), kind, n, self.text()))
        return got

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Wait for the exit; None if still running after timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=20.0):
        """SIGTERM, wait, return the exit status (kill if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("acceptd did not stop on SIGTERM:\n%s"
                                 % self.text())
        return rc

    def rss_kb(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self):
        self.notify.close()
        try:
            os.unlink(self.notify_path)
        except OSError:
            pass


@pytest.fixture
def sockdir():
    """A short directory for unix sockets (sun_path is 108 bytes)."""
    d = tempfile.mkdtemp(prefix="acd-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Proxies:
    """Start acceptd processes for a test; all are stopped at teardown,
    and each must exit with its expected status."""

    def __init__(self, tmp_path, sockdir):
        self.tmp_path = tmp_path
        self.sockdir = sockdir
        self.started = []
        # Settings every listener started here gets unless it sets them
        # itself (relay_mode puts "splice" here).
        self.listener_defaults = {}

    def start(self, listeners, wait=True, preexec_fn=None, **settings):
        settings.setdefault("log_level", "info")
        settings.setdefault("shutdown_timeout", "5s")
        listeners = [with_defaults(l, self.listener_defaults)
                     for l in listeners]
        workdir = os.path.join(str(self.tmp_path), "a%d" % len(self.started))
        os.makedirs(workdir)
        p = Acceptd(workdir, self.sockdir, conf_text(listeners, **settings),
                    preexec_fn=preexec_fn)
        self.started.append(p)
        if wait:
            p.wait_ready()
        return p

    def simple(self, backends, listen=None, name="t", wait=True,
               settings=None, preexec_fn=None, **opts):
        """One listener on a free loopback port in front of backends."""
        if listen is None:
            port = free_port()
            listen = ["127.0.0.1:%d" % port]
        l = {"name": name, "listen": listen, "backends": backends}
        l.update(opts)
        p = self.start([l], wait=wait, preexec_fn=preexec_fn,
                       **(settings or {}))
        first = listen[0]
        if first.startswith("unix:"):
            p.addr = first[5:]
        elif first.startswith("["):
            host, port = first[1:].split("]:")
            p.addr = (host, int(port))
        else:
            host, port = first.rsplit(":", 1)
            p.addr = ("127.0.0.1" if host == "*" else host, int(port))
        return p

    def finish(self):
        problems = []
        for p in self.started:
            try:
                if p.proc.poll() is None:
                    rc = p.stop()
                else:
                    rc = p.proc.returncode
                if p.expected_rc is not None and rc != p.expected_rc:
                    problems.append("acceptd exited with %d, expected %d:\n%s"
                                    % (rc, p.expected_rc, p.text()))
            finally:
                p.close()
        if problems:
            pytest.fail("\n".join(problems))


@pytest.fixture
def acceptd(tmp_path, sockdir):
    """Factory: acceptd.start(listeners, **settings), acceptd.simple(...)."""
    proxies = Proxies(tmp_path, sockdir)
    yield proxies
    proxies.finish()


def with_defaults(listener, defaults):
    """A listener's settings with defaults added for the keys it does not
    set itself (after its own, so that name stays first)."""
    out = dict(listener)
    for k, v in defaults.items():
        out.setdefault(k, v)
    return out


# The listener settings of each relay mode.
RELAY_MODES = {"copy": {"splice": False}, "splice": {"splice": True}}


@pytest.fixture(params=sorted(RELAY_MODES), ids=sorted(RELAY_MODES))
def relay_mode(request):
    """Run the test once per relay mode: copy (splice = false, through
    buffers in acceptd) and splice (splice = true, the default). Every
    listener the test's acceptd fixture starts gets the setting; the value
    is those listener settings ({"splice": ...}), for tests that write
    their configurations themselves: listener(..., **relay_mode)."""
    opts = dict(RELAY_MODES[request.param])
    if "acceptd" in request.fixturenames:
        request.getfixturevalue("acceptd").listener_defaults.update(opts)
    return opts


class Peers:
    """Backends for a test, closed at teardown."""

    def __init__(self, sockdir):
        self.sockdir = sockdir
        self.items = []

    def server(self, handler, host="127.0.0.1", unix=False, backlog=128):
        path = None
        if unix:
            path = os.path.join(self.sockdir, "b%d.sock" % len(self.items))
        s = peers.Server(handler, host=host, path=path, backlog=backlog)
        self.items.append(s)
        return s

    def echo(self, **kw):
        return self.server(peers.echo, **kw)

    def hasher(self, **kw):
        return self.server(peers.hasher, **kw)

    def refuser(self, host="127.0.0.1"):
        r = peers.Refuser(host)
        self.items.append(r)
        return r

    def blackhole(self):
        b = peers.Blackhole()
        self.items.append(b)
        return b

    def close(self):
        for s in self.items:
            s.close()


@pytest.fixture
def backends(sockdir):
    p = Peers(sockdir)
    yield p
    p.close()
