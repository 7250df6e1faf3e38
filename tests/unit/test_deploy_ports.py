"""The deploy's port check (the seed's section 2) without machines: the pairs, the report and its fix,
and the whole check on this machine's loopback (six node addresses 127.0.0.200-205, high ports)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pgha import spec as spec_mod
from pgha.deploy import ports
from pgha.doctor.model import PortFact
from pgha.spec import ClusterSpec, Node
from pgha.topology import port_matrix
from pgha.transport.base import CommandResult


def loopback_spec() -> ClusterSpec:
    data = spec_mod.default_data(subnet="127.0.0.0/24")
    data["ports"] = {"etcd_client": 42379, "etcd_peer": 42380, "postgresql": 45432, "postgresql_replicas": 45433,
                     "restapi": 48008, "haproxy_monitor": 48404, "pgbackrest": 48432}
    data["deploy"] = {"packages": "bundle", "ssh": {"user": "root"}}
    return spec_mod.parse(data)


class Local:
    """Runs a node's commands on this machine (the port check only needs ``run``)."""

    def run(self, node: Node, argv: list[str], *, timeout: float = 60, user: str | None = None) -> CommandResult:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def test_the_seeds_table_as_pairs() -> None:
    spec = loopback_spec()
    pg, ha = spec.postgres_nodes, spec.haproxy_nodes
    assert {(t.name, p) for t, p, _ in port_matrix(spec, pg[0])} == {
        (n.name, p) for n in pg[1:] for p in (42379, 42380, 45432, 48008)} | {("backup-01", 48432)}
    assert {(t.name, p) for t, p, _ in port_matrix(spec, spec.node("backup-01"))} == {(n.name, 48432) for n in pg}
    assert {p for _, p, _ in port_matrix(spec, ha[0])} == {45432, 48008}
    operator = {(t.name, p) for t, p, _ in port_matrix(spec, None)}
    monitor = spec.monitor_node
    assert monitor is not None
    assert operator == {(n.name, p) for n in pg for p in (42379, 45432, 48008)} | {(n.name, 48404) for n in ha} | {
        (monitor.name, 9090), (monitor.name, 9093)}
    assert {(t.name, p) for t, p, _ in port_matrix(spec, monitor)} == {
        (n.name, p) for n in pg for p in (42379, 48008, 9187)} | {(n.name, 48404) for n in ha}
    assert sum(len(v) for v in ports.pairs(spec, spec.nodes).values()) == 3 * 8 + 3 * 6 + 12 + 14 + 6


def test_limit_keeps_the_pairs_touching_the_selected_node() -> None:
    spec = loopback_spec()
    chosen = spec.node("postgres-02")
    todo = ports.pairs(spec, (chosen,))
    assert len(todo[chosen]) == 9  # its own connects to both peers and to the backup node
    assert all(t == chosen for s, targets in todo.items() if s != chosen for t, _, _ in targets)
    assert len(todo[spec.node("haproxy-01")]) == 2 and len(todo[None]) == 3
    assert len(todo[spec.node("backup-01")]) == 1


def test_a_blocked_pair_is_named_with_its_firewall_rule() -> None:
    spec = loopback_spec()
    blocked = [PortFact("haproxy-02", "postgres-03", "127.0.0.205", p, what, False, "No route to host")
               for p, what in ((45432, "PostgreSQL"), (48008, "Patroni REST API"))]
    report = ports.PortReport((*blocked, PortFact("haproxy-01", "postgres-03", "127.0.0.205", 45432, "PostgreSQL",
                                                  True)), fixes=ports.fixes(spec, blocked))
    assert not report.passed and len(report.blocked) == 2
    err = report.error()
    assert err.exit_code == 1 and "2 blocked" in err.message and "nothing was installed" in err.message
    assert err.details and err.details.splitlines()[0] == \
        "haproxy-02 -> postgres-03 127.0.0.205:45432 (PostgreSQL): No route to host"
    assert err.hint and "allow TCP 45432,48008 from haproxy-02 to postgres-03 (127.0.0.205)" in err.hint
    assert "ufw allow proto tcp from 127.0.0.201 to any port 45432,48008" in err.hint
    assert "--no-port-check" in err.hint
    assert report.as_dict()["blocked"][1]["port"] == 48008


def _alive(pid: int) -> bool:
    try:
        return ports.MARKER.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_the_whole_check_on_loopback_with_listeners_and_a_foreign_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = loopback_spec()
    holder = socket.socket()  # something else holds postgres-01's PostgreSQL port
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("127.0.0.203", 45432))
    except OSError as exc:
        pytest.skip(f"127.0.0.203:45432 not free here: {exc}")
    holder.listen(8)
    # Another process on the same port of another address: not the holder of postgres-01's address.
    decoy = subprocess.Popen([sys.executable, "-c", "import socket, time; s = socket.socket(); "
                              "s.bind(('127.0.0.209', 45432)); s.listen(1); print('up', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    assert decoy.stdout is not None and decoy.stdout.readline().strip() == "up"
    pids: list[int] = []
    real_listen = ports._listen

    def spy(transport: object, node: Node, wanted: list[int]) -> dict[str, object]:
        data = real_listen(transport, node, wanted)  # type: ignore[arg-type]
        pids.append(int(data.get("pid") or 0))  # type: ignore[call-overload]
        return data

    monkeypatch.setattr(ports, "_listen", spy)
    try:
        report = ports.check(spec, Local())  # type: ignore[arg-type]
    finally:
        holder.close()
        decoy.kill()
        decoy.wait()
    assert not report.blocked, report.lines()
    assert len(report.facts) == 74  # 54 of the seed, 12 from the monitor node, 2 from the operator to it, 6 pgBackRest
    assert report.listened["postgres-02"] == (9187, 42379, 42380, 45432, 48008, 48432)
    assert report.listened["postgres-01"] == (9187, 42379, 42380, 48008, 48432)
    assert report.listened["backup-01"] == (48432,)
    assert report.listened["haproxy-01"] == (48404,)
    [problem] = report.problems
    assert problem.startswith("postgres-01 127.0.0.203:45432 is in use by ") and f"(pid {os.getpid()}" in problem
    assert problem.endswith("not by pgha's services")
    assert len([p for p in pids if p]) == 8 and not any(_alive(p) for p in pids if p)  # killed by pid
    assert any("VRRP" in n and "not checked" in n for n in report.notes)
    assert report.seconds < 10
