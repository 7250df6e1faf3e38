"""Benchmark: pgha side by side with pg_auto_failover, the peer a user would pick instead, in one run.

Part 1 brings up a pgha lab as bench/failover.py does (spec `pgha-bench`, the default lab subnet) and runs
the `primary-crash` and `switchover` drills N times per profile, synchronous mode on. Part 2 sets up
pg_auto_failover 2.0 from the Debian packages on loopback — a monitor and three nodes, run as `postgres`,
TLS with self-signed certificates, trust authentication — and drills it the same way with the same prober
(pgha's `Writer`, ~20 commits/s) through a libpq multi-host string with target_session_attrs=read-write.

Prints, per scenario, the median and worst client-observed write outage of each (the longest gap between two
acknowledged commits from the last one before the fault on), the pgha/peer ratio of the medians,
acknowledged writes lost, when a new primary appeared, how long the old primary took to come back as a
replica, and the bring-up time of each. Never asserts a timing. Run as root, with no other lab on the
subnet and ports 6000-6003 free on 127.0.0.1:

    .venv/bin/python bench/peer.py [--runs 5] [--scenarios crash,switchover] [--profiles seed,fast]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import psycopg

from pgha import poll
from pgha import spec as spec_mod
from pgha.drill.prober import TABLE, Attempt, Writer
from pgha.drill.runner import DrillRunner, client_outage, scenario
from pgha.errors import PghaError
from pgha.lab.control import Lab
from pgha.lab.network import existing_namespaces
from pgha.probe import Credentials
from pgha.secrets import Secrets

PACKAGES = ("pg-auto-failover-cli", "postgresql-15-auto-failover")
PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"
WORK = Path("/var/lib/pgha-peer")
HOST = "127.0.0.1"
MONITOR_PORT = 6000
NODES = {"node1": 6001, "node2": 6002, "node3": 6003}
MONITOR_URI = f"postgres://autoctl_node@{HOST}:{MONITOR_PORT}/pg_auto_failover?sslmode=require"
PEER_DSN = (f"host={','.join(HOST for _ in NODES)} port={','.join(str(p) for p in NODES.values())} "
            "dbname=postgres user=postgres sslmode=require target_session_attrs=read-write connect_timeout=2")
PGHA_SCENARIO = {"crash": "primary-crash", "switchover": "switchover"}
NO_CREDENTIALS = Credentials("", "", "", Secrets("", "", "", ""))
"""The Writer's own credentials go unused when it is given a DSN: the DSN carries everything."""


def say(msg: str) -> None:
    print(msg, flush=True)


@dataclass(frozen=True)
class Run:
    """One drill's figures, the same for both tools; seconds from the fault."""

    tool: str
    scenario: str
    outage_s: float | None
    lost: int
    new_primary_s: float | None
    back_s: float | None
    """Old primary streaming again as a replica, from its restart (crash) or once writes recovered (switchover)."""
    failed: bool = False


def outage(acked: list[Attempt], t_fault: float) -> float | None:
    """The drills' own definition (pgha.drill.runner.client_outage), so both tools are judged alike."""
    return client_outage([a.ended for a in acked], t_fault)


def wait(what: str, check: Callable[[], Any], timeout: float) -> float:
    """Poll `check` every 0.2 s until it is truthy (pgha's one polling helper); return that moment."""
    poll.until(f"peer: {what}", lambda: (bool(check()), "not yet"), timeout, interval=0.2)
    return time.time()


# -- Part 1: pgha ---------------------------------------------------------------------------------------------

