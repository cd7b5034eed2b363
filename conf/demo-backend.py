#!/usr/bin/python3
"""The demo backend of `make demo` (Python standard library only).

usage: demo-backend.py [HOST:]PORT     (HOST defaults to 127.0.0.1)

Answers HTTP/1.x requests with a short greeting that names the address the
connection came from (acceptd's end of the relay), and echoes every other
line it receives, so both `curl http://HOST:PORT/` and `nc HOST PORT` show
traffic flowing. It closes a connection when the client has finished
sending, or after answering a request that asks for it (HTTP/1.0,
`Connection: close`). SIGTERM and SIGINT stop it with exit status 0.
"""

import re
import signal
import socket
import socketserver
import sys

MAX_LINE = 8192         # longest line read; longer ones are cut up
MAX_HEADERS = 100
MAX_BODY = 1 << 20      # request bodies are read and discarded up to this

REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.([01])\r?\n$")


class DemoHandler(socketserver.StreamRequestHandler):
    """One connection: HTTP requests and echoed lines, in any order."""

    def handle(self):
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return
            m = REQUEST_LINE.match(line)
            if m is None:
                self.wfile.write(line)
                continue
            if not self.answer(m.group(1).decode(), m.group(2).decode(),
                               m.group(3) == b"1"):
                return

    def answer(self, method, target, http11):
        """Answer one request; return whether the connection stays open."""
        headers = {}
        for _ in range(MAX_HEADERS):
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return False
            if line in (b"\r\n", b"\n"):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        else:
            return self.reply(431, "too many header lines\n", False, method)

        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self.reply(411, "send a Content-Length\n", False, method)
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            return self.reply(400, "bad Content-Length\n", False, method)
        if length and len(self.rfile.read(length)) != length:
            return False

        conn = headers.get("connection", "").lower()
        keep = "close" not in conn if http11 else "keep-alive" in conn
        host, port = self.client_address[:2]
        peer = "[%s]:%d" % (host, port) if ":" in host else \
            "%s:%d" % (host, port)
        body = ("Hello from the acceptd demo backend.\n"
                "You asked for: %s %s\n"
                "I see this connection coming from %s\n"
                "(through acceptd, that is acceptd's side of the relay, "
                "not your client).\n" % (method, target, peer))
        return self.reply(200, body, keep, method)

    def reply(self, status, body, keep, method):
        """Send a response; return keep."""
        reasons = {200: "OK", 400: "Bad Request", 411: "Length Required",
                   431: "Request Header Fields Too Large"}
        data = body.encode()
        head = ("HTTP/1.1 %d %s\r\n"
                "Server: acceptd-demo-backend\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Length: %d\r\n"
                "Connection: %s\r\n\r\n"
                % (status, reasons[status], len(data),
                   "keep-alive" if keep else "close")).encode()
        self.wfile.write(head if method == "HEAD" else head + data)
        return keep


class DemoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A client that resets or vanishes is normal here: say nothing."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def parse_listen(arg):
    """Split "[HOST:]PORT" (HOST may be "[v6]") into (family, host, port)."""
    host, sep, port = arg.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("bad port in %r" % arg)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, host, int(port)


def stop(signum, frame):
    raise SystemExit(0)


def main(argv):
    if len(argv) != 2:
        print("usage: demo-backend.py [HOST:]PORT", file=sys.stderr)
        return 2
    try:
        family, host, port = parse_listen(argv[1])
    except ValueError as e:
        print("demo-backend.py: %s" % e, file=sys.stderr)
        return 2
    DemoServer.address_family = family
    try:
        server = DemoServer((host, port), DemoHandler)
    except OSError as e:
        print("demo-backend.py: cannot listen on %s: %s"
              % (argv[1], e.strerror), file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, stop)
    with server:
        print("demo backend listening on %s" % argv[1], file=sys.stderr,
              flush=True)
        try:
            server.serve_forever()
        except SystemExit:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
