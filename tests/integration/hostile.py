"""Helpers for the limits and PROXY protocol tests: clients bound to a
chosen loopback source, PROXY headers built and parsed the way the
protocol's text describes them, checks that a connection is served,
waiting in the backlog or closed, and HAProxy run in the foreground from
a generated configuration. Every blocking call has a timeout."""

import ipaddress
import os
import re
import signal
import socket
import struct
import subprocess
import time

import conftest

HAPROXY = "/usr/sbin/haproxy"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def connect_from(src, addr, timeout=10.0):
    """Connect to addr (host, port) from the loopback address src."""
    fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        s.connect(addr)
    except BaseException:
        s.close()
        raise
    return s


def served(sock, data=b"x", timeout=5.0):
    """Send data and expect it back (an echo backend): True if it came
    back, False if nothing came within timeout."""
    sock.settimeout(timeout)
    sock.sendall(data)
    got = b""
    try:
        while len(got) < len(data):
            d = sock.recv(len(data) - len(got))
            if not d:
                raise AssertionError("closed instead of served")
            got += d
    except socket.timeout:
        if got:
            raise AssertionError("partial echo %r" % got)
        return False
    assert got == data, got
    return True


def closed(sock, timeout=3.0):
    """True if the peer closes (FIN or reset) within timeout, False if
    the connection is still open then. Bytes received are an error."""
    sock.settimeout(timeout)
    try:
        d = sock.recv(4096)
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
    assert d == b"", "received %r" % d
    return True


def v1_header(src, sport, dst, dport):
    """A PROXY protocol v1 line."""
    proto = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n"
            % (proto, src, dst, sport, dport)).encode()


def v2_header(src, sport, dst, dport, tlvs=b"", command=1):
    """A PROXY protocol v2 header (PROXY command unless told)."""
    s = ipaddress.ip_address(src)
    d = ipaddress.ip_address(dst)
    if s.version == 4:
        fam, body = 0x11, s.packed + d.packed + struct.pack(">HH", sport,
                                                              dport)
    else:
        fam, body = 0x21, s.packed + d.packed + struct.pack(">HH", sport,
                                                              dport)
    body += tlvs
    return V2_SIG + bytes([0x20 | command, fam]) + struct.pack(
        ">H", len(body)) + body


def v2_local():
    """A v2 LOCAL header (what a balancer's own health check sends)."""
    return V2_SIG + b"\x20\x00\x00\x00"


def parse_header(data):
    """Parse the PROXY header at the start of data: returns (fields,
    rest) where fields is a dict (version, command or proto, src, sport,
    dst, dport as available)."""
    if data.startswith(b"PROXY "):
        end = data.index(b"\r\n")
        parts = data[:end].decode().split(" ")
        f = {"version": 1, "proto": parts[1]}
        if parts[1] != "UNKNOWN":
            f.update(src=parts[2], dst=parts[3], sport=int(parts[4]),
                     dport=int(parts[5]))
        return f, data[end + 2:]
    assert data.startswith(V2_SIG), "no PROXY header: %r" % data[:32]
    cmd, fam = data[12], data[13]
    n = struct.unpack(">H", data[14:16])[0]
    body, rest = data[16:16 + n], data[16 + n:]
    f = {"version": 2, "command": cmd & 0xF, "family": fam, "len": n}
    if cmd & 0xF == 1 and fam in (0x11, 0x21):
        alen = 4 if fam == 0x11 else 16
        f["src"] = str(ipaddress.ip_address(body[:alen]))
        f["dst"] = str(ipaddress.ip_address(body[alen:2 * alen]))
        f["sport"], f["dport"] = struct.unpack(">HH",
                                               body[2 * alen:2 * alen + 4])
        f["tlvs"] = body[2 * alen + 4:]
    return f, rest


def header_echo(srv, c):
    """Backend: read a PROXY header, echo everything after it until EOF,
    then record the header with those bytes."""
    buf = b""
    while True:
        d = c.recv(65536)
        if not d:
            srv.record(("eof", buf))
            return
        buf += d
        try:
            fields, rest = parse_header(buf)
        except (ValueError, AssertionError, IndexError, struct.error):
            if len(buf) < 300:
                continue
            raise
        if fields.get("version") == 2 and len(buf) < 16 + fields["len"]:
            continue
        break
    if rest:
        c.sendall(rest)
    while True:
        d = c.recv(65536)
        if not d:
            break
        rest += d
        c.sendall(d)
    c.shutdown(socket.SHUT_WR)
    srv.record((fields, rest))


def log_lines(p, pattern):
    """The log lines of acceptd p that match a regular expression."""
    rx = re.compile(pattern)
    return [l for l in p.text().splitlines() if rx.search(l)]


def wait_for(pred, timeout=5.0, what="condition"):
    """Poll pred() until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.02)


class Haproxy:
    """HAProxy in the foreground (-db) from a generated configuration;
    stopped by PID."""

    def __init__(self, workdir, sections, port):
        self.cfg = os.path.join(workdir, "haproxy.cfg")
        self.log = os.path.join(workdir, "haproxy.log")
        with open(self.cfg, "w") as f:
            f.write("global\n  maxconn 200\n\n"
                    "defaults\n  mode tcp\n  timeout connect 2s\n"
                    "  timeout client 20s\n  timeout server 20s\n\n")
            f.write(sections)
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [HAPROXY, "-db", "-f", self.cfg], stdin=subprocess.DEVNULL,
                stdout=logf, stderr=logf)
        # Listening once the port cannot be bound (no probe connection:
        # it would reach what HAProxy forwards to).
        deadline = time.monotonic() + conftest.START_TIMEOUT
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("haproxy did not start:\n%s"
                                     % self.text())
            time.sleep(0.05)

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
