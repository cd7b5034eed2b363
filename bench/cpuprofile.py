#!/usr/bin/python3
"""Profile acceptd's CPU with perf under the bench's loads.

For each load, a fresh acceptd (workers = 1) runs in front of the bench's
backend and `perf record -e cpu-clock -g -p PID` samples it for the length
of the load. A second fresh acceptd then runs the same load under `perf
stat` on the syscall tracepoints: counting them costs a few per cent of
CPU, which would show in the profile, so the two are kept apart. The
report gives, per load, the rate, acceptd's CPU per unit, the system calls
per unit, the CPU split by shared object, the top functions by self time
and the kernel entry points by inclusive time. Needs perf (Debian:
linux-perf).
"""

import argparse
import collections
import datetime
import json
import os
import platform
import re
import shlex
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
import callgrind  # noqa: E402
import run  # noqa: E402
import syscalls  # noqa: E402

# load: (run.py scenario, what it is, unit of the syscall count, tools)
LOADS = {
    "tput": ("tput1", "iperf3 -P 1, client to backend", "MB",
             ("iperf3",)),
    "cps": ("cps", "wrk -t1 -c%d -H 'Connection: close', %d-byte file "
            "from nginx" % (run.WRK_CONNECTIONS, run.SMALL_FILE_SIZE),
            "conn", ("wrk", "nginx")),
    "keepalive": ("keepalive", "wrk -t1 -c%d, same file, keep-alive" %
                  run.WRK_CONNECTIONS, "req", ("wrk", "nginx")),
}
# Where the kernel is entered: system calls, soft interrupts run on their
# way out, hardware interrupts and exceptions (page faults).
KERNEL_ENTRY = re.compile(r"^(do_syscall_64|__x64_sys_\w+|handle_softirqs|"
                          r"__do_softirq|asm_(exc|sysvec|common)_\w+)$")
SELF_ROW = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[([.k])\]\s+(.*)$")
CHILDREN_ROW = re.compile(r"^\s*([\d.]+)%\s+[\d.]+%\s+\[([.k])\]\s+(.*)$")
MIN_INCL = 0.5


class Profiled(run.Acceptd):
    """acceptd with perf attached from its start to its stop: perf record
    (mode "record") or perf stat on the syscall tracepoints ("stat")."""

    def __init__(self, ctx, load, mode, outdir):
        run.Acceptd.__init__(self, "acceptd-%s-%s" % (load, mode), ctx, 1)
        self.extra = self.extra + ctx.args.extra
        self.load, self.mode, self.outdir = load, mode, outdir
        self.perf = None
        self.perf_error = None
        self.counts = None

    def config(self, port, backend_port):
        return bl.acceptd_config(port, backend_port, 1, self.extra,
                                 self.ctx.args.log_connections)

    def _start(self, port, backend_port):
        run.Acceptd._start(self, port, backend_port)
        ctx = self.ctx
        if self.mode == "stat":
            self.perf = syscalls.Counter(ctx, self.pids,
                                         "perf-stat-" + self.load)
            return
        ctx.seq += 1
        self.perf = bl.Proc(
            "perf-record-%d" % ctx.seq,
            [ctx.perf, "record", "-e", "cpu-clock", "-g", "-p",
             str(self.proc.pid), "-o", os.path.join(self.outdir,
                                                    "perf.data")],
            ctx.tmp)
        # perf has no ready signal; give it time to attach.
        time.sleep(1.0)
        self.perf.check_alive()

    def check_alive(self):
        run.Acceptd.check_alive(self)
        if isinstance(self.perf, bl.Proc):
            self.perf.check_alive()
        elif self.perf is not None:
            self.perf.proc.check_alive()

    def stop(self):
        """Stop perf (its counts or samples are kept), then acceptd."""
        perf, self.perf = self.perf, None
        try:
            if isinstance(perf, bl.Proc):
                # perf record leaves by raising the SIGINT it was sent.
                status = perf.stop(signal.SIGINT, timeout=30)
                if status not in (0, -signal.SIGINT):
                    self.perf_error = "perf record exited with status " \
                        "%s:\n%s" % (status, perf.tail())
            elif perf is not None:
                try:
                    self.counts = perf.stop()
                finally:
                    shutil.copy(perf.out, os.path.join(self.outdir,
                                                       "syscalls.perf"))
        except (bl.BenchError, OSError) as e:
            self.perf_error = "perf stat: %s" % e
        finally:
            run.Acceptd.stop(self)

    def check_exit(self):
        run.Acceptd.check_exit(self)
        if self.perf_error:
            raise bl.BenchError(self.perf_error)


