"""Benchmark: a power cut of the leader's machine on six real Debian 12 machines (systemd-nspawn).

Boots the machines, builds the offline bundle, runs `pgha deploy`, then N power-cut drills (sync on,
through the VIP) for each case: etcd's leader moved off the leader's machine first (what pgha keeps) and,
with ``--etcd-leader-runs``, moved onto it (the case pgha avoids). Prints, per case, the median and worst
client write outage and time to a new leader, acknowledged writes lost and unsafe runs. Never asserts a
timing. Run as root, with no other nspawn run on its subnet (the deploy tests' harness, tests/deploy/nspawn.py;
PGHA_NSPAWN_* pick another subnet/bridge/prefix/run):

    .venv/bin/python bench/power_cut_servers.py [--profile seed|fast] [--runs 5] [--etcd-leader-runs 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the deploy tests' machine harness

from tests.deploy.nspawn import SIX, WORK, Machines, spec_data  # noqa: E402
from tests.deploy.power import PowerTransport, power_cut  # noqa: E402

from pgha import spec as spec_mod  # noqa: E402
from pgha.drill.runner import DrillResult, DrillRunner  # noqa: E402
from pgha.errors import PghaError  # noqa: E402
from pgha.ops import Operations  # noqa: E402
from pgha.probe import Credentials  # noqa: E402
from pgha.target import ServerTarget  # noqa: E402

PGHA = str(Path(sys.executable).parent / "pgha")


def figures(values: list[float | None]) -> str:
    seen = [v for v in values if v is not None]
    return f"{statistics.median(seen):6.2f} / {max(seen):6.2f}" if seen else "   n/a          "


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so the machines are torn down on the way out


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=[p.value for p in spec_mod.Profile], default="seed")
    parser.add_argument("--runs", type=int, default=5, help="runs with etcd's leader elsewhere")
    parser.add_argument("--etcd-leader-runs", type=int, default=0, help="runs with etcd's leader on the machine")
    args = parser.parse_args(argv)
    spec_mod.STATE_ROOT = WORK  # the machines' state directories live under it (also for `pgha` subprocesses)
    os.environ["PGHA_STATE_ROOT"] = str(WORK)
    ms = Machines(SIX, run=os.environ.get("PGHA_NSPAWN_RUN", "bench"))
    results: dict[str, list[DrillResult]] = {"not etcd leader": [], "etcd leader": []}
    failures: list[str] = []
    try:
        t0 = time.monotonic()
        ms.up()
        print(f"six machines up in {time.monotonic() - t0:.1f} s", flush=True)
        data = spec_data(ms, name="pgha-bench-srv")
        data["profile"] = args.profile
        spec_file = Path(tempfile.mkdtemp(prefix="pgha-bench-")) / "cluster.yml"
        spec_file.write_text(spec_mod.dump(data))
        for step in (("bundle", "build"), ("deploy",)):
            t0 = time.monotonic()
            res = subprocess.run([PGHA, *step, "--spec", str(spec_file)], capture_output=True, text=True, timeout=1800)
            if res.returncode != 0:
                raise SystemExit(f"pgha {' '.join(step)} failed:\n{res.stderr[-3000:]}")
            print(f"pgha {' '.join(step)} in {time.monotonic() - t0:.1f} s", flush=True)
        spec = spec_mod.load(spec_file)
        creds = Credentials.of(spec)
        plan = [False] * args.runs + [True] * args.etcd_leader_runs
        with PowerTransport(spec, ms) as t:
            Operations(spec, creds, t).set_sync(True, False)
            runner = DrillRunner(ServerTarget(spec, t), creds)
            for i, led in enumerate(plan):
                case = "etcd leader" if led else "not etcd leader"
                try:
                    r = runner.run(power_cut(ms, led), sync=True)
                except PghaError as exc:  # a failed run is a figure too
                    failures.append(f"{case} {i + 1}: {exc}\n{exc.details or ''}")
                    print(f"[{args.profile}] run {i + 1}: FAILED {failures[-1]}", flush=True)
                    continue
                results[case].append(r)
                print(f"[{args.profile}] run {i + 1} ({case}, led etcd {r.old_leader_led_etcd}): outage "
                      f"{r.write_outage_s} s, new leader {r.new_leader_after_s} s, lost {r.lost_acked_writes}, "
                      f"VIP x2 {r.vip_on_two_hosts}, safe {r.safe}, healthy at end {r.healthy_at_end}", flush=True)
    finally:
        done = ms.teardown()
        print(f"teardown: {len(done)} steps; left behind: {ms.leftovers() or 'nothing'}", flush=True)
    print(f"\npower cut of the leader's machine, {args.profile} profile, sync on — median / worst (s, from the cut)")
    print(f"  {'case':<18} {'runs':>4} {'write outage':>16} {'new leader':>16} {'lost acked':>10} {'unsafe':>6}")
    for case, rs in results.items():
        if rs:
            print(f"  {case:<18} {len(rs):>4} {figures([r.write_outage_s for r in rs]):>16} "
                  f"{figures([r.new_leader_after_s for r in rs]):>16} "
                  f"{sum(r.lost_acked_writes for r in rs):>10} {sum(not r.safe for r in rs):>6}")
    for f in failures:
        print(f"FAILED: {f}")


if __name__ == "__main__":
    main(sys.argv[1:])
