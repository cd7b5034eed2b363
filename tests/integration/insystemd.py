"""The system test's inside: run by test_systemd.py as the one command of
a container booted with a real systemd (tests/with-systemd), where
acceptd, its units and man pages are installed. Drives acceptd through
systemctl and journalctl; prints each step, exits 1 at the first failure.
Ports are asked from the kernel even here (the container has its own
loopback)."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

CONF = "/etc/acceptd.conf"
SANITIZERS = os.environ.get("ACCEPTD_SANITIZERS") == "1"
STEP_TIMEOUT = 60.0 if SANITIZERS else 20.0


def say(msg):
    print("insystemd: " + msg, flush=True)


def fail(msg):
    say("FAILED: " + msg)
    run(["systemctl", "status", "--no-pager", "-l", "acceptd"], check=False)
    run(["journalctl", "--no-pager", "-n", "60", "-u", "acceptd",
         "-u", "acceptd.socket"], check=False)
    sys.exit(1)


def run(argv, check=True, timeout=STEP_TIMEOUT):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if not check:
        sys.stdout.write(r.stdout + r.stderr)
        sys.stdout.flush()
    elif r.returncode != 0:
        fail("%s: exit %d\n%s%s" % (" ".join(argv), r.returncode, r.stdout,
                                     r.stderr))
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tagger:
    """A backend answering every chunk with its tag and the chunk."""

    def __init__(self, tag):
        self.tag = tag.encode()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        with c:
            c.settimeout(STEP_TIMEOUT)
            try:
                while True:
                    data = c.recv(4096)
                    if not data:
                        return
                    c.sendall(self.tag + b":" + data)
            except OSError:
                return


def conf(port, backend_port, extra=""):
    return ('log_connections = "close";\nshutdown_timeout = "5s";\n%s'
            'listeners = ( { name = "web"; listen = [ "127.0.0.1:%d" ]; '
            'backends = [ "127.0.0.1:%d" ]; } );\n'
            % (extra, port, backend_port))


def write_conf(text):
    with open(CONF + ".new", "w") as f:
        f.write(text)
    os.chmod(CONF + ".new", 0o644)
    os.rename(CONF + ".new", CONF)


def ask(port, payload=b"ping", timeout=5.0):
    """One short connection: the reply, or raise OSError."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            data = s.recv(4096)
            if not data:
                return out
            out += data


def expect_reply(port, tag):
    try:
        got = ask(port)
    except OSError as e:
        fail("connection to %d: %s" % (port, e))
    if got != tag.encode() + b":ping":
        fail("reply %r, wanted %s:ping" % (got, tag))


def show(prop, unit="acceptd"):
    r = run(["systemctl", "show", "-p", prop, "--value", unit])
    return r.stdout.strip()


def wait_for(pred, what, timeout=STEP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    fail("timed out waiting for " + what)


def dropin(unit, text):
    if unit == "acceptd.service" and SANITIZERS:
        # LeakSanitizer cannot work under the unit's hardening (ptrace):
        # leaks are checked by the tests outside the container.
        text += "Environment=ASAN_OPTIONS=detect_leaks=0\n"
    d = "/etc/systemd/system/%s.d" % unit
    os.makedirs(d, exist_ok=True)
    with open(d + "/test.conf", "w") as f:
        f.write(text)
    run(["systemctl", "daemon-reload"])


def main():
    units = ["/lib/systemd/system/acceptd.service",
             "/lib/systemd/system/acceptd.socket"]
    r = run(["systemd-analyze", "verify"] + units, check=False)
    if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
        fail("systemd-analyze verify is not silent")
    say("systemd-analyze verify: silent")

    b1, b2 = Tagger("b1"), Tagger("b2")
    port = free_port()
    # No core dump of the watchdog's SIGABRT may reach the host.
    dropin("acceptd.service", "[Service]\nLimitCORE=0\n")
    write_conf(conf(port, b1.port))
    run(["systemctl", "start", "acceptd"])
    expect_reply(port, "b1")
    say("started, traffic through it")

    write_conf(conf(port, b2.port))
    run(["systemctl", "reload", "acceptd"])
    # systemd 252 may return before acceptd's own RELOADING=1 is seen.
    wait_for(lambda: "last reload ok" in show("StatusText"), "the reload")
    expect_reply(port, "b2")
    status = run(["systemctl", "status", "--no-pager", "acceptd"]).stdout
    if "Status: \"" not in status or "last reload ok" not in status:
        fail("systemctl status shows no STATUS= line:\n" + status)
    say("reloaded: the new backend takes traffic; status shows STATUS=")

    pid = show("MainPID")
    write_conf("listeners = ( { name = \"web\"; listen = oops } );\n")
    r = run(["systemctl", "reload", "acceptd"], check=False)
    if r.returncode == 0:
        fail("systemctl reload of a broken file succeeded")
    if show("ActiveState") != "active" or show("MainPID") != pid:
        fail("acceptd did not survive a broken reload")
    expect_reply(port, "b2")
    write_conf(conf(port, b2.port))
    say("reload of a broken file fails, acceptd keeps serving")

    restart_without_refusals(port)

    r = run(["journalctl", "--no-pager", "-o", "json",
             "ACCEPTD_LISTENER=web"])
    entries = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    ends = [e for e in entries if e.get("ACCEPTD_END") == "client_fin"
            and e.get("ACCEPTD_BACKEND") == "127.0.0.1:%d" % b2.port
            and e.get("ACCEPTD_CLIENT", "").startswith("127.0.0.1:")
            and e.get("MESSAGE", "").startswith("conn ")]
    if not ends:
        fail("journalctl ACCEPTD_LISTENER=web found no conn lines:\n"
             + r.stdout[-2000:])
    say("journalctl ACCEPTD_LISTENER=web: %d connection lines with fields"
        % len(entries))

    graceful_stop(port)
    socket_activation(b1)
    watchdog(b1)
    say("all steps passed")


def restart_without_refusals(port):
    """Short connections in a loop across systemctl restart: the fd store
    keeps the listening socket, so none is refused."""
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0, "errors": []}

    def loop():
        deadline = time.monotonic() + 4 * STEP_TIMEOUT
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if ask(port, timeout=STEP_TIMEOUT).endswith(b":ping"):
                    counts["ok"] += 1
                else:
                    counts["failed"] += 1
            except OSError as e:
                counts["failed"] += 1
                counts["errors"].append(str(e))

    old = show("MainPID")
    t = threading.Thread(target=loop)
    t.start()
    time.sleep(0.3)
    before = counts["ok"]
    run(["systemctl", "restart", "acceptd"])
    time.sleep(0.5)
    stop.set()
    t.join()
    new = show("MainPID")
    if new == old or counts["ok"] <= before:
        fail("restart: pid %s -> %s, %d connections" % (old, new,
                                                        counts["ok"]))
    if counts["failed"]:
        fail("restart refused %d of %d connections: %s" % (
            counts["failed"], counts["ok"] + counts["failed"],
            counts["errors"][:3]))
    r = run(["journalctl", "--no-pager", "-u", "acceptd", "_PID=" + new])
    if ("taken from systemd (socket unit or fd store, fd named 'web')"
            not in r.stdout):
        fail("the restarted acceptd did not take its socket from the fd "
             "store:\n" + r.stdout[-2000:])
    say("restart under load: %d connections, none refused (fd store)"
        % counts["ok"])