def measure(ctx, load, mode, outdir):
    """One run of load through a fresh acceptd under perf; return the
    target (its syscall counts) and run.py's measurement."""
    target = Profiled(ctx, load, mode, outdir)
    try:
        res = run.run_step(ctx, LOADS[load][0], target)
    finally:
        target.stop()
    return target, res


def perf_report(ctx, outdir, args, name):
    """Run perf report on outdir/perf.data; keep and return its text."""
    argv = [ctx.perf, "report", "-i", os.path.join(outdir, "perf.data"),
            "--stdio", "-g", "none"] + args
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise bl.BenchError("perf report failed: %s" %
                            (out.stdout + out.stderr).strip()[-500:])
    with open(os.path.join(outdir, name), "w") as f:
        f.write(out.stdout)
    return out.stdout


def object_group(dso):
    """kernel, libevent, libc, acceptd, or the object's short name."""
    if dso.startswith("[kernel"):
        return "kernel"
    name = callgrind.object_name(dso)
    if name.startswith("libevent"):
        return "libevent"
    return name


def clean(text):
    """A symbol without the empty columns perf may print after it."""
    return re.sub(r"(\s+-)+\s*$", "", text).strip()


def profile(ctx, outdir):
    """Self time by function and object, inclusive time of the kernel
    entry points, from outdir/perf.data."""
    text = perf_report(ctx, outdir, ["--no-children", "--sort",
                                     "dso,symbol"], "report-self.txt")
    m = re.search(r"^# Samples: (\S+)", text, re.M)
    rows, groups = [], collections.Counter()
    for line in text.splitlines():
        m2 = SELF_ROW.match(line)
        if m2:
            pct, dso = float(m2.group(1)), m2.group(2)
            rows.append([pct, clean(m2.group(4)), object_group(dso)])
            groups[object_group(dso)] += pct
    if not rows:
        raise bl.BenchError("perf recorded no sample of acceptd")
    text = perf_report(ctx, outdir, ["--children", "--sort", "symbol"],
                       "report-children.txt")
    entries = []
    for line in text.splitlines():
        m2 = CHILDREN_ROW.match(line)
        if m2 and m2.group(2) == "k" and float(m2.group(1)) >= MIN_INCL:
            sym = clean(m2.group(3))
            if KERNEL_ENTRY.match(sym):
                entries.append([float(m2.group(1)), sym])
    return {"samples": m.group(1) if m else "?",
            "objects": dict(groups.most_common()),
            "self": rows[:ctx.args.top], "entries": entries[:ctx.args.top]}


def profile_load(ctx, load, outdir):
    """Both runs of one load; return their figures and the profile."""
    os.makedirs(outdir, exist_ok=True)
    print("profile: %s under perf record" % load, file=sys.stderr,
          flush=True)
    _, rec = measure(ctx, load, "record", outdir)
    res = {"record": rec}
    res.update(profile(ctx, outdir))
    print("profile: %s under perf stat" % load, file=sys.stderr,
          flush=True)
    target, res["stat"] = measure(ctx, load, "stat", outdir)
    res["syscalls"] = dict(target.counts)
    return res


def rate_text(load, r):
    """The rate of one run as text."""
    if load == "tput":
        return "%.2f Gbit/s" % r["gbps"]
    if load == "cps":
        return "%.0f conn/s" % r["rate"]
    return "%.0f req/s (p50 %.3f ms, p99 %.3f ms)" % (
        r["rate"], r["p50_ms"], r["p99_ms"])


def cpu_text(load, r):
    """acceptd's CPU per unit of one run as text."""
    if load == "tput":
        return "%.3f s/GB" % r["cpu_s_per_gb"]
    return "%.1f us/%s" % (r["cpu_us_per_req"], LOADS[load][2])


