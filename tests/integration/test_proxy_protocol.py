"""The PROXY protocol: send_proxy v1/v2 as the first bytes a backend gets,
accept_proxy's strict reading of the client's header (its address then
being the client for logs, lists and caps), bad and late headers, and a
real HAProxy on loopback as the peer both ways."""

import socket
import time

import pytest

import peers
from conftest import free_port, have_ipv6
from hostile import (Haproxy, closed, connect_from, header_echo, served,
                     v1_header, v2_header, v2_local, wait_for)


def ends(p, end):
    """Connection lines of acceptd p that ended with end."""
    return [l for l in p.lines("conn") if l["end"] == end]


def first_result(srv):
    """What header_echo recorded for the first connection."""
    return srv.wait_results(1)[0]


@pytest.mark.usefixtures("relay_mode")
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_send_proxy_header_comes_first(acceptd, backends, version):
    srv = backends.server(header_echo)
    p = acceptd.simple([srv.text], send_proxy=version)
    s = connect_from("127.0.0.2", p.addr)
    sport = s.getsockname()[1]
    try:
        s.sendall(b"hello")
        assert peers.recv_exact(s, 5) == b"hello"
    finally:
        s.close()
    fields, rest = first_result(srv)
    assert rest == b"hello", "the header, then the client's bytes"
    assert fields["version"] == int(version[1])
    assert fields["src"] == "127.0.0.2"
    assert fields["sport"] == sport
    assert fields["dst"] == "127.0.0.1"
    assert fields["dport"] == p.addr[1]
    if version == "v1":
        assert fields["proto"] == "TCP4"
    else:
        assert fields["command"] == 1 and fields["family"] == 0x11
    line = p.wait_lines(1)[0]
    assert line["bytes_in"] == "5" and line["bytes_out"] == "5"


@pytest.mark.usefixtures("relay_mode")
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_send_proxy_ipv6_client(acceptd, backends, version):
    if not have_ipv6():
        pytest.skip("no IPv6 on this host")
    srv = backends.server(header_echo)
    port = free_port("::1")
    acceptd.simple([srv.text], listen=["[::1]:%d" % port],
                   send_proxy=version)
    s = peers.connect(("::1", port))
    sport = s.getsockname()[1]
    try:
        assert served(s)
    finally:
        s.close()
    fields, _ = first_result(srv)
    assert (fields["src"], fields["sport"]) == ("::1", sport)
    assert (fields["dst"], fields["dport"]) == ("::1", port)
    assert fields.get("proto", "TCP6") == "TCP6"
    assert fields.get("family", 0x21) == 0x21


@pytest.mark.usefixtures("relay_mode")
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_send_proxy_unix_client_is_unknown_or_local(acceptd, backends,
                                                    sockdir, version):
    srv = backends.server(header_echo)
    p = acceptd.simple([srv.text], listen=["unix:%s/l.sock" % sockdir],
                       send_proxy=version)
    s = peers.connect(p.addr, timeout=5)
    try:
        assert served(s)
    finally:
        s.close()
    fields, rest = first_result(srv)
    assert rest == b"x"
    if version == "v1":
        assert fields["proto"] == "UNKNOWN"
    else:
        assert fields["command"] == 0 and fields["len"] == 0


@pytest.mark.usefixtures("relay_mode")
@pytest.mark.parametrize("header", ["v1", "v2", "v2-tlvs", "v2-longest",
                                    "split"])
def test_accept_proxy_client_address_comes_from_the_header(acceptd,
                                                           backends, header):
    """The header's address is the client: in the log line and in the
    header acceptd sends on. The bytes after it are the client's. The
    longest v2 header (65551 bytes) passes a buffer_size much smaller."""
    srv = backends.server(header_echo)
    p = acceptd.simple([srv.text], accept_proxy=True, send_proxy="v1",
                       buffer_size="4k")
    if header == "v1":
        hdr = v1_header("192.0.2.7", 5555, "198.51.100.1", 443)
    else:
        tlvs = b""
        if header == "v2-tlvs":  # ALPN, NOOP padding, CRC32C
            tlvs = (b"\x01\x00\x02h2" + b"\x04\x00\x05" + bytes(5) +
                    b"\x03\x00\x04\x01\x02\x03\x04")
        elif header == "v2-longest":  # one NOOP TLV filling the length
            tlvs = b"\x04\xff\xf0" + bytes(0xfff0)
        hdr = v2_header("192.0.2.7", 5555, "198.51.100.1", 443, tlvs)
        if header == "v2-longest":
            assert len(hdr) == 16 + 65535
    s = peers.connect(p.addr)
    try:
        if header == "split":  # byte by byte: acceptd waits for all
            for b in hdr:
                s.sendall(bytes([b]))
                time.sleep(0.002)
            s.sendall(b"data")
        else:
            s.sendall(hdr + b"data")
        assert peers.recv_exact(s, 4) == b"data"
    finally:
        s.close()
    fields, rest = first_result(srv)
    assert rest == b"data"
    assert fields["proto"] == "TCP4"
    assert (fields["src"], fields["sport"]) == ("192.0.2.7", 5555)
    assert (fields["dst"], fields["dport"]) == ("198.51.100.1", 443)
    line = p.wait_lines(1)[0]
    assert line["client"] == "192.0.2.7:5555"
    assert line["bytes_in"] == "4", "the header is not client payload"


