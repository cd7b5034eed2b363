"""System test: acceptd as a service of a real systemd, booted as PID 1 in
throwaway namespaces by tests/with-systemd (the host is left untouched).
The units and man pages are made from their templates for /usr and /etc
and installed into the container with the built binary; insystemd.py then
drives systemctl and journalctl inside. Skipped where the container
cannot boot (no root, no cgroup2, no namespaces)."""

import os
import subprocess

import pytest

import conftest
import lifecycle

SRCDIR = os.environ.get("ACCEPTD_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
WITH_SYSTEMD = os.path.join(SRCDIR, "tests", "with-systemd")
HERE = os.path.dirname(os.path.abspath(__file__))

SETUP = r"""
set -eu
edit() {
	sed -e 's|@sbindir@|/usr/sbin|g' -e 's|@sysconfdir@|/etc|g' \
	    -e 's|@localstatedir@|/var|g' -e 's|@runstatedir@|/run|g' \
	    -e 's|@PACKAGE_VERSION@|test|g' "$1"
}
install -D -m755 "$ACCEPTD" "$R/usr/sbin/acceptd"
mkdir -p "$R/lib/systemd/system" "$R/usr/share/man/man8" \
    "$R/usr/share/man/man5" "$R/opt/acceptd-test"
edit "$SRC/systemd/acceptd.service.in" > "$R/lib/systemd/system/acceptd.service"
edit "$SRC/systemd/acceptd.socket.in" > "$R/lib/systemd/system/acceptd.socket"
edit "$SRC/man/acceptd.8.in" > "$R/usr/share/man/man8/acceptd.8"
edit "$SRC/man/acceptd.conf.5.in" > "$R/usr/share/man/man5/acceptd.conf.5"
install -m644 "$HERE/insystemd.py" "$R/opt/acceptd-test/insystemd.py"
rm -f "$R/etc/acceptd.conf"
"""

pytestmark = pytest.mark.skipif(
    not lifecycle.NOTIFIES,
    reason="built without libsystemd: acceptd cannot be a Type=notify "
    "service")


def test_acceptd_as_a_systemd_service(tmp_path):
    if not conftest.ACCEPTD or not os.access(conftest.ACCEPTD, os.X_OK):
        pytest.skip("set ACCEPTD to the built binary")
    if os.geteuid() != 0:
        pytest.skip("the system test boots systemd in namespaces: needs "
                    "root")
    setup = tmp_path / "setup.sh"
    setup.write_text(SETUP)
    env = dict(os.environ, SRC=SRCDIR, HERE=HERE)
    timeout = 600 if conftest.SANITIZERS else 240
    r = subprocess.run(
        [WITH_SYSTEMD, str(setup), "--", "/usr/bin/python3", "-u",
         "/opt/acceptd-test/insystemd.py"],
        capture_output=True, text=True, timeout=timeout, env=env)
    out = r.stdout + r.stderr
    if r.returncode == 125 and "with-systemd:" in r.stderr:
        pytest.skip("cannot boot systemd in namespaces here: "
                    + r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, out
    assert "insystemd: all steps passed" in out, out
