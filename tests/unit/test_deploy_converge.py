"""`pgha deploy` on a running cluster: what the converge restarts, reloads, starts and waits for, for each
kind of change — decided against a fake transport and a fake prober (no SSH, no servers)."""

from __future__ import annotations

import pytest

from pgha import poll
from pgha import spec as spec_mod
from pgha.deploy.packages import PackageFacts
from pgha.deploy.run import Deployer, ServerFacts
from pgha.errors import StepFailed
from pgha.layout import NodeLayout
from pgha.orchestrate import Orchestrator
from pgha.plan import NodePlan
from pgha.target import ServerTarget
from pgha.topology import services_of
from pgha.transport.base import ServiceState
from tests.unit.fakes import FakeProber, FakeTransport, snapshot
from tests.unit.test_snapshot import FakeClock

SPEC = spec_mod.parse({**spec_mod.default_data(subnet="10.20.0.0/24"),
                       "deploy": {"packages": "bundle", "ssh": {"user": "admin"}}})


@pytest.fixture(autouse=True)
def instant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poll, "time", FakeClock())
    # etcd's authorization talks to etcd itself: tested in test_etcd_auth.py
    monkeypatch.setattr(Orchestrator, "ensure_etcd_auth", lambda self: None)
    # etcd's leadership is moved through etcd's gateway: tested in test_etcd_leader.py and the lab tests
    LEADER_MOVES.clear()
    monkeypatch.setattr(Orchestrator, "etcd_leader_off", lambda self: LEADER_MOVES.append(1))


LEADER_MOVES: list[int] = []


def converge(changed: dict[str, list[str]], down: dict[str, list[str]] | None = None,
             prober: FakeProber | None = None) -> tuple[FakeTransport, FakeProber]:
    """Run the converge for these changed paths per node (and services found down); what it did."""
    down = down or {}
    t = FakeTransport()
    prober = prober or FakeProber(SPEC, [snapshot(SPEC, holders=("haproxy-01",))])
    facts = {n.name: ServerFacts(n, PackageFacts(n.name, (), True), "UTC",
                               {s: ServiceState(n.name, s, s not in down.get(n.name, []), None, "")
                                for s in services_of(SPEC, n)}, True) for n in SPEC.nodes}
    plans = {n.name: NodePlan(n, NodeLayout(SPEC, n, ""), (), (), ()) for n in SPEC.nodes}
    # The converge uses only verbs every Transport has, plus reload/check, which the fake has too.
    deployer = Deployer(ServerTarget(SPEC, t), prober=prober)
    deployer.converge(facts, plans, {n.name: changed.get(n.name, []) for n in SPEC.nodes})
    return t, prober


def actions(t: FakeTransport) -> list[tuple[str, str, str]]:
    return [c for c in t.calls if c[0] != "put"]


def test_nothing_changed_nothing_done() -> None:
    t, prober = converge({})
    assert actions(t) == [] and prober.taken == 0


def test_patroni_config_is_reloaded_never_restarted() -> None:
    t, prober = converge({n.name: ["/etc/patroni/config.yml"] for n in SPEC.postgres_nodes})
    assert actions(t) == [("reload", n.name, "patroni") for n in SPEC.postgres_nodes]
    assert prober.taken == 0  # a reload needs no wait


def test_etcd_env_restarts_that_member_only_and_waits_for_etcd_health() -> None:
    t, prober = converge({"postgres-02": ["/etc/etcd/etcd.env"]})
    assert actions(t) == [("restart", "postgres-02", "etcd")]
    assert prober.taken >= 1
    assert LEADER_MOVES == [1]  # a restart may have handed etcd's leadership to the Patroni leader's node


def test_a_new_patroni_unit_means_daemon_reload_restart_and_a_wait_for_streaming() -> None:
    t, prober = converge({"postgres-03": ["/etc/systemd/system/patroni.service"]})
    assert actions(t) == [("run", "postgres-03", "systemctl daemon-reload"), ("restart", "postgres-03", "patroni")]
    assert prober.woken >= 1 and prober.taken >= 1


def test_proxies_reload_haproxy_and_keepalived_in_the_seeds_order() -> None:
    t, _ = converge({n.name: ["/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf"]
                     for n in SPEC.haproxy_nodes})
    assert actions(t) == ([("reload", n.name, "haproxy") for n in SPEC.haproxy_nodes]
                          + [("reload", n.name, "keepalived") for n in SPEC.haproxy_nodes])


def test_a_service_found_down_is_started_not_reloaded_and_its_outcome_awaited() -> None:
    t, prober = converge({"haproxy-02": ["/etc/keepalived/keepalived.conf"]}, down={"haproxy-02": ["keepalived"]})
    assert actions(t) == [("start", "haproxy-02", "keepalived")]
    assert prober.taken >= 1


def test_a_converge_that_does_not_converge_names_the_step() -> None:
    stuck = FakeProber(SPEC, [snapshot(SPEC, etcd_down=["postgresql-02"])])
    with pytest.raises(StepFailed, match="step 'restart etcd on postgres-02' failed: not reached after 60 s: "
                                             "2/3 etcd members healthy"):
        converge({"postgres-02": ["/etc/etcd/etcd.env"]}, prober=stuck)
