"""Benchmark: what the VIP path (keepalived VIP -> HAProxy -> primary) costs, with pgbench.

Runs pgbench (TPC-B-like, TLS verify-full) alternately through the VIP and directly against the
primary, several rounds each, and prints the median TPS of each and their ratio. Never asserts.
Run as root with no other lab on 10.203.0.0/24:

    .venv/bin/python bench/datapath.py [--rounds 3] [--seconds 20] [--clients 4]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys

from pgha import spec as spec_mod
from pgha.lab.control import Lab
from pgha.ops import Operations
from pgha.probe import Credentials
from pgha.probe.pg import client_env


def pgbench(bin_dir: str, host: str, port: int, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([f"{bin_dir}/pgbench", "-h", host, "-p", str(port), *args],
                          env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"pgbench failed: {proc.stderr.strip()}")
    return proc.stdout


def tps(output: str) -> float:
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    if not match:
        raise SystemExit(f"no tps in pgbench output:\n{output}")
    return float(match.group(1))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--scale", type=int, default=10)
    args = parser.parse_args(argv)
    spec = spec_mod.parse(spec_mod.default_data(lab=True, name="pgha-bench"), "(bench)")
    lab = Lab(spec)
    lab.down()
    try:
        lab.up()
        creds = Credentials.of(spec)
        snap = Operations(spec, creds, lab.transport).snapshot()
        assert snap.leader is not None
        primary = str(spec.node(snap.leader.name).address)
        vip, port, bin_dir = str(spec.vip.address), spec.ports.postgresql, spec.pg_bin_dir
        env = client_env(spec, creds)  # the password in a passfile, never on pgbench's command line
        pgbench(bin_dir, vip, port, env, "-i", "-q", "-s", str(args.scale))
        run = ["-T", str(args.seconds), "-c", str(args.clients), "-j", "2", "-n"]
        results: dict[str, list[float]] = {"VIP": [], "direct": []}
        for i in range(args.rounds):
            for path, host in (("VIP", vip), ("direct", primary)):
                results[path].append(tps(pgbench(bin_dir, host, port, env, *run)))
                print(f"round {i + 1}: {path:<6} {results[path][-1]:8.1f} tps", flush=True)
    finally:
        lab.down()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\npgbench TPC-B-like, scale {args.scale}, {args.clients} clients, {args.seconds} s x {args.rounds} "
          f"rounds, TLS verify-full")
    print(f"  through the VIP (keepalived + HAProxy): median {med['VIP']:.1f} tps")
    print(f"  directly to the primary:                median {med['direct']:.1f} tps")
    print(f"  VIP / direct: {med['VIP'] / med['direct']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
