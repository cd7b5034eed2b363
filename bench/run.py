#!/usr/bin/python3
"""Measure acceptd side by side with a direct connection, HAProxy (TCP mode)
and nginx (stream), all on loopback.

Every proxy is started fresh for every step from a generated configuration
on free ports and stopped by PID; the order of the proxies rotates from one
repetition to the next, and the report quotes medians. See bench/README.md.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
BENCHDIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCHDIR)
import benchlib as bl  # noqa: E402

SCENARIOS = ["tput1", "tput4", "tput1r", "tput4r", "cps", "keepalive",
             "idle"]
TPUT = {"tput1": (1, False), "tput4": (4, False),
        "tput1r": (1, True), "tput4r": (4, True)}
TARGETS = ["direct", "acceptd", "acceptd-w2", "haproxy-t1", "haproxy-t2",
           "nginx-w1", "nginx-w2"]
REFERENCE = "haproxy-t1"
SMALL_FILE_SIZE = 128
WRK_CONNECTIONS = 32


class Target:
    """The direct connection: the client talks to the backend itself."""

    kind = "direct"

    def __init__(self, name, ctx):
        self.name = name
        self.ctx = ctx
        self.proc = None
        self.pids = []
        self.last_status = None
        self.last_tail = ""

    def version(self):
        """One line naming the software and its version."""
        return "-"

    def start(self, backend_port):
        """Start in front of backend_port; return the port to connect to."""
        return backend_port

    def check_alive(self):
        """Raise BenchError if the proxy died."""
        if self.proc is not None:
            self.proc.check_alive()

    def stop(self):
        """Stop the proxy by PID, if one runs."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            self.last_status = proc.stop()
            self.last_tail = proc.tail()
        self.pids = []

    def check_exit(self):
        """Raise BenchError if acceptd did not exit cleanly when stopped
        (a crash, or a sanitizer report, at shutdown)."""
        if self.kind == "acceptd" and self.last_status not in (0, None):
            raise bl.BenchError("acceptd exited with status %s when "
                                "stopped:\n%s" % (self.last_status,
                                                  self.last_tail))

    def _launch(self, argv, port, workers=0):
        """Start argv, wait until it listens on port (and, for nginx, until
        its workers exist), then remember its PIDs."""
        self.ctx.seq += 1
        self.proc = bl.Proc("%s-%d" % (self.name, self.ctx.seq), argv,
                            self.ctx.tmp)
        self.proc.wait_listening(port)
        if workers:
            def ready():
                self.proc.check_alive()
                return len(bl.children_of(self.proc.pid)) >= workers
            bl.wait_until(ready, 10, self.name + " workers")
        self.pids = self.proc.track_children()

    def _conf(self, text, ext):
        """Write a generated configuration file; return its path."""
        self.ctx.seq += 1
        path = os.path.join(self.ctx.tmp, "%s-%d.%s" %
                            (self.name, self.ctx.seq, ext))
        with open(path, "w") as f:
            f.write(text)
        return path


class Proxy(Target):
    """A proxy process started in front of the backend."""

    def start(self, backend_port):
        """Start on a free port (another one if it was taken meanwhile)."""
        def attempt(port):
            try:
                self._start(port, backend_port)
            except bl.BenchError:
                self.stop()
                raise
        port, _ = bl.listen_retry(attempt)
        return port

    def _start(self, port, backend_port):
        """Start listening on port in front of backend_port."""
        raise NotImplementedError


class Acceptd(Proxy):
    """acceptd with one or more event-loop workers."""

    kind = "acceptd"

    def __init__(self, name, ctx, workers):
        Target.__init__(self, name, ctx)
        self.workers = workers
        if ctx.acceptd_extra is None:
            ctx.acceptd_extra = bl.acceptd_extra(ctx.acceptd, ctx.tmp)
        self.extra = ctx.acceptd_extra

    def version(self):
        return bl.first_line([self.ctx.acceptd, "-V"])

    def config(self, port, backend_port):
        """The generated acceptd.conf text."""
        return bl.acceptd_config(port, backend_port, self.workers,
                                 self.extra)

    def _start(self, port, backend_port):
        conf = self._conf(self.config(port, backend_port), "conf")
        self._launch([self.ctx.acceptd, "-c", conf], port)


