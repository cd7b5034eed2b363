"""Helpers for the lifecycle tests: a notify socket owned by the test
(what acceptd sends to $NOTIFY_SOCKET, each message with the time it
arrived), and acceptd started with a chosen environment, arguments and
configuration directory, reloaded and stopped by the test."""

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import conftest

ACCEPTD = conftest.ACCEPTD
TIMEOUT = conftest.START_TIMEOUT


def _notifies():
    """Was acceptd built with libsystemd (so that it notifies at all)?
    make check says so; run by hand, ask the dynamic linker."""
    v = os.environ.get("ACCEPTD_SYSTEMD", "")
    if v in ("0", "1"):
        return v == "1"
    try:
        out = subprocess.run(["ldd", ACCEPTD], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return True
    return "libsystemd" in out


NOTIFIES = _notifies()


def parse_notify(raw):
    """One sd_notify message: its NAME=value lines as a dict."""
    fields = {}
    for line in raw.split("\n"):
        if "=" in line:
            k, v = line.split("=", 1)
            fields[k] = v
    return fields


class Notify:
    """A unix datagram socket standing in for systemd's notify socket.
    Anyone may send to it, so acceptd still reaches it after dropping
    privileges; like systemd, it learns who sent each message."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.setblocking(False)
        self.messages = []  # (monotonic time, fields, raw)
        self.senders = []   # (pid, uid, gid) of each message

    def poll(self):
        """Collect what arrived so far."""
        space = socket.CMSG_SPACE(struct.calcsize("3i"))
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, space)
            except BlockingIOError:
                return
            cred = None
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and \
                        kind == socket.SCM_CREDENTIALS:
                    cred = struct.unpack("3i", value[:struct.calcsize("3i")])
            raw = data.decode()
            self.messages.append((time.monotonic(), parse_notify(raw), raw))
            self.senders.append(cred)

    def wait(self, pred, start=0, timeout=TIMEOUT, proc=None):
        """Wait for a message at index >= start for which pred(fields) is
        true; returns its index."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            for i in range(start, len(self.messages)):
                if pred(self.messages[i][1]):
                    return i
            if proc is not None and proc.poll() is not None:
                raise AssertionError("acceptd exited with %d; notify: %r"
                                     % (proc.returncode, self.raw(start)))
            if time.monotonic() > deadline:
                raise AssertionError("no such notify message after %ss: %r"
                                     % (timeout, self.raw(start)))
            time.sleep(0.01)

    def raw(self, start=0):
        return [m[2] for m in self.messages[start:]]

    def events(self, start=0):
        """The messages that are not only a STATUS= refresh, as lists of
        their field names (e.g. ["RELOADING", "MONOTONIC_USEC"]); fd store
        messages (test_activation.py checks those) are left out too."""
        self.poll()
        return [list(m[1]) for m in self.messages[start:]
                if list(m[1]) != ["STATUS"] and "FDSTORE" not in m[1]
                and "FDSTOREREMOVE" not in m[1]]

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class Daemon(conftest.Acceptd):
    """acceptd with a test-owned notify socket, in a directory of its own
    that any user may read (the configuration is read again on reload,
    possibly after privileges were dropped)."""

    def __init__(self, text, args=(), env=None, wrapper=None):
        self.dir = tempfile.mkdtemp(prefix="acd-life-")
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "acceptd.conf")
        self.log = os.path.join(self.dir, "acceptd.log")
        self.write_conf(text)
        self.notifier = Notify(os.path.join(self.dir, "notify"))
        self.notify = self.notifier.sock
        self.notices = []
        self.expected_rc = 0
        penv = dict(os.environ)
        for k in ("JOURNAL_STREAM", "LISTEN_FDS", "LISTEN_PID",
                  "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID"):
            penv.pop(k, None)
        penv["NOTIFY_SOCKET"] = self.notifier.path
        penv.update(env or {})
        argv = [ACCEPTD, "-c", self.conf] + list(args)
        if wrapper is not None:
            argv = list(wrapper) + argv
        else:
            argv = conftest.acceptd_argv(argv)
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                env=penv)
        self.pid = self.proc.pid

    def write_conf(self, text):
        """Replace the configuration file (atomically, as editors do)."""
        tmp = self.conf + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, self.conf)

    def read_notify(self):
        self.notifier.poll()
        self.notices = [m[2] for m in self.notifier.messages]

    def wait_ready(self, timeout=TIMEOUT):
        self.notifier.wait(lambda f: "READY" in f, timeout=timeout,
                           proc=self.proc)
        return self

    def reload(self, text=None, timeout=TIMEOUT):
        """Write text (if given) as the new configuration, send SIGHUP and
        wait for the READY=1 that ends the reload. Returns the RELOADING=1
        and READY=1 messages' fields and the monotonic time of the signal."""
        if text is not None:
            self.write_conf(text)
        self.notifier.poll()
        start = len(self.notifier.messages)
        sent = time.monotonic()
        self.signal(signal.SIGHUP)
        i = self.notifier.wait(lambda f: "RELOADING" in f, start, timeout,
                               self.proc)
        j = self.notifier.wait(lambda f: "READY" in f, i + 1, timeout,
                               self.proc)
        return (self.notifier.messages[i][1], self.notifier.messages[j][1],
                sent)

    def sockets(self):
        """Inodes of acceptd's listening TCP and unix sockets, by local
        address ("127.0.0.1:port", "[::1]:port", "unix:/path")."""
        inodes = set()
        fddir = "/proc/%d/fd" % self.pid
        for fd in os.listdir(fddir):
            try:
                target = os.readlink(os.path.join(fddir, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        out = {}
        for name, fam in (("tcp", 4), ("tcp6", 6)):
            with open("/proc/%d/net/%s" % (self.pid, name)) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[3] != "0A" or p[9] not in inodes:  # LISTEN
                        continue
                    out[proc_net_address(p[1], fam)] = p[9]
        with open("/proc/%d/net/unix" % self.pid) as f:
            next(f)
            for line in f:
                p = line.split()
                # Flags __SO_ACCEPTCON: listening.
                if len(p) >= 8 and p[3] == "00010000" and p[6] in inodes:
                    out["unix:" + p[7]] = p[6]
        return out

    def cleanup(self):
        self.notifier.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def proc_net_address(text, fam):
    """ "0100007F:1F90" (from /proc/net/tcp) as "127.0.0.1:8080"."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if fam == 4:
        addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
        return "%s:%d" % (addr, int(port, 16))
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    addr = socket.inet_ntop(socket.AF_INET6, words)
    return "[%s]:%d" % (addr, int(port, 16))


class Daemons:
    """Start acceptd processes for a test; at teardown every one still
    running is stopped, and each must have exited as expected."""

    def __init__(self):
        self.started = []

    def start(self, text, wait=True, **kw):
        d = Daemon(text, **kw)
        self.started.append(d)
        if wait:
            d.wait_ready()
        return d

    def finish(self):
        problems = []
        for d in self.started:
            try:
                if d.proc.poll() is None:
                    rc = d.stop()
                else:
                    rc = d.proc.returncode
                if d.expected_rc is not None and rc != d.expected_rc:
                    problems.append("acceptd exited with %d, expected %d:\n%s"
                                    % (rc, d.expected_rc, d.text()))
            finally:
                d.cleanup()
        return problems
