"""`pgha lab crash NODE` / `pgha lab start NODE` as calls on the Transport, with a recording fake
(no root, no daemons; tests/lab/test_lab.py crashes the real leader)."""

from __future__ import annotations

from typing import Any

import pytest

from pgha import spec as spec_mod
from pgha.errors import UsageError
from pgha.lab.control import Lab
from pgha.transport.base import ServiceState, Transport


class Recorder:
    """The slice of the namespace transport that crash and start use, recording each call."""

    crash_node = Transport.crash_node  # the real one (the drills' node-crash uses it too), over the calls below

    def __init__(self, running: bool = True) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.supervisor = type("S", (), {"is_running": staticmethod(lambda: running)})()

    def node_root(self, node: Any) -> str:
        return f"/lab/{node.name}"

    def service_state(self, node: Any, service: str) -> ServiceState:
        return ServiceState(node.name, service, True, 100 + len(self.calls), "running")

    def kill(self, node: Any, service: str, sig: str = "KILL", hold: bool = False) -> None:
        self.calls.append(("kill", node.name, service, sig, hold))

    def kill_postmaster(self, node: Any, pg_data: str, sig: str = "KILL") -> int | None:
        self.calls.append(("kill_postmaster", node.name, sig))
        return 4242

    def start(self, node: Any, service: str) -> None:
        self.calls.append(("start", node.name, service))


@pytest.fixture
def lab() -> Lab:
    the_lab = Lab(spec_mod.parse(spec_mod.default_data(lab=True, name="pgha-unit-crash")))
    the_lab.transport = Recorder()  # type: ignore[assignment]
    return the_lab


def test_crash_kills_every_service_and_the_postmaster_held_down(lab: Lab) -> None:
    said = lab.crash("postgres-02")
    # postgres_exporter, Patroni, its detached postmaster at once after it, then etcd: all SIGKILL, held down.
    assert lab.transport.calls == [("kill", "postgres-02", "postgres_exporter", "KILL", True),  # type: ignore[attr-defined]
                                   ("kill", "postgres-02", "patroni", "KILL", True),
                                   ("kill_postmaster", "postgres-02", "KILL"),
                                   ("kill", "postgres-02", "etcd", "KILL", True),
                                   ("kill", "postgres-02", "pgbackrest", "KILL", True)]
    assert said == ("postgres-02 crashed: SIGKILL postgres_exporter (pid 100), patroni (pid 101), postmaster "
                    "(pid 4242), etcd (pid 103), pgbackrest (pid 104); "
                    "held down until `pgha lab start postgres-02`")


def test_crash_of_an_haproxy_node_and_start_of_every_service(lab: Lab) -> None:
    lab.crash("haproxy-02")
    assert [c[2] for c in lab.transport.calls] == ["keepalived", "haproxy"]  # type: ignore[attr-defined]
    lab.transport.calls.clear()  # type: ignore[attr-defined]
    assert lab.start("postgres-01") == "started pgbackrest, etcd, patroni, postgres_exporter on postgres-01"
    assert lab.start("haproxy-02", "keepalived") == "started keepalived on haproxy-02"
    assert lab.transport.calls == [("start", "postgres-01", "pgbackrest"), ("start", "postgres-01", "etcd"),  # type: ignore[attr-defined]
                                   ("start", "postgres-01", "patroni"), ("start", "postgres-01", "postgres_exporter"),
                                   ("start", "haproxy-02", "keepalived")]


def test_crash_needs_a_running_lab_and_a_known_node(lab: Lab) -> None:
    with pytest.raises(UsageError, match="no node named 'postgres-09'"):
        lab.crash("postgres-09")
    lab.transport = Recorder(running=False)  # type: ignore[assignment]
    with pytest.raises(UsageError, match="no lab is running for cluster pgha-unit-crash"):
        lab.crash("postgres-01")
    assert lab.transport.calls == []  # type: ignore[attr-defined]