class Haproxy(Proxy):
    """HAProxy in TCP mode with nbthread threads."""

    kind = "haproxy"

    def __init__(self, name, ctx, threads):
        Target.__init__(self, name, ctx)
        self.threads = threads

    def version(self):
        return bl.first_line([self.ctx.haproxy, "-v"])

    def _start(self, port, backend_port):
        maxconn = self.ctx.maxconn
        conf = self._conf(
            "global\n"
            "\tnbthread %d\n"
            "\tmaxconn %d\n"
            "defaults\n"
            "\tmode tcp\n"
            "\tmaxconn %d\n"
            "\ttimeout connect 5s\n"
            "\ttimeout client 10m\n"
            "\ttimeout server 10m\n"
            "frontend bench\n"
            "\tbind %s:%d\n"
            "\tdefault_backend bench\n"
            "backend bench\n"
            "\tserver b1 %s:%d\n" %
            (self.threads, maxconn, maxconn, bl.LOOPBACK, port,
             bl.LOOPBACK, backend_port), "cfg")
        self._launch([self.ctx.haproxy, "-db", "-f", conf], port)


class Nginx(Proxy):
    """nginx stream proxy with a master and worker processes."""

    kind = "nginx"

    def __init__(self, name, ctx, workers):
        Target.__init__(self, name, ctx)
        self.workers = workers

    def version(self):
        out = subprocess.run([self.ctx.nginx, "-v"], capture_output=True,
                             text=True, timeout=10)
        return (out.stderr or out.stdout).strip().splitlines()[0]

    def _start(self, port, backend_port):
        tag = "%s-%d" % (self.name, port)
        conf = self._conf(
            "%s"
            "daemon off;\n"
            "master_process on;\n"
            "worker_processes %d;\n"
            "worker_rlimit_nofile %d;\n"
            "pid %s/%s.pid;\n"
            "lock_file %s/%s.lock;\n"
            "error_log stderr warn;\n"
            "events { worker_connections %d; }\n"
            "stream {\n"
            "\tserver {\n"
            "\t\tlisten %s:%d backlog=4096;\n"
            "\t\tproxy_pass %s:%d;\n"
            "\t\tproxy_connect_timeout 5s;\n"
            "\t\tproxy_timeout 10m;\n"
            "\t}\n"
            "}\n" %
            (self.ctx.stream_module, self.workers, self.ctx.nofile,
             self.ctx.tmp, tag, self.ctx.tmp, tag,
             self.ctx.nofile - 100, bl.LOOPBACK, port,
             bl.LOOPBACK, backend_port), "conf")
        self._launch([self.ctx.nginx, "-p", self.ctx.tmp + "/", "-c", conf,
                      "-e", "stderr"], port, workers=self.workers)


