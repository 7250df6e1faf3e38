"""The seed's sequences as steps, written once against a Transport and the target's plans (lab or servers).

Each step says what it does, waits for a real outcome (etcd healthy, a Leader, streaming replicas, a
VIP) and on failure names the step, shows the last log lines of the component that failed and the
likely cause from the seed's common-problems table (section 19).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pgha import etcd_auth
from pgha.errors import StepFailed
from pgha.plan import NodePlan, etcd_env_file
from pgha.probe import Credentials
from pgha.probe import etcd as etcd_probe
from pgha.probe import haproxy as haproxy_probe
from pgha.probe import patroni as patroni_probe
from pgha.probe import pg as pg_probe
from pgha.render.etcd import ClusterState
from pgha.spec import ClusterSpec, Node
from pgha.transport.base import Transport

LIKELY_CAUSE = {
    "etcd": "etcd members cannot form a quorum: check certificates/SANs, ports 2379/2380 between the "
            "postgres nodes, and initial-cluster-state (seed section 19: 'no leader elected')",
    "patroni": "Patroni cannot reach etcd (TLS paths, certificate readable by postgres) or PostgreSQL did "
               "not start (seed section 19: 'node stuck in start failed')",
    "haproxy": "HAProxy cannot reach Patroni's REST API on 8008 or the check's TLS verification fails "
               "(seed section 19: 'HAProxy routing to the wrong node')",
    "keepalived": "keepalived is not running or no HAProxy is healthy (seed section 19: 'VIP not answering')",
}


class Reporter:
    """Where steps report; the CLI supplies one with a live display, tests a silent one."""

    def start(self, name: str) -> None:  # noqa: B027 - optional hook
        pass

    def done(self, name: str, seconds: float, detail: str = "") -> None:  # noqa: B027
        pass

    def failed(self, name: str, seconds: float) -> None:  # noqa: B027
        pass

    def update(self, name: str, detail: str) -> None:  # noqa: B027
        pass


@dataclass
class Timings:
    steps: list[tuple[str, float]] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(t for _, t in self.steps)


class Orchestrator:
    """Bring-up, etcd state flip and reset sequences for one cluster."""

    def __init__(self, spec: ClusterSpec, transport: Transport, reporter: Reporter | None = None,
                 creds: Credentials | None = None) -> None:
        self.spec, self.transport = spec, transport
        self.reporter = reporter or Reporter()
        self.timings = Timings()
        self._creds = creds
        self._last_wakeup = 0.0

    @property
    def creds(self) -> Credentials:
        """Loaded on first use: the PKI and secrets may be created by an earlier step."""
        if self._creds is None:
            self._creds = Credentials.of(self.spec)
        return self._creds

    # -- step machinery -----------------------------------------------------------------------
    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.reporter.start(name)
        t0 = time.monotonic()
        try:
            yield
        except BaseException:
            self.reporter.failed(name, time.monotonic() - t0)
            raise
        elapsed = time.monotonic() - t0
        self.timings.steps.append((name, elapsed))
        self.reporter.done(name, elapsed)

    def wait(self, step: str, check: Callable[[], tuple[bool, str]], timeout: float,
             component: str, nodes: tuple[Node, ...] = (), interval: float = 0.25) -> str:
        """Poll ``check`` until it says ok; on timeout fail with logs and the likely cause."""
        deadline = time.monotonic() + timeout
        detail = "no answer yet"
        while True:
            try:
                ok, detail = check()
            except Exception as exc:  # a probe error is a 'not yet', reported if it lasts
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            if ok:
                return detail
            self.reporter.update(step, detail)
            if time.monotonic() > deadline:
                raise StepFailed(step, f"not reached after {timeout:g} s: {detail}",
                                 hint=LIKELY_CAUSE.get(component), logs=self._logs(component, nodes))
            time.sleep(interval)

    def _logs(self, service: str, nodes: tuple[Node, ...]) -> str:
        parts = []
        for node in nodes:
            text = self.transport.logs(node, service, lines=12)
            parts.append(f"--- {node.name} {service} (last lines) ---\n{text or '(empty)'}")
        return "\n".join(parts)

    # -- checks -------------------------------------------------------------------------------
    def etcd_healthy(self) -> tuple[bool, str]:
        ms = etcd_probe.members(self.spec, self.creds, timeout=1.0)
        bad = [m.name for m in ms if not m.healthy]
        return not bad, f"{len(ms) - len(bad)}/{len(ms)} etcd members healthy" + (
            f" (waiting for {', '.join(bad)})" if bad else "")

    def patroni_members(self) -> list[patroni_probe.PatroniMember]:
        body, err = patroni_probe.cluster(self.spec, self.creds)
        if body is None:
            raise RuntimeError(err or "no Patroni REST API answers")
        return patroni_probe.parse_members(self.spec, body)

    def leader_is(self, node: Node) -> tuple[bool, str]:
        ms = self.patroni_members()
        leader = next((m for m in ms if m.is_leader and m.is_running), None)
        if leader is None:
            return False, "no leader yet: " + ", ".join(f"{m.name}={m.role}/{m.state}" for m in ms)
        return leader.name == node.member_name, f"leader {leader.name}"

    def replicas_streaming(self, want: int) -> tuple[bool, str]:
        now = time.monotonic()
        if now - self._last_wakeup > 1.0:
            self._last_wakeup = now
            patroni_probe.wake_up(self.spec, self.spec.postgres_nodes, self.creds)
        ms = self.patroni_members()
        streaming = [m for m in ms if not m.is_leader and m.state == "streaming" and m.lag_mb == 0]
        return len(streaming) >= want, f"{len(streaming)}/{want} replicas streaming with lag 0 " + \
            "(" + ", ".join(f"{m.name}={m.role}/{m.state}" for m in ms) + ")"

    def haproxy_routes_to_leader(self) -> tuple[bool, str]:
        views = [haproxy_probe.view(self.spec, n, timeout=1.0) for n in self.spec.haproxy_nodes]
        ups = {v.node: v.up("postgres_primary") for v in views}
        ok = all(v.reachable and len(ups[v.node]) == 1 for v in views)
        return ok, "; ".join(f"{n}: primary backend UP={u}" for n, u in ups.items())

    def vip_holders(self) -> list[str]:
        return [n.name for n in self.spec.haproxy_nodes
                if self.transport.holds_address(n, str(self.spec.vip.address), self.spec.vip.interface)]

    def vip_answers(self) -> tuple[bool, str]:
        holders = self.vip_holders()
        if len(holders) != 1:
            return False, f"VIP held by {holders or 'nobody'}"
        rows = pg_probe.query(str(self.spec.vip.address), self.spec.ports.postgresql, self.creds,
                              "select pg_is_in_recovery()", connect_timeout=2)
        return rows == [(False,)], f"VIP on {holders[0]}, primary answers through it"

    # -- sequences ----------------------------------------------------------------------------
    def apply_plans(self, plans: list[NodePlan]) -> None:
        with self.step("certificates and configs"):
            for plan in plans:
                self.transport.apply(plan)
            self.transport.install_services(plans)

    def start_etcd(self) -> None:
        pg = self.spec.postgres_nodes
        with self.step("etcd on the postgres nodes"):
            for node in pg:
                self.transport.start(node, "etcd")
        with self.step("etcd health (all members, mTLS)"):
            self.wait("etcd health (all members, mTLS)", self.etcd_healthy, 45, "etcd", pg)
        self.ensure_etcd_auth()

    def ensure_etcd_auth(self) -> None:
        """etcd's users, roles and grants, then auth on (:mod:`pgha.etcd_auth`); before Patroni starts,
        whose config carries its etcd user's password."""
        name = "etcd authorization (users, roles, auth on)"
        with self.step(name):
            done = etcd_auth.ensure(self.spec, self.creds)
            self.reporter.update(name, "; ".join(done) or "already in place")

    def start_patroni(self) -> None:
        first, *others = self.spec.postgres_nodes
        with self.step(f"Patroni on {first.name}, wait for Leader"):
            self.transport.start(first, "patroni")
            self.wait(f"Patroni on {first.name}, wait for Leader", lambda: self.leader_is(first), 90,
                      "patroni", (first,))
        if others:
            name = f"Patroni on {', '.join(n.name for n in others)}, wait for streaming replicas"
            with self.step(name):
                for node in others:
                    self.transport.start(node, "patroni")
                self.wait(name, lambda: self.replicas_streaming(len(others)), 120, "patroni", tuple(others))

    def set_etcd_state(self, state: ClusterState, plans: list[NodePlan], restart: bool = True) -> None:
        """Rewrite etcd.env on each member (paths from its plan); restart them one at a time, keeping quorum."""
        name = f"etcd initial-cluster-state = {state}"
        with self.step(name):
            for plan in plans:
                if not plan.node.is_postgres:
                    continue
                changed = self.transport.put_file(plan.node, etcd_env_file(plan.layout, state))
                if changed and restart:
                    self.transport.restart(plan.node, "etcd")
                    self.wait(name, self.etcd_healthy, 45, "etcd", (plan.node,))

    def start_proxies(self) -> None:
        """HAProxy, then keepalived once HAProxy routes (a failing check would delay the election)."""
        ha = self.spec.haproxy_nodes
        with self.step("HAProxy on the haproxy nodes"):
            for node in ha:
                self.transport.start(node, "haproxy")
            self.wait("HAProxy on the haproxy nodes", self.haproxy_routes_to_leader, 30, "haproxy", ha)
        with self.step("keepalived, wait for the VIP"):
            for node in ha:
                self.transport.start(node, "keepalived")
            self.wait("keepalived, wait for the VIP", self.vip_answers, 30, "keepalived", ha)

    def bring_up(self, plans: list[NodePlan]) -> Timings:
        """The seed's order: configs, etcd, first Patroni, the others, etcd 'existing', HAProxy, VIP."""
        self.apply_plans(plans)
        self.start_etcd()
        self.start_patroni()
        self.set_etcd_state("existing", plans)
        self.start_proxies()
        return self.timings

    def reset(self, plans: list[NodePlan]) -> Timings:
        """The seed's section 18: a cluster rebuilt from nothing, certificates kept.

        Patroni stops everywhere before etcd (so it releases the leader key cleanly), etcd and
        PostgreSQL data are wiped, initial-cluster-state goes back to 'new', then the bring-up order
        until HAProxy routes to the new leader and the VIP answers.
        """
        pg = self.spec.postgres_nodes
        with self.step("stop Patroni on every node, then etcd"):
            for node in reversed(pg):  # replicas first: no failover race while the leader stops
                self.transport.stop(node, "patroni")
            for node in pg:
                self.transport.stop(node, "etcd")
        with self.step("wipe etcd and PostgreSQL data (certificates kept)"):
            for plan in plans:
                if plan.node.is_postgres:
                    self.transport.remove_tree(plan.node, plan.layout.etcd_data)
                    self.transport.remove_tree(plan.node, plan.layout.pg_data)
                    for d in plan.dirs:
                        self.transport.ensure_dir(plan.node, d)
        self.set_etcd_state("new", plans, restart=False)
        self.start_etcd()
        self.start_patroni()
        self.set_etcd_state("existing", plans)
        name = "HAProxy routes to the new leader, the VIP answers"
        with self.step(name):  # HAProxy and keepalived kept running: their checks find the new primary
            self.wait(name, self.haproxy_routes_to_leader, 30, "haproxy", self.spec.haproxy_nodes)
            self.wait(name, self.vip_answers, 30, "keepalived", self.spec.haproxy_nodes)
        return self.timings
