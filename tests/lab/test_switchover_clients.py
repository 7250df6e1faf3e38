"""Switchovers as a client of the VIP sees them: a new connection every 50 ms never lands on a read-only
server (SQLSTATE 25006), and `pgha switchover` returns soon after the new primary is routed; between two
of them, `pgha dsn --multi-host` skips a standby listed first."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass

import psycopg
import pytest

from pgha.cli import main
from pgha.lab.control import Lab
from pgha.ops import Operations
from pgha.probe import Credentials
from pgha.probe import pg as pg_probe

pytestmark = pytest.mark.lab

SWITCHOVERS = 10
TABLE = "pgha_switchover_clients"


@dataclass(frozen=True)
class Try:
    started: float
    ended: float
    server: str | None  # where the insert committed
    sqlstate: str | None
    error: str | None


class NewConnections:
    """Every 50 ms a new connection through the VIP that inserts one row and says on which server."""

    def __init__(self, lab: Lab) -> None:
        self.spec, self.creds = lab.spec, Credentials.of(lab.spec)
        self.tries: list[Try] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="new-connections", daemon=True)

    def _loop(self) -> None:
        host, port = str(self.spec.vip.address), self.spec.ports.postgresql
        while not self._stop.is_set():
            t = time.time()
            try:
                with pg_probe.connect(host, port, self.creds, connect_timeout=2) as conn:
                    row = conn.execute(f"insert into {TABLE} (server) values (inet_server_addr()) "
                                       "returning host(server)").fetchone()
                self.tries.append(Try(t, time.time(), row[0] if row else None, None, None))
            except psycopg.Error as exc:
                self.tries.append(Try(t, time.time(), None, exc.sqlstate, " ".join(str(exc).split())[:200]))
            self._stop.wait(0.05)

    def __enter__(self) -> NewConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_switchovers_never_route_a_new_connection_to_a_read_only_server(lab: Lab, lab_spec_file: str,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    creds = Credentials.of(lab.spec)
    ops = Operations(lab.spec, creds, lab.transport)
    pg_probe.query(str(lab.spec.vip.address), lab.spec.ports.postgresql, creds,
                   f"create table if not exists {TABLE} (at timestamptz default now(), server inet)")
    runs = []
    with NewConnections(lab) as client:
        for i in range(SWITCHOVERS):
            candidate = lab.spec.postgres_nodes[1 - i % 2]  # 02, 01, 02, ...: the seed's leader at the end
            ops.rejoined()  # the candidate (the last switchover's old leader) streams again
            if i == 1:
                _multi_host_dsn_finds_the_primary(lab, lab_spec_file, capsys)
            started = time.time()
            assert main(["switchover", "--candidate", candidate.name, "--force", "--spec", lab_spec_file]) == 0
            runs.append((started, time.time(), candidate))
            said = " ".join(capsys.readouterr().err.split())
            assert f"{candidate.member_name} is the leader (HAProxy routes to it)" in said, said
        time.sleep(1)  # the client's last tries, on the final leader
    ops.rejoined()
    read_only = [t for t in client.tries if t.sqlstate == "25006"]
    assert not read_only, f"{len(read_only)} new connections landed read-only: {read_only[:3]}"
    # `pgha switchover` returned soon after the first new connection committed on the new leader (Patroni's
    # own answer comes up to a second after the leader key moved).
    after_routed = []
    for (started, returned, candidate), (until, _, _) in zip(runs, [*runs[1:], (time.time(), 0, None)],
                                                              strict=True):
        first = next((t.ended for t in client.tries
                      if started < t.started < until and t.server == str(candidate.address)), None)
        assert first is not None, f"no new connection committed on {candidate.name} after its switchover"
        after_routed.append(round(returned - first, 2))
    # behaviour, not speed (bench/failover.py has the figures): it returns once routed, without waiting for
    # the old leader's rejoin (Patroni sleeps 2 s after releasing the key, then restarts it: ~10 s); a loaded
    # 2-core CI machine gave up to 4.5 s here, an idle one under 2 s
    assert max(after_routed) <= 6.0, after_routed
    assert sum(t.server is not None for t in client.tries) > SWITCHOVERS * 20  # the client wrote throughout


def _multi_host_dsn_finds_the_primary(lab: Lab, lab_spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    """postgres-02 leads, postgres-01 (first in the list) is a streaming standby: libpq skips it."""
    assert main(["dsn", "--multi-host", "--spec", lab_spec_file]) == 0
    dsn = capsys.readouterr().out.strip()
    hosts = ",".join(str(n.address) for n in lab.spec.postgres_nodes)
    assert f"host={hosts} " in dsn and "target_session_attrs=read-write" in dsn and "sslmode=verify-full" in dsn
    out = subprocess.run(["psql", dsn, "-Atc", "select host(inet_server_addr()), pg_is_in_recovery()"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{lab.spec.node('postgres-02').address}|f"
