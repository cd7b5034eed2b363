"""Backends and clients for the integration tests: small threaded servers
in the test process (echo, hash, blaster, silent, ...) and the client side
of each exchange. Every blocking call has a timeout."""

import errno
import hashlib
import os
import select
import socket
import struct
import threading
import time

CHUNK = 256 * 1024
IO_TIMEOUT = 60.0


class Thread(threading.Thread):
    """A thread that keeps its exception and raises it again on join."""

    def __init__(self, target, *args):
        super().__init__(daemon=True)
        self._fn = target
        self._args = args
        self.result = None
        self.error = None

    def run(self):
        try:
            self.result = self._fn(*self._args)
        except BaseException as e:  # noqa: B902 - re-raised in join
            self.error = e

    def join(self, timeout=IO_TIMEOUT):
        super().join(timeout)
        if self.is_alive():
            raise AssertionError("thread still running after %ss" % timeout)
        if self.error is not None:
            raise self.error
        return self.result


def address_text(sock):
    """acceptd's spelling of a socket's local address."""
    if sock.family == socket.AF_UNIX:
        return "unix:" + sock.getsockname()
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


def connect(addr, timeout=IO_TIMEOUT, rcvbuf=None):
    """Connect to an address given as (host, port) or a unix path, with
    a receive buffer of rcvbuf bytes if given."""
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    try:
        s.connect(addr)
    except BaseException:
        s.close()
        raise
    return s


def recv_all(sock, limit=None):
    """Read until EOF; returns the bytes."""
    parts = []
    n = 0
    while True:
        d = sock.recv(CHUNK)
        if not d:
            return b"".join(parts)
        parts.append(d)
        n += len(d)
        if limit is not None and n > limit:
            raise AssertionError("more than %d bytes received" % limit)


def recv_exact(sock, n):
    """Read exactly n bytes (EOF before that is an error)."""
    buf = bytearray()
    while len(buf) < n:
        d = sock.recv(n - len(buf))
        if not d:
            raise AssertionError("EOF after %d of %d bytes" % (len(buf), n))
        buf += d
    return bytes(buf)


def send_random(sock, n, digest):
    """Send n random bytes, hashing them."""
    left = n
    while left > 0:
        chunk = os.urandom(min(CHUNK, left))
        digest.update(chunk)
        sock.sendall(chunk)
        left -= len(chunk)


def recv_hash(sock):
    """Read until EOF, hashing; returns (hexdigest, length)."""
    h = hashlib.sha256()
    n = 0
    while True:
        d = sock.recv(CHUNK)
        if not d:
            return h.hexdigest(), n
        h.update(d)
        n += len(d)


def set_linger_reset(sock):
    """Make close() send a reset."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))


class Server:
    """A listening socket whose connections each run handler(server, conn)
    in a thread. Results and exceptions are kept for the test."""

    def __init__(self, handler, host="127.0.0.1", path=None, backlog=128):
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
        else:
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(fam, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self.text = address_text(self.sock)
        self.handler = handler
        self.lock = threading.Lock()
        self.results = []
        self.errors = []
        self.accepted = 0
        self.first_bytes = []
        self._stop = False
        self.stopped = threading.Event()
        self._conns = []
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(IO_TIMEOUT)
            with self.lock:
                self.accepted += 1
                self._conns.append(c)
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.handler(self, c)
        except Exception as e:
            with self.lock:
                self.errors.append(e)
        finally:
            c.close()

    def record(self, value):
        with self.lock:
            self.results.append(value)

    def wait_results(self, n, timeout=10.0):
        """Wait until n connections recorded a result (or an error)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.results) + len(self.errors) >= n:
                    return list(self.results)
            time.sleep(0.02)
        raise AssertionError("%d results after %ss, wanted %d (errors %r)"
                             % (len(self.results), timeout, n, self.errors))

    def close(self):
        self._stop = True
        self.stopped.set()
        self._thread.join(5)
        self.sock.close()
        with self.lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass


# Handlers: each gets the server and the accepted connection.

def echo(srv, c):
    """Send back everything until EOF, then pass the FIN on."""
    first = True
    n = 0
    while True:
        d = c.recv(CHUNK)
        if first:
            srv.first_bytes.append(d)
            first = False
        if not d:
            break
        n += len(d)
        c.sendall(d)
    c.shutdown(socket.SHUT_WR)
    srv.record(n)


def hasher(srv, c):
    """Integrity peer: the client sends a 16-byte id and the 8-byte size it
    wants back; both directions then run at once, hashed on each side."""
    hdr = recv_exact(c, 24)
    cid, n_down = hdr[:16], struct.unpack(">Q", hdr[16:])[0]
    sent = hashlib.sha256()

    def send():
        send_random(c, n_down, sent)
        c.shutdown(socket.SHUT_WR)

    t = Thread(send)
    t.start()
    got, n = recv_hash(c)
    t.join()
    srv.record({"id": cid, "recv": got, "recv_len": n,
                "sent": sent.hexdigest(), "sent_len": n_down})


