#!/usr/bin/python3
"""Count the instructions acceptd executes per proxied short connection.

acceptd runs under valgrind --tool=callgrind in front of an echo backend.
A client makes short connections one after the other: connect, send SIZE
bytes, read the SIZE bytes echoed back, close. One run makes WARMUP
connections, a second run WARMUP + COUNT; acceptd stops on SIGTERM and
callgrind writes its totals. Start-up, the warm-up and shutdown are the same
in both runs, so the difference divided by COUNT is the cost of one
connection in user space (the kernel's share is not counted).
"""

import argparse
import collections
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile

sys.dont_write_bytecode = True
BENCHDIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCHDIR)
import benchlib as bl  # noqa: E402


def callgrind_totals(path):
    """The total instruction count (Ir) in a callgrind output file."""
    with open(path) as f:
        text = f.read()
    m = re.search(r"^totals:\s+(\d+)", text, re.M)
    if m is None:
        m = re.search(r"^summary:\s+(\d+)", text, re.M)
    if m is None:
        raise bl.BenchError("no totals in " + path)
    return int(m.group(1))


def self_costs(path):
    """Self instruction counts per (object, function) in a callgrind
    output file (string compression resolved, call costs skipped)."""
    names = {"ob": {}, "fn": {}}
    cur = {"ob": "?", "fn": "?"}
    costs = collections.Counter()
    skip = False
    with open(path) as f:
        for line in f:
            if skip:
                # The line after calls= is the callee's inclusive cost.
                skip = False
                continue
            c = line[:1]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                if len(parts) > 1:
                    costs[(cur["ob"], cur["fn"])] += int(parts[1])
                continue
            if line.startswith("calls="):
                skip = True
                continue
            key, sep, val = line.rstrip("\n").partition("=")
            kind = {"ob": "ob", "cob": "ob", "fn": "fn", "cfn": "fn"}.get(key)
            if not sep or kind is None:
                continue
            m = re.match(r"\((\d+)\)(?: (.*))?$", val)
            if m is None:
                name = val
            else:
                if m.group(2) is not None:
                    names[kind][m.group(1)] = m.group(2)
                name = names[kind].get(m.group(1), "?")
            if key in ("ob", "fn"):
                cur[key] = name
    return costs


def object_name(path):
    """A short name for a shared object: acceptd, libevent_core, libc..."""
    base = os.path.basename(path)
    return re.sub(r"(-\d+\.[\d.]+)?\.so.*$", "", base)


def breakdown(base_path, more_path, count, top):
    """Markdown tables of the per-connection difference, by object and by
    function."""
    diff = self_costs(more_path)
    diff.subtract(self_costs(base_path))
    by_obj = collections.Counter()
    for (ob, _), v in diff.items():
        by_obj[object_name(ob)] += v
    total = sum(diff.values())
    out = ["| object | Ir per connection | share |", "| --- | --- | --- |"]
    for ob, v in by_obj.most_common():
        if v / count >= 1:
            out.append("| %s | %.0f | %.1f%% |" %
                       (ob, v / count, 100.0 * v / total))
    out += ["", "| function (object) | Ir per connection |",
            "| --- | --- |"]
    for (ob, fn), v in diff.most_common(top):
        out.append("| `%s` (%s) | %.0f |" % (fn, object_name(ob),
                                              v / count))
    return "\n".join(out)