@pytest.mark.usefixtures("relay_mode")
def test_accept_proxy_local_header_keeps_the_peer(acceptd, backends):
    srv = backends.server(header_echo)
    p = acceptd.simple([srv.text], accept_proxy=True, send_proxy="v2")
    s = connect_from("127.0.0.2", p.addr)
    sport = s.getsockname()[1]
    try:
        s.sendall(v2_local() + b"z")
        assert peers.recv_exact(s, 1) == b"z"
    finally:
        s.close()
    fields, _ = first_result(srv)
    assert (fields["src"], fields["sport"]) == ("127.0.0.2", sport)
    assert p.wait_lines(1)[0]["client"] == "127.0.0.2:%d" % sport


BAD_HEADERS = {
    "not-proxy": b"GET / HTTP/1.0\r\n\r\n",
    "v1-too-long": b"PROXY UNKNOWN " + b"a" * 120 + b"\r\n",
    "v1-bad-port": b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n",
    "v1-bad-address": b"PROXY TCP4 192.0.2.300 198.51.100.1 1 443\r\n",
    "v1-lf-only": b"PROXY TCP4 192.0.2.7 198.51.100.1 1 443\n",
    "v2-version": b"\r\n\r\n\x00\r\nQUIT\n\x11\x11\x00\x0c" + bytes(12),
    "v2-udp": b"\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c" + bytes(12),
    "v2-short": b"\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x0c" + bytes(12),
    "v2-tlv-overrun": b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0f" + bytes(12)
                      + b"\x04\x00\x09",
    "truncated-then-eof": b"PROXY TCP4 192.0.2.7 19",
}


@pytest.mark.parametrize("name", sorted(BAD_HEADERS))
def test_accept_proxy_bad_header_closes_before_any_backend(acceptd,
                                                           backends, name):
    srv = backends.echo()
    p = acceptd.simple([srv.text], accept_proxy=True)
    s = peers.connect(p.addr, timeout=5)
    try:
        s.sendall(BAD_HEADERS[name])
        if name == "truncated-then-eof":
            s.shutdown(socket.SHUT_WR)
        assert closed(s)
    finally:
        s.close()
    line = wait_for(lambda: ends(p, "bad_proxy_header"),
                    what="end=bad_proxy_header")[0]
    assert line["backend"] == "-"
    assert line["client"].startswith("127.0.0.1:")
    assert srv.accepted == 0


def test_accept_proxy_late_header_closes_at_connect_timeout(acceptd,
                                                            backends):
    srv = backends.echo()
    p = acceptd.simple([srv.text], accept_proxy=True,
                       connect_timeout="300ms")
    silent = peers.connect(p.addr, timeout=5)
    partial = peers.connect(p.addr, timeout=5)
    try:
        partial.sendall(b"PROXY TCP4 192.0.2.7 ")
        t0 = time.monotonic()
        assert closed(silent, timeout=3) and closed(partial, timeout=3)
        assert time.monotonic() - t0 < 2
    finally:
        silent.close()
        partial.close()
    lines = wait_for(lambda: len(ends(p, "bad_proxy_header")) == 2,
                     what="two late headers")
    assert lines
    assert srv.accepted == 0