class Context:
    """Paths, limits and the scratch directory of one run."""

    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.seq = 0
        self.nofile = bl.raise_nofile()
        self.maxconn = max(64, (self.nofile - 100) // 2)
        self.acceptd = args.acceptd
        self.haproxy = bl.which("haproxy")
        self.nginx = bl.which("nginx")
        self.iperf3 = bl.which("iperf3")
        self.wrk = bl.which("wrk")
        self.stream_module = nginx_stream_module(self.nginx)
        self.acceptd_extra = None
        self.notes = []


def nginx_stream_module(nginx):
    """The load_module line nginx needs for the stream module ("" if it is
    built in)."""
    if nginx is None:
        return ""
    out = subprocess.run([nginx, "-V"], capture_output=True, text=True,
                         timeout=10)
    text = out.stdout + out.stderr
    if "--with-stream " in text + " " and "--with-stream=dynamic" not in text:
        return ""
    m = re.search(r"--modules-path=(\S+)", text)
    moddir = m.group(1) if m else "/usr/lib/nginx/modules"
    path = os.path.join(moddir, "ngx_stream_module.so")
    if not os.path.exists(path):
        raise bl.BenchError("nginx has no stream module (%s missing): "
                            "install libnginx-mod-stream" % path)
    return "load_module %s;\n" % path


def run_tput(ctx, target, streams, reverse):
    """iperf3 through the target: throughput and proxy CPU per GB."""
    d = ctx.args.duration
    ctx.seq += 1
    srv, bport = bl.start_iperf3_server(ctx.iperf3, ctx.tmp,
                                        "iperf3-%d" % ctx.seq)
    try:
        port = target.start(bport)
        try:
            cpu0 = bl.proc_cpu_seconds(target.pids)
            argv = [ctx.iperf3, "-c", bl.LOOPBACK, "-p", str(port),
                    "-t", str(d), "-P", str(streams), "-J"]
            if reverse:
                argv.append("-R")
            out = subprocess.run(argv, capture_output=True, text=True,
                                 timeout=d + 30)
            cpu1 = bl.proc_cpu_seconds(target.pids)
            target.check_alive()
        finally:
            target.stop()
    finally:
        srv.stop()
    try:
        js = json.loads(out.stdout)
    except ValueError:
        raise bl.BenchError("iperf3 printed no JSON: %s" %
                            (out.stdout + out.stderr)[-500:])
    if js.get("error"):
        raise bl.BenchError("iperf3: " + js["error"])
    recv = js["end"]["sum_received"]
    if recv["bytes"] <= 0:
        raise bl.BenchError("iperf3 moved no data")
    res = {"gbps": recv["bits_per_second"] / 1e9, "bytes": recv["bytes"]}
    if target.kind != "direct":
        res["cpu"] = cpu1 - cpu0
        res["cpu_s_per_gb"] = (cpu1 - cpu0) / (recv["bytes"] / 1e9)
    return res


def run_wrk(ctx, target, close):
    """wrk against the nginx backend through the target."""
    d = ctx.args.duration
    port = target.start(ctx.http_port)
    try:
        cpu0 = bl.proc_cpu_seconds(target.pids)
        argv = [ctx.wrk, "-t1", "-c%d" % WRK_CONNECTIONS, "-d%ds" % d,
                "--timeout", "5s", "--latency",
                "-s", os.path.join(BENCHDIR, "wrk-report.lua")]
        if close:
            argv += ["-H", "Connection: close"]
        argv.append("http://%s:%d/small" % (bl.LOOPBACK, port))
        out = subprocess.run(argv, capture_output=True, text=True,
                             timeout=d + 30)
        cpu1 = bl.proc_cpu_seconds(target.pids)
        target.check_alive()
    finally:
        target.stop()
    m = re.search(r"^BENCHJSON (.*)$", out.stdout, re.M)
    if m is None:
        raise bl.BenchError("wrk printed no summary: %s" %
                            (out.stdout + out.stderr)[-500:])
    w = json.loads(m.group(1))
    if w["requests"] <= 0:
        raise bl.BenchError("wrk completed no request")
    errors = w["connect"] + w["read"] + w["write"] + w["timeout"]
    if w["status"]:
        raise bl.BenchError("%d responses were not 2xx/3xx" % w["status"])
    # Socket errors beyond a handful per thousand mean a broken relay.
    if errors * 100 > w["requests"]:
        raise bl.BenchError("wrk: %d socket errors for %d requests" %
                            (errors, w["requests"]))
    rate = w["requests"] / (w["duration_us"] / 1e6)
    res = {"requests": w["requests"], "rate": rate, "errors": errors,
           "p50_ms": w["p50_us"] / 1000.0, "p99_ms": w["p99_us"] / 1000.0}
    if target.kind != "direct":
        res["cpu"] = cpu1 - cpu0
        res["cpu_us_per_req"] = (cpu1 - cpu0) / w["requests"] * 1e6
    return res


def run_idle(ctx, target):
    """Hold idle connections through the target; proxy RSS per connection."""
    echo = ctx.echo
    n = ctx.args.idle_conns
    bl.wait_until(lambda: echo.counts()[1] == 0, 10,
                  "the echo backend to drop earlier connections")
    echo.reset()
    port = target.start(echo.port)
    socks = []
    try:
        time.sleep(0.2)
        rss0 = bl.proc_rss_bytes(target.pids)
        data0 = bl.proc_status_bytes(target.pids, "VmData")
        held, err = bl.open_idle(port, n, socks)
        if err:
            ctx.notes.append("%s idle: %d of %d held (%s)" %
                             (target.name, held, n, err))
        if held == 0:
            raise bl.BenchError("no idle connection held: %s" % err)
        accepted, _ = echo.counts()
        if accepted < held:
            raise bl.BenchError("backend accepted %d connections, %d "
                                "verified" % (accepted, held))
        time.sleep(0.3)
        rss1 = bl.proc_rss_bytes(target.pids)
        data1 = bl.proc_status_bytes(target.pids, "VmData")
        target.check_alive()
        for s in socks:
            s.close()
        socks = []
        # Every close must reach the backend through the proxy.
        bl.wait_until(lambda: echo.counts()[1] == 0, 15,
                      "the backend to see every idle connection closed")
    finally:
        for s in socks:
            s.close()
        target.stop()
    res = {"held": held}
    if target.kind != "direct":
        res["rss_delta"] = rss1 - rss0
        res["bytes_per_conn"] = (rss1 - rss0) / held
        res["vmdata_per_conn"] = (data1 - data0) / held
    return res


def run_step(ctx, scn, target):
    """One measurement of scenario scn through target."""
    target.last_status = None
    if scn in TPUT:
        res = run_tput(ctx, target, *TPUT[scn])
    elif scn == "cps":
        res = run_wrk(ctx, target, True)
    elif scn == "keepalive":
        res = run_wrk(ctx, target, False)
    else:
        res = run_idle(ctx, target)
    target.check_exit()
    return res


def start_http_backend(ctx):
    """nginx serving a small file on a free port, as one process."""
    www = os.path.join(ctx.tmp, "www")
    os.mkdir(www)
    with open(os.path.join(www, "small"), "wb") as f:
        f.write(b"x" * (SMALL_FILE_SIZE - 1) + b"\n")
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(ctx.tmp, "ngx-temp", sub))
    port, proc = bl.listen_retry(lambda p: http_backend_at(ctx, p, www))
    return proc, port


