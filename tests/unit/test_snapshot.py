"""The snapshot's named predicates, the live DCS configuration, the polling helper and bounded probes."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from pgha import poll
from pgha import spec as spec_mod
from pgha.probe import etcd as etcd_probe
from pgha.probe import haproxy as haproxy_probe
from pgha.probe.bounded import NoAnswer, gather
from pgha.probe.cluster import Prober
from pgha.probe.etcd import EtcdMember
from pgha.probe.haproxy import BackendServer, HaproxyView
from pgha.spec import Dcs, Node
from tests.unit.fakes import CREDS, FakeTransport, snapshot

SPEC = spec_mod.parse(spec_mod.default_data(lab=True))


def test_healthy_needs_a_running_leader_and_every_other_member_streaming() -> None:
    assert snapshot(SPEC).healthy()
    assert snapshot(SPEC).healthy("postgresql-01") and not snapshot(SPEC).healthy("postgresql-02")
    assert not snapshot(SPEC, streaming=["postgresql-02"]).healthy()
    assert not snapshot(SPEC, leader=None).healthy()
    assert not snapshot(SPEC, postgresql_01={"state": "starting"}).healthy()
    # A member missing from the DCS (Patroni never started there) is not healthy either.
    assert not snapshot(SPEC, members=["postgresql-01", "postgresql-02"]).healthy()
    lagging = snapshot(SPEC, lag_mb=2.0)
    assert lagging.healthy() and not lagging.healthy(caught_up=True)


def test_routes_to_leader_means_the_leader_not_any_single_server() -> None:
    assert snapshot(SPEC).routes_to_leader
    # Exactly one server UP on every HAProxy, but it is a replica: not routing to the leader.
    assert not snapshot(SPEC, routes_to="postgresql-02").routes_to_leader
    snap = snapshot(SPEC)
    down = HaproxyView("haproxy-02", False, error="refused")
    assert not replace(snap, haproxy=(snap.haproxy[0], down, snap.haproxy[2])).routes_to_leader


def test_whole_is_everything_at_once() -> None:
    assert snapshot(SPEC).whole
    assert not snapshot(SPEC, etcd_down=["postgresql-03"]).whole
    assert not snapshot(SPEC, holders=("haproxy-01", "haproxy-02")).whole
    assert not snapshot(SPEC, holders=()).whole
    assert snapshot(SPEC, lag_mb=1.0).whole  # lag is allowed: a drill's writers keep running
    assert not snapshot(SPEC, streaming=["postgresql-02"]).whole
    assert not snapshot(SPEC, unanswered=[("postgres-03", "Patroni REST API: no answer within 1 s")]).whole
    # Synchronous mode, read from the live configuration: a synchronous standby must be named.
    sync = Dcs(synchronous_mode=True)
    assert not snapshot(SPEC, config=sync).whole
    assert snapshot(SPEC, config=sync, sync_standby="postgresql-02").whole


def test_describe_says_what_is_seen() -> None:
    text = snapshot(SPEC, etcd_down=["postgresql-02"], routes_to="postgresql-03", holders=(),
                    unanswered=[("postgres-03", "Patroni REST API: no answer within 1 s")]).describe()
    assert "postgresql-01 leader/running" in text and "etcd 2/3 healthy (not postgresql-02)" in text
    assert "haproxy-01->postgresql-03" in text and "VIP on nobody" in text
    assert "postgres-03: Patroni REST API: no answer within 1 s" in text


def test_live_config_keeps_the_dcs_keys_and_patronis_defaults() -> None:
    live = Dcs.live({"ttl": 20, "loop_wait": "3", "retry_timeout": 4, "postgresql": {"parameters": {}},
                     "pause": True})
    assert (live.ttl, live.loop_wait, live.retry_timeout, live.maximum_lag_on_failover) == (20, 3, 4, 1048576)
    assert Dcs.live({}) == Dcs()


def test_dcs_rules_are_one_list_for_the_spec_and_config_set() -> None:
    assert Dcs().problems() == []
    assert Dcs(ttl=10, loop_wait=1, retry_timeout=3).problems()[0] == (
        "ttl", "10 is below Patroni's floor of 20 (Patroni would silently use 20)")
    assert Dcs(ttl=20, loop_wait=10, retry_timeout=10).problems()[0][1].startswith(
        "loop_wait + 2*retry_timeout = 30 exceeds ttl 20")
    data = spec_mod.default_data(lab=True)
    data["dcs"] = {"ttl": 20, "loop_wait": 10, "retry_timeout": 10}
    with pytest.raises(spec_mod.SpecError, match="dcs: loop_wait \\+ 2\\*retry_timeout = 30 exceeds ttl 20"):
        spec_mod.parse(data)


class FakeClock:
    """time for :mod:`pgha.poll`: sleeping advances it at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_poll_returns_what_it_saw_when_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poll, "time", FakeClock())
    tries = iter([(False, "1 of 3"), (False, "2 of 3"), (True, "3 of 3")])
    heard: list[str] = []
    assert poll.until("three", lambda: next(tries), 10, progress=heard.append) == "3 of 3"
    assert heard == ["1 of 3", "2 of 3"]


