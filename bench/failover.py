"""Benchmark: each timed failure drill N times per failover profile, through the VIP.

For every (profile, scenario) prints the median and worst client-observed write outage, the time to a
new leader, acknowledged writes lost, and the time until the old primary streams again (full health).
A whole-node crash (``node-crash``, ``node-crash-etcd-leader``) is reported apart for when the dead node
led etcd and when it did not. Never asserts a timing. Run as root with no other lab on its subnet:

    .venv/bin/python bench/failover.py [--runs 5] [--profiles seed,fast] [--scenarios node-crash,...]
                                       [--via vip,multi-host] [--lab-name pgha-bench] [--subnet 10.203.0.0/24]

``--via``: the client's ways to the primary, each run in turn (the VIP through HAProxy; a libpq multi-host
string over the PostgreSQL nodes, no proxy); a case is reported per way when there are several.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from pgha import spec as spec_mod
from pgha.drill.runner import DrillResult, DrillRunner, scenario
from pgha.errors import PghaError
from pgha.lab.control import Lab
from pgha.probe import Credentials

TIMED = ("node-crash", "node-crash-etcd-leader", "primary-crash", "primary-stop", "switchover", "haproxy-down",
         "keepalived-down")


def case(r: DrillResult) -> str:
    """A whole-node crash is reported apart for when the dead node led etcd and when it did not; a client
    not through the VIP is named."""
    via = "" if r.via == "vip" else f" via {r.via}"
    if not r.scenario.startswith("node-crash"):
        return r.scenario + via
    return f"node-crash, {'etcd leader' if r.old_leader_led_etcd else 'not etcd leader'}{via}"


def figures(values: list[float | None]) -> str:
    seen = [v for v in values if v is not None]
    if not seen:
        return "   n/a          "
    return f"{statistics.median(seen):6.2f} / {max(seen):6.2f}"


def run_profile(profile: spec_mod.Profile, scenarios: list[str], runs: int, sync: bool,
                failures: list[str], lab_name: str, subnet: str | None, vias: list[str]) -> list[DrillResult]:
    spec = spec_mod.parse(spec_mod.default_data(lab=True, name=lab_name, subnet=subnet, profile=profile), "(bench)")
    lab = Lab(spec)
    lab.down()
    results: list[DrillResult] = []
    try:
        t0 = time.monotonic()
        lab.up()
        print(f"[{profile.value}] lab up in {time.monotonic() - t0:.1f} s", flush=True)
        runner = DrillRunner(lab.target, Credentials.of(spec))
        for name, via in ((n, v) for n in scenarios for v in vias):
            for i in range(runs):
                try:
                    r = runner.run(scenario(name), sync=sync, via=via)
                except PghaError as exc:  # a failed run is a figure too: count it, show why, go on
                    failures.append(f"{profile.value} {name} {i + 1}: {exc}\n{exc.details or ''}")
                    print(f"[{profile.value}] {name} {i + 1}/{runs}: FAILED {failures[-1]}", flush=True)
                    continue
                results.append(r)
                back = (round(r.healthy_after_s - r.restored_after_s, 2)
                        if r.healthy_after_s is not None and r.restored_after_s is not None else None)
                print(f"[{profile.value}] {case(r)} {i + 1}/{runs}: led etcd {r.old_leader_led_etcd}, "
                      f"outage {r.write_outage_s} s, new leader "
                      f"{r.new_leader_after_s} s, lost {r.lost_acked_writes}, back streaming {back} s after "
                      f"restore, VIP x2 {r.vip_on_two_hosts}, safe {r.safe}", flush=True)
    finally:
        lab.down()
    return results


def summary(profile: str, results: list[DrillResult]) -> None:
    print(f"\n{profile} profile — median / worst (seconds, from the fault)")
    print(f"  {'scenario':<30} {'runs':>4} {'write outage':>16} {'new leader':>16} {'old primary back':>16} "
          f"{'lost acked':>10} {'unsafe':>6}")
    for name in dict.fromkeys(case(r) for r in results):
        rs = [r for r in results if case(r) == name]
        back: list[float | None] = [r.healthy_after_s - r.restored_after_s
                                    if r.healthy_after_s is not None and r.restored_after_s is not None else None
                                    for r in rs]
        print(f"  {name:<30} {len(rs):>4} {figures([r.write_outage_s for r in rs]):>16} "
              f"{figures([r.new_leader_after_s for r in rs]):>16} {figures(back):>16} "
              f"{sum(r.lost_acked_writes for r in rs):>10} {sum(not r.safe for r in rs):>6}")
    for name in dict.fromkeys(case(r) for r in results if r.timeline):
        timed = [r for r in results if r.timeline and case(r) == name]
        print(f"  {name}: where the time goes, median of {len(timed)} (seconds since `pgha switchover` was called)")
        phases: dict[str, list[float]] = {}
        for r in timed:
            for phase, at in r.timeline:
                phases.setdefault(phase, []).append(at)
        for phase, ats in sorted(phases.items(), key=lambda kv: statistics.median(kv[1])):
            print(f"    +{statistics.median(ats):6.2f}  {phase} ({len(ats)} runs)")


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so the lab is taken down on the way out


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)  # also when started in the background, where SIGINT is ignored
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profiles", default="seed,fast")
    parser.add_argument("--scenarios", default=",".join(TIMED))
    parser.add_argument("--via", default="vip", help="vip, multi-host or both (comma-separated)")
    parser.add_argument("--async", dest="sync", action="store_false", help="synchronous_mode off")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--lab-name", default="pgha-bench")
    parser.add_argument("--subnet", default=None, help="the lab's subnet (default: the spec's, 10.203.0.0/24)")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    every: dict[str, list[dict[str, Any]]] = {}
    per_profile: dict[str, list[DrillResult]] = {}
    failures: list[str] = []
    for p in args.profiles.split(","):
        profile = spec_mod.Profile(p.strip())
        per_profile[profile.value] = run_profile(profile, scenarios, args.runs, args.sync, failures,
                                                 args.lab_name, args.subnet, args.via.split(","))
        every[profile.value] = [r.as_dict() for r in per_profile[profile.value]]
    for profile_name, results in per_profile.items():
        summary(profile_name, results)
    print(f"\nfailed runs: {len(failures)}" + "".join(f"\n  {f}" for f in failures))
    if args.json:
        args.json.write_text(json.dumps(every, indent=1, default=str))
        print(f"\nevery run: {args.json}")


if __name__ == "__main__":
    main(sys.argv[1:])
