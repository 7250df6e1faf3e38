"""`pgha etcd replace`'s sequence, decided through fakes: a fake etcd gateway, transport and prober."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgha import poll
from pgha import spec as spec_mod
from pgha.errors import UsageError
from pgha.etcd_leader import Gateway, MoveError
from pgha.etcd_member import EtcdReplacer
from pgha.orchestrate import Orchestrator
from pgha.target import ServerTarget
from tests.unit.fakes import FakeProber, FakeTransport, snapshot
from tests.unit.test_snapshot import FakeClock

PEER3 = "https://10.203.0.205:2380"


class FakeGateway(Gateway):
    """etcd's member API as a list; a learner is promoted at the second try (not in sync at the first)."""

    def __init__(self) -> None:
        super().__init__({}, None)  # type: ignore[arg-type]
        self.members = [{"ID": str(i), "name": f"postgresql-0{i}", "peerURLs": [f"https://10.203.0.20{2 + i}:2380"]}
                        for i in (1, 2, 3)]
        self.posts: list[tuple[str, str, dict[str, Any]]] = []
        self.promote_tries = 0

    def post(self, member: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.posts.append((member, path, body))
        if path.endswith("/list"):
            return {"members": self.members}
        if path.endswith("/remove"):
            self.members = [m for m in self.members if m["ID"] != body["ID"]]
            return {}
        if path.endswith("/add"):
            new = {"ID": "99", "name": "", "peerURLs": body["peerURLs"], "isLearner": body["isLearner"]}
            self.members.append(new)
            return {"member": new}
        self.promote_tries += 1
        if self.promote_tries < 2:
            raise MoveError("etcdserver: can only promote a learner member which is in sync with leader")
        return {}


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> spec_mod.ClusterSpec:
    monkeypatch.setattr(spec_mod, "STATE_ROOT", tmp_path / "state")
    monkeypatch.setattr(poll, "time", FakeClock())
    monkeypatch.setattr(Orchestrator, "etcd_leader_off", lambda self: None)
    spec = spec_mod.parse(spec_mod.default_data(lab=True))
    ServerTarget(spec).ensure_material()
    return spec


def test_remove_wipe_existing_learner_start_promote(spec: spec_mod.ClusterSpec) -> None:
    t, gw = FakeTransport(), FakeGateway()
    prober = FakeProber(spec, [snapshot(spec, etcd_down=["postgresql-03"]), snapshot(spec)])
    msg = EtcdReplacer(ServerTarget(spec, t), gateway=gw, prober=prober).replace("postgres-03")
    assert "etcd member postgresql-03 on postgres-03 replaced (new ID 63)" in msg and "quorum kept" in msg
    assert [(p, b) for _, p, b in gw.posts if not p.endswith("/list")] == [
        ("/v3/cluster/member/remove", {"ID": "3"}),
        ("/v3/cluster/member/add", {"peerURLs": [PEER3], "isLearner": True}),
        ("/v3/cluster/member/promote", {"ID": "99"}), ("/v3/cluster/member/promote", {"ID": "99"})]
    assert all(m == "postgresql-01" for m, _, _ in gw.posts)  # asked of a healthy member, never the failed one
    node = [c for c in t.calls if c[1] == "postgres-03" and c[0] in ("stop", "remove", "put", "start")]
    assert node == [("stop", "postgres-03", "etcd"), ("remove", "postgres-03", "/var/lib/etcd"),
                    ("put", "postgres-03", "/etc/etcd/etcd.env"), ("start", "postgres-03", "etcd")]
    env = t.files[("postgres-03", "/etc/etcd/etcd.env")].content.decode()
    assert "ETCD_INITIAL_CLUSTER_STATE=existing" in env


def test_refused_while_another_member_is_down(spec: spec_mod.ClusterSpec) -> None:
    t, gw = FakeTransport(), FakeGateway()
    prober = FakeProber(spec, [snapshot(spec, etcd_down=["postgresql-02"])])
    with pytest.raises(UsageError, match="postgresql-02 not healthy: replacing postgresql-03 now could lose"):
        EtcdReplacer(ServerTarget(spec, t), gateway=gw, prober=prober).replace("postgres-03")
    assert t.calls == [] and gw.posts == []
    with pytest.raises(UsageError, match="haproxy-01 runs no etcd member"):
        EtcdReplacer(ServerTarget(spec, t), gateway=gw, prober=prober).replace("haproxy-01")
