"""`pgha restart --rolling`'s order, decided from scripted snapshots through a fake prober."""

from __future__ import annotations

from typing import Any

import pytest

from pgha import etcd_leader, poll
from pgha import spec as spec_mod
from pgha.errors import UsageError
from pgha.ops import Operations
from pgha.probe.snapshot import ClusterSnapshot
from pgha.rolling import rolling_restart
from tests.unit.fakes import CREDS, FakeProber, snapshot
from tests.unit.test_snapshot import FakeClock

SPEC = spec_mod.parse(spec_mod.default_data(lab=True))
LIVE = {"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "synchronous_mode": True, "postgresql": {"parameters": {}}}


@pytest.fixture(autouse=True)
def instant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poll, "time", FakeClock())
    monkeypatch.setattr(etcd_leader, "operator_gateway", lambda spec, creds: None)
    monkeypatch.setattr(etcd_leader, "move", lambda gw, away_from: "etcd's leadership moved")


def cluster(**kw: Any) -> tuple[Operations, FakeProber]:
    """A cluster whose leader becomes the synchronous standby once a switchover was asked for."""
    calls: list[tuple[str, str, str, Any]] = []

    def snap() -> ClusterSnapshot:
        switched = any(c[2] == "/switchover" for c in calls)
        if switched:
            return snapshot(SPEC, leader="postgresql-02", sync_standby="postgresql-01", **kw)
        return snapshot(SPEC, sync_standby="postgresql-02", **kw)

    prober = FakeProber(SPEC, snap)
    prober.calls = calls
    prober.answers[("GET", "/config")] = (200, LIVE)
    prober.answers[("POST", "/switchover")] = (200, "switched over")
    return Operations(SPEC, CREDS, None, prober=prober), prober


def test_replicas_first_the_sync_standby_last_then_a_switchover_then_the_old_primary() -> None:
    o, prober = cluster()
    said: list[str] = []
    msg = rolling_restart(o, say=said.append)
    changes = [(n, p, b) for n, m, p, b in prober.calls if m != "GET"]
    assert changes == [("postgres-03", "/restart", {}), ("postgres-02", "/restart", {}),
                       ("postgres-01", "/switchover", {"leader": "postgresql-01", "candidate": "postgresql-02"}),
                       ("postgres-01", "/restart", {})]
    assert "rolling restart of postgresql-03, postgresql-02, postgresql-01 done" in msg
    assert said[2] == "switchover from postgresql-01 to postgresql-02"


def test_pending_restarts_only() -> None:
    o, prober = cluster(postgresql_03={"pending_restart": True})
    rolling_restart(o, pending_only=True)
    assert [(n, p) for n, m, p, _ in prober.calls if m != "GET"] == [("postgres-03", "/restart")]
    o, prober = cluster()
    assert rolling_restart(o, pending_only=True) == "nothing to restart: no member has a pending restart"


def test_refused_unless_whole_or_when_paused() -> None:
    for snap, message in [(snapshot(SPEC, streaming=["postgresql-02"]), "the cluster is not whole"),
                          (snapshot(SPEC, paused=True), "the cluster is paused")]:
        prober = FakeProber(SPEC, [snap])
        with pytest.raises(UsageError, match=message):
            rolling_restart(Operations(SPEC, CREDS, None, prober=prober))
        assert [c for c in prober.calls if c[1] != "GET"] == []
