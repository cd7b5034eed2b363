#!/usr/bin/python3
"""Show where acceptd's heap goes for each idle connection.

acceptd runs under valgrind --tool=massif in front of an echo backend.
After a few warm-up connections, a detailed heap snapshot is taken (vgdb
detailed_snapshot); then N connections are opened, each confirmed by one
byte echoed by the backend, and a second snapshot is taken. The difference
per connection is listed by allocating function, with the acceptd function
that called into libevent, plus malloc's own overhead.
"""

import argparse
import collections
import json
import os
import re
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

NODE = re.compile(r"^( *)n\d+: (\d+) (.*)$")
FRAME = re.compile(r"^0x[0-9A-Fa-f]+: (\S+) \((?:in (\S+)|([\w.+-]+):\d+)\)$")


def frame(label, sources):
    """(function, object, is_ours) for a massif tree label."""
    m = FRAME.match(label)
    if m is None:
        return label, "", False
    fn, obj, src = m.groups()
    if obj:
        obj = re.sub(r"(-\d+\.[\d.]+)?\.so.*$", "", os.path.basename(obj))
        if fn == "???":
            fn = "??? (%s)" % obj
        return fn, obj, False
    return fn, src, src in sources


def snapshot_sites(path, sources):
    """Heap bytes of a detailed snapshot by (allocating function, first
    acceptd function below it), and the heap and malloc-overhead totals."""
    sites = collections.Counter()
    heap = extra = 0
    stack = []
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        if line.startswith("mem_heap_B="):
            heap = int(line.split("=")[1])
        elif line.startswith("mem_heap_extra_B="):
            extra = int(line.split("=")[1])
        m = NODE.match(line)
        if m is None:
            continue
        depth, nbytes, label = len(m.group(1)), int(m.group(2)), m.group(3)
        del stack[depth:]
        fn, _, ours = frame(label, sources)
        stack.append((fn, ours, nbytes))
        if depth == 1:
            top = fn
            if ours or "below massif's threshold" in label:
                sites[(top, "")] += nbytes
                stack[-1] = (fn, True, nbytes)
            else:
                sites[(top, "?")] += nbytes
        elif depth > 1 and ours and not any(o for _, o, _ in stack[1:-1]):
            top = stack[1][0]
            sites[(top, fn)] += nbytes
            sites[(top, "?")] -= nbytes
    return sites, heap, extra


def vgdb_snapshot(pid, path):
    """Ask massif in pid for a detailed snapshot written to path."""
    out = subprocess.run(["vgdb", "--pid=%d" % pid, "detailed_snapshot",
                          path], capture_output=True, text=True, timeout=60)
    bl.wait_until(lambda: os.path.exists(path), 30, "the massif snapshot")
    if out.returncode != 0:
        raise bl.BenchError("vgdb failed: " + out.stderr.strip())


def parse_args(argv):
    """The command line."""
    p = argparse.ArgumentParser(
        description="acceptd heap bytes per idle connection, by caller")
    p.add_argument("--acceptd", help="acceptd binary (default: $ACCEPTD, "
                   "./src/acceptd, the source tree's src/acceptd, PATH)")
    p.add_argument("--conns", type=int, default=1000,
                   help="idle connections (default 1000)")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the configuration, log and snapshots")
    a = p.parse_args(argv)
    if a.conns < 1:
        p.error("--conns must be positive")
    return a


def measure(a, tmp, echo, sources):
    """Run acceptd under massif; return the two snapshots' readings."""
    conf = os.path.join(tmp, "acceptd.conf")
    extra = bl.acceptd_extra(a.acceptd, tmp)

    def start(port):
        with open(conf, "w") as f:
            f.write(bl.acceptd_config(port, echo.port, 1, extra))
        argv = [a.valgrind, "--tool=massif", "--threshold=0.01",
                "--massif-out-file=" + os.path.join(tmp, "massif.out"),
                a.acceptd, "-c", conf]
        proc = bl.Proc("massif", argv, tmp)
        try:
            proc.wait_listening(port, timeout=120)
        except bl.BenchError:
            proc.stop(signal.SIGKILL)
            raise
        return proc

    port, proc = bl.listen_retry(start)
    socks = []
    try:
        for _ in range(10):
            bl.short_connection(port, b"warm-up", timeout=30)
        bl.wait_until(lambda: echo.counts()[1] == 0, 30,
                      "the warm-up connections to close")
        before = os.path.join(tmp, "before.massif")
        after = os.path.join(tmp, "after.massif")
        vgdb_snapshot(proc.pid, before)
        held, err = bl.open_idle(port, a.conns, socks)
        if err:
            raise bl.BenchError("%d of %d idle connections held: %s" %
                                (held, a.conns, err))
        time.sleep(0.5)
        vgdb_snapshot(proc.pid, after)
        proc.check_alive()
    finally:
        for s in socks:
            s.close()
        proc.stop(signal.SIGTERM, timeout=60)
    return snapshot_sites(before, sources), snapshot_sites(after, sources)


def main(argv):
    """Measure; print a markdown table; return the exit status."""
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))
    bl.raise_nofile()
    a.acceptd = bl.find_acceptd(a.acceptd, BENCHDIR)
    a.valgrind = bl.which("valgrind")
    if a.acceptd is None or a.valgrind is None or bl.which("vgdb") is None:
        print("heap: needs acceptd (build it, or --acceptd) and valgrind",
              file=sys.stderr)
        return 1
    srcdir = os.path.join(BENCHDIR, "..", "src")
    sources = set(n for n in os.listdir(srcdir) if n.endswith(".c"))
    tmp = tempfile.mkdtemp(prefix="acceptd-heap-")
    echo = bl.EchoServer()
    try:
        (s0, h0, x0), (s1, h1, x1) = measure(a, tmp, echo, sources)
    except (bl.BenchError, subprocess.TimeoutExpired) as e:
        print("heap: %s" % e, file=sys.stderr)
        return 1
    finally:
        echo.close()
        if a.keep_tmp:
            print("heap: files kept in %s" % tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    n = a.conns
    diff = collections.Counter(s1)
    diff.subtract(s0)
    rows = [(k, v / n) for k, v in diff.most_common() if abs(v) / n >= 0.5]
    print("%s, %d idle connections: **%.0f heap bytes per connection** "
          "(%.0f requested + %.0f malloc overhead), massif snapshots "
          "before and after they opened.\n" %
          (bl.first_line([a.acceptd, "-V"]), n, (h1 + x1 - h0 - x0) / n,
           (h1 - h0) / n, (x1 - x0) / n))
    print("| allocated by | called from (acceptd) | bytes per connection |")
    print("| --- | --- | --- |")
    for (top, caller), v in rows:
        print("| `%s` | %s | %.0f |" %
              (top, "`%s`" % caller if caller not in ("", "?") else
               caller or "-", v))
    print("| malloc overhead (headers, alignment) | | %.0f |" %
          ((x1 - x0) / n))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"conns": n, "heap_per_conn": (h1 - h0) / n,
                       "extra_per_conn": (x1 - x0) / n,
                       "sites": [{"alloc": t, "caller": c, "bytes": v}
                                 for (t, c), v in rows]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