def http_backend_at(ctx, port, www):
    """Start the HTTP backend on port; return its Proc once it listens."""
    t = ctx.tmp
    conf = os.path.join(t, "http-backend.conf")
    with open(conf, "w") as f:
        f.write(
            "daemon off;\n"
            "master_process off;\n"
            "pid %s/http-backend.pid;\n"
            "lock_file %s/http-backend.lock;\n"
            "error_log stderr warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            "\taccess_log off;\n"
            "\tclient_body_temp_path %s/ngx-temp/body;\n"
            "\tproxy_temp_path %s/ngx-temp/proxy;\n"
            "\tfastcgi_temp_path %s/ngx-temp/fastcgi;\n"
            "\tuwsgi_temp_path %s/ngx-temp/uwsgi;\n"
            "\tscgi_temp_path %s/ngx-temp/scgi;\n"
            "\tkeepalive_requests 1000000;\n"
            "\tsendfile on;\n"
            "\tserver {\n"
            "\t\tlisten %s:%d backlog=4096;\n"
            "\t\troot %s;\n"
            "\t}\n"
            "}\n" % (t, t, t, t, t, t, t, bl.LOOPBACK, port, www))
    proc = bl.Proc("http-backend", [ctx.nginx, "-p", t + "/", "-c", conf,
                                    "-e", "stderr"], t)
    try:
        proc.wait_listening(port)
    except bl.BenchError:
        proc.stop()
        raise
    return proc


