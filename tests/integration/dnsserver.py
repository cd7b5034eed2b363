"""A small DNS server for the tests, on a free UDP port of 127.0.0.1: it
answers A and AAAA queries for the names it is given, NXDOMAIN for the
others, and the test may change the answers (or make a name fail, or go
unanswered) at any time. resolv_conf() writes a resolver configuration
that points at it."""

import socket
import struct
import threading

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_OK = 0
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3


def parse_query(data):
    """(id, flags, name, qtype, question bytes) of a query, or None."""
    if len(data) < 12:
        return None
    qid, flags, qdcount = struct.unpack(">HHH", data[:6])
    if qdcount != 1 or flags & 0x8000:
        return None
    pos = 12
    labels = []
    while True:
        if pos >= len(data):
            return None
        n = data[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0 or pos + n > len(data):
            return None
        labels.append(data[pos:pos + n].decode("ascii", "replace"))
        pos += n
    if pos + 4 > len(data):
        return None
    qtype, qclass = struct.unpack(">HH", data[pos:pos + 4])
    question = data[12:pos + 4]
    return qid, flags, ".".join(labels), qtype, qclass, question


def answer(qid, flags, question, rcode, qtype, addrs):
    """A response: the question echoed as sent (evdns randomizes the case
    of names and checks it), then one record per address."""
    records = []
    for a in addrs:
        if qtype == TYPE_A:
            rdata = socket.inet_pton(socket.AF_INET, a)
        else:
            rdata = socket.inet_pton(socket.AF_INET6, a)
        # The name is a pointer to the question's (offset 12).
        records.append(struct.pack(">HHHIH", 0xC00C, qtype, CLASS_IN, 1,
                                   len(rdata)) + rdata)
    rflags = 0x8000 | (flags & 0x0100) | 0x0080 | rcode
    header = struct.pack(">HHHHHH", qid, rflags, 1, len(records), 0, 0)
    return header + question + b"".join(records)


class DNSServer:
    """Answers for a set of names, changed with set()/fail()/remove()."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.names = {}
        self.failing = set()
        self.hanging = set()
        self.queries = {}
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def set(self, name, addrs):
        """Answer name with these IPv4 and IPv6 addresses from now on."""
        with self.lock:
            self.names[name.lower()] = list(addrs)
            self.failing.discard(name.lower())
            self.hanging.discard(name.lower())

    def fail(self, name):
        """Answer SERVFAIL for name from now on."""
        with self.lock:
            self.failing.add(name.lower())

    def hang(self, name):
        """Never answer queries for name from now on."""
        with self.lock:
            self.hanging.add(name.lower())

    def remove(self, name):
        """Answer NXDOMAIN for name from now on."""
        with self.lock:
            self.names.pop(name.lower(), None)
            self.failing.discard(name.lower())

    def count(self, name):
        """How many queries (A and AAAA) came for name."""
        with self.lock:
            return self.queries.get(name.lower(), 0)

    def resolv_conf(self, path):
        """Write a resolv.conf naming this server; returns path."""
        with open(path, "w") as f:
            f.write("nameserver 127.0.0.1:%d\n" % self.port)
            f.write("options timeout:1 attempts:2\n")
        return path

    def _reply(self, data):
        q = parse_query(data)
        if q is None:
            return None
        qid, flags, name, qtype, qclass, question = q
        key = name.lower().rstrip(".")
        with self.lock:
            self.queries[key] = self.queries.get(key, 0) + 1
            if key in self.hanging:
                return None
            if key in self.failing:
                return answer(qid, flags, question, RCODE_SERVFAIL, qtype,
                              [])
            addrs = self.names.get(key)
        if addrs is None:
            return answer(qid, flags, question, RCODE_NXDOMAIN, qtype, [])
        if qclass != CLASS_IN or qtype not in (TYPE_A, TYPE_AAAA):
            return answer(qid, flags, question, RCODE_OK, qtype, [])
        want = ":" if qtype == TYPE_AAAA else "."
        return answer(qid, flags, question, RCODE_OK, qtype,
                      [a for a in addrs if want in a])

    def _loop(self):
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = self._reply(data)
            if reply is not None:
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass

    def close(self):
        self._stop = True
        self._thread.join(5)
        self.sock.close()