def test_accept_proxy_lists_and_caps_use_the_header_address(acceptd,
                                                             backends):
    """allow/deny are checked on the TCP peer (who may send headers) and
    then on the header's client; max_connections_per_ip counts the
    header's client."""
    srv = backends.echo()
    p = acceptd.simple([srv.text], accept_proxy=True,
                       allow=["127.0.0.1", "192.0.2.0/24"],
                       deny=["192.0.2.66"], max_connections_per_ip=1)
    socks = []

    def via(peer, hdr):
        s = connect_from(peer, p.addr)
        socks.append(s)
        s.sendall(hdr)
        return s

    try:
        ok = via("127.0.0.1", v1_header("192.0.2.7", 1000, "10.0.0.1", 80))
        assert served(ok)
        # Same client behind the balancer again: over its cap of 1.
        over = via("127.0.0.1", v2_header("192.0.2.7", 1001, "10.0.0.1",
                                          80))
        assert closed(over)
        # Another client is served.
        assert served(via("127.0.0.1", v1_header("192.0.2.8", 1002,
                                                 "10.0.0.1", 80)))
        # deny on the header's address, also written IPv4-mapped.
        assert closed(via("127.0.0.1", v1_header("192.0.2.66", 1003,
                                                 "10.0.0.1", 80)))
        assert closed(via("127.0.0.1", v1_header("::ffff:192.0.2.66", 1004,
                                                 "::1", 80)))
        # Not in allow.
        assert closed(via("127.0.0.1", v1_header("198.51.100.9", 1005,
                                                 "10.0.0.1", 80)))
        # A peer that may not send headers, whatever its header says.
        assert closed(via("127.0.0.2", v1_header("192.0.2.9", 1006,
                                                 "10.0.0.1", 80)))
        wait_for(lambda: len(ends(p, "denied")) == 4, what="4 denied")
        denied = sorted(l["client"] for l in ends(p, "denied"))
        assert denied[:3] == ["127.0.0.2:%d" % socks[-1].getsockname()[1],
                              "192.0.2.66:1003", "192.0.2.66:1004"]
        assert denied[3] == "198.51.100.9:1005"
        assert [l["client"] for l in ends(p, "limit")] == \
            ["192.0.2.7:1001"]
        assert srv.accepted == 2
    finally:
        for s in socks:
            s.close()


@pytest.mark.usefixtures("relay_mode")
def test_haproxy_accepts_what_acceptd_sends(acceptd, backends, tmp_path):
    """acceptd (send_proxy v1, then v2) in front of HAProxy's
    "accept-proxy" bind: HAProxy passes the client acceptd reported on
    to the backend with send-proxy-v2."""
    srv = backends.server(header_echo)
    hport = free_port()
    bhost, bport = srv.text.rsplit(":", 1)
    hap = Haproxy(str(tmp_path), (
        "frontend f\n  bind 127.0.0.1:%d accept-proxy\n"
        "  default_backend b\n"
        "backend b\n  server s1 %s:%s send-proxy-v2\n"
        % (hport, bhost, bport)), hport)
    try:
        la, lb = free_port(), free_port()
        p = acceptd.start([
            {"name": "v1", "listen": ["127.0.0.1:%d" % la],
             "backends": ["127.0.0.1:%d" % hport], "send_proxy": "v1"},
            {"name": "v2", "listen": ["127.0.0.1:%d" % lb],
             "backends": ["127.0.0.1:%d" % hport], "send_proxy": "v2"}])
        want = []
        for port in (la, lb):
            s = connect_from("127.0.0.2", ("127.0.0.1", port))
            want.append(("127.0.0.2", s.getsockname()[1], port,
                         b"through haproxy"))
            try:
                assert served(s, b"through haproxy")
            finally:
                s.close()
        results = srv.wait_results(2)
        got = sorted((f["src"], f["sport"], f["dport"], rest)
                     for f, rest in results)
        want.sort()
        assert got == want, hap.text()
        p.wait_lines(2)
    finally:
        hap.stop()


@pytest.mark.usefixtures("relay_mode")
def test_acceptd_accepts_what_haproxy_sends(acceptd, backends, tmp_path):
    """HAProxy with send-proxy-v2 (and a CRC32C TLV) in front of
    acceptd's accept_proxy: the client HAProxy saw is acceptd's client."""
    srv = backends.server(header_echo)
    aport, hport = free_port(), free_port()
    p = acceptd.simple([srv.text], listen=["127.0.0.1:%d" % aport],
                       accept_proxy=True, send_proxy="v1",
                       allow=["127.0.0.1", "127.0.0.3"])
    hap = Haproxy(str(tmp_path), (
        "frontend f\n  bind 127.0.0.1:%d\n  default_backend b\n"
        "backend b\n  server s1 127.0.0.1:%d send-proxy-v2 "
        "proxy-v2-options crc32c\n" % (hport, aport)), hport)
    try:
        s = connect_from("127.0.0.3", ("127.0.0.1", hport))
        sport = s.getsockname()[1]
        try:
            assert served(s, b"from haproxy")
        finally:
            s.close()
        fields, rest = first_result(srv)
        assert rest == b"from haproxy"
        assert (fields["src"], fields["sport"]) == ("127.0.0.3", sport)
        assert (fields["dst"], fields["dport"]) == ("127.0.0.1", hport)
        line = p.wait_lines(1)[0]
        assert line["client"] == "127.0.0.3:%d" % sport
        assert line["end"] in ("client_fin", "backend_fin")
    finally:
        hap.stop()
    assert "bad_proxy_header" not in p.text()
