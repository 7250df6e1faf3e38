"""The seed's section 2 before anything is installed: every port open between the nodes that need it.

    pairs      the spec's :func:`~pgha.topology.port_matrix`: PostgreSQL nodes with each other
               (etcd client and peer, PostgreSQL, Patroni's REST API), HAProxy nodes to the PostgreSQL
               nodes (PostgreSQL, REST API), this machine to what pgha's probes use; with ``--limit``
               the pairs that start or end on a selected node
    listen     on fresh servers nothing listens yet: a short-lived listener (:mod:`pgha.deploy.listener`,
               run by the server's python3, ending by itself after :data:`LIFETIME`) on each target port
               that is free; a port one of pgha's services already serves is left to it; a port anything
               else holds is a conflict (that service could not start there)
    connect    from every source at once, each connect with a timeout (doctor's ``node_ports`` and
               ``operator_ports``)
    clean up   the listeners killed by pid as soon as the connects are done

VRRP (IP protocol 112, unicast between the HAProxy nodes) is not TCP and cannot be tried this way: the
report says so. The applications' port on the VIP exists once keepalived holds it: `verify` checks it.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pgha.deploy import listener
from pgha.doctor.collect import node_ports, operator_ports
from pgha.doctor.model import PortFact
from pgha.errors import PghaError, pgha_command
from pgha.spec import ClusterSpec, Node
from pgha.topology import SERVICES, port_matrix
from pgha.transport.base import Transport

LIFETIME = 60
"""Seconds a temporary listener lives if nobody kills it (an interrupted deploy)."""
MARKER = "pgha-port-listener"
"""In the listener's command line: a pid is killed only if it still is one of ours."""
LISTENER = Path(listener.__file__).read_text()
"""The temporary listener's program (:mod:`pgha.deploy.listener`), as sent to ``python3 -c``."""
T = TypeVar("T")
R = TypeVar("R")

_KILL = r"""pid=$1; grep -qa {marker} /proc/$pid/cmdline 2>/dev/null || exit 0; kill $pid
i=0; while grep -qa {marker} /proc/$pid/cmdline 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
""".replace("{marker}", MARKER)


@dataclass(frozen=True)
class PortReport:
    """What the check found: every connect, the listeners it started, what it could not check."""

    facts: tuple[PortFact, ...]
    listened: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Ports that got a temporary listener, per node."""
    served: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Ports already served by one of pgha's services, per node (checked against the service)."""
    problems: tuple[str, ...] = ()
    """Ports held by something else, an address that is not the node's (the service could not listen
    there), a node the check cannot reach."""
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()
    """The firewall rules to add, one per target node and source."""

    @property
    def blocked(self) -> list[PortFact]:
        """The connects that failed."""
        return [f for f in self.facts if not f.ok]

    @property
    def passed(self) -> bool:
        """Nothing blocked, no other problem: the deploy may go on."""
        return not self.blocked and not self.problems

    def lines(self) -> list[str]:
        """One line per problem: ``source -> target address:port (service): error``."""
        return [f"{f.source} -> {f.target} {f.address}:{f.port} ({f.service}): {f.error or 'failed'}"
                for f in self.blocked] + list(self.problems)

    def summary(self) -> str:
        """One line: connects, verdict, listeners, time."""
        listened = sum(len(p) for p in self.listened.values())
        verdict = "all open" if self.passed else f"{len(self.blocked)} blocked, {len(self.problems)} other problem(s)"
        return (f"ports (seed section 2): {len(self.facts)} connects, {verdict}; "
                f"{listened} temporary listener port(s) ({self.seconds:.1f} s)")

    def error(self) -> PghaError:
        """The one error a deploy stops with: every blocked pair, and the firewall rules to add."""
        hint = "; ".join(self.fixes)
        if self.problems:
            hint = "; ".join(filter(None, [hint, "stop what holds a port pgha needs (or change `ports:` in the "
                                                 "spec); check each node's address"]))
        what = [f"{len(self.blocked)} blocked" if self.blocked else "",
                f"{len(self.problems)} other problem(s)" if self.problems else ""]
        return PghaError(f"ports the cluster needs are not open (the seed's section 2): "
                         f"{', '.join(filter(None, what))}; nothing was installed or started",
                         details="\n".join(self.lines() + list(self.notes)),
                         hint=hint + f" — or skip this check: {pgha_command('deploy', '--no-port-check')}")

    def as_dict(self) -> dict[str, Any]:
        """The report for ``--format json``."""
        return {"passed": self.passed, "seconds": round(self.seconds, 2), "connects": len(self.facts),
                "blocked": [{"source": f.source, "target": f.target, "address": f.address, "port": f.port,
                             "service": f.service, "error": f.error} for f in self.blocked],
                "problems": list(self.problems), "fixes": list(self.fixes),
                "listened": {k: list(v) for k, v in self.listened.items()},
                "served": {k: list(v) for k, v in self.served.items()}, "notes": list(self.notes)}


def pairs(spec: ClusterSpec, selected: tuple[Node, ...]) -> dict[Node | None, list[tuple[Node, int, str]]]:
    """Per source (None: this machine) the targets to try: the pairs touching a selected node."""
    chosen = set(selected)
    out: dict[Node | None, list[tuple[Node, int, str]]] = {}
    for source in (*spec.nodes, None):
        targets = [t for t in port_matrix(spec, source) if source in chosen or t[0] in chosen]
        if targets:
            out[source] = targets
    return out


