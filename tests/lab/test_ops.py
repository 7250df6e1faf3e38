"""Day-2 operations against the real lab: each one's outcome, and each refusal's message."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgha import routing
from pgha.cli import main
from pgha.errors import UsageError
from pgha.lab.control import Lab
from pgha.ops import Operations
from pgha.probe import Credentials
from pgha.probe.snapshot import ClusterSnapshot

pytestmark = pytest.mark.lab


@pytest.fixture
def ops(lab: Lab) -> Operations:
    return Operations(lab.spec, Credentials.of(lab.spec), lab.transport, router=routing.for_target(lab.target))


def test_status_json_schema(lab: Lab, lab_spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--spec", lab_spec_file, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"leader", "paused", "members", "etcd", "haproxy", "vip"}
    assert data["leader"] == "postgresql-01" and data["paused"] is False
    assert [m["name"] for m in data["members"]] == ["postgresql-01", "postgresql-02", "postgresql-03"]
    for m in data["members"]:
        assert set(m) >= {"name", "node", "host", "role", "state", "timeline", "lag_mb"}
    assert [e["healthy"] for e in data["etcd"]] == [True, True, True]
    assert sum(e["is_leader"] for e in data["etcd"]) == 1
    assert {h["node"] for h in data["haproxy"]} == {"haproxy-01", "haproxy-02", "haproxy-03"}
    assert data["vip"] == {"address": str(lab.spec.vip.address), "holders": ["haproxy-01"]}


def test_switchover_to_candidate_and_back(ops: Operations) -> None:
    msg = ops.switchover("postgres-02")
    assert "postgresql-02 is the leader (HAProxy routes to it)" in msg
    snap = ops.snapshot()
    assert snap.leader is not None and snap.leader.name == "postgresql-02" and snap.routes_to("postgresql-02")
    snap = ops.rejoined()  # the switchover returns once clients are served; the old leader rejoins after
    old = next(m for m in snap.members if m.name == "postgresql-01")
    assert old.role == "replica" and old.state == "streaming"
    ops.switchover("postgresql-01")  # by member name this time
    snap = ops.rejoined()
    assert snap.leader is not None and snap.leader.name == "postgresql-01"
    assert all(m.state == "streaming" for m in snap.replicas)


def test_switchover_refusals(ops: Operations) -> None:
    with pytest.raises(UsageError, match="postgresql-01 is already the leader"):
        ops.switchover("postgres-01")
    with pytest.raises(UsageError, match="haproxy-02 is not a PostgreSQL node"):
        ops.switchover("haproxy-02")
    with pytest.raises(UsageError, match="no node named 'postgres-07'"):
        ops.switchover("postgres-07")


def test_pause_and_resume(ops: Operations) -> None:
    ops.set_pause(True)
    try:
        assert ops.snapshot().paused
        with pytest.raises(UsageError, match="paused"):
            ops.switchover("postgres-02")
    finally:
        ops.set_pause(False)
    assert not ops.snapshot().paused


def test_sync_on_and_off(ops: Operations) -> None:
    ops.set_sync(True)
    states = sorted(r[2] for r in ops.lag())
    assert states == ["async", "sync"] or states == ["quorum", "quorum"] or "sync" in states
    ops.set_sync(False)
    assert all(r[2] == "async" for r in ops.lag())


def test_config_set_and_refusal(ops: Operations) -> None:
    ops.set_config({"ttl": 20, "loop_wait": 2, "retry_timeout": 4})
    try:
        shown = ops.config()
        assert (shown["ttl"], shown["loop_wait"], shown["retry_timeout"]) == (20, 2, 4)
        with pytest.raises(UsageError, match="ttl: 10 is below Patroni's floor of 20"):
            ops.set_config({"ttl": 10})
        with pytest.raises(UsageError, match="exceeds ttl 20"):
            ops.set_config({"retry_timeout": 10})
    finally:
        ops.set_config({"ttl": 30, "loop_wait": 10, "retry_timeout": 10})
    assert ops.config()["ttl"] == 30


def test_reinit_rebuilds_a_replica(ops: Operations) -> None:
    msg = ops.reinit("postgres-03")
    assert "postgresql-03 rebuilt" in msg
    with pytest.raises(UsageError, match="is the leader"):
        ops.reinit("postgres-01")


def test_restart_one_node_restarts_its_postmaster_only(lab: Lab, ops: Operations) -> None:
    from pgha.probe import pg

    creds = Credentials.of(lab.spec)
    started = "select pg_postmaster_start_time()"
    before = {n.name: pg.query(str(n.address), lab.spec.ports.postgresql, creds, started)[0][0]
              for n in lab.spec.postgres_nodes}
    assert "restarted PostgreSQL on postgresql-02" in ops.restart(["postgres-02"])
    after = {n.name: pg.query(str(n.address), lab.spec.ports.postgresql, creds, started)[0][0]
             for n in lab.spec.postgres_nodes}
    assert after["postgres-02"] > before["postgres-02"]
    assert after["postgres-01"] == before["postgres-01"] and after["postgres-03"] == before["postgres-03"]
    assert ops.snapshot().healthy("postgresql-01")


def test_failover_to_a_candidate_then_back(ops: Operations) -> None:
    tl = ops.snapshot().leader.timeline  # type: ignore[union-attr]
    assert "postgresql-03 is the leader" in ops.failover("postgres-03")
    snap = ops.wait("old leader streaming", ClusterSnapshot.healthy, 90)
    assert snap.leader is not None and snap.leader.name == "postgresql-03" and snap.leader.timeline == tl + 1
    assert snap.routes_to("postgresql-03")  # HAProxy follows before failover returns
    ops.switchover("postgres-01")
    ops.rejoined()


def test_changing_commands_ask_on_a_terminal_and_refuse_without_one(lab: Lab, lab_spec_file: str,
                                                                     ops: Operations) -> None:
    import os
    import pty

    # Not a terminal (scripts): refused with the way out, nothing changes.
    proc = subprocess.run([str(Path(sys.executable).parent / "pgha"), "switchover", "--spec", lab_spec_file],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "confirm on a terminal, or pass --force" in proc.stderr
    # A terminal: the question is asked; answering no aborts.
    master, slave = pty.openpty()
    child = subprocess.Popen([str(Path(sys.executable).parent / "pgha"), "switchover", "--spec", lab_spec_file],
                             stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    while b"?" not in seen and time.monotonic() < deadline:
        seen += os.read(master, 1024)
    os.write(master, b"n\n")
    assert child.wait(timeout=30) != 0
    os.close(master)
    assert b"switch the primary over to the best replica?" in seen
    snap = ops.snapshot()
    assert snap.leader is not None and snap.leader.name == "postgresql-01"


def test_patronictl_list_and_switchover(lab: Lab, lab_spec_file: str) -> None:
    pgha = str(Path(sys.executable).parent / "pgha")
    out = subprocess.run([pgha, "ctl", "--spec", lab_spec_file, "--", "list"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "postgresql-01" in out.stdout and "Leader" in out.stdout
    out = subprocess.run([pgha, "ctl", "--spec", lab_spec_file, "--", "switchover", "--leader", "postgresql-01",
                          "--candidate", "postgresql-03", "--force"], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "Successfully switched over" in out.stdout
    ops = Operations(lab.spec, Credentials.of(lab.spec), lab.transport)
    ops.wait("old leader back", ClusterSnapshot.healthy, 60)
    ops.switchover("postgres-01")
    assert ops.rejoined().leader.name == "postgresql-01"  # type: ignore[union-attr]


def test_paused_cluster_does_not_fail_over_then_does_after_resume(lab: Lab, ops: Operations) -> None:
    from pgha.probe import pg

    ops.set_config({"ttl": 20, "loop_wait": 2, "retry_timeout": 4})  # shorter lease: a shorter test
    leader = lab.spec.node("postgres-01")
    try:
        ops.set_pause(True)
        lab.stop(leader.name, "patroni")  # paused: Patroni leaves PostgreSQL running when it stops
        time.sleep(20 + 6)  # past the leader lease
        creds = Credentials.of(lab.spec)
        for node in lab.spec.postgres_nodes[1:]:
            assert pg.query(str(node.address), lab.spec.ports.postgresql, creds,
                            "select pg_is_in_recovery()") == [(True,)], f"{node.name} was promoted while paused"
        assert all(not m.is_leader for m in ops.snapshot().members if m.name != "postgresql-01")
        ops.set_pause(False)
        snap = ops.wait("failover after resume", lambda s: s.leader is not None
                        and s.leader.name in ("postgresql-02", "postgresql-03"), 60)
        assert snap.leader is not None
    finally:
        lab.start(leader.name, "patroni")
    ops.wait("old leader back as a streaming replica", ClusterSnapshot.healthy, 90)
    ops.switchover("postgres-01")
    ops.rejoined()
    ops.set_config({"ttl": 30, "loop_wait": 10, "retry_timeout": 10})


def test_reset_refuses_while_a_client_uses_the_vip(lab: Lab, ops: Operations) -> None:
    from pgha.probe import pg

    with (pg.connect(str(lab.spec.vip.address), lab.spec.ports.postgresql, Credentials.of(lab.spec)),
          pytest.raises(UsageError, match=r"1 client\(s\) connected through the VIP")):
        ops.reset(lab.target.plans(), force=False)
    assert ops.snapshot().leader is not None  # nothing was touched


def test_reset_force_rebuilds_a_working_cluster(lab: Lab, ops: Operations) -> None:
    from pgha.probe import pg
    from pgha.render.etcd import parse_env
    from pgha.verify import verify

    creds = Credentials.of(lab.spec)
    vip, port = str(lab.spec.vip.address), lab.spec.ports.postgresql
    pg.query(vip, port, creds, "create table if not exists before_reset (x int)")
    msg = ops.reset(lab.target.plans(), force=True)
    assert "rebuilt" in msg
    snap = ops.wait("healthy after reset", ClusterSnapshot.healthy, 60)
    assert snap.leader is not None and snap.leader.name == "postgresql-01" and snap.leader.timeline == 1
    rows = pg.query(vip, port, creds, "select count(*) from pg_tables where tablename = 'before_reset'")
    assert rows == [(0,)]
    for plan in (p for p in lab.target.plans() if p.node.is_postgres):  # etcd members (a backup node has none)
        env = parse_env(Path(plan.layout.etcd_env).read_text())
        assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
    report = verify(lab.spec, creds, lab.transport)
    assert [c.name for c in report.checks if not c.passed] == []


def test_logs_of_a_node(lab: Lab, lab_spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", "--spec", lab_spec_file, "postgres-01", "-n", "20"]) == 0
    out = capsys.readouterr().out
    assert "==> postgres-01 etcd <==" in out and "==> postgres-01 patroni <==" in out
    assert len(out.splitlines()) > 4
    assert main(["logs", "--spec", lab_spec_file, "postgres-01", "haproxy"]) == 2
    assert "postgres-01 runs no haproxy" in capsys.readouterr().err


def test_waking_the_ha_loops_keeps_a_changed_loop_wait(lab: Lab, ops: Operations) -> None:
    """`config set loop_wait=3`, then what wakes Patroni's loops (the bring-up's and deploy's wait for
    streaming replicas) and a drill's preparation: loop_wait is still 3, and the drill reads it live."""
    from pgha.drill.runner import DrillRunner
    from pgha.orchestrate import Orchestrator

    ops.set_config({"loop_wait": 3})
    try:
        orch = Orchestrator(lab.spec, lab.transport, creds=ops.creds)
        orch.wait("streaming replicas", orch.replicas_streaming, 60, "patroni")  # wakes the loops first
        orch.prober.wake_up()
        live = ops.snapshot().config
        assert live is not None and live.loop_wait == 3
        runner = DrillRunner(lab.target, ops.creds, ops=ops)
        runner.prepare(sync=False)
        assert runner.live.loop_wait == 3 and ops.config()["loop_wait"] == 3
    finally:
        ops.set_config({"loop_wait": 10})
