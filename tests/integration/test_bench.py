"""The bench scripts run end to end on a tiny setting.

No timing figure is asserted here: the checks are that every step ran,
moved data through acceptd and the direct path, and held every idle
connection it opened.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

SRCDIR = os.environ.get("ACCEPTD_SRCDIR",
                        os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.path.join(SRCDIR, "bench")
QUICK_SCENARIOS = ["tput1", "cps", "keepalive", "idle"]
IDLE = 50


def need(*progs):
    """Skip unless every program is installed."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [p for p in progs if shutil.which(p, path=path) is None]
    if missing:
        pytest.skip("bench tools not installed: %s (./bootstrap --bench "
                    "installs them)" % ", ".join(missing))


def acceptd_args():
    """--acceptd pointing at the binary under test, when it is known."""
    acceptd = os.environ.get("ACCEPTD")
    return ["--acceptd", acceptd] if acceptd else []


def run_bench(script, *args, timeout=240):
    """Run a bench script on the binary under test; return its result."""
    return subprocess.run(
        [sys.executable, os.path.join(BENCH, script)] + list(args) +
        acceptd_args(), capture_output=True, text=True, timeout=timeout)


def test_bench_quick_runs_direct_and_acceptd(tmp_path):
    need("iperf3", "wrk", "nginx")
    js = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    r = run_bench("run.py", "--quick", "--only", "direct,acceptd",
                  "--idle-conns", str(IDLE),
                  "--scenarios", ",".join(QUICK_SCENARIOS),
                  "--json", str(js), "--out", str(md))
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(js.read_text())
    assert data["targets"] == ["direct", "acceptd"]
    res = data["results"]
    for target in ("direct", "acceptd"):
        tput = res["tput1"][target][0]
        assert tput["bytes"] > 0
        for scn in ("cps", "keepalive"):
            w = res[scn][target][0]
            assert w["requests"] > 0
            assert w["errors"] * 100 <= w["requests"]
        assert res["idle"][target][0]["held"] == IDLE
    # Proxy-side readings exist for acceptd only.
    assert "cpu_s_per_gb" in res["tput1"]["acceptd"][0]
    assert "cpu_us_per_req" in res["cps"]["acceptd"][0]
    assert "rss_delta" in res["idle"]["acceptd"][0]
    assert "cpu_s_per_gb" not in res["tput1"]["direct"][0]
    text = md.read_text()
    assert text == r.stdout
    for title in ("### Throughput", "### New connections",
                  "### Keep-alive requests", "### Idle connections"):
        assert title in text
    assert "\n| acceptd | " in text and "\n| direct | " in text


def test_bench_callgrind_counts_instructions(tmp_path):
    need("valgrind")
    if os.environ.get("ACCEPTD_SANITIZERS"):
        pytest.skip("valgrind cannot run a sanitizer build")
    js = tmp_path / "callgrind.json"
    r = run_bench("callgrind.py", "--warmup", "2", "--count", "5",
                  "--repeat", "1", "--json", str(js))
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(js.read_text())
    run = data["runs"][0]
    assert run["total"] > run["warmup_total"] > 0
    assert run["per_connection"] > 0
    assert "instructions (Ir) per proxied connection" in r.stdout


def test_bench_heap_lists_bytes_per_idle_connection(tmp_path):
    need("valgrind", "vgdb")
    if os.environ.get("ACCEPTD_SANITIZERS"):
        pytest.skip("valgrind cannot run a sanitizer build")
    js = tmp_path / "heap.json"
    r = run_bench("heap.py", "--conns", "20", "--json", str(js))
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(js.read_text())
    assert data["conns"] == 20
    assert data["heap_per_conn"] > 0
    assert any(s["bytes"] > 0 for s in data["sites"])
    assert "heap bytes per connection" in r.stdout


def test_bench_syscalls_counts_per_mb_and_per_connection(tmp_path):
    need("perf", "iperf3")
    js = tmp_path / "syscalls.json"
    r = run_bench("syscalls.py", "--only", "acceptd", "--seconds", "1",
                  "--conns", "20", "--json", str(js))
    if r.returncode != 0 and "no syscall tracepoints" in r.stderr:
        pytest.skip("perf cannot count syscall tracepoints here")
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(js.read_text())["acceptd"]
    assert data["bulk_bytes"] > 0 and data["conns"] == 20
    assert data["bulk"]["total"] > 0
    # Every proxied connection is accepted once.
    assert data["short"]["accept4"] + data["short"].get("accept", 0) >= 20
    assert "\n| acceptd | " in r.stdout


def test_bench_profile_quick_cps(tmp_path):
    need("perf", "wrk", "nginx")
    js = tmp_path / "profile.json"
    out = tmp_path / "profile"
    r = run_bench("cpuprofile.py", "--quick", "--loads", "cps",
                  "--out", str(out), "--json", str(js), timeout=120)
    for why in ("perf cannot record here", "no syscall tracepoints"):
        if r.returncode != 0 and why in r.stderr:
            pytest.skip("perf cannot profile here: %s" % why)
    assert r.returncode == 0, r.stdout + r.stderr
    text = r.stdout
    for section in ("## acceptd CPU profile (perf)", "### cps: wrk",
                    "- rate: ", "- acceptd CPU: ", "- syscalls per conn: ",
                    "- CPU by object: ", "Top 10 functions, self time",
                    "Kernel entry points, inclusive time"):
        assert section in text, text
    assert "### Notes" not in text
    assert (out / "profile.md").read_text() == text
    assert (out / "cps" / "perf.data").stat().st_size > 0
    data = json.loads(js.read_text())["loads"]["cps"]
    for mode in ("record", "stat"):
        assert data[mode]["requests"] > 0
        assert data[mode]["errors"] * 100 <= data[mode]["requests"]
    # Every proxied connection is accepted once.
    assert data["syscalls"]["accept4"] + data["syscalls"].get(
        "accept", 0) >= data["stat"]["requests"]
    assert "kernel" in data["objects"] and "acceptd" in data["objects"]
    assert 0 < len(data["self"]) <= 10
