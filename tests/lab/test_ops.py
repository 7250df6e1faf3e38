"""Day-2 operations against the real lab: each one's outcome, and each refusal's message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pgha.cli import main
from pgha.errors import UsageError
from pgha.lab.control import Lab
from pgha.ops import Operations
from pgha.probe import Credentials

pytestmark = pytest.mark.lab


@pytest.fixture
def ops(lab: Lab) -> Operations:
    return Operations(lab.spec, Credentials.of(lab.spec), lab.transport)


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
    assert "postgresql-02 is the leader" in msg
    snap = ops.snapshot()
    assert snap.leader is not None and snap.leader.name == "postgresql-02"
    old = next(m for m in snap.members if m.name == "postgresql-01")
    assert old.role == "replica" and old.state == "streaming"
    ops.switchover("postgresql-01")  # by member name this time
    snap = ops.snapshot()
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
        with pytest.raises(UsageError, match="ttl 10 is below Patroni's floor of 20"):
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
    ops.wait("old leader back", ops.healthy, 60)
    ops.switchover("postgres-01")
    assert ops.snapshot().leader.name == "postgresql-01"  # type: ignore[union-attr]
