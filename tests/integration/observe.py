"""Helpers for the observability tests: acceptd with metrics and a control
socket, acceptctl runs, raw control requests, scrapes and their parsing."""

import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request

import peers
from conftest import free_port

ACCEPTCTL = os.environ.get("ACCEPTCTL", "")
TIMEOUT = 20.0

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def have_acceptctl():
    return bool(ACCEPTCTL) and os.access(ACCEPTCTL, os.X_OK)


def start(acceptd, sockdir, backend_texts, name="t", settings=None, **opts):
    """acceptd with one listener, metrics on a free port and a control
    socket in sockdir; returns it with .addr, .metrics_port, .control."""
    port = free_port()
    s = {"metrics": "127.0.0.1:%d" % port,
         "control_socket": os.path.join(sockdir, "ctl.sock"),
         "log_connections": "all"}
    s.update(settings or {})
    p = acceptd.simple(backend_texts, name=name, settings=s, **opts)
    p.metrics_port = port
    p.control = s["control_socket"]
    return p


def ctl(p, *args, timeout=TIMEOUT, preexec_fn=None, exe=None):
    """Run acceptctl against p's control socket; CompletedProcess."""
    return subprocess.run([exe or ACCEPTCTL, "-s", p.control] + list(args),
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=preexec_fn)


def ctl_ok(p, *args):
    """acceptctl that must succeed; returns its output."""
    r = ctl(p, *args)
    assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr,
                               p.text())
    return r.stdout


def raw(path, data, timeout=TIMEOUT):
    """Send raw bytes and EOF to a control socket; read the answer to
    EOF."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return peers.recv_all(s)
    finally:
        s.close()


def table(text):
    """Rows of a show conns / show backends answer, as dicts by header."""
    lines = text.splitlines()
    head = lines[0].split()
    rows = []
    for line in lines[1:]:
        words = line.split(None, len(head) - 1)
        rows.append(dict(zip(head, words)))
    return rows


def fetch(port, path="/metrics", method="GET", timeout=TIMEOUT):
    """(status, content type, body) of an HTTP request to acceptd."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def scrape(p):
    status, ctype, body = fetch(p.metrics_port)
    assert status == 200, (status, body)
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    return body


def parse(text):
    """{(name, ((label, value), ...)): float} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        key = (m.group(1), labels)
        assert key not in out, "sample twice: %r" % line
        out[key] = float(m.group(4))
    return out


def value(samples, name, **labels):
    """The value of one sample; KeyError names what is there."""
    key = (name, tuple(sorted(labels.items())))
    if key not in samples:
        have = sorted(k for k in samples if k[0] == name)
        raise KeyError("%r not in %r" % (key, have))
    return samples[key]


def wait_for(fn, timeout=10.0, what="condition"):
    """Poll fn() until it returns a true value; return it."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def echo_once(addr, payload):
    """One echo exchange: send, FIN, read to EOF; returns the reply."""
    s = peers.connect(addr, timeout=TIMEOUT)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return peers.recv_all(s)
    finally:
        s.close()


def held(addr, payload=b"hold"):
    """An echo connection left open: payload sent and echoed back."""
    s = peers.connect(addr, timeout=TIMEOUT)
    s.sendall(payload)
    assert peers.recv_exact(s, len(payload)) == payload
    return s


def closed_at_once(addr):
    """Connect and send nothing: True if acceptd closes the connection
    (FIN or reset) without a byte."""
    s = peers.connect(addr, timeout=TIMEOUT)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    finally:
        s.close()
