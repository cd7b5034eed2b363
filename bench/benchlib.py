"""Helpers shared by the bench scripts: ports, processes, /proc readings,
an echo backend and the short-connection client.

Standard library only; run with Debian's /usr/bin/python3.
"""

import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
LOOPBACK = "127.0.0.1"


class BenchError(Exception):
    """A step could not be carried out (a process died, a check failed)."""


def raise_nofile():
    """Raise the soft descriptor limit to the hard one; return the new limit.

    Every process started afterwards (proxies, backends, load tools)
    inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def free_port():
    """Ask the kernel for a free loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def listen_retry(start, attempts=3):
    """Call start(port) with a free port; return (port, its result).

    Another program may take the port between free_port() and the bind:
    start() then fails saying the address is in use, and another port is
    tried. start() must clean up after itself when it fails."""
    for i in range(attempts):
        port = free_port()
        try:
            return port, start(port)
        except BenchError as e:
            if i + 1 == attempts or "in use" not in str(e).lower():
                raise
    raise BenchError("no free port")


def start_iperf3_server(iperf3, logdir, name):
    """A one-off iperf3 server on a free port; return (proc, port)."""
    def start(port):
        proc = Proc(name, [iperf3, "-s", "-1", "-p", str(port)], logdir)
        try:
            proc.wait_listening(port)
        except BenchError:
            proc.stop()
            raise
        return proc
    port, proc = listen_retry(start)
    return proc, port


def listening_inodes(port):
    """Return the socket inodes in LISTEN state on a TCP port (IPv4 and
    IPv6)."""
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and \
                            int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except FileNotFoundError:
            pass
    return inodes


def socket_inodes(pid):
    """Return the inodes of the sockets pid has open."""
    inodes = set()
    fddir = "/proc/%d/fd" % pid
    try:
        names = os.listdir(fddir)
    except OSError:
        return inodes
    for name in names:
        try:
            link = os.readlink(os.path.join(fddir, name))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def wait_until(pred, timeout, what, step=0.02):
    """Poll pred() until it is true; raise BenchError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() > deadline:
            raise BenchError("timed out waiting for " + what)
        time.sleep(step)


def which(prog):
    """Return the path of prog on PATH (and /usr/sbin), or None."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return shutil.which(prog, path=path)