def exchange(addr, n_up, n_down):
    """Client side of hasher(): send n_up random bytes and receive n_down,
    both at once; returns what the client sent and received."""
    cid = os.urandom(16)
    up = hashlib.sha256()
    s = connect(addr)
    try:
        def send():
            s.sendall(cid + struct.pack(">Q", n_down))
            send_random(s, n_up, up)
            s.shutdown(socket.SHUT_WR)

        t = Thread(send)
        t.start()
        got, n = recv_hash(s)
        t.join()
    finally:
        s.close()
    return {"id": cid, "sent": up.hexdigest(), "sent_len": n_up,
            "recv": got, "recv_len": n}


def check_exchange(client, server_results):
    """The server saw exactly what the client sent, and the other way."""
    match = [r for r in server_results if r["id"] == client["id"]]
    assert len(match) == 1, "the backend never saw this connection"
    srv = match[0]
    assert srv["recv_len"] == client["sent_len"]
    assert srv["recv"] == client["sent"], "client->backend bytes differ"
    assert client["recv_len"] == srv["sent_len"]
    assert client["recv"] == srv["sent"], "backend->client bytes differ"


def silent(srv, c):
    """Read and discard until EOF; never send, never close (until the
    test ends)."""
    n = 0
    try:
        while True:
            d = c.recv(CHUNK)
            if not d:
                break
            n += len(d)
        srv.record(("eof", n))
    except OSError as e:
        srv.record((type(e).__name__, n))
        return
    srv.stopped.wait(IO_TIMEOUT)


def reader(srv, c):
    """Read until EOF or error; record the bytes and how reading ended."""
    buf = bytearray()
    try:
        while True:
            d = c.recv(CHUNK)
            if not d:
                srv.record(("eof", bytes(buf)))
                return
            buf += d
    except OSError as e:
        srv.record((type(e).__name__, bytes(buf)))


def blaster(limit, seconds):
    """Send random bytes as fast as the peer takes them, up to limit bytes
    or seconds; record the count and how it ended."""
    def handler(srv, c):
        block = os.urandom(CHUNK)
        n = 0
        deadline = time.monotonic() + seconds
        srv.sent = 0
        try:
            while n < limit and time.monotonic() < deadline:
                c.sendall(block)
                n += len(block)
                srv.sent = n
            c.shutdown(socket.SHUT_WR)
            srv.record(("done", n))
        except OSError as e:
            srv.record((type(e).__name__, n))
    return handler


def trickle(size, interval, count):
    """Send `count` blocks of `size` bytes, one every `interval` seconds,
    then pass the FIN on and wait for the client's."""
    def handler(srv, c):
        for _ in range(count):
            c.sendall(b"t" * size)
            time.sleep(interval)
        c.shutdown(socket.SHUT_WR)
        rest = recv_all(c)
        srv.record(("done", len(rest)))
    return handler


def reply_after_eof(reply_size):
    """Read the whole request until EOF, then answer with its sha256 and
    reply_size bytes, then FIN."""
    def handler(srv, c):
        got, n = recv_hash(c)
        body = os.urandom(reply_size)
        c.sendall(got.encode() + body)
        c.shutdown(socket.SHUT_WR)
        srv.record({"recv": got, "recv_len": n,
                    "reply": hashlib.sha256(got.encode() + body).hexdigest()})
    return handler


def fin_first(size):
    """Send size bytes and FIN at once, then read the client until EOF."""
    def handler(srv, c):
        body = os.urandom(size)
        c.sendall(body)
        c.shutdown(socket.SHUT_WR)
        got, n = recv_hash(c)
        srv.record({"sent": hashlib.sha256(body).hexdigest(),
                    "recv": got, "recv_len": n})
    return handler


def reset_after_request(srv, c):
    """Read a first chunk, answer a little, then reset the connection."""
    d = c.recv(CHUNK)
    srv.first_bytes.append(d)
    c.sendall(b"partial answer")
    time.sleep(0.2)
    set_linger_reset(c)
    srv.record("reset")


class Refuser:
    """A port nothing listens on: bound (so nobody else takes it) but not
    listening, so every connect is refused."""

    def __init__(self, host="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.text = address_text(self.sock)

    def close(self):
        self.sock.close()


class Blackhole:
    """A listener whose accept queue is full and never drained: a connect
    to it never completes (the kernel drops the SYN)."""

    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(0)
        self.text = address_text(self.sock)
        self.fillers = []
        addr = self.sock.getsockname()
        for _ in range(16):
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            self.fillers.append(f)
            if f.connect_ex(addr) not in (0, errno.EINPROGRESS):
                continue
            # A connect that completes makes the socket writable.
            _, w, _ = select.select([], [f], [], 0.5)
            if not w:
                return  # this one hangs: the queue is full
        raise AssertionError("could not fill the accept queue")

    def close(self):
        for f in self.fillers:
            f.close()
        self.sock.close()
