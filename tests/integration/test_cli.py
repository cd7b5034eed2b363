"""The command line: -c, -t, -T (round trip), -l, -V, -h, usage errors,
and bad configuration input that must end in exit 1 with a message."""

import os
import re
import subprocess

import pytest

from conftest import ACCEPTD

SRCDIR = os.environ.get("ACCEPTD_SRCDIR", ".")
SHIPPED = os.path.join(SRCDIR, "conf", "acceptd.conf")

pytestmark = pytest.mark.skipif(
    not (ACCEPTD and os.access(ACCEPTD, os.X_OK)),
    reason="set ACCEPTD to the built binary")

GOOD = """
log_level = "notice";
listeners = (
  { name = "web"; listen = [ "127.0.0.1:8080", "[::1]:8080" ];
    backends = [ "127.0.0.1:9001", "unix:/run/app.sock" ];
    idle_timeout = "2m"; buffer_size = "128k"; }
);
"""


def run(*args, timeout=20):
    return subprocess.run([ACCEPTD, *args], capture_output=True, text=True,
                          timeout=timeout)


def write(tmp_path, text, name="acceptd.conf", mode="w"):
    p = tmp_path / name
    with open(p, mode) as f:
        f.write(text)
    return str(p)


def test_test_option_accepts_the_shipped_configuration():
    r = run("-t", "-c", SHIPPED)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "configuration OK"


def test_test_option_long_form(tmp_path):
    r = run("--test", "--config=" + write(tmp_path, GOOD))
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout


def test_dump_round_trips(tmp_path):
    first = run("-T", "-c", write(tmp_path, GOOD))
    assert first.returncode == 0, first.stderr
    # Defaults are filled into the listener.
    assert 'connect_timeout = "3s";' in first.stdout
    assert 'idle_timeout = "2m";' in first.stdout
    assert 'buffer_size = "128k";' in first.stdout
    assert 'log_level = "notice";' in first.stdout
    again = write(tmp_path, first.stdout, name="dumped.conf")
    assert run("-t", "-c", again).returncode == 0
    second = run("--dump", "-c", again)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout


def test_invalid_configuration_lists_every_error_with_file_and_line(tmp_path):
    path = write(tmp_path, """log_level = "loud";
listeners = (
  { name = "a"; listen = "127.0.0.1:1"; backends = [ "127.0.0.1:2" ];
    retries = -1;
    conect_timeout = "3s"; }
);
""")
    r = run("-t", "-c", path)
    assert r.returncode == 1
    assert r.stdout == ""
    errs = r.stderr.strip().splitlines()
    assert any(e.startswith(path + ":1: ") and "'log_level'" in e
               and "expected" in e for e in errs), errs
    assert any(e.startswith(path + ":4: ") and "'retries'" in e
               for e in errs), errs
    assert any(e.startswith(path + ":5: ") and "conect_timeout" in e
               and "did you mean 'connect_timeout'" in e for e in errs), errs


def test_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, 'log_level = "info"\nlisteners = ( { name = ; } );\n')
    r = run("-t", "-c", path)
    assert r.returncode == 1
    assert r.stderr.startswith(path + ":"), r.stderr


def test_missing_file_is_reported_with_its_path(tmp_path):
    path = str(tmp_path / "nope.conf")
    r = run("-t", "-c", path)
    assert r.returncode == 1
    assert path in r.stderr and "No such file" in r.stderr


def test_directory_as_configuration_is_an_error(tmp_path):
    r = run("-t", "-c", str(tmp_path))
    assert r.returncode == 1
    assert str(tmp_path) in r.stderr