def _listen(transport: Transport, node: Node, ports: list[int]) -> dict[str, Any]:
    """Start the node's listeners: ``{"pid": int, "ports": {port: state}}``, or ``{"error": text}``."""
    try:
        res = transport.run(node, ["python3", "-c", LISTENER, MARKER, str(node.address), str(LIFETIME),
                                   *map(str, ports)], timeout=30)
        data: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    except PghaError as exc:
        return {"error": str(exc)}
    except (ValueError, IndexError):
        return {"error": f"temporary listeners did not start (exit {res.returncode}, python3 needed): "
                         f"{(res.stderr or res.stdout).strip()[-300:]}"}
    return data


def _stop(transport: Transport, node: Node, pid: int) -> None:
    """Kill a listener by pid, if that pid still is one (then wait until it is gone)."""
    transport.run(node, ["sh", "-c", _KILL, "-", str(pid)], timeout=30)


def _parallel(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(fn, items))


def _connects(transport: Transport, spec: ClusterSpec, source: Node | None,
              targets: list[tuple[Node, int, str]]) -> tuple[list[PortFact], str | None]:
    if source is None:
        return list(operator_ports(spec, targets)), None
    try:
        return list(node_ports(transport, spec, source, targets)), None
    except PghaError as exc:
        return [], f"{source.name}: its connects could not be tried: {exc}"


def check(spec: ClusterSpec, transport: Transport, selected: tuple[Node, ...] | None = None) -> PortReport:
    """Listen where nothing does, connect from every source, stop the listeners; see the module docstring."""
    t0 = time.monotonic()
    todo = pairs(spec, selected or spec.nodes)
    wanted: dict[Node, set[int]] = defaultdict(set)
    for targets in todo.values():
        for t, port, _ in targets:
            wanted[t].add(port)
    nodes = list(wanted)
    started = _parallel(lambda n: _listen(transport, n, sorted(wanted[n])), nodes)
    ours = {f"{s}.service" for s in SERVICES}
    listened: dict[str, tuple[int, ...]] = {}
    served: dict[str, tuple[int, ...]] = {}
    problems: list[str] = []
    facts: list[PortFact] = []
    try:
        for node, data in zip(nodes, started, strict=True):
            if "error" in data:
                problems.append(f"{node.name}: no temporary listeners: {data['error']}")
                continue
            states = {int(p): s for p, s in data["ports"].items()}
            listened[node.name] = tuple(p for p, s in states.items() if s["state"] == "listening")
            served[node.name] = tuple(p for p, s in states.items() if s["state"] == "in use" and s.get("unit") in ours)
            problems += [_problem(node, p, s) for p, s in sorted(states.items())
                         if s["state"] == "error" or (s["state"] == "in use" and s.get("unit") not in ours)]
        for found, problem in _parallel(lambda s: _connects(transport, spec, s, todo[s]), list(todo)):
            facts += found
            problems += [problem] if problem else []
    finally:
        _parallel(lambda nd: _stop(transport, nd[0], nd[1]["pid"]),
                  [(n, d) for n, d in zip(nodes, started, strict=True) if d.get("pid")])
    haproxy = ", ".join(n.name for n in spec.haproxy_nodes)
    notes = (f"not checked: VRRP (IP protocol 112, unicast) between {haproxy}, keepalived's "
             "election: not TCP; allow it between them (e.g. `iptables -A INPUT -p vrrp -s <peer> -j ACCEPT`)",
             f"not checked here: applications -> VIP {spec.vip.address}:{spec.ports.postgresql} and "
             f":{spec.ports.postgresql_replicas} (the VIP exists once keepalived runs; "
             f"`{pgha_command('verify')}` checks it)")
    return PortReport(tuple(facts), {k: v for k, v in listened.items() if v}, {k: v for k, v in served.items() if v},
                      tuple(problems), time.monotonic() - t0, notes, fixes(spec, facts))


def fixes(spec: ClusterSpec, facts: list[PortFact]) -> tuple[str, ...]:
    """Per target and source, the rule that opens the blocked ports (on the target, or any firewall between)."""
    ports: dict[tuple[str, str], set[int]] = defaultdict(set)
    for f in facts:
        if not f.ok:
            ports[(f.target, f.source)].add(f.port)
    out = []
    for (target, source), found in sorted(ports.items()):
        listed = ",".join(map(str, sorted(found)))
        address = next((str(n.address) for n in spec.nodes if n.name == source), "<this machine's address>")
        out.append(f"allow TCP {listed} from {source} to {target} ({spec.node(target).address}) in the firewalls "
                   f"between them, e.g. on {target}: `ufw allow proto tcp from {address} to any port {listed}`")
    return tuple(out)


def _problem(node: Node, port: int, state: dict[str, Any]) -> str:
    if state["state"] == "in use":
        who = (f"{state['comm']} (pid {state['pid']}{', ' + state['unit'] if state.get('unit') else ''})"
               if state.get("pid") else "a process pgha cannot see")
        return f"{node.name} {node.address}:{port} is in use by {who}, not by pgha's services"
    hint = " (is that address on this server?)" if "assign" in str(state.get("error")) else ""
    return f"{node.name}: cannot listen on {node.address}:{port}: {state.get('error')}{hint}"
