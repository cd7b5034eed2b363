#!/usr/bin/python3
"""Count the system calls each proxy makes per megabyte relayed and per
short connection.

`perf stat` counts the syscalls:sys_enter_* tracepoints of the proxy's
processes (all threads, nginx workers included) while
- iperf3 sends through the proxy for a few seconds (one stream), and
- a client makes short connections one after the other through it to an
  echo backend (connect, 64 bytes each way, close).
Counting tracepoints costs little, so the proxy runs close to its normal
speed (unlike under strace). Needs perf (Debian: linux-perf).
"""

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
BENCHDIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCHDIR)
import benchlib as bl  # noqa: E402
import run  # noqa: E402

SYSCALLS = ["read", "readv", "recvfrom", "recvmsg", "write", "writev",
            "sendto", "sendmsg", "splice", "epoll_wait", "epoll_pwait",
            "epoll_ctl", "ioctl", "accept", "accept4", "connect", "socket",
            "close", "shutdown", "setsockopt", "getsockopt", "getsockname",
            "getpeername", "fcntl", "futex", "brk", "mmap", "munmap",
            "madvise", "timerfd_settime", "eventfd2", "sched_yield"]
READS = ("read", "readv", "recvfrom", "recvmsg")


class Counter:
    """perf stat counting syscall tracepoints of some PIDs."""

    def __init__(self, ctx, pids, tag):
        self.out = os.path.join(ctx.tmp, tag + ".perf")
        events = ["raw_syscalls:sys_enter"] + \
            ["syscalls:sys_enter_" + s for s in SYSCALLS]
        argv = [ctx.perf, "stat", "-x", ",", "-o", self.out,
                "-p", ",".join(str(p) for p in pids)]
        for e in events:
            argv += ["-e", e]
        ctx.seq += 1
        self.proc = bl.Proc("%s-%d" % (tag, ctx.seq), argv, ctx.tmp)
        # perf has no ready signal; give it time to open its counters.
        time.sleep(1.0)
        self.proc.check_alive()

    def stop(self):
        """Stop counting; return {syscall: count, "total": count}."""
        self.proc.stop(signal.SIGINT, timeout=10)
        counts = collections.Counter()
        with open(self.out) as f:
            for line in f:
                fields = line.strip().split(",")
                if len(fields) < 3 or not fields[0].isdigit():
                    continue
                ev = fields[2]
                if ev == "raw_syscalls:sys_enter":
                    counts["total"] += int(fields[0])
                elif ev.startswith("syscalls:sys_enter_"):
                    counts[ev[len("syscalls:sys_enter_"):]] += \
                        int(fields[0])
        if counts["total"] == 0:
            raise bl.BenchError("perf counted no system call")
        return counts


def bulk(ctx, target, seconds):
    """Syscalls while iperf3 sends one stream through target."""
    ctx.seq += 1
    srv, bport = bl.start_iperf3_server(ctx.iperf3, ctx.tmp,
                                        "iperf3-%d" % ctx.seq)
    try:
        port = target.start(bport)
        try:
            cnt = Counter(ctx, target.pids, "perf-bulk-" + target.name)
            try:
                out = subprocess.run(
                    [ctx.iperf3, "-c", bl.LOOPBACK, "-p", str(port), "-t",
                     str(seconds), "-J"], capture_output=True, text=True,
                    timeout=seconds + 30)
            finally:
                counts = cnt.stop()
            target.check_alive()
        finally:
            target.stop()
    finally:
        srv.stop()
    js = json.loads(out.stdout)
    if js.get("error"):
        raise bl.BenchError("iperf3: " + js["error"])
    return counts, js["end"]["sum_received"]["bytes"]


def short(ctx, target, conns):
    """Syscalls for conns short connections through target."""
    port = target.start(ctx.echo.port)
    try:
        cnt = Counter(ctx, target.pids, "perf-short-" + target.name)
        try:
            payload = b"x" * 64
            for _ in range(conns):
                bl.short_connection(port, payload)
        finally:
            counts = cnt.stop()
        target.check_alive()
    finally:
        target.stop()
    return counts