def run_pgha(profile: spec_mod.Profile, scenarios: list[str], runs: int, subnet: str | None
             ) -> tuple[float, list[Run]]:
    spec = spec_mod.parse(spec_mod.default_data(lab=True, subnet=subnet, name="pgha-bench", profile=profile),
                          "(bench)")
    lab = Lab(spec)
    theirs = sorted(ns for ns in existing_namespaces() if ns.startswith(lab.network.names.prefix))
    if theirs:
        raise SystemExit(f"a pgha-bench lab is running ({', '.join(theirs)}): another benchmark? Not touching "
                         "it. If it is a leftover of this script, `pgha lab down` it first.")
    lab._check_subnet_free()  # before lab.down(), which would otherwise clean up a lab that is not ours
    lab.down()
    results: list[Run] = []
    try:
        t0 = time.monotonic()
        lab.up()
        up_s = time.monotonic() - t0
        say(f"[pgha {profile.value}] lab up in {up_s:.1f} s")
        runner = DrillRunner(lab.target, Credentials.of(spec))
        for name in scenarios:
            for i in range(runs):
                try:
                    r = runner.run(scenario(PGHA_SCENARIO[name]), sync=True)
                except (PghaError, psycopg.Error) as exc:  # one failed drill is a figure, not the end of the run
                    say(f"[pgha {profile.value}] {name} {i + 1}/{runs}: FAILED: {exc}")
                    results.append(Run(f"pgha {profile.value}", name, None, 0, None, None, failed=True))
                    continue
                back = (round(r.healthy_after_s - r.restored_after_s, 2)
                        if r.healthy_after_s is not None and r.restored_after_s is not None else None)
                results.append(Run(f"pgha {profile.value}", name, r.write_outage_s, r.lost_acked_writes,
                                   r.new_leader_after_s, back))
                say(f"[pgha {profile.value}] {name} {i + 1}/{runs}: outage {r.write_outage_s} s, new leader "
                    f"{r.new_leader_after_s} s, lost {r.lost_acked_writes}, back streaming {back} s, "
                    f"safe {r.safe}")
    finally:
        lab.down()
    return up_s, results


# -- Part 2: pg_auto_failover -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeState:
    name: str
    port: int
    current: str
    assigned: str

    @property
    def settled(self) -> bool:
        return self.current == self.assigned


def ensure_packages() -> None:
    missing = [p for p in PACKAGES if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout != "install ok installed"]
    if missing:
        say(f"[peer] apt-get install {' '.join(missing)}")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


