"""Operations' guard rails and waits, decided from scripted snapshots through a fake prober: every refusal
says why and changes nothing; every wait returns on the outcome or names what it last saw."""

from __future__ import annotations

from typing import Any

import pytest

from pgha import etcd_leader, poll
from pgha import spec as spec_mod
from pgha.errors import PghaError, UsageError
from pgha.ops import Operations, parse_assignments
from pgha.probe.patroni import PatroniMember
from pgha.spec import Dcs
from tests.unit.fakes import CREDS, FakeProber, FakeTransport, snapshot
from tests.unit.test_snapshot import FakeClock

SPEC = spec_mod.parse(spec_mod.default_data(lab=True))
LIVE = {"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "postgresql": {"parameters": {}}}


@pytest.fixture(autouse=True)
def instant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poll, "time", FakeClock())
    # etcd's leadership moves through etcd's gateway (test_etcd_leader.py, lab tests): here, where it went
    monkeypatch.setattr(etcd_leader, "operator_gateway", lambda spec, creds: None)
    monkeypatch.setattr(etcd_leader, "move", lambda gw, away_from: f"moved etcd's leadership off {away_from}")


def ops(*script: Any, transport: FakeTransport | None = None) -> tuple[Operations, FakeProber]:
    prober = FakeProber(SPEC, list(script) or [snapshot(SPEC)])
    prober.answers[("GET", "/config")] = (200, LIVE)
    return Operations(SPEC, CREDS, transport, prober=prober), prober


def changes(prober: FakeProber) -> list[tuple[str, str, str, Any]]:
    return [c for c in prober.calls if c[1] != "GET"]


# -- switchover / failover ------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "message"), [
    ({"state": "stopped", "lag_mb": None}, "postgresql-02 is not running (state stopped)"),
    ({"tags": {"nofailover": True}}, "postgresql-02 is tagged nofailover"),
    ({"lag_mb": 5.0}, "postgresql-02 lags 5.0 MB, beyond maximum_lag_on_failover (1048576"),
    ({"lag_mb": None}, "postgresql-02 lags None MB"),
])
def test_switchover_candidate_refusals(change: dict[str, Any], message: str) -> None:
    o, prober = ops(snapshot(SPEC, postgresql_02=change))
    with pytest.raises(UsageError) as info:
        o.switchover("postgres-02")
    assert message in info.value.message
    assert changes(prober) == []


def test_switchover_refusals_from_the_cluster_state() -> None:
    for snap, message in [
        (snapshot(SPEC), "postgresql-01 is already the leader"),
        (snapshot(SPEC, paused=True), "the cluster is paused"),
        (snapshot(SPEC, leader=None), "the cluster has no leader right now"),
        (snapshot(SPEC, sync_standby="postgresql-03"), "postgresql-02 is not the synchronous standby (postgresql-03)"),
    ]:
        o, prober = ops(snap)
        with pytest.raises(PghaError, match=message.replace("(", r"\(").replace(")", r"\)")):
            o.switchover("postgres-01" if "already" in message else "postgres-02")
        assert changes(prober) == []
    o, _ = ops()
    with pytest.raises(UsageError, match="haproxy-02 is not a PostgreSQL node"):
        o.switchover("haproxy-02")
    with pytest.raises(UsageError, match="no node named 'postgres-07'"):
        o.switchover("postgres-07")


def test_a_healthy_candidate_passes() -> None:
    o, _ = ops()
    assert o.check_candidate(snapshot(SPEC), "postgresql-02").name == "postgresql-02"


def test_the_lag_limit_is_the_live_one_not_the_specs() -> None:
    o, _ = ops()
    lagging = snapshot(SPEC, postgresql_02={"lag_mb": 5.0}, config=Dcs(maximum_lag_on_failover=8 * 1048576))
    assert o.check_candidate(lagging, "postgresql-02").name == "postgresql-02"


def test_switchover_waits_for_the_new_leader_streaming_and_routed() -> None:
    before = snapshot(SPEC)
    during = snapshot(SPEC, leader=None, streaming=[])
    promoted = snapshot(SPEC, leader="postgresql-02", streaming=["postgresql-03"], routes_to="postgresql-01")
    after = snapshot(SPEC, leader="postgresql-02")
    o, prober = ops(before, before, during, promoted, after)
    assert o.switchover("postgres-02") == ("switchover done: postgresql-02 is the leader (HAProxy routes to it), "
                                           "postgresql-01 streams from it; moved etcd's leadership off postgresql-02")
    assert changes(prober) == [("postgres-01", "POST", "/switchover",
                                {"leader": "postgresql-01", "candidate": "postgresql-02"})]
    assert prober.taken == 5


def test_a_wait_that_times_out_says_what_it_saw_last() -> None:
    o, _ = ops(snapshot(SPEC), snapshot(SPEC, streaming=["postgresql-03"]))
    with pytest.raises(poll.TimedOut) as info:
        o.switchover("postgres-02", timeout=10)
    assert info.value.message.startswith("switchover: not reached after 10 s: postgresql-01 leader/running, "
                                         "postgresql-02 replica/stopped")
    assert info.value.hint == "see `pgha status` and `pgha logs NODE patroni`"


