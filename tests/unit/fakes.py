"""In-memory stand-ins for the Transport and the Prober: the orchestration tested without root or daemons.

``FakeTransport`` keeps files, directories and running services in dictionaries and records every
verb it is asked for; ``FakeProber`` answers snapshots from a script (a list, or a function of the
fake transport's state) and records the REST calls made through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from pgha.plan import DirEntry, FileEntry, NodePlan
from pgha.probe import Credentials
from pgha.probe.cluster import Prober
from pgha.probe.etcd import EtcdMember
from pgha.probe.haproxy import BackendServer, HaproxyView
from pgha.probe.patroni import PatroniApi, PatroniMember
from pgha.probe.snapshot import ClusterSnapshot
from pgha.secrets import Secrets
from pgha.spec import ClusterSpec, Dcs, Node
from pgha.transport.base import CommandResult, ServiceState, Transport

CREDS = Credentials("/nonexistent/ca.crt", "/nonexistent/client.crt", "/nonexistent/client.key",
                    Secrets("su", "repl", "rest", "vrrp"))
"""Credentials that are never used to connect: the fakes talk to nobody."""


class FakeTransport(Transport):
    """Files, directories and services in memory; every verb recorded in :attr:`calls`."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], FileEntry] = {}
        self.dirs: dict[tuple[str, str], DirEntry] = {}
        self.running: set[tuple[str, str]] = set()
        self.calls: list[tuple[str, str, str]] = []
        """(verb, node, service or path or command), in order."""
        self.log_text: dict[tuple[str, str], str] = {}
        self.vip_on: set[str] = set()

    def verbs(self, *verbs: str) -> list[tuple[str, str, str]]:
        return [c for c in self.calls if c[0] in verbs]

    # -- commands and files ---------------------------------------------------------------------
    def run(self, node: Node, argv: list[str], *, timeout: float = 60, user: str | None = None) -> CommandResult:
        self.calls.append(("run", node.name, " ".join(argv)))
        return CommandResult(tuple(argv), 0, "", "")

    def check(self, node: Node, argv: list[str], what: str, *, timeout: float = 60) -> CommandResult:
        return self.run(node, argv, timeout=timeout)

    def put_file(self, node: Node, entry: FileEntry) -> bool:
        changed = self.files.get((node.name, entry.path)) != entry
        self.files[(node.name, entry.path)] = entry
        self.calls.append(("put", node.name, entry.path))
        return changed

    def ensure_dir(self, node: Node, entry: DirEntry) -> bool:
        changed = self.dirs.get((node.name, entry.path)) != entry
        self.dirs[(node.name, entry.path)] = entry
        return changed

    def read_file(self, node: Node, path: str) -> bytes | None:
        entry = self.files.get((node.name, path))
        return entry.content if entry else None

    def remove_tree(self, node: Node, path: str) -> None:
        self.calls.append(("remove", node.name, path))
        for key in [k for k in self.files if k[0] == node.name and k[1].startswith(path)]:
            del self.files[key]

    def ensure_users(self, node: Node, users: tuple[str, ...]) -> None:
        self.calls.append(("users", node.name, ",".join(users)))

    # -- services ---------------------------------------------------------------------------------
    def install_services(self, plans: list[NodePlan]) -> None:
        self.calls.append(("install", "", ",".join(p.node.name for p in plans)))

    def start(self, node: Node, service: str) -> None:
        self.calls.append(("start", node.name, service))
        self.running.add((node.name, service))

    def stop(self, node: Node, service: str) -> None:
        self.calls.append(("stop", node.name, service))
        self.running.discard((node.name, service))

    def restart(self, node: Node, service: str) -> None:
        self.calls.append(("restart", node.name, service))
        self.running.add((node.name, service))

    def reload(self, node: Node, service: str) -> None:
        self.calls.append(("reload", node.name, service))

    def kill(self, node: Node, service: str, sig: str = "KILL", hold: bool = False) -> None:
        self.calls.append((f"kill-{sig}" + ("-held" if hold else ""), node.name, service))
        if hold:
            self.running.discard((node.name, service))

    def service_state(self, node: Node, service: str) -> ServiceState:
        up = (node.name, service) in self.running
        return ServiceState(node.name, service, up, 100 if up else None, "running" if up else "stopped")

    def logs(self, node: Node, service: str, lines: int = 50) -> str:
        return self.log_text.get((node.name, service), "")

    def holds_address(self, node: Node, address: str, interface: str) -> bool:
        return node.name in self.vip_on

    def parallel(self, items: Iterable[Any], fn: Callable[[Any], Any]) -> list[Any]:
        return [fn(i) for i in items]