def graceful_stop(port):
    """systemctl stop lets an open connection finish."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"one")
    s.recv(100)
    stopper = subprocess.Popen(["systemctl", "stop", "acceptd"])
    wait_for(lambda: show("ActiveState") == "deactivating", "deactivating")
    s.sendall(b"two")
    got = s.recv(100)
    s.close()
    stopper.wait(STEP_TIMEOUT)
    if not got.endswith(b":two") or stopper.returncode != 0:
        fail("stop was not graceful: %r, rc %s" % (got, stopper.returncode))
    if show("Result") != "success" or show("ExecMainStatus") != "0":
        fail("stop: Result=%s ExecMainStatus=%s" % (
            show("Result"), show("ExecMainStatus")))
    say("systemctl stop: graceful, exit 0")


def socket_activation(b1):
    """acceptd.socket holds the address; the first client starts
    acceptd, which takes the socket over."""
    port = free_port()
    dropin("acceptd.socket", "[Socket]\nListenStream=\n"
           "ListenStream=127.0.0.1:%d\n" % port)
    write_conf(conf(port, b1.port))
    run(["systemctl", "start", "acceptd.socket"])
    if show("ActiveState") != "inactive":
        fail("acceptd started before any client")
    expect_reply(port, "b1")
    wait_for(lambda: show("ActiveState") == "active", "activation")
    r = run(["journalctl", "--no-pager", "-u", "acceptd",
             "_PID=" + show("MainPID")])
    if "taken from systemd (socket unit" not in r.stdout:
        fail("acceptd did not take the socket unit's socket:\n"
             + r.stdout[-2000:])
    run(["systemctl", "reload", "acceptd"])
    expect_reply(port, "b1")
    run(["systemctl", "stop", "acceptd"])
    # The socket unit still listens: the next client starts it again.
    expect_reply(port, "b1")
    run(["systemctl", "stop", "acceptd.socket", "acceptd"])
    say("socket activation through acceptd.socket")


def watchdog(b1):
    """A hung acceptd (SIGSTOP) stops feeding the watchdog: systemd
    restarts it."""
    port = free_port()
    dropin("acceptd.service", "[Service]\nLimitCORE=0\nWatchdogSec=2s\n"
           "RestartSec=100ms\n")
    write_conf(conf(port, b1.port))
    run(["systemctl", "start", "acceptd"])
    expect_reply(port, "b1")
    pid = show("MainPID")
    os.kill(int(pid), 19)  # SIGSTOP
    wait_for(lambda: show("MainPID") not in (pid, "0")
             and show("ActiveState") == "active", "the watchdog restart",
             timeout=STEP_TIMEOUT + 10)
    r = run(["journalctl", "--no-pager", "-u", "acceptd"])
    if "Watchdog timeout" not in r.stdout:
        fail("no watchdog timeout in the journal:\n" + r.stdout[-2000:])
    expect_reply(port, "b1")
    run(["systemctl", "stop", "acceptd"])
    say("watchdog restarted a hung acceptd")


if __name__ == "__main__":
    main()