def test_include_of_a_directory_is_an_error_not_a_crash(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write(tmp_path, '@include "sub"\n' + GOOD)
    r = run("-t", "-c", path)
    assert r.returncode == 1
    assert path + ":1:" in r.stderr, r.stderr


def test_input_that_makes_the_parser_exit_still_gets_exit_1(tmp_path):
    # stat() calls this a regular file, but reading it fails: libconfig's
    # scanner exits the process. The check in a child process turns that
    # into an error message.
    path = write(tmp_path, '@include "' + "../" * 12 + 'proc/self/mem"\n' + GOOD)
    r = run("-t", "-c", path)
    assert r.returncode == 1
    assert path in r.stderr and "could not be read" in r.stderr, r.stderr


def test_binary_garbage_is_an_error(tmp_path):
    path = write(tmp_path, bytes(range(256)) * 64, mode="wb")
    r = run("-t", "-c", path)
    assert r.returncode == 1
    assert r.stderr.startswith(path + ":"), r.stderr[:200]


def test_huge_integer_is_refused_not_truncated(tmp_path):
    path = write(tmp_path, GOOD.replace('idle_timeout = "2m";',
                                        "retries = 5000000000;"))
    r = run("-t", "-c", path)
    assert r.returncode == 1
    assert "'retries'" in r.stderr and "5000000000" in r.stderr, r.stderr


def test_very_long_string_is_refused(tmp_path):
    path = write(tmp_path, GOOD.replace('"web"', '"' + "w" * 100000 + '"'))
    r = run("-t", "-c", path)
    assert r.returncode == 1
    assert "'name'" in r.stderr


def test_deep_nesting_is_an_error_not_a_crash(tmp_path):
    path = write(tmp_path, "x = " + "(" * 5000 + ")" * 5000 + ";\n" + GOOD)
    r = run("-t", "-c", path)
    assert r.returncode == 1
    assert path + ":" in r.stderr


def test_version():
    r = run("-V")
    assert r.returncode == 0
    assert r.stdout.startswith("acceptd ")
    assert run("--version").stdout == r.stdout


def test_help_lists_every_option():
    r = run("-h")
    assert r.returncode == 0
    for opt in ("--config", "--test", "--dump", "--log-level", "--version",
                "--help"):
        assert opt in r.stdout


def test_unknown_option_is_a_usage_error():
    r = run("--frobnicate")
    assert r.returncode == 2
    assert "usage:" in r.stderr


def test_stray_argument_is_a_usage_error():
    r = run("extra")
    assert r.returncode == 2
    assert "usage:" in r.stderr


def test_bad_log_level_is_a_usage_error(tmp_path):
    r = run("-l", "chatty", "-t", "-c", write(tmp_path, GOOD))
    assert r.returncode == 2
    assert "chatty" in r.stderr


def test_default_configuration_path_is_sysconfdir():
    r = run("-h")
    sysconfdir = os.environ.get("ACCEPTD_SYSCONFDIR")
    if sysconfdir:
        assert os.path.join(sysconfdir, "acceptd.conf") in r.stdout


def _serve_once(tmp_path, backends, *args):
    """Start acceptd with extra args, relay one connection, stop it; return
    its stderr."""
    import signal
    import socket
    import time
    from conftest import conf_text, free_port
    echo = backends.echo()
    port = free_port()
    conf = write(tmp_path, conf_text(
        [{"name": "t", "listen": ["127.0.0.1:%d" % port],
          "backends": [echo.text]}], log_level="info"))
    log = tmp_path / "stderr"
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    with open(log, "wb") as f:
        p = subprocess.Popen([ACCEPTD, "-c", conf, *args], stdout=f,
                             stderr=f, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), 1) as c:
                    c.sendall(b"x")
                    assert c.recv(1) == b"x"
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return log.read_text()


def test_log_level_option_overrides_the_file(tmp_path, backends):
    assert " notice: " in _serve_once(tmp_path, backends)
    quiet = _serve_once(tmp_path, backends, "-l", "error")
    # Connection lines follow log_connections alone; nothing else may show.
    other = [l for l in quiet.splitlines() if " conn " not in l]
    assert other == [], quiet
    assert re.search(r" conn id=\d+ listener=t ", quiet), quiet