def test_failover_refuses_a_stopped_candidate_and_waits_for_routing() -> None:
    o, prober = ops(snapshot(SPEC, postgresql_03={"state": "stopped"}))
    with pytest.raises(UsageError, match="postgresql-03 is not running"):
        o.failover("postgres-03")
    assert changes(prober) == []
    o, prober = ops(snapshot(SPEC), snapshot(SPEC, leader="postgresql-03"),
                    snapshot(SPEC, leader="postgresql-03", routes_to="postgresql-03"))
    assert o.failover("postgres-03") == ("failover done: postgresql-03 is the leader (HAProxy routes to it); "
                                         "moved etcd's leadership off postgresql-03")
    assert changes(prober) == [("postgres-03", "POST", "/failover", {"candidate": "postgresql-03"})]


def test_a_refused_call_reports_patronis_answer() -> None:
    o, prober = ops()
    prober.answers[("POST", "/switchover")] = (412, "candidate name does not match with sync_standby")
    with pytest.raises(PghaError, match=r"switchover refused by Patroni \(HTTP 412\): candidate name"):
        o.switchover("postgres-02")


# -- pause, restart, reinit -----------------------------------------------------------------------------
def test_pause_waits_until_the_cluster_says_paused() -> None:
    o, prober = ops(snapshot(SPEC), snapshot(SPEC), snapshot(SPEC, paused=True))
    assert o.set_pause(True).startswith("cluster paused")
    assert changes(prober) == [("postgres-01", "PATCH", "/config", {"pause": True})]


def test_restart_of_pending_only_skips_members_without_a_pending_restart() -> None:
    o, prober = ops(snapshot(SPEC, postgresql_02={"pending_restart": True}))
    assert o.restart(["postgres-02", "postgres-03"], pending_only=True) == "restarted PostgreSQL on postgresql-02"
    assert changes(prober) == [("postgres-02", "POST", "/restart", {"restart_pending": True})]


def test_reinit_refuses_the_leader() -> None:
    o, prober = ops()
    with pytest.raises(UsageError, match="postgresql-01 is the leader: reinit rebuilds a replica"):
        o.reinit("postgres-01")
    assert changes(prober) == []


# -- configuration ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "message"), [
    ({"ttl": 10}, "ttl: 10 is below Patroni's floor of 20"),
    ({"retry_timeout": 2}, "retry_timeout: 2 is below Patroni's floor of 3"),
    ({"ttl": 20}, "config: loop_wait + 2*retry_timeout = 30 exceeds ttl 20"),
    ({"loop_wait": "often"}, "loop_wait: Input should be a valid integer"),
    ({"synchronous_mode_strict": True}, "synchronous_mode_strict: needs synchronous_mode: true"),
])
def test_config_set_is_checked_against_the_live_config_with_the_specs_rules(change: dict[str, Any],
                                                                           message: str) -> None:
    o, prober = ops()
    with pytest.raises(UsageError) as info:
        o.set_config(change)
    assert info.value.message.startswith(message)
    assert changes(prober) == []


def test_config_set_sends_only_the_change() -> None:
    o, prober = ops()
    prober.answers[("PATCH", "/config")] = lambda body: (200, {**LIVE, **body})
    assert o.set_config({"ttl": 20, "loop_wait": 2, "retry_timeout": 4})["ttl"] == 20
    assert changes(prober) == [("postgres-01", "PATCH", "/config", {"ttl": 20, "loop_wait": 2, "retry_timeout": 4})]
    assert Dcs.live(LIVE).problems() == []


def test_sync_on_waits_for_a_named_synchronous_standby(monkeypatch: pytest.MonkeyPatch) -> None:
    o, prober = ops(snapshot(SPEC), snapshot(SPEC, sync_standby="postgresql-02"))
    rows = iter([[("10.203.0.204", "streaming", "async")], [("10.203.0.204", "streaming", "sync")]])
    monkeypatch.setattr(o, "lag", lambda: next(rows))
    assert o.set_sync(True) == "synchronous mode on"
    assert changes(prober) == [("postgres-01", "PATCH", "/config",
                                {"synchronous_mode": True, "synchronous_mode_strict": False})]


# -- reset -----------------------------------------------------------------------------------------------
def test_reset_needs_a_transport_and_no_client_on_the_vip(monkeypatch: pytest.MonkeyPatch) -> None:
    o, _ = ops()
    with pytest.raises(UsageError, match="reset needs a transport"):
        o.reset([])
    t = FakeTransport()
    o, _ = ops(transport=t)
    monkeypatch.setattr(o, "vip_clients", lambda: [(4242, "app", "10.203.0.207", "psql")])
    with pytest.raises(UsageError, match=r"1 client\(s\) connected through the VIP: app@10.203.0.207 \(pid 4242\)"):
        o.reset([])
    assert t.calls == []


def test_member_lookup_names_missing_members() -> None:
    o, _ = ops()
    snap = snapshot(SPEC, members=["postgresql-01", "postgresql-02"])
    with pytest.raises(UsageError, match=r"postgres-03 \(postgresql-03\) is not a member of the cluster right now"):
        o.member(snap, "postgres-03")
    assert isinstance(o.member(snap, "postgresql-02"), PatroniMember)


def test_parse_assignments_nests_and_types() -> None:
    assert parse_assignments(("ttl=20", "postgresql.parameters.work_mem=8MB", "synchronous_mode=true")) == {
        "ttl": 20, "postgresql": {"parameters": {"work_mem": "8MB"}}, "synchronous_mode": True}
    with pytest.raises(UsageError, match="'ttl' is not KEY=VALUE"):
        parse_assignments(("ttl",))