def values(results, scn, name, key):
    """The values of results[scn][name][i][key] over repetitions."""
    runs = results.get(scn, {}).get(name, [])
    return [r[key] for r in runs if r and r.get(key) is not None]


def tput_cpu(results, name):
    """Proxy CPU seconds per GB over repetitions, all iperf3 runs of a
    repetition taken together."""
    per_rep = {}
    for scn in TPUT:
        for i, r in enumerate(results.get(scn, {}).get(name, [])):
            if r and "cpu" in r:
                cpu, nbytes = per_rep.get(i, (0.0, 0))
                per_rep[i] = (cpu + r["cpu"], nbytes + r["bytes"])
    return [c / (b / 1e9) for c, b in per_rep.values() if b]


def cell(vals, ref_direct, ref_hap, digits):
    """The median of vals, its spread over repetitions (half the range,
    relative to the median) and its ratios to direct and the reference."""
    if not vals:
        return "-"
    v = statistics.median(vals)
    if digits is None:
        return "%.0f" % v
    text = "%.*f" % (digits, v)
    if len(vals) > 1 and v:
        text += " ±%.0f%%" % (50.0 * (max(vals) - min(vals)) / abs(v))
    parts = []
    for ref in (ref_direct, ref_hap):
        parts.append("%.2f" % (v / statistics.median(ref)) if ref else "-")
    return "%s (%s)" % (text, " / ".join(parts))


def table(names, columns):
    """A markdown table: one row per target, one column per metric."""
    out = ["| target | " + " | ".join(c[0] for c in columns) + " |",
           "| --- |" + " --- |" * len(columns)]
    for name in names:
        cells = []
        for _, get, digits in columns:
            cells.append(cell(get(name),
                              get("direct") if "direct" in names else None,
                              get(REFERENCE) if REFERENCE in names
                              else None, digits))
        out.append("| %s | %s |" % (name, " | ".join(cells)))
    return "\n".join(out)


