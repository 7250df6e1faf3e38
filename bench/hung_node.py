"""Benchmark: `pgha status`, `verify` and `doctor` while one PostgreSQL node hangs.

The node's Patroni and its postmaster's process tree are stopped (SIGSTOP, :mod:`pgha.lab.freeze`):
its ports still accept TCP, nothing answers. Prints the median of N runs (default 3) of each command,
as a new process (what a person waits for, interpreter start included) and in-process (pgha's own
work), healthy and hung. Never asserts a timing. Run as root on a running lab:
    .venv/bin/python bench/hung_node.py SPEC_FILE [NODE] [N]
"""

from __future__ import annotations

import contextlib
import io
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pgha import spec as spec_mod
from pgha.cli import main as pgha_main
from pgha.lab.control import Lab
from pgha.lab.freeze import frozen

COMMANDS = ("status", "verify", "doctor")
PGHA = str(Path(sys.executable).parent / "pgha")


def in_process(command: str, spec_file: str) -> float:
    t0 = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        pgha_main([command, "--spec", spec_file, "--format", "json"])
    return time.monotonic() - t0


def new_process(command: str, spec_file: str) -> float:
    t0 = time.monotonic()
    subprocess.run([PGHA, command, "--spec", spec_file, "--format", "json"], capture_output=True, check=False)
    return time.monotonic() - t0


def measure(spec_file: str, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for _ in range(runs):
        for command in COMMANDS:
            out.setdefault(f"{command} (process)", []).append(new_process(command, spec_file))
            out.setdefault(f"{command} (in-process)", []).append(in_process(command, spec_file))
    return out


def main(spec_file: str, node: str, runs: int) -> None:
    lab = Lab(spec_mod.load(spec_file))
    healthy = measure(spec_file, runs)
    with frozen(lab, node):
        time.sleep(0.5)
        hung = measure(spec_file, runs)
    print(f"{'command':24} {'healthy':>9} {'hung':>9}   (median of {runs}, seconds; {node} frozen)")
    for key in healthy:
        print(f"{key:24} {statistics.median(healthy[key]):9.2f} {statistics.median(hung[key]):9.2f}   "
              f"hung runs: {', '.join(f'{t:.2f}' for t in hung[key])}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1] if len(args) > 1 else "postgres-03", int(args[2]) if len(args) > 2 else 3)