# -- snapshots ----------------------------------------------------------------------------------------
def snapshot(spec: ClusterSpec, *, leader: str | None = "postgresql-01", streaming: Sequence[str] | None = None,
             lag_mb: float = 0.0, etcd_down: Sequence[str] = (), routes_to: str | None = "leader",
             holders: Sequence[str] = ("haproxy-01",), config: Dcs | None = None, paused: bool = False,
             sync_standby: str | None = None, unanswered: Sequence[tuple[str, str]] = (),
             members: Sequence[str] | None = None, **member_changes: dict[str, Any]) -> ClusterSnapshot:
    """A cluster as a test wants it: a leader, the other members streaming (or only ``streaming``), every
    HAProxy routing to ``routes_to`` ("leader": the leader), the VIP on ``holders``. ``member_changes``
    alter one member (by member name with '-' as '_') after the fact."""
    names = list(members) if members is not None else [n.member_name for n in spec.postgres_nodes]
    out = []
    for name in names:
        node = spec.node(name)
        if name == leader:
            m = PatroniMember(name, node.name, str(node.address), "leader", "running", 1, None, {})
        else:
            up = streaming is None or name in streaming
            role = "sync_standby" if name == sync_standby else "replica"
            m = PatroniMember(name, node.name, str(node.address), role, "streaming" if up else "stopped", 1,
                              lag_mb if up else None, {})
        out.append(replace(m, **member_changes.get(name.replace("-", "_"), {})))
    target = leader if routes_to == "leader" else routes_to
    views = tuple(HaproxyView(n.name, True, tuple(
        BackendServer("postgres_primary", p.member_name, "UP" if p.member_name == target else "DOWN")
        for p in spec.postgres_nodes)) for n in spec.haproxy_nodes)
    etcd = tuple(EtcdMember(n.member_name, f"https://{n.address}:2379", n.member_name not in etcd_down,
                            i == 0, error="down" if n.member_name in etcd_down else None)
                 for i, n in enumerate(spec.postgres_nodes))
    return ClusterSnapshot(0.0, etcd, tuple(out), paused, None, views, str(spec.vip.address), tuple(holders),
                           config=config or spec.dcs,
                           expected_members=tuple(n.member_name for n in spec.postgres_nodes),
                           unanswered=tuple(unanswered), vip_error=None if len(holders) == 1 else "held by nobody")


class FakeApi(PatroniApi):
    """A node's REST API that answers from the prober's script and records each call."""

    def __init__(self, prober: FakeProber, node: Node) -> None:
        super().__init__(prober.spec, node, CREDS)
        self.prober = prober

    def get(self, path: str) -> tuple[int, Any]:
        return self.call("GET", path)

    def call(self, method: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
        self.prober.calls.append((self.node.name, method, path, body))
        answer = self.prober.answers.get((method, path), (200, {}))
        return answer(body) if callable(answer) else answer


class FakeProber(Prober):
    """Snapshots from a script: a list (each call takes the next; the last repeats) or a function."""

    def __init__(self, spec: ClusterSpec, script: Sequence[ClusterSnapshot] | Callable[[], ClusterSnapshot],
                 through_vip: tuple[str, bool] | None = None) -> None:
        super().__init__(spec, CREDS)
        self.script = script
        self.taken = 0
        self.woken = 0
        self.vip_answer = through_vip
        self.last: ClusterSnapshot | None = None
        self.calls: list[tuple[str, str, str, Any]] = []
        """(node, method, path, body) of every REST call."""
        self.answers: dict[tuple[str, str], Any] = {}
        """(method, path) -> (code, body), or a function of the request body returning one."""

    def snapshot(self) -> ClusterSnapshot:
        self.taken += 1
        self.last = self.script() if callable(self.script) else self.script[min(self.taken, len(self.script)) - 1]
        return self.last

    def wake_up(self, nodes: tuple[Node, ...] | None = None) -> None:
        self.woken += 1

    def through_vip(self) -> tuple[str, bool]:
        """The answer given, else the last snapshot's leader as a primary (the VIP works)."""
        if self.vip_answer is not None:
            return self.vip_answer
        leader = self.last.leader if self.last else None
        return (str(self.spec.node(leader.name).address) if leader else "10.0.0.1"), False

    def api(self, node: Node, timeout: float | None = None) -> PatroniApi:
        return FakeApi(self, node)