def report(ctx, results, names, info):
    """The markdown report of a run."""
    a = ctx.args
    scns = a.scenarios
    out = ["## Results", ""]
    out += ["- command: `%s`" % info["command"],
            "- date: %s" % info["date"],
            "- machine: %s CPUs (`nproc`), %s, kernel %s, %s RAM" %
            (info["nproc"], info["cpu"], info["kernel"], info["mem"]),
            "- load average before / after: %s / %s" %
            (info["load_before"], info["load_after"]),
            "- versions: %s" % "; ".join(
                "%s: %s" % (k, v) for k, v in info["versions"].items()),
            "- settings: %d repetition(s), %d s per load step, wrk -t1 "
            "-c%d, %d-byte file, %d idle connections (RLIMIT_NOFILE %d), "
            "run time %.0f s" %
            (a.reps, a.duration, WRK_CONNECTIONS, SMALL_FILE_SIZE,
             a.idle_conns, ctx.nofile, info["elapsed"]),
            "",
            "Medians of %d repetition(s). Each cell: median, ±half the "
            "range over repetitions as a share of the median, then (ratio "
            "to direct / ratio to %s). A ratio above 1 means more of the "
            "figure: better for Gbit/s and rates, worse for CPU, latency "
            "and memory." % (a.reps, REFERENCE), ""]
    cols = []
    labels = {"tput1": "1 stream", "tput4": "4 streams",
              "tput1r": "1 stream -R", "tput4r": "4 streams -R"}
    for scn in TPUT:
        if scn in scns:
            cols.append(("%s Gbit/s" % labels[scn],
                         lambda n, s=scn: values(results, s, n, "gbps"), 2))
    if cols:
        cols.append(("proxy CPU s/GB",
                     lambda n: tput_cpu(results, n), 3))
        out += ["### Throughput (iperf3; -R: backend to client)", "",
                table(names, cols), ""]
    if "cps" in scns:
        out += ["### New connections (wrk, `Connection: close`)", "",
                table(names, [
                    ("conn/s", lambda n: values(results, "cps", n, "rate"),
                     0),
                    ("proxy CPU us/conn",
                     lambda n: values(results, "cps", n, "cpu_us_per_req"),
                     1)]), ""]
    if "keepalive" in scns:
        out += ["### Keep-alive requests (wrk --latency)", "",
                table(names, [
                    ("req/s",
                     lambda n: values(results, "keepalive", n, "rate"), 0),
                    ("p50 ms",
                     lambda n: values(results, "keepalive", n, "p50_ms"), 3),
                    ("p99 ms",
                     lambda n: values(results, "keepalive", n, "p99_ms"), 3),
                    ("proxy CPU us/req",
                     lambda n: values(results, "keepalive", n,
                                      "cpu_us_per_req"), 1)]), ""]
    if "idle" in scns:
        out += ["### Idle connections (each verified by an echoed byte)",
                "", table(names, [
                    ("held", lambda n: values(results, "idle", n, "held"),
                     None),
                    ("proxy RSS MiB",
                     lambda n: [v / 1048576 for v in
                                values(results, "idle", n, "rss_delta")],
                     1),
                    ("RSS bytes/conn",
                     lambda n: values(results, "idle", n,
                                      "bytes_per_conn"), 0),
                    ("VmData bytes/conn",
                     lambda n: values(results, "idle", n,
                                      "vmdata_per_conn"), 0)]),
                "", "RSS: memory touched; VmData: address space the proxy "
                "reserved (malloc'd but possibly never written).", ""]
    if info.get("callgrind"):
        out += ["### Instructions per proxied connection (callgrind)", "",
                info["callgrind"], ""]
    if info.get("syscalls"):
        out += ["### System calls (perf stat on syscall tracepoints)", "",
                info["syscalls"], ""]
    if info.get("heap"):
        out += ["### acceptd heap per idle connection (massif)", "",
                info["heap"], ""]
    if ctx.notes:
        out += ["### Notes", ""] + ["- " + n for n in ctx.notes] + [""]
    return "\n".join(out)