def top(counts, scale, n=6):
    """The n most frequent syscalls, scaled, as text."""
    items = [(k, v) for k, v in counts.most_common() if k != "total"]
    return ", ".join("%s %.1f" % (k, v / scale) for k, v in items[:n])


def parse_args(argv):
    """The command line."""
    p = argparse.ArgumentParser(
        description="system calls per MB and per connection, per proxy")
    p.add_argument("--acceptd", help="acceptd binary (default: $ACCEPTD, "
                   "./src/acceptd, the source tree's src/acceptd, PATH)")
    p.add_argument("--only", default="acceptd,haproxy-t1,nginx-w1",
                   help="targets (default acceptd,haproxy-t1,nginx-w1)")
    p.add_argument("--seconds", type=int, default=3,
                   help="iperf3 duration (default 3)")
    p.add_argument("--conns", type=int, default=2000,
                   help="short connections (default 2000)")
    p.add_argument("--json", help="write the counts here")
    a = p.parse_args(argv)
    a.only = [t for t in a.only.split(",") if t]
    for t in a.only:
        if t not in run.TARGETS or t == "direct":
            p.error("unknown target %r" % t)
    if a.seconds < 1 or a.conns < 1:
        p.error("--seconds and --conns must be positive")
    return a


def main(argv):
    """Measure every target; print two markdown tables."""
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))
    a.acceptd = bl.find_acceptd(a.acceptd, BENCHDIR)
    tmp = tempfile.mkdtemp(prefix="acceptd-syscalls-")
    echo = None
    results = {}
    try:
        ctx = run.Context(a, tmp)
        ctx.perf = bl.which("perf")
        if ctx.perf is None or ctx.iperf3 is None:
            raise bl.BenchError("needs perf and iperf3")
        if not any(os.path.isdir(d + "/events/syscalls") for d in
                   ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")):
            raise bl.BenchError("no syscall tracepoints in tracefs")
        ctx.echo = echo = bl.EchoServer()
        for t in run.make_targets(ctx, a.only):
            b, nbytes = bulk(ctx, t, a.seconds)
            s = short(ctx, t, a.conns)
            results[t.name] = {"bulk": dict(b), "bulk_bytes": nbytes,
                               "short": dict(s), "conns": a.conns}
            mb = nbytes / 1e6
            # A spliced chunk takes two splice calls, in and out: one read.
            reads = sum(b[k] for k in READS) + b.get("splice", 0) / 2
            print("%s: bulk %.0f syscalls/MB, %.0f bytes per read; "
                  "short %.1f syscalls/conn" %
                  (t.name, b["total"] / mb, nbytes / max(reads, 1),
                   s["total"] / a.conns), file=sys.stderr)
            results[t.name]["text"] = (
                "| %s | %.0f | %.0f | %s | %.1f | %s |" %
                (t.name, b["total"] / mb, nbytes / max(reads, 1),
                 top(b, mb, 4), s["total"] / a.conns,
                 top(s, a.conns)))
    except (bl.BenchError, subprocess.TimeoutExpired, OSError) as e:
        print("syscalls: %s" % e, file=sys.stderr)
        return 1
    finally:
        if echo is not None:
            echo.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("Counted with perf stat on the syscalls tracepoints of the "
          "proxy's processes: iperf3, one stream for %d s; then %d short "
          "connections one after the other (connect, 64 bytes each way, "
          "close).\n" % (a.seconds, a.conns))
    print("| target | syscalls per MB (iperf3, 1 stream) | bytes per read "
          "(a splice pair counts as one) | most frequent, per MB | syscalls per short connection | "
          "most frequent, per connection |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in a.only:
        print(results[name]["text"])
    if a.json:
        with open(a.json, "w") as f:
            json.dump({k: {x: y for x, y in v.items() if x != "text"}
                       for k, v in results.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
