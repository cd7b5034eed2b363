"""TCP options of relayed connections: nodelay and keepalive as set, on
the client's side (inherited from the listening socket) and on the
backend's, and as a reload changes them. acceptd's own sockets are looked
at through pidfd_getfd(2) copies, closed at once."""

import ctypes
import os
import socket

import pytest

import lifecycle
import peers
from conftest import VALGRIND, conf_text, free_port

SYS_PIDFD_GETFD = 438
_libc = ctypes.CDLL(None, use_errno=True)


def copies_of_sockets(pid):
    """Copies of acceptd's connected TCP sockets, by peer address."""
    out = {}
    pidfd = os.pidfd_open(pid)
    try:
        for name in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, name))
            except OSError:
                continue
            if not target.startswith("socket:"):
                continue
            fd = _libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                continue
            s = socket.socket(fileno=fd)
            try:
                if s.family != socket.AF_INET:
                    raise OSError("not TCP over IPv4")
                out[s.getpeername()] = s
            except OSError:
                s.close()
    finally:
        os.close(pidfd)
    return out


def options(s):
    return (s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,
            s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0)


def relayed_options(pid, client, backend_port):
    """(nodelay, keepalive) of acceptd's socket to this client, and of its
    one connection to the backend."""
    copies = copies_of_sockets(pid)
    try:
        front = copies[client.getsockname()]
        back = [s for peer, s in copies.items() if peer[1] == backend_port]
        assert len(back) == 1, copies.keys()
        return options(front), options(back[0])
    finally:
        for s in copies.values():
            s.close()


def listener(port, backend, **opts):
    l = {"name": "t", "listen": ["127.0.0.1:%d" % port],
         "backends": [backend]}
    l.update(opts)
    return l


def served(addr):
    c = peers.connect(addr)
    c.sendall(b"x")
    assert c.recv(1) == b"x"
    return c


@pytest.mark.skipif(VALGRIND, reason="valgrind keeps descriptors of its own")
@pytest.mark.parametrize("nodelay,keepalive", [
    (True, True), (False, False), (True, False), (False, True)])
def test_nodelay_and_keepalive_on_both_sides(acceptd, backends, nodelay,
                                             keepalive):
    srv = backends.echo()
    p = acceptd.simple([srv.text], nodelay=nodelay, keepalive=keepalive)
    c = served(p.addr)
    try:
        front, back = relayed_options(p.proc.pid, c, srv.sock.getsockname()[1])
    finally:
        c.close()
    assert front == (nodelay, keepalive)
    assert back == (nodelay, keepalive)


@pytest.mark.skipif(not lifecycle.NOTIFIES, reason="acceptd built without "
                    "libsystemd: the reload is followed by its messages")
@pytest.mark.skipif(VALGRIND, reason="valgrind keeps descriptors of its own")
def test_reload_changes_options_of_a_kept_listening_socket(backends):
    srv = backends.echo()
    port = free_port()
    d = lifecycle.Daemon(conf_text([listener(port, srv.text)],
                                   log_level="info"))
    try:
        d.wait_ready()
        before = d.sockets()
        old = served(("127.0.0.1", port))
        d.reload(conf_text([listener(port, srv.text, nodelay=False,
                                     keepalive=False)], log_level="info"))
        assert d.sockets() == before  # kept, not bound again
        new = served(("127.0.0.1", port))
        copies = copies_of_sockets(d.pid)
        try:
            assert options(copies[new.getsockname()]) == (False, False)
            assert options(copies[old.getsockname()]) == (True, True)
        finally:
            for s in copies.values():
                s.close()
        old.close()
        new.close()
    finally:
        d.stop()
        d.cleanup()