def machine_info(ctx, targets):
    """Where and with what the run happened."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 1048576)
    versions = {}
    for t in targets:
        if t.kind != "direct" and t.kind not in versions:
            versions[t.kind] = t.version()
    versions["iperf3"] = bl.first_line([ctx.iperf3, "--version"])
    versions["wrk"] = bl.first_line([ctx.wrk, "--version"]).split(" [")[0]
    return {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "mem": mem, "versions": versions,
        "load_before": "%.2f %.2f %.2f" % os.getloadavg(),
    }


def make_targets(ctx, names):
    """The Target objects for the names asked for."""
    out = []
    for name in names:
        if name == "direct":
            out.append(Target(name, ctx))
        elif name.startswith("acceptd"):
            out.append(Acceptd(name, ctx,
                               2 if name == "acceptd-w2" else 1))
        elif name.startswith("haproxy"):
            out.append(Haproxy(name, ctx, int(name[-1])))
        else:
            out.append(Nginx(name, ctx, int(name[-1])))
    return out


def parse_args(argv):
    """The command line."""
    p = argparse.ArgumentParser(
        description="acceptd vs direct, HAProxy and nginx on loopback")
    p.add_argument("--acceptd", help="acceptd binary (default: $ACCEPTD, "
                   "./src/acceptd, the source tree's src/acceptd, PATH)")
    p.add_argument("--only", help="comma-separated targets (default: all "
                   "available of %s)" % ",".join(TARGETS))
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help="comma-separated subset of %s" % ",".join(SCENARIOS))
    p.add_argument("--reps", type=int, default=3,
                   help="repetitions (default 3)")
    p.add_argument("--duration", type=int, default=4,
                   help="seconds per load step (default 4)")
    p.add_argument("--idle-conns", type=int, default=0,
                   help="idle connections to hold (default: as many as "
                   "the descriptor limit allows, at most 9000)")
    p.add_argument("--quick", action="store_true",
                   help="tiny run: 1 repetition, 1-second steps, 100 idle "
                   "connections, no callgrind, massif or perf")
    p.add_argument("--callgrind", type=int, default=None, metavar="N",
                   help="also count acceptd's instructions per connection "
                   "with callgrind over N connections (default 1000; 0: "
                   "skip)")
    p.add_argument("--heap", type=int, default=None, metavar="N",
                   help="also list acceptd's heap bytes per idle connection "
                   "with massif over N connections (default 1000; 0: "
                   "skip)")
    p.add_argument("--syscalls", type=int, default=None, metavar="N",
                   help="also count each proxy's system calls per MB and "
                   "per connection (perf) over N short connections "
                   "(default 2000; 0: skip)")
    p.add_argument("--out", help="also write the markdown report here")
    p.add_argument("--json", help="write every measurement here")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the generated configurations and logs")
    a = p.parse_args(argv)
    if a.quick:
        a.reps, a.duration = 1, 1
        a.idle_conns = a.idle_conns or 100
        if a.callgrind is None:
            a.callgrind = 0
        if a.heap is None:
            a.heap = 0
        if a.syscalls is None:
            a.syscalls = 0
    if a.callgrind is None:
        a.callgrind = 1000
    if a.heap is None:
        a.heap = 1000
    if a.syscalls is None:
        a.syscalls = 2000
    a.scenarios = [s for s in a.scenarios.split(",") if s]
    for s in a.scenarios:
        if s not in SCENARIOS:
            p.error("unknown scenario %r" % s)
    if a.only:
        a.only = [t for t in a.only.split(",") if t]
        for t in a.only:
            if t not in TARGETS:
                p.error("unknown target %r (one of %s)" %
                        (t, ",".join(TARGETS)))
    if a.reps < 1 or a.duration < 1 or a.idle_conns < 0:
        p.error("--reps and --duration must be positive")
    return a


def choose_targets(ctx, a):
    """Targets to run: what was asked for, or everything available."""
    wanted = a.only or TARGETS
    names = []
    for name in wanted:
        missing = None
        if name.startswith("acceptd"):
            if not ctx.acceptd:
                missing = "no acceptd binary (build it, or --acceptd)"
            elif name == "acceptd-w2":
                ok, msg = bl.acceptd_check(
                    ctx.acceptd, bl.acceptd_config(1, 2, 2), ctx.tmp)
                if not ok:
                    missing = "this acceptd refuses workers = 2 (%s)" % \
                        msg.replace(ctx.tmp + "/", "")
        elif name.startswith("haproxy") and not ctx.haproxy:
            missing = "haproxy is not installed"
        elif name.startswith("nginx") and not ctx.nginx:
            missing = "nginx is not installed"
        if missing and a.only:
            raise bl.BenchError("%s: %s" % (name, missing))
        if missing:
            ctx.notes.append("%s skipped: %s" % (name, missing))
        else:
            names.append(name)
    if "acceptd" in names or "acceptd-w2" in names:
        ok, msg = bl.acceptd_check(ctx.acceptd, bl.acceptd_config(1, 2),
                                   ctx.tmp)
        if not ok:
            raise bl.BenchError("acceptd -t refuses the bench "
                                "configuration:\n" + msg)
    return names


def run_script(ctx, script, args):
    """Run another bench script on acceptd; return what it printed."""
    argv = [sys.executable, os.path.join(BENCHDIR, script),
            "--acceptd", ctx.acceptd] + args
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise bl.BenchError("%s failed:\n%s" %
                            (script, (out.stdout + out.stderr)[-1000:]))
    return out.stdout.strip()


def main(argv):
    """Run the benchmark; return the exit status."""
    a = parse_args(argv)
    # A signal must still run every cleanup below.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="acceptd-bench-")
    os.chmod(tmp, 0o755)
    http = None
    echo = None
    results = {}
    failed = 0
    try:
        a.acceptd = bl.find_acceptd(a.acceptd, BENCHDIR)
        ctx = Context(a, tmp)
        for prog in ("iperf3", "wrk", "nginx"):
            if getattr(ctx, prog) is None:
                raise bl.BenchError("%s is not installed (./bootstrap "
                                    "--bench installs it)" % prog)
        if not a.idle_conns:
            a.idle_conns = min(9000, (ctx.nofile - 200) // 2)
        if 2 * a.idle_conns + 100 > ctx.nofile:
            raise bl.BenchError("%d idle connections need %d descriptors; "
                                "the limit is %d" % (a.idle_conns,
                                                     2 * a.idle_conns + 100,
                                                     ctx.nofile))
        names = choose_targets(ctx, a)
        targets = make_targets(ctx, names)
        info = machine_info(ctx, targets)
        http, ctx.http_port = start_http_backend(ctx)
        echo = ctx.echo = bl.EchoServer()
        for rep in range(a.reps):
            k = rep % len(targets)
            order = targets[k:] + targets[:k]
            for scn in a.scenarios:
                for t in order:
                    t0 = time.monotonic()
                    try:
                        res = run_step(ctx, scn, t)
                    except (bl.BenchError, subprocess.TimeoutExpired,
                            OSError) as e:
                        failed += 1
                        res = None
                        ctx.notes.append("rep %d %s %s failed: %s" %
                                         (rep + 1, scn, t.name, e))
                        print("FAILED: %s" % ctx.notes[-1], file=sys.stderr)
                    finally:
                        t.stop()
                    results.setdefault(scn, {}).setdefault(
                        t.name, []).append(res)
                    print("rep %d/%d %-9s %-10s %5.1fs %s" %
                          (rep + 1, a.reps, scn, t.name,
                           time.monotonic() - t0,
                           json.dumps(res) if res else "FAILED"),
                          file=sys.stderr, flush=True)
                    http.check_alive()
        proxies = [n for n in names if n != "direct"]
        for key, script, n, args in (
                ("callgrind", "callgrind.py", a.callgrind,
                 ["--count", str(a.callgrind)]),
                ("heap", "heap.py", a.heap, ["--conns", str(a.heap)]),
                ("syscalls", "syscalls.py", a.syscalls,
                 ["--conns", str(a.syscalls), "--only",
                  ",".join(proxies)])):
            if not n or "acceptd" not in names:
                continue
            if key == "syscalls" and bl.which("perf") is None:
                ctx.notes.append("syscall counts skipped: perf is not "
                                 "installed (Debian: linux-perf)")
                continue
            try:
                info[key] = run_script(ctx, script, args)
            except (bl.BenchError, subprocess.TimeoutExpired) as e:
                failed += 1
                ctx.notes.append("%s failed: %s" % (script, e))
        info["load_after"] = "%.2f %.2f %.2f" % os.getloadavg()
        info["settings"] = {"reps": a.reps, "duration": a.duration,
                            "idle_conns": a.idle_conns,
                            "nofile": ctx.nofile,
                            "wrk_connections": WRK_CONNECTIONS,
                            "file_size": SMALL_FILE_SIZE}
        info["elapsed"] = time.monotonic() - started
        text = report(ctx, results, names, info)
        print(text)
        if a.out:
            with open(a.out, "w") as f:
                f.write(text + "\n")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"info": info, "targets": names,
                           "results": results, "notes": ctx.notes}, f,
                          indent=1)
    except bl.BenchError as e:
        print("bench: %s" % e, file=sys.stderr)
        return 1
    finally:
        if echo is not None:
            echo.close()
        if http is not None:
            http.stop()
        if a.keep_tmp:
            print("bench: files kept in %s" % tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
