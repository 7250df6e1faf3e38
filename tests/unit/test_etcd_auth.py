"""etcd authorization in the orchestration: the step comes after etcd is healthy and before any Patroni
starts, in a bring-up and in a reset (which wipes etcd, auth included). What etcd then enforces is tested
against a real etcd (tests/tools/test_etcd_auth.py) and the lab (tests/lab/test_etcd_auth.py)."""

from __future__ import annotations

from typing import Any

import pytest

from pgha import etcd_auth
from pgha import spec as spec_mod
from pgha.orchestrate import Orchestrator
from pgha.plan import DirEntry, FileEntry, NodePlan
from pgha.probe import Credentials
from pgha.probe.etcd import prefix, range_end
from pgha.secrets import Secrets
from pgha.spec import Node
from pgha.transport.base import CommandResult, ServiceState, Transport

SPEC = spec_mod.parse(spec_mod.default_data(lab=True))
CREDS = Credentials("ca", "crt", "key", Secrets("a", "b", "c", "d", etcd_root_password="r", etcd_patroni_password="p",
                                                etcd_probe_password="q"))


class Recorder(Transport):
    """Records service starts and stops; every file is already as planned."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def start(self, node: Node, service: str) -> None:
        self.events.append(f"start {service} {node.name}")

    def stop(self, node: Node, service: str) -> None:
        self.events.append(f"stop {service} {node.name}")

    def put_file(self, node: Node, entry: FileEntry) -> bool:
        return False

    def ensure_dir(self, node: Node, entry: DirEntry) -> bool:
        return False

    def remove_tree(self, node: Node, path: str) -> None:
        pass

    def run(self, node: Node, argv: list[str], *, timeout: float = 60, user: str | None = None) -> CommandResult:
        raise NotImplementedError

    def read_file(self, node: Node, path: str) -> bytes | None: raise NotImplementedError
    def ensure_users(self, node: Node, users: tuple[str, ...]) -> None: raise NotImplementedError
    def install_services(self, plans: list[NodePlan]) -> None: raise NotImplementedError
    def kill(self, node: Node, service: str, sig: str = "KILL", hold: bool = False) -> None: raise NotImplementedError
    def service_state(self, node: Node, service: str) -> ServiceState: raise NotImplementedError
    def logs(self, node: Node, service: str, lines: int = 50) -> str: raise NotImplementedError


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    out: list[str] = []

    def ensure(spec: Any, creds: Credentials, timeout: float = 5.0) -> list[str]:
        out.append(f"etcd auth as root:{creds.secrets.etcd_root_password}")
        return ["auth enabled"]

    monkeypatch.setattr(etcd_auth, "ensure", ensure)
    for check in ("etcd_healthy", "leader_is", "replicas_streaming", "ensure_roles", "routes_to_leader",
                  "vip_answers"):
        monkeypatch.setattr(Orchestrator, check, lambda self, *a: (True, "ok"))
    return out


def patroni_after_auth(events: list[str]) -> None:
    auth = events.index("etcd auth as root:r")
    etcd = [i for i, e in enumerate(events) if e.startswith("start etcd")]
    patroni = [i for i, e in enumerate(events) if e.startswith("start patroni")]
    assert len(etcd) == 3 and len(patroni) == 3 and max(etcd) < auth < min(patroni), events


def test_bring_up_enables_auth_between_etcd_and_patroni(events: list[str]) -> None:
    orch = Orchestrator(SPEC, Recorder(events), creds=CREDS)
    orch.start_etcd()
    orch.start_patroni()
    patroni_after_auth(events)
    assert "etcd authorization (users, roles, auth on)" in [name for name, _ in orch.timings.steps]


def test_reset_enables_auth_again_on_the_wiped_etcd(events: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Orchestrator, "etcd_leader_off", lambda self: None)  # test_orchestrate.py covers it
    plans: list[NodePlan] = []
    Orchestrator(SPEC, Recorder(events), creds=CREDS).reset(plans)
    assert events.index("stop etcd postgres-03") < events.index("etcd auth as root:r")
    patroni_after_auth(events[events.index("etcd auth as root:r") - 3:])


def test_patronis_role_covers_its_cluster_only() -> None:
    key = prefix(SPEC)
    assert (key, range_end(key)) == ("/service/postgresql-cluster/", "/service/postgresql-cluster0")
    other = spec_mod.parse({**spec_mod.default_data(lab=True), "cluster": {"name": "other", "namespace": "/pg/"}})
    assert prefix(other) == "/pg/other/"
    users = {u.name: u.permission for u in etcd_auth.users(CREDS.secrets)}
    assert users == {"root": None, "patroni": "READWRITE", "pgha-probe": "READ"}