class Peer:
    """pg_auto_failover on loopback: a monitor and three nodes under WORK, run as `postgres`; every
    `pg_autoctl run` is a process started here, in its own process group, and tracked by pid."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[IO[bytes]] = []
        self.env = {"PATH": f"{Path(PG_CTL).parent}:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                    "HOME": str(work), "XDG_CONFIG_HOME": str(work / "config"),
                    "XDG_DATA_HOME": str(work / "share"), "XDG_RUNTIME_DIR": str(work / "run"),
                    # Unix sockets in the work dir, not /var/run/postgresql (shared with other clusters).
                    "PG_REGRESS_SOCK_DIR": str(work / "sock"), "PGHOST": str(work / "sock")}

    def pgdata(self, name: str) -> Path:
        return self.work / name

    # -- processes --------------------------------------------------------------------------------------------
    def setup_dir(self) -> None:
        if self.work.exists():
            raise SystemExit(f"{self.work} exists (a previous run's leftover?): remove it once nothing runs there")
        busy = [p for p in (MONITOR_PORT, *NODES.values()) if not port_free(p)]
        if busy:
            raise SystemExit(f"ports {busy} are in use on {HOST}: pg_auto_failover needs 6000-6003")
        for sub in ("", "config", "share", "run", "sock", "log"):
            (self.work / sub).mkdir(mode=0o700, exist_ok=True)
            shutil.chown(self.work / sub, "postgres", "postgres")

    def _argv(self, *args: str) -> list[str]:
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", "pg_autoctl", *args]

    def autoctl(self, *args: str, timeout: float = 300) -> str:
        """Run one pg_autoctl command as postgres to completion; its output, or a PghaError with its tail."""
        proc = subprocess.run(self._argv(*args), env=self.env, cwd=self.work, capture_output=True, text=True,
                              timeout=timeout)
        out = proc.stdout + proc.stderr
        with open(self.work / "log" / "commands.log", "a") as fh:
            fh.write(f"$ pg_autoctl {' '.join(args)}\n{out}\n")
        if proc.returncode != 0:
            tail = "\n".join(out.strip().splitlines()[-8:])
            raise PghaError(f"pg_autoctl {' '.join(args[:2])} failed (exit {proc.returncode}):\n{tail}")
        return out

    def start(self, name: str) -> None:
        """`pg_autoctl run` for one node in the background, in a process group of its own."""
        log = open(self.work / "log" / f"{name}.log", "ab")  # noqa: SIM115 - closed in close()
        self.logs.append(log)
        self.procs[name] = subprocess.Popen(self._argv("run", "--pgdata", str(self.pgdata(name))), env=self.env,
                                            cwd=self.work, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def postmaster(self, name: str) -> int | None:
        """The pid in the node's postmaster.pid, if that process is a postgres serving that directory."""
        try:
            pid = int((self.pgdata(name) / "postmaster.pid").read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return None
        return pid if cmdline[0].endswith(b"postgres") and str(self.pgdata(name)).encode() in cmdline else None

    def crash(self, name: str) -> str:
        """A node crash: SIGKILL to the node's pg_autoctl process group and to its postmaster; held down."""
        proc = self.procs.pop(name)
        pm = self.postmaster(name)
        os.killpg(proc.pid, signal.SIGKILL)
        if pm:
            with suppress(ProcessLookupError):
                os.kill(pm, signal.SIGKILL)
        proc.wait()
        self.drop_semaphore(name)
        return f"SIGKILL pg_autoctl (pgid {proc.pid}) and postmaster (pid {pm}) of {name}, held down"

    def drop_semaphore(self, name: str) -> None:
        """A SIGKILLed pg_autoctl leaves its log semaphore (a SysV array; its id is line 5 of its pid file)."""
        pidfile = self.work / "run" / "pg_autoctl" / self.pgdata(name).relative_to("/") / "pg_autoctl.pid"
        try:
            sem_id = pidfile.read_text().splitlines()[4].strip()
        except (OSError, IndexError):
            return
        if sem_id.isdigit():
            subprocess.run(["ipcrm", "-s", sem_id], capture_output=True)
        pidfile.unlink(missing_ok=True)

    def stop(self, names: list[str], timeout: float = 30) -> None:
        """SIGTERM to each process group (pg_autoctl stops its Postgres), then SIGKILL what is left."""
        procs = [self.procs.pop(n) for n in names if n in self.procs]
        for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
            for proc in procs:
                if proc.poll() is None:
                    with suppress(ProcessLookupError):
                        os.killpg(proc.pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(p.poll() is None for p in procs):
                time.sleep(0.1)
        for name in names:  # a pg_autoctl that had to be killed leaves its semaphore behind
            self.drop_semaphore(name)

    def close(self) -> None:
        """Stop everything started here, kill any postmaster left under the work dir, remove the work dir."""
        self.stop(list(self.procs))
        for name in ("monitor", *NODES):
            pm = self.postmaster(name)
            if pm:
                say(f"[peer] killing a postmaster left running: pid {pm} ({name})")
                with suppress(ProcessLookupError):
                    os.kill(pm, signal.SIGKILL)
        # A killed postmaster's children notice and exit; wait for every process still inside the work dir.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._inside():
            time.sleep(0.1)
        for pid in self._inside():
            say(f"[peer] killing pid {pid}, still running in {self.work}")
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for log in self.logs:
            log.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def _inside(self) -> list[int]:
        """Pids of processes whose working directory is in the work dir (Postgres chdirs to its PGDATA)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if Path(os.readlink(entry / "cwd")).is_relative_to(self.work):
                        pids.append(int(entry.name))
                except OSError:
                    pass
        return pids

    # -- the cluster as the monitor sees it ---------------------------------------------------------------
    def states(self) -> list[NodeState]:
        with psycopg.connect(f"host={HOST} port={MONITOR_PORT} dbname=pg_auto_failover user=autoctl_node "
                             "sslmode=require connect_timeout=2", autocommit=True) as conn:
            rows = conn.execute("select nodename, nodeport, current_group_state::text, "
                                "assigned_group_state::text from pgautofailover.current_state('default')")
            return [NodeState(*row) for row in rows.fetchall()]

    def primary(self, states: list[NodeState] | None = None) -> str | None:
        """The node in state primary (or wait_primary: promoted, waiting for a secondary), if exactly one."""
        ps = [s.name for s in states or self.states() if s.current in ("primary", "wait_primary")
              and s.assigned in ("primary", "wait_primary")]
        return ps[0] if len(ps) == 1 else None

    def is_settled(self, name: str, state: str) -> bool:
        return any(s.name == name and s.settled and s.current == state for s in self.states())

    def whole(self) -> bool:
        """One primary and two secondaries, each in the state the monitor assigned it."""
        states = self.states()
        roles = sorted(s.current for s in states if s.settled)
        return roles == ["primary", "secondary", "secondary"]

    def up(self) -> list[tuple[str, float]]:
        """Monitor, then the nodes one at a time (the first becomes primary, the others clone it)."""
        steps = []
        t = time.monotonic()
        self.autoctl("create", "monitor", "--pgdata", str(self.pgdata("monitor")), "--pgport", str(MONITOR_PORT),
                     "--hostname", HOST, "--listen", HOST, "--auth", "trust", "--ssl-self-signed",
                     "--pgctl", PG_CTL)
        self.start("monitor")
        wait("the monitor answering", lambda: self.states() is not None, 60)
        steps.append(("monitor", time.monotonic() - t))
        for i, (name, port) in enumerate(NODES.items()):
            t = time.monotonic()
            self.autoctl("create", "postgres", "--pgdata", str(self.pgdata(name)), "--pgport", str(port),
                         "--hostname", HOST, "--listen", HOST, "--name", name, "--dbname", "postgres",
                         "--monitor", MONITOR_URI, "--auth", "trust", "--ssl-self-signed", "--pgctl", PG_CTL)
            self.start(name)
            goal = "single" if i == 0 else "secondary"
            wait(f"{name} {goal}", partial(self.is_settled, name, goal), 300)
            steps.append((f"{name} ({'primary' if i == 0 else 'secondary: pg_basebackup'})",
                          time.monotonic() - t))
        wait("one primary and two secondaries", self.whole, 120)
        return steps

    # -- drills -----------------------------------------------------------------------------------------------
    def drill(self, name: str) -> Run:
        wait("one primary and two secondaries before the drill", self.whole, 300)
        old = self.primary()
        assert old is not None
        run = uuid.uuid4().hex[:10]
        writer = Writer(HOST, 0, NO_CREDENTIALS, run, dsn=PEER_DSN)
        watch = PrimaryWatch(self)
        writer.start()
        watch.start()
        crashed = False
        try:
            time.sleep(2.0)  # a steady stream of writes before the fault
            t0 = time.time()
            if name == "crash":
                action = self.crash(old)
                crashed = True
            else:
                self.autoctl("perform", "switchover", "--pgdata", str(self.pgdata("monitor")), timeout=120)
                action = "pg_autoctl perform switchover"
            wait("writes through the multi-host string after the fault, on a new primary",
                 lambda: watch.new_primary(old, t0) is not None
                 and any(a.ok and a.started > t0 for a in list(writer.attempts)), 180)
            if crashed:
                self.start(old)
                crashed = False
            t_restored = time.time()
            t_whole = wait(f"{old} back as a secondary", self.whole, 300)
            time.sleep(1.0)
        except (KeyboardInterrupt, SystemExit):
            crashed = False  # everything is torn down next: no point restarting the node
            raise
        finally:
            writer.stop()
            watch.stop()
            if crashed:  # a failure mid-drill must not leave the node down
                self.start(old)
        acked = writer.acked
        final = self.primary()
        if final is None:
            raise PghaError("peer: no primary at the end of the drill: lost writes not counted")
        with psycopg.connect(f"host={HOST} port={NODES[final]} dbname=postgres user=postgres sslmode=require",
                             autocommit=True) as conn:
            on_primary = {r[0] for r in conn.execute(f"select seq from {TABLE} where run = %s", (run,))}
        lost = sum(1 for a in acked if a.seq not in on_primary)
        t_new = watch.new_primary(old, t0)
        r = Run("peer", name, outage(acked, t0), lost, round(t_new - t0, 3) if t_new else None,
                round(t_whole - t_restored, 2))
        say(f"[peer] {name}: {action}: outage {r.outage_s} s, new primary {final} {r.new_primary_s} s, "
            f"lost {lost} of {len(acked)}, back as secondary {r.back_s} s")
        return r


class PrimaryWatch:
    """Polls the monitor every 0.25 s in the background: which nodes report themselves promoted."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.samples: list[tuple[float, frozenset[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="primary-watch", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                states = self.peer.states()
                self.samples.append((time.time(), frozenset(
                    s.name for s in states if s.current in ("wait_primary", "primary"))))
            except (psycopg.Error, OSError):  # the monitor not answering is data, not an error
                pass
            self._stop.wait(0.25)

    def new_primary(self, old: str, after: float) -> float | None:
        """When a node other than `old` first reported itself primary (or wait_primary) after `after`."""
        return next((t for t, names in list(self.samples) if t > after and names - {old}), None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def run_peer(scenarios: list[str], runs: int) -> tuple[float, list[tuple[str, float]], list[Run]]:
    ensure_packages()
    peer = Peer(WORK)
    peer.setup_dir()
    results: list[Run] = []
    try:
        t0 = time.monotonic()
        steps = peer.up()
        up_s = time.monotonic() - t0
        say(f"[peer] clients: {PEER_DSN}")
        say(f"[peer] monitor + 3 nodes up in {up_s:.1f} s ({', '.join(f'{n} {s:.1f} s' for n, s in steps)})")
        with psycopg.connect(PEER_DSN, autocommit=True) as conn:
            conn.execute(f"create table if not exists {TABLE} (run text, seq bigint, server inet, "
                         "at timestamptz default clock_timestamp(), primary key (run, seq))")
            ssn = conn.execute("show synchronous_standby_names").fetchone()
        say(f"[peer] on the primary: synchronous_standby_names = {ssn[0] if ssn else None!r}")
        for name in scenarios:
            for i in range(runs):
                try:
                    results.append(peer.drill(name))
                except (PghaError, psycopg.Error, subprocess.TimeoutExpired) as exc:
                    say(f"[peer] {name} {i + 1}/{runs}: FAILED: {exc}")
                    results.append(Run("peer", name, None, 0, None, None, failed=True))
    finally:
        peer.close()
    return up_s, steps, results


# -- the table ------------------------------------------------------------------------------------------------

def med(values: list[float | None]) -> float | None:
    seen = [v for v in values if v is not None]
    return statistics.median(seen) if seen else None


def figures(values: list[float | None]) -> str:
    seen = [v for v in values if v is not None]
    return f"{statistics.median(seen):6.2f} / {max(seen):6.2f}" if seen else "      n/a      "


def num(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "n/a"


def summary(runs: int, pgha: dict[str, list[Run]], peer: list[Run], scenarios: list[str]) -> None:
    print(f"\npgha vs pg_auto_failover 2.0 — client-observed write outage, median / worst over {runs} runs "
          "(seconds), synchronous replication on both")
    print(f"  {'scenario':<11} {'tool':<16} {'write outage':>16} {'pgha/peer':>9} {'lost acked':>10} "
          f"{'new primary':>11} {'old primary back':>16} {'failed':>6}")
    for name in scenarios:
        theirs = [r for r in peer if r.scenario == name]
        rows = [(tool, [r for r in rs if r.scenario == name]) for tool, rs in pgha.items()]
        for tool, rs in [*rows, ("pg_auto_failover", theirs)]:
            mine, ref = med([r.outage_s for r in rs]), med([r.outage_s for r in theirs])
            ratio = f"{mine / ref:.2f}" if rs is not theirs and mine is not None and ref else ""
            print(f"  {name:<11} {tool:<16} {figures([r.outage_s for r in rs]):>16} {ratio:>9} "
                  f"{sum(r.lost for r in rs):>10} {num(med([r.new_primary_s for r in rs])):>11} "
                  f"{num(med([r.back_s for r in rs])):>16} {sum(r.failed for r in rs):>6}")
    print("  (new primary: median seconds from the fault; old primary back: median seconds until it is a "
          "streaming replica again,\n   from its restart after a crash, from the first write on the new "
          "primary after a switchover)")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scenarios", default="crash,switchover")
    parser.add_argument("--profiles", default="seed,fast", help="pgha failover profiles to run")
    parser.add_argument("--subnet", help="the pgha lab's subnet (default: the lab default, 10.203.0.0/24)")
    parser.add_argument("--skip-pgha", action="store_true", help="measure pg_auto_failover only")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in PGHA_SCENARIO]
    if unknown:
        parser.error(f"unknown scenario {unknown} (one of: {', '.join(PGHA_SCENARIO)})")
    # Tear down on SIGTERM as on Ctrl-C (also when started in the background, where SIGINT comes ignored).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    pgha: dict[str, list[Run]] = {}
    ups: list[str] = []
    if not args.skip_pgha:
        for p in args.profiles.split(","):
            profile = spec_mod.Profile(p.strip())
            up_s, results = run_pgha(profile, scenarios, args.runs, args.subnet)
            pgha[f"pgha {profile.value}"] = results
            ups.append(f"pgha lab up ({profile.value}) {up_s:.1f} s")
    peer_up, steps, peer = run_peer(scenarios, args.runs)
    summary(args.runs, pgha, peer, scenarios)
    print(f"\nbring-up: {' · '.join(ups)}{' · ' if ups else ''}pg_auto_failover monitor + 3 nodes {peer_up:.1f} s "
          f"({', '.join(f'{n} {s:.1f} s' for n, s in steps)})")


if __name__ == "__main__":
    main(sys.argv[1:])