def load_section(ctx, load, res):
    """The markdown section of one load."""
    a = ctx.args
    rec, st = res["record"], res["stat"]
    counts = collections.Counter(res["syscalls"])
    unit = LOADS[load][2]
    units = st["bytes"] / 1e6 if load == "tput" else st["requests"]
    out = ["### %s: %s" % (load, LOADS[load][1]), "",
           "- rate: %s under perf record; %s under perf stat" %
           (rate_text(load, rec), rate_text(load, st)),
           "- acceptd CPU: %s under perf record; %s under perf stat" %
           (cpu_text(load, rec), cpu_text(load, st)),
           "- syscalls per %s: %.1f; %s" % (
               unit, counts["total"] / units, syscalls.top(
                   collections.Counter({k: v for k, v in counts.items()
                                        if v / units >= 0.05}), units, 8))]
    if load == "tput":
        # A spliced chunk takes two splice calls, in and out: one read.
        reads = sum(counts[k] for k in syscalls.READS) + \
            counts["splice"] / 2
        out[-1] += "; %.0f bytes per read (a splice pair counts as one)" \
            % (st["bytes"] / max(reads, 1))
    out += ["- CPU by object: %s (%s samples)" % (", ".join(
        "%s %.1f%%" % (k, v) for k, v in res["objects"].items()
        if v >= 0.05), res["samples"]), "",
        "Top %d functions, self time:" % a.top, "",
        "| self % | function | object |", "| ---: | --- | --- |"]
    out += ["| %.2f | `%s` | %s |" % tuple(r) for r in res["self"]]
    out += ["", "Kernel entry points, inclusive time (>= %.1f%%):" %
            MIN_INCL, "", "| incl % | function |", "| ---: | --- |"]
    out += ["| %.2f | `%s` |" % tuple(r) for r in res["entries"]]
    return out + [""]


def report(ctx, results, info):
    """The markdown report."""
    a = ctx.args
    out = ["## acceptd CPU profile (perf)", "",
           "- command: `%s`" % info["command"],
           "- date: %s; %d CPUs, kernel %s; load average before / after: "
           "%s / %s" % (info["date"], info["nproc"], info["kernel"],
                        info["load_before"], info["load_after"]),
           "- acceptd: %s (`%s`), workers = 1, log_connections = \"%s\"%s"
           % (info["acceptd"], a.acceptd, a.log_connections,
              "".join("; `%s`" % x for x in a.extra)),
           "- %s: `perf record -e cpu-clock -g -p PID` over %d s of load "
           "(attached 1 s before it starts), then a second run of the "
           "same load under `perf stat` on the syscall tracepoints" %
           (info["perf"], a.duration)]
    if a.out:
        out.append("- perf.data and the perf reports: `%s/LOAD/`" % a.out)
    out.append("")
    for load in a.loads:
        if load in results:
            out += load_section(ctx, load, results[load])
    if ctx.notes:
        out += ["### Notes", ""] + ["- " + n for n in ctx.notes] + [""]
    return "\n".join(out)


