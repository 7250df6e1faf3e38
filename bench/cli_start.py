"""Benchmark: what every `pgha` call pays before it does anything — `pgha --version` and `pgha --help`.

Each command is started N times (default 20) as a new process after one warm-up run; prints the wall
time's min / median / max. The goal is <= 0.3 s (the heavy libraries are imported by the commands that
use them, never at start-up). Never asserts a timing.  .venv/bin/python bench/cli_start.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

PGHA = str(Path(sys.executable).with_name("pgha"))


def wall(argv: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def main(runs: int) -> None:
    for args in (["--version"], ["--help"], ["lab", "--help"]):
        argv = [PGHA, *args]
        wall(argv)  # warm-up: the file cache
        times = sorted(wall(argv) for _ in range(runs))
        print(f"pgha {' '.join(args):12} min {times[0]:.3f} s  median {statistics.median(times):.3f} s  "
              f"max {times[-1]:.3f} s  ({runs} runs)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
