#!/usr/bin/python3
"""A bounded soak of acceptd: the mixed short connections of
tests/integration/test_leaks.py without a pause, a reload every few
seconds, and acceptd's RSS, descriptors and CPU sampled into a report.
Fails (exit 1) if anything grew without bound: RSS at the end more than
8 MB above its level after the first sample period, descriptors not back
to their idle count, a reload that failed, a client that saw an error.

    soak.py --acceptd PATH [--seconds 300] [--report soak-report.txt]

`make soak` runs it on the built binary (SOAK_SECONDS=300 by default)."""

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import conftest  # noqa: E402
import peers  # noqa: E402
import test_leaks  # noqa: E402

SAMPLE_EVERY = 5.0
RELOAD_EVERY = 3.0
BATCH = 700                 # connections between two looks at the clock
# A steady load, not a benchmark: connections a second, at most (it also
# keeps the loopback's TIME_WAIT sockets well below its port range).
RATE = 1500
RSS_GROWTH_KB = 8 * 1024


def listeners(addrs, backends, turn):
    """The soak's listeners; turn changes a little on every reload."""
    out = []
    for name, opts in (
            ("echo", {"balance": ("roundrobin", "leastconn")[turn % 2],
                      "idle_timeout": ("10m", "9m")[turn % 2]}),
            ("reset", {}),
            ("deny", {"deny": ["127.0.0.0/8"]}),
            ("cap", {"max_connections_per_ip": 1}),
            ("down", {"retries": 0}),
            ("proxy", {"accept_proxy": True})):
        l = {"name": name, "listen": ["127.0.0.1:%d" % addrs[name][1]],
             "backends": [backends[name]]}
        l.update(opts)
        out.append(l)
    return out


def config(addrs, backends, turn):
    return conftest.conf_text(
        listeners(addrs, backends, turn), log_connections="none",
        log_level="notice", shutdown_timeout=("5s", "6s")[turn % 2])


def write_config(path, text):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def reloads_done(p):
    return p.text().count(": reloaded: ")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--acceptd", default=os.environ.get("ACCEPTD"))
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--report", default="soak-report.txt")
    args = ap.parse_args()
    if not args.acceptd or not os.access(args.acceptd, os.X_OK):
        ap.error("--acceptd: the built acceptd binary")
    conftest.ACCEPTD = args.acceptd
    seconds = max(10.0, min(args.seconds, 6 * 3600.0))

    echo = peers.Server(peers.echo)
    resetter = peers.Server(test_leaks.reset_at_once)
    down = peers.Refuser()
    backends = {"echo": echo.text, "reset": resetter.text,
                "deny": echo.text, "cap": echo.text, "down": down.text,
                "proxy": echo.text}
    addrs = {k: ("127.0.0.1", conftest.free_port()) for k in backends}
    workdir = tempfile.mkdtemp(prefix="acceptd-soak-")
    p = conftest.Acceptd(workdir, workdir, config(addrs, backends, 0))
    held = None
    keeper = None
    problems = []
    samples = []
    try:
        p.wait_ready()
        held = test_leaks.open_to(addrs["cap"])
        held.sendall(b"held")
        assert peers.recv_exact(held, 4) == b"held"
        keeper = test_leaks.Keeper(p, held)
        test_leaks.Load(addrs).run(7 * 20, time.monotonic() + 60)
        base_fds = test_leaks.settle_fds(p.pid)

        start = time.monotonic()
        end = start + seconds
        next_sample = start
        next_reload = start + RELOAD_EVERY
        turn = 0
        conns = 0
        cpu0 = p.cpu_seconds()
        last_cpu, last_t = cpu0, start
        load = test_leaks.Load(addrs)
        while True:
            now = time.monotonic()
            if now >= next_sample or now >= end:
                cpu = p.cpu_seconds()
                samples.append((now - start, p.rss_kb(),
                                test_leaks.fd_count(p.pid),
                                (cpu - last_cpu) / max(now - last_t, 1e-3),
                                conns, reloads_done(p)))
                last_cpu, last_t = cpu, now
                next_sample += SAMPLE_EVERY
                print("%6.0fs rss %6d kB fds %4d cpu %3.0f%% conns %7d "
                      "reloads %4d" % (samples[-1][0], samples[-1][1],
                                       samples[-1][2], 100 * samples[-1][3],
                                       conns, samples[-1][5]), flush=True)
            if now >= end:
                break
            if now >= next_reload:
                turn += 1
                write_config(p.conf, config(addrs, backends, turn))
                p.signal(signal.SIGHUP)
                next_reload += RELOAD_EVERY
            load.run(BATCH, now + 60)
            conns += BATCH
            ahead = conns / RATE - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(min(ahead, max(0.0, end - time.monotonic())))
            load.done = {k: 0 for k in load.done}
            if p.proc.poll() is not None:
                problems.append("acceptd exited with %d" % p.proc.returncode)
                break

        fds = test_leaks.wait_fds(p.pid, base_fds)
        if fds != base_fds:
            problems.append("%d descriptors after the soak, %d idle before"
                            % (fds, base_fds))
        # RSS settles in the first period; after it, it must stay flat.
        settled = [s for s in samples if s[0] >= SAMPLE_EVERY * 2]
        if settled:
            growth = max(s[1] for s in settled) - settled[0][1]
            if growth >= RSS_GROWTH_KB:
                problems.append("RSS grew by %d kB after the first %ds"
                                % (growth, int(settled[0][0])))
        if turn and reloads_done(p) < turn // 2:
            problems.append("%d reloads asked for, %d done"
                            % (turn, reloads_done(p)))
        if "reload failed" in p.text():
            problems.append("a reload failed")
        keeper.close()
        held.sendall(b"more")
        if peers.recv_exact(held, 4) != b"more":
            problems.append("the held connection stopped relaying")
    except AssertionError as e:
        problems.append("client: %s" % e)
    finally:
        if held is not None:
            held.close()
        if keeper is not None:
            keeper.stop.set()
        rc = p.stop() if p.proc.poll() is None else p.proc.returncode
        if rc != 0:
            problems.append("acceptd exited with %d" % rc)
        p.close()
        echo.close()
        resetter.close()
        down.close()
        log_tail = p.text()[-4000:]
        shutil.rmtree(workdir, ignore_errors=True)

    with open(args.report, "w") as f:
        f.write("# acceptd soak: %ds of mixed short connections, a reload "
                "every %ds\n" % (int(seconds), int(RELOAD_EVERY)))
        f.write("# seconds\trss_kb\tfds\tcpu\tconnections\treloads\n")
        for s in samples:
            f.write("%.0f\t%d\t%d\t%.2f\t%d\t%d\n" % s)
        if samples:
            f.write("# rss %d -> %d kB (max %d), fds %d -> %d, %d "
                    "connections, %d reloads\n"
                    % (samples[0][1], samples[-1][1],
                       max(s[1] for s in samples), samples[0][2],
                       samples[-1][2], samples[-1][4], samples[-1][5]))
        f.write("# result: %s\n" % ("; ".join(problems) or "ok"))
    print("report written to %s" % args.report)
    if problems:
        print("soak FAILED: %s\n%s" % ("; ".join(problems), log_tail))
        return 1
    print("soak ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