def one_run(a, tmp, echo, conns, extra, seq):
    """Run acceptd under callgrind for conns connections; return the
    instruction total and the output file."""
    conf = os.path.join(tmp, "acceptd-%d.conf" % seq)
    out = os.path.join(tmp, "callgrind-%d.out" % seq)

    def start(port):
        with open(conf, "w") as f:
            f.write(bl.acceptd_config(port, echo.port, 1, extra,
                                      a.log_connections))
        argv = [a.valgrind, "--tool=callgrind",
                "--callgrind-out-file=" + out, a.acceptd, "-c", conf]
        proc = bl.Proc("callgrind-%d" % seq, argv, tmp)
        try:
            proc.wait_listening(port, timeout=120)
        except bl.BenchError:
            proc.stop(signal.SIGKILL)
            raise
        return proc

    port, proc = bl.listen_retry(start)
    payload = bytes(range(256)) * (a.size // 256 + 1)
    payload = payload[:a.size]
    try:
        for _ in range(conns):
            bl.short_connection(port, payload, timeout=30)
        bl.wait_until(lambda: echo.counts()[1] == 0, 30,
                      "the backend to see every connection closed")
        status = proc.stop(signal.SIGTERM, timeout=120)
    finally:
        proc.stop(signal.SIGKILL)
    if status != 0:
        raise bl.BenchError("acceptd under callgrind exited with %s:\n%s"
                            % (status, proc.tail()))
    return callgrind_totals(out), out


def parse_args(argv):
    """The command line."""
    p = argparse.ArgumentParser(
        description="callgrind instructions per proxied connection")
    p.add_argument("--acceptd", help="acceptd binary (default: $ACCEPTD, "
                   "./src/acceptd, the source tree's src/acceptd, PATH)")
    p.add_argument("--warmup", type=int, default=100,
                   help="connections in the first run (default 100)")
    p.add_argument("--count", type=int, default=1000,
                   help="extra connections in the second run "
                   "(default 1000)")
    p.add_argument("--size", type=int, default=64,
                   help="bytes sent each way per connection (default 64)")
    p.add_argument("--repeat", type=int, default=2,
                   help="pairs of runs, to show the spread (default 2)")
    p.add_argument("--log-connections", default="none",
                   choices=("none", "close", "all"),
                   help="acceptd's log_connections (default none)")
    p.add_argument("--top", type=int, default=12,
                   help="functions listed in the breakdown (default 12; "
                   "0: no breakdown)")
    p.add_argument("--json", help="write the measurements here")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the configurations, logs and callgrind files")
    a = p.parse_args(argv)
    if a.warmup < 0 or a.count < 1 or a.size < 1 or a.repeat < 1:
        p.error("--count, --size and --repeat must be positive")
    return a


def main(argv):
    """Measure; print a short markdown summary; return the exit status."""
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))
    a.acceptd = bl.find_acceptd(a.acceptd, BENCHDIR)
    a.valgrind = bl.which("valgrind")
    if a.acceptd is None:
        print("callgrind: no acceptd binary (build it, or --acceptd)",
              file=sys.stderr)
        return 1
    if a.valgrind is None:
        print("callgrind: valgrind is not installed", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="acceptd-callgrind-")
    echo = bl.EchoServer()
    pairs = []
    tables = None
    try:
        extra = bl.acceptd_extra(a.acceptd, tmp)
        ok, msg = bl.acceptd_check(a.acceptd, bl.acceptd_config(
            1, 2, 1, extra, a.log_connections), tmp)
        if not ok:
            raise bl.BenchError("acceptd -t refuses the configuration:\n" +
                                msg)
        seq = 0
        for _ in range(a.repeat):
            base, base_out = one_run(a, tmp, echo, a.warmup, extra, seq)
            more, more_out = one_run(a, tmp, echo, a.warmup + a.count,
                                     extra, seq + 1)
            seq += 2
            if more <= base:
                raise bl.BenchError("the longer run counted fewer "
                                    "instructions (%d <= %d)" % (more, base))
            pairs.append((base, more, (more - base) / a.count))
            if tables is None and a.top:
                tables = breakdown(base_out, more_out, a.count, a.top)
    except bl.BenchError as e:
        print("callgrind: %s" % e, file=sys.stderr)
        return 1
    finally:
        echo.close()
        if a.keep_tmp:
            print("callgrind: files kept in %s" % tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    per = [p[2] for p in pairs]
    version = bl.first_line([a.acceptd, "-V"])
    print("%s: **%.0f instructions (Ir) per proxied connection** "
          "(median of %d; each: %s), user space only; connect, %d bytes "
          "each way, close; log_connections = \"%s\"; callgrind totals of "
          "%d minus %d connections, divided by %d." %
          (version, statistics.median(per), len(per),
           ", ".join("%.0f" % p for p in per), a.size, a.log_connections,
           a.warmup + a.count, a.warmup, a.count))
    if tables:
        print("\nWhere they go (self cost, first pair of runs):\n")
        print(tables)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"acceptd": version, "warmup": a.warmup,
                       "count": a.count, "size": a.size,
                       "log_connections": a.log_connections,
                       "runs": [{"warmup_total": b, "total": m,
                                 "per_connection": p}
                                for b, m, p in pairs]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