def check_perf(ctx, tmp):
    """Raise BenchError unless perf can sample and count syscalls here."""
    if ctx.perf is None:
        raise bl.BenchError("perf is not installed (Debian: linux-perf)")
    out = subprocess.run([ctx.perf, "record", "-q", "-e", "cpu-clock",
                          "-g", "-o", os.path.join(tmp, "probe.data"),
                          "--", "true"], capture_output=True, text=True,
                         timeout=30)
    if out.returncode != 0:
        raise bl.BenchError("perf cannot record here: %s" %
                            (out.stdout + out.stderr).strip()[-300:])
    if not any(os.path.isdir(d + "/events/syscalls") for d in
               ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")):
        raise bl.BenchError("no syscall tracepoints in tracefs")


def parse_args(argv):
    """The command line."""
    p = argparse.ArgumentParser(
        description="perf CPU profile of acceptd under the bench's loads")
    p.add_argument("--acceptd", help="acceptd binary (default: $ACCEPTD, "
                   "./src/acceptd, the source tree's src/acceptd, PATH)")
    p.add_argument("--loads", default=",".join(LOADS),
                   help="comma-separated subset of %s" % ",".join(LOADS))
    p.add_argument("--duration", type=int, default=5,
                   help="seconds of load per run (default 5)")
    p.add_argument("--top", type=int, default=None,
                   help="functions listed per load (default 25)")
    p.add_argument("--log-connections", default="none",
                   choices=("none", "close", "all"),
                   help="acceptd's log_connections (default none)")
    p.add_argument("--extra", action="append", default=[], metavar="LINE",
                   help="one more acceptd.conf line (repeatable)")
    p.add_argument("--quick", action="store_true",
                   help="1-second loads, top 10")
    p.add_argument("--out", metavar="DIR",
                   help="keep perf.data and the perf reports of each load "
                   "in DIR/LOAD/, and the report in DIR/profile.md "
                   "(default: a temporary directory, removed)")
    p.add_argument("--json", help="write the measurements here")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the generated configurations and logs")
    a = p.parse_args(argv)
    if a.quick:
        a.duration = 1
    if a.top is None:
        a.top = 10 if a.quick else 25
    a.loads = [x for x in a.loads.split(",") if x]
    unknown = [x for x in a.loads if x not in LOADS]
    if unknown:
        p.error("unknown load %r (one of %s)" % (unknown[0],
                                                  ",".join(LOADS)))
    if not a.loads or a.duration < 1 or a.top < 1:
        p.error("--loads must name a load; --duration and --top must be "
                "positive")
    return a


def setup(a, tmp):
    """The run's context, once the tools, perf and the acceptd
    configuration are known to work."""
    a.acceptd = bl.find_acceptd(a.acceptd, BENCHDIR)
    if a.acceptd is None:
        raise bl.BenchError("no acceptd binary (build it, or --acceptd)")
    ctx = run.Context(a, tmp)
    ctx.perf = bl.which("perf")
    for prog in sorted({p for x in a.loads for p in LOADS[x][3]}):
        if getattr(ctx, prog) is None:
            raise bl.BenchError("%s is not installed (./bootstrap --bench "
                                "installs it)" % prog)
    check_perf(ctx, tmp)
    ctx.acceptd_extra = bl.acceptd_extra(a.acceptd, tmp)
    ok, msg = bl.acceptd_check(a.acceptd, bl.acceptd_config(
        1, 2, 1, ctx.acceptd_extra + a.extra, a.log_connections), tmp)
    if not ok:
        raise bl.BenchError("acceptd -t refuses the configuration:\n" + msg)
    return ctx


def profile_all(ctx, outdir):
    """Profile every load; return the results of those that ran."""
    results = {}
    http = None
    try:
        if any(x != "tput" for x in ctx.args.loads):
            http, ctx.http_port = run.start_http_backend(ctx)
        for load in ctx.args.loads:
            try:
                results[load] = profile_load(ctx, load,
                                             os.path.join(outdir, load))
            except (bl.BenchError, subprocess.TimeoutExpired,
                    OSError) as e:
                ctx.notes.append("%s failed: %s" % (load, e))
                print("FAILED: %s" % ctx.notes[-1], file=sys.stderr)
            if http is not None:
                http.check_alive()
    finally:
        if http is not None:
            http.stop()
    return results


def main(argv):
    """Profile every load; print the markdown report; return the exit
    status."""
    a = parse_args(argv)
    # A signal must still run every cleanup below.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    tmp = tempfile.mkdtemp(prefix="acceptd-profile-")
    os.chmod(tmp, 0o755)
    try:
        ctx = setup(a, tmp)
        info = {"command": " ".join(shlex.quote(x) for x in sys.argv),
                "date": datetime.datetime.now(datetime.timezone.utc)
                .strftime("%Y-%m-%d %H:%M UTC"),
                "nproc": os.cpu_count(), "kernel": platform.release(),
                "acceptd": bl.first_line([a.acceptd, "-V"]),
                "perf": bl.first_line([ctx.perf, "--version"]),
                "load_before": "%.2f %.2f %.2f" % os.getloadavg()}
        outdir = a.out or os.path.join(tmp, "profile")
        os.makedirs(outdir, exist_ok=True)
        results = profile_all(ctx, outdir)
        info["load_after"] = "%.2f %.2f %.2f" % os.getloadavg()
        text = report(ctx, results, info)
        print(text)
        if a.out:
            with open(os.path.join(a.out, "profile.md"), "w") as f:
                f.write(text + "\n")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"info": info, "settings": {
                    "duration": a.duration, "top": a.top,
                    "log_connections": a.log_connections,
                    "extra": a.extra}, "loads": results,
                    "notes": ctx.notes}, f, indent=1)
    except bl.BenchError as e:
        print("profile: %s" % e, file=sys.stderr)
        return 1
    finally:
        if a.keep_tmp:
            print("profile: files kept in %s" % tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if ctx.notes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
