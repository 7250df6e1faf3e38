"""The Orchestrator's bring-up sequence and its failure reporting, against a fake transport and a fake
cluster whose state follows the services the sequence started: no root, no daemons."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from pgha import etcd_auth, etcd_leader, poll, roles
from pgha import spec as spec_mod
from pgha.errors import StepFailed
from pgha.layout import NodeLayout
from pgha.orchestrate import LIKELY_CAUSE, Orchestrator
from pgha.plan import NodePlan
from pgha.probe.haproxy import HaproxyView
from pgha.probe.snapshot import ClusterSnapshot
from pgha.render.etcd import parse_env
from pgha.spec import ClusterSpec
from pgha.topology import MONITOR_SERVICES
from tests.unit.fakes import CREDS, FakeProber, FakeTransport, snapshot
from tests.unit.test_snapshot import FakeClock

SPEC = spec_mod.parse(spec_mod.default_data(lab=True))
PLANS = [NodePlan(n, NodeLayout(SPEC, n, ""), (), (), ()) for n in SPEC.nodes]
"""Plans with no files: the sequence only needs each node's layout (etcd.env's path)."""


def simulated(spec: ClusterSpec, t: FakeTransport, broken_etcd: tuple[str, ...] = ()) -> Callable[[], ClusterSnapshot]:
    """The cluster the started services make: etcd healthy where started (unless broken), Patroni members
    once etcd has a quorum (the first started leads), HAProxy routing where it runs, the VIP on the first
    HAProxy node whose keepalived runs."""
    def up(node: str, service: str) -> bool:
        return (node, service) in t.running

    def snap() -> ClusterSnapshot:
        pg = spec.postgres_nodes
        etcd_down = [n.member_name for n in pg if not up(n.name, "etcd") or n.name in broken_etcd]
        quorum = len(pg) - len(etcd_down) > len(pg) // 2
        order = [node for verb, node, service in t.calls if verb == "start" and service == "patroni"]
        members = [spec.node(n).member_name for n in order if up(n, "patroni")] if quorum else []
        holders = tuple(n.name for n in spec.haproxy_nodes if up(n.name, "keepalived"))[:1]
        t.vip_on = set(holders)
        s = snapshot(spec, leader=members[0] if members else None, members=members, etcd_down=etcd_down,
                     holders=holders)
        views = tuple(v if up(v.node, "haproxy") else HaproxyView(v.node, False, error="refused") for v in s.haproxy)
        return replace(s, haproxy=views)
    return snap


MOVED: list[str] = []


@pytest.fixture(autouse=True)
def instant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poll, "time", FakeClock())
    # etcd's authorization talks to etcd itself: tested in test_etcd_auth.py
    monkeypatch.setattr(etcd_auth, "ensure", lambda spec, creds, timeout=5.0: ["auth enabled"])
    # etcd's leadership moves through etcd's gateway: tested in test_etcd_leader.py and the lab tests
    MOVED.clear()
    monkeypatch.setattr(etcd_leader, "operator_gateway", lambda spec, creds: None)
    monkeypatch.setattr(etcd_leader, "move", lambda gw, away_from: MOVED.append(away_from) or "moved")
    # The PostgreSQL roles are made over SQL on the leader: tested on the lab (test_least_privilege.py)
    monkeypatch.setattr(roles, "ensure_roles", lambda spec, creds, node: (node.name == "postgres-01", node.name))


def test_bring_up_runs_the_seeds_order_and_waits_for_each_outcome() -> None:
    t = FakeTransport()
    prober = FakeProber(SPEC, simulated(SPEC, t))
    orch = Orchestrator(SPEC, t, creds=CREDS, prober=prober)
    timings = orch.bring_up(PLANS)
    starts = [(node, service) for verb, node, service in t.verbs("start", "restart")]
    pg = [n.name for n in SPEC.postgres_nodes]
    ha = [n.name for n in SPEC.haproxy_nodes]
    monitor = ["pgha-webhook", "prometheus-alertmanager", "prometheus-blackbox-exporter", "prometheus"]
    assert starts == ([("monitor-01", s) for s in monitor]  # from the start: it needs nothing of the others
                      + [(n, "pgbackrest") for n in pg] + [("backup-01", "pgbackrest")]
                      + [(n, "etcd") for n in pg] + [(n, "patroni") for n in pg]
                      + [(n, "postgres_exporter") for n in pg]  # once its role exists
                      + [(n, "etcd") for n in pg]  # initial-cluster-state flipped to existing: one at a time
                      + [(n, "haproxy") for n in ha] + [(n, "keepalived") for n in ha])
    envs = [path for verb, _, path in t.verbs("put") if path.endswith("etcd.env")]
    assert len(envs) == 3
    for n in SPEC.postgres_nodes:
        env = parse_env((t.read_file(n, NodeLayout(SPEC, n, "").etcd_env) or b"").decode())
        assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
    assert [name for name, _ in timings.steps] == [
        "certificates and configs", "monitoring on monitor-01", "pgBackRest servers", "etcd on the postgres nodes",
        "etcd health (all members, mTLS)", "etcd authorization (users, roles, auth on)",
        "Patroni on postgres-01, wait for Leader", "Patroni on postgres-02, postgres-03, wait for streaming replicas",
        "application and rewind roles", "monitoring on postgres-01, postgres-02, postgres-03",
        "etcd initial-cluster-state = existing", "HAProxy on the haproxy nodes",
        "keepalived, wait for the VIP",
        "pgBackRest stanza, archiving checked",  # begun after the roles, in the background
        "etcd leadership off the Patroni leader's node"]
    assert MOVED == ["postgresql-01"]  # off the node of Patroni's leader
    assert ("run", "backup-01", "/usr/bin/pgbackrest --config-path=/etc/pgbackrest --stanza=postgresql-cluster "
                                "stanza-create") in t.calls
    assert prober.woken >= 1  # the replicas' wait woke the HA loops


def test_a_step_that_never_succeeds_names_itself_its_logs_and_the_likely_cause() -> None:
    t = FakeTransport()
    t.log_text[("postgres-03", "etcd")] = "rejected connection from 10.203.0.203 (bad certificate)"
    orch = Orchestrator(SPEC, t, creds=CREDS, prober=FakeProber(SPEC, simulated(SPEC, t, broken_etcd=("postgres-03",))))
    with pytest.raises(StepFailed) as info:
        orch.bring_up(PLANS)
    err = info.value
    assert err.step == "etcd health (all members, mTLS)"
    assert err.message == ("step 'etcd health (all members, mTLS)' failed: not reached after 45 s: "
                           "2/3 etcd members healthy (waiting for postgresql-03)")
    assert err.hint == LIKELY_CAUSE["etcd"]
    assert err.details is not None
    assert ("--- postgres-03 etcd (last lines) ---\n"
            "rejected connection from 10.203.0.203 (bad certificate)") in err.details
    assert "--- postgres-01 etcd (last lines) ---\n(empty)" in err.details
    # nothing after the failed step (the monitor node starts before it)
    assert {s for _, _, s in t.verbs("start")} - set(MONITOR_SERVICES) == {"pgbackrest", "etcd"}


def test_haproxy_must_route_to_the_leader_not_just_to_one_server() -> None:
    t = FakeTransport()
    wrong = snapshot(SPEC, routes_to="postgresql-02")  # one server UP everywhere, but a replica
    orch = Orchestrator(SPEC, t, creds=CREDS, prober=FakeProber(SPEC, [wrong]))
    with pytest.raises(StepFailed) as info:
        orch.start_proxies()
    assert info.value.step == "HAProxy on the haproxy nodes"
    assert "haproxy-01->postgresql-02" in info.value.message
    assert info.value.hint == LIKELY_CAUSE["haproxy"]


@pytest.mark.parametrize(("landed", "seen"), [
    (("10.203.0.204", True), "inet_server_addr=10.203.0.204, pg_is_in_recovery=t"),
    # a primary that is not the leader (a split brain's other side) is no better: verify's rule, the same one
    (("10.203.0.205", False), "inet_server_addr=10.203.0.205, pg_is_in_recovery=f, leader address 10.203.0.203"),
])
def test_the_vip_step_fails_when_clients_do_not_land_on_the_leader(landed: tuple[str, bool], seen: str) -> None:
    t = FakeTransport()
    prober = FakeProber(SPEC, [snapshot(SPEC)], through_vip=landed)
    orch = Orchestrator(SPEC, t, creds=CREDS, prober=prober)
    with pytest.raises(StepFailed, match=seen):
        orch.start_proxies()
