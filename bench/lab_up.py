"""Benchmark: `pgha lab up` from nothing to a verified cluster, its memory, and `pgha lab down`.

Prints the median of N runs (default 3) with where the time goes by step. Never asserts a timing.
Run as root on a machine with the packages installed:  .venv/bin/python bench/lab_up.py [N]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from pgha import spec as spec_mod
from pgha.lab.control import Lab
from pgha.lab.network import existing_namespaces, ip
from pgha.probe import Credentials
from pgha.verify import verify


def lab_memory_kb(lab: Lab) -> tuple[int, int]:
    """(RSS, PSS) in kB of every process in the lab's namespaces plus its supervisord."""
    pids = []
    for ns in existing_namespaces():
        if ns.startswith(lab.network.names.prefix):
            pids += [int(p) for p in ip("netns", "pids", ns, check=False).stdout.split()]
    sup = lab.transport.supervisor.pid()
    if sup:
        pids.append(sup)
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def main(runs: int) -> None:
    # Another lab name and subnet (PGHA_TEST_LAB_NAME / _SUBNET, as the tests take them) keeps a bench run
    # off a lab that runs on the default subnet.
    spec = spec_mod.parse(spec_mod.default_data(lab=True, name=os.environ.get("PGHA_TEST_LAB_NAME", "pgha-bench"),
                                                subnet=os.environ.get("PGHA_TEST_LAB_SUBNET")), "(bench)")
    lab = Lab(spec)
    lab.down()
    totals, downs, mems, steps = [], [], [], defaultdict(list)
    for i in range(runs):
        t0 = time.monotonic()
        timings = lab.up()
        t_verify = time.monotonic()
        report = verify(spec, Credentials.of(spec), lab.transport)
        total = time.monotonic() - t0
        if not report.passed:
            raise SystemExit(f"run {i + 1}: verify failed: {[c.name for c in report.checks if not c.passed]}")
        for name, seconds in timings.steps:
            steps[name].append(seconds)
        steps["pgha verify"].append(time.monotonic() - t_verify)
        time.sleep(2)  # let the cluster settle before measuring memory
        mems.append(lab_memory_kb(lab))
        t1 = time.monotonic()
        lab.down()
        downs.append(time.monotonic() - t1)
        totals.append(total)
        print(f"run {i + 1}: zero-to-verified {total:.1f} s, down {downs[-1]:.1f} s, "
              f"RSS {mems[-1][0] / 1024:.0f} MB (PSS {mems[-1][1] / 1024:.0f} MB)", flush=True)
    med = statistics.median
    print(f"\nzero-to-verified: median {med(totals):.1f} s (min {min(totals):.1f}, max {max(totals):.1f}) "
          f"over {runs} runs")
    print(f"lab down: median {med(downs):.1f} s")
    print(f"memory of the running lab: RSS median {med(m[0] for m in mems) / 1024:.0f} MB, "
          f"PSS {med(m[1] for m in mems) / 1024:.0f} MB")
    print("\nwhere the time goes (median per step):")
    for name, values in steps.items():
        print(f"  {med(values):6.2f} s  {name}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