def test_poll_times_out_with_what_and_the_last_thing_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(poll, "time", clock)
    seen = iter(range(1000))

    def check() -> tuple[bool, str]:
        n = next(seen)
        if n == 3:
            raise ConnectionError("refused\nby the node")
        return False, f"try {n}"

    with pytest.raises(poll.TimedOut) as info:
        poll.until("the leader", check, 5, interval=0.5, hint="see `pgha status`")
    assert info.value.message == "the leader: not reached after 5 s: try 10"
    assert info.value.hint == "see `pgha status`" and info.value.exit_code == 1
    assert clock.now == pytest.approx(5.0)


def test_a_raising_check_is_a_not_yet_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poll, "time", FakeClock())

    def check() -> tuple[bool, str]:
        raise ConnectionError("refused")

    with pytest.raises(poll.TimedOut, match="ConnectionError: refused"):
        poll.until("etcd", check, 1)


def test_gather_bounds_a_hung_call_and_names_it() -> None:
    release = threading.Event()
    t0 = time.monotonic()
    seen = gather({"fast": lambda: 1, "hung": lambda: release.wait(30), "broken": lambda: 1 / 0}, 0.3)
    release.set()
    assert time.monotonic() - t0 < 1.0
    assert seen["fast"] == 1
    assert seen["hung"] == NoAnswer("no answer within 0.3 s")
    assert isinstance(seen["broken"], NoAnswer) and seen["broken"].reason.startswith("ZeroDivisionError")


def test_backend_helper_matches_haproxy_status_words() -> None:
    view = HaproxyView("haproxy-01", True, (BackendServer("postgres_primary", "a", "UP 1/3"),
                                            BackendServer("postgres_primary", "b", "DOWN")))
    assert view.up("postgres_primary") == ["a"]


def test_the_prober_bounds_a_hung_node_and_reads_the_live_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """One node's REST API hangs: the snapshot still comes after one deadline, names that node, and
    carries the live configuration from a node that answered."""
    release = threading.Event()
    body = {"members": [{"name": "postgresql-01", "role": "leader", "state": "running", "timeline": 1}],
            "pause": False}

    def patroni(self: Prober, node: Node) -> tuple[dict[str, object], dict[str, object]]:
        if node.name == "postgres-03":
            release.wait(10)
        return body, {"ttl": 20, "loop_wait": 3, "retry_timeout": 4, "postgresql": {}}

    monkeypatch.setattr(etcd_probe, "member", lambda spec, n, creds, t: EtcdMember(n.member_name, "", True))
    monkeypatch.setattr(haproxy_probe, "view", lambda spec, n, secrets, t: HaproxyView(n.name, True))
    monkeypatch.setattr(Prober, "_patroni", patroni)
    monkeypatch.setattr(Prober, "_vip_tcp", lambda self: None)
    transport = FakeTransport()
    transport.vip_on = {"haproxy-01"}
    t0 = time.monotonic()
    snap = Prober(SPEC, CREDS, transport, timeout=0.3).snapshot()
    release.set()
    assert time.monotonic() - t0 < 1.0
    assert snap.unanswered == (("postgres-03", "Patroni REST API: no answer within 0.8 s"),)
    assert snap.config == Dcs(ttl=20, loop_wait=3, retry_timeout=4)
    assert snap.leader is not None and snap.vip_holders == ("haproxy-01",) and snap.vip_answers
    assert not snap.whole  # a node that does not answer is not a whole cluster