def children_of(pid):
    """Return the PIDs whose parent is pid."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rindex(")") + 2:].split()
        if int(rest[1]) == pid:
            kids.append(int(entry))
    return kids


def proc_cpu_seconds(pids):
    """Sum utime + stime (all threads) of pids, in seconds."""
    ticks = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
        rest = data[data.rindex(")") + 2:].split()
        # Fields 14 and 15 of proc(5); rest starts at field 3.
        ticks += int(rest[11]) + int(rest[12])
    return ticks / CLK_TCK


def proc_status_bytes(pids, key):
    """Sum a /proc/PID/status size field (VmRSS, VmData...) of pids, in
    bytes."""
    total = 0
    for pid in pids:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


def proc_rss_bytes(pids):
    """Sum VmRSS of pids, in bytes."""
    return proc_status_bytes(pids, "VmRSS")


class Proc:
    """A process started by the bench, logged to a file, stopped by PID."""

    def __init__(self, name, argv, logdir, env=None, cwd=None):
        self.name = name
        self.argv = argv
        self.logpath = os.path.join(logdir, name + ".log")
        self.log = open(self.logpath, "ab")
        self.log.write(("$ " + " ".join(argv) + "\n").encode())
        self.log.flush()
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=self.log,
                                      stderr=subprocess.STDOUT,
                                      env=env, cwd=cwd)
        self.pid = self.popen.pid
        self.extra = []

    def track_children(self):
        """Remember our current children (nginx workers) so that stop()
        can make sure they are gone too; return all our PIDs."""
        self.extra = [(p, proc_starttime(p)) for p in children_of(self.pid)]
        return [self.pid] + [p for p, _ in self.extra]

    def alive(self):
        """True while the process runs."""
        return self.popen.poll() is None

    def tail(self, n=15):
        """The last n lines of the process's log."""
        if not self.log.closed:
            self.log.flush()
        try:
            with open(self.logpath, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def check_alive(self):
        """Raise BenchError, with the log tail, if the process exited."""
        if not self.alive():
            raise BenchError("%s exited with status %s:\n%s" %
                             (self.name, self.popen.returncode, self.tail()))

    def wait_listening(self, port, timeout=10.0):
        """Wait until this process listens on port, failing if it dies
        first. A socket of another program on that port does not count."""
        def ready():
            self.check_alive()
            inodes = listening_inodes(port)
            return bool(inodes and inodes & socket_inodes(self.pid))
        wait_until(ready, timeout, "%s to listen on port %d" %
                   (self.name, port))

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Stop the process (and children it left behind) by PID."""
        extra = self.extra
        if self.alive():
            try:
                self.popen.send_signal(sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        for pid, start in extra:
            # Children (nginx workers) normally leave with their master;
            # the start time tells a leftover from a reused PID.
            if start is None:
                continue
            for _ in range(int(timeout / 0.05)):
                if proc_starttime(pid) != start:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.log.close()
        return self.popen.returncode


def proc_starttime(pid):
    """Return the start time of pid (field 22 of proc(5)), or None once it
    is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    if rest[0] in ("Z", "X"):
        return None
    return int(rest[19])


class EchoServer:
    """A loopback echo backend in a thread; counts accepted connections.

    With greet set, it sends that byte string to every new connection."""

    def __init__(self, greet=b""):
        self.greet = greet
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((LOOPBACK, 0))
        self.lsock.listen(4096)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.accepted = 0
        self.open = 0
        self.lock = threading.Lock()
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.sel.register(self.lsock, selectors.EVENT_READ, "listen")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.conns = set()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def reset(self):
        """Zero the accepted count."""
        with self.lock:
            self.accepted = 0

    def counts(self):
        """Return (accepted, open)."""
        with self.lock:
            return self.accepted, self.open

    def _drop(self, c):
        self.sel.unregister(c)
        self.conns.discard(c)
        c.close()
        with self.lock:
            self.open -= 1

    def _loop(self):
        while not self.stopping:
            for key, _ in self.sel.select(1.0):
                if key.data == "wake":
                    return
                if key.data == "listen":
                    for _ in range(256):
                        try:
                            c, _ = self.lsock.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            # Out of descriptors: the backlog keeps them.
                            time.sleep(0.01)
                            break
                        c.setblocking(False)
                        self.conns.add(c)
                        with self.lock:
                            self.accepted += 1
                            self.open += 1
                        if self.greet:
                            try:
                                c.send(self.greet)
                            except OSError:
                                pass
                        self.sel.register(c, selectors.EVENT_READ, "conn")
                    continue
                c = key.fileobj
                try:
                    data = c.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._drop(c)
                    continue
                try:
                    c.sendall(data)
                except BlockingIOError:
                    c.setblocking(True)
                    c.settimeout(5)
                    try:
                        c.sendall(data)
                    except OSError:
                        self._drop(c)
                        continue
                    c.setblocking(False)
                except OSError:
                    self._drop(c)

    def close(self):
        """Stop the thread and close every socket."""
        self.stopping = True
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass
        self.thread.join(5)
        for c in list(self.conns):
            c.close()
        self.conns.clear()
        self.sel.close()
        self.lsock.close()
        self.wake_r.close()
        self.wake_w.close()


def recv_exact(sock, n):
    """Read exactly n bytes from a blocking socket."""
    chunks = []
    while n > 0:
        data = sock.recv(n)
        if not data:
            raise BenchError("connection closed early")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def short_connection(port, payload, timeout=10.0):
    """Connect, send payload, read it back, close; raise on mismatch."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        s.sendall(payload)
        back = recv_exact(s, len(payload))
        if back != payload:
            raise BenchError("echo mismatch")
        s.shutdown(socket.SHUT_WR)
        # Wait for the far end to close too, so that every connection is
        # finished before the next one starts.
        if s.recv(1) != b"":
            raise BenchError("unexpected data after the echo")


def open_idle(port, n, socks, batch=100):
    """Open n connections to port, each checked end to end by one byte
    echoed by the backend; return how many were verified."""
    held = 0
    while held < n:
        group = []
        try:
            for _ in range(min(batch, n - held)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                group.append(s)
                s.settimeout(5)
                s.connect((LOOPBACK, port))
            for s in group:
                s.sendall(b"i")
            for s in group:
                if s.recv(1) != b"i":
                    raise BenchError("no echo")
        except (OSError, BenchError) as e:
            socks.extend(group)
            return held, "%s after %d connections" % (e, held)
        socks.extend(group)
        held += len(group)
    return held, None


def acceptd_config(port, backend_port, workers=1, extra=(),
                   log_connections="none"):
    """A minimal acceptd configuration for one listener."""
    lines = ['log_connections = "%s";' % log_connections]
    lines += extra
    if workers != 1:
        lines.append("workers = %d;" % workers)
    lines.append('listeners = ( { name = "bench"; '
                 'listen = [ "%s:%d" ]; backends = [ "%s:%d" ]; } );' %
                 (LOOPBACK, port, LOOPBACK, backend_port))
    return "\n".join(lines) + "\n"


def acceptd_check(acceptd, text, tmp):
    """Run acceptd -t on text; return (ok, output)."""
    fd, path = tempfile.mkstemp(suffix=".conf", dir=tmp)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    try:
        out = subprocess.run([acceptd, "-t", "-c", path],
                             capture_output=True, text=True, timeout=30)
    finally:
        os.unlink(path)
    return out.returncode == 0, (out.stdout + out.stderr).strip()


def acceptd_extra(acceptd, tmp):
    """Optional settings that make acceptd quiet and quick to stop, kept
    only if this build's loader accepts them."""
    extra = ['log_level = "warning";', 'shutdown_timeout = "1s";']
    ok, _ = acceptd_check(acceptd, acceptd_config(1, 2, 1, extra), tmp)
    return extra if ok else []


def find_acceptd(arg, benchdir):
    """The acceptd binary: --acceptd, $ACCEPTD, ./src/acceptd, the source
    tree's src/acceptd, then PATH."""
    for cand in (arg, os.environ.get("ACCEPTD"), "src/acceptd",
                 os.path.join(benchdir, "..", "src", "acceptd")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    return which("acceptd")


def first_line(argv):
    """The first line a command prints (stdout, else stderr)."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "unknown (%s)" % e
    text = (out.stdout.strip() or out.stderr.strip()).splitlines()
    return text[0] if text else "unknown"
