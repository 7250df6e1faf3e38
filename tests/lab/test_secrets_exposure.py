"""Secrets stay out of process arguments, log files and the reach of local users (issue 18, item 3)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import astuple
from pathlib import Path

import pytest

from pgha.lab.control import Lab
from pgha.secrets import load_secrets

pytestmark = pytest.mark.lab

PGHA = str(Path(sys.executable).parent / "pgha")


def secret_values(lab: Lab) -> list[str]:
    secrets = load_secrets(lab.state)
    return [v for v in astuple(secrets) if v != secrets.restapi_username]


class ArgvWatch:
    """Every command line on the machine, sampled from /proc as fast as a thread can."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    try:
                        raw = Path(entry.path, "cmdline").read_bytes()
                    except OSError:
                        continue
                    self.seen.add(raw.replace(b"\0", b" ").decode(errors="replace"))

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_no_password_on_any_command_line(lab: Lab, lab_spec_file: str) -> None:
    spec = ["--spec", lab_spec_file]
    slow = "select pg_sleep(0.3), 1"  # psql lives long enough to be sampled many times
    with ArgvWatch() as watch:
        dsn = run([PGHA, "dsn", "--vip", *spec]).strip()
        assert "passfile=" in dsn and "password=" not in dsn
        # The README's way, and pgha's own.
        assert run(["sh", "-c", f'psql "$({PGHA} dsn --vip --spec {lab_spec_file})" -Atc "{slow}"']).split("|")[-1] \
            .strip() == "1"
        assert run([PGHA, "psql", *spec, "--", "-Atc", slow]).split("|")[-1].strip() == "1"
        assert run([PGHA, "psql", "--node", "postgres-02", *spec, "-Atc", "select pg_is_in_recovery()"]) \
            .strip() == "t"
        run([PGHA, "status", *spec])
        run([PGHA, "verify", *spec])
    psqls = [a for a in watch.seen if "psql" in a and "passfile=" in a]
    assert len(psqls) >= 2, "the watch never saw psql running: it proves nothing"
    leaks = [(a, s) for a in watch.seen for s in secret_values(lab) if s in a]
    assert leaks == []


def test_dsn_with_password_only_when_asked(lab: Lab, lab_spec_file: str) -> None:
    dsn = run([PGHA, "dsn", "--vip", "--with-password", "--spec", lab_spec_file])
    assert f"password={load_secrets(lab.state).app_password}" in dsn
    passfile = lab.state.passfile
    assert passfile.stat().st_mode & 0o777 == 0o600


def log_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and (path.parent.name in ("logs", "log") or path.suffix == ".log"):
            yield path


def test_no_secret_in_any_log_file(lab: Lab) -> None:
    logs = list(log_files(lab.state.root))
    assert any(p.name.endswith("patroni.log") for p in logs)
    leaks = [(str(p), i) for p in logs for i, s in enumerate(secret_values(lab)) if s.encode() in p.read_bytes()]
    assert leaks == []
    assert lab.state.logs.stat().st_mode & 0o777 == 0o700
    modes = {str(p): oct(p.stat().st_mode & 0o777) for p in lab.state.logs.iterdir()}
    assert set(modes.values()) == {"0o600"}, modes


READER = """
import os, sys
for path in sys.stdin.read().split("\\0"):
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            os.listdir(path)
        else:
            os.close(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK))
    except OSError:
        continue
    print(path)
"""


def test_an_unprivileged_user_reads_nothing_of_the_state(lab: Lab) -> None:
    """`nobody` tries to list every directory and open every file under the state directory."""
    paths = [str(lab.state.root), *(str(p) for p in lab.state.root.rglob("*"))]
    assert len(paths) > 1000  # the data directories are there
    proc = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", READER],
                          input="\0".join(paths), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == []
    assert lab.state.root.stat().st_mode & 0o777 == 0o711
