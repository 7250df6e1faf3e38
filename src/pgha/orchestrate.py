"""The seed's sequences as steps, written once against a Transport and the target's plans (lab or servers).

Each step says what it does, waits for a real outcome (etcd healthy, a Leader, streaming replicas, a
VIP) and on failure names the step, shows the last log lines of the component that failed and the
likely cause from the seed's common-problems table (section 19).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from pgha import etcd_auth, etcd_leader, monitoring, poll, roles
from pgha.backup.repo import Repository
from pgha.errors import StepFailed, pgha_command
from pgha.plan import NodePlan, etcd_env_file
from pgha.probe import Credentials
from pgha.probe.cluster import Prober
from pgha.render.etcd import ClusterState
from pgha.spec import ClusterSpec, Node, Role
from pgha.topology import services_of
from pgha.transport.base import Transport

LIKELY_CAUSE = {
    "etcd": "etcd members cannot form a quorum: check certificates/SANs, ports 2379/2380 between the "
            "postgres nodes, and initial-cluster-state (seed section 19: 'no leader elected')",
    "patroni": "Patroni cannot reach etcd (TLS paths, certificate readable by postgres) or PostgreSQL did "
               "not start (seed section 19: 'node stuck in start failed')",
    "haproxy": "HAProxy cannot reach Patroni's REST API on 8008 or the check's TLS verification fails "
               "(seed section 19: 'HAProxy routing to the wrong node')",
    "keepalived": "keepalived is not running or no HAProxy is healthy (seed section 19: 'VIP not answering')",
    "pgbackrest": "pgBackRest's servers cannot reach each other over TLS (port 8432, certificates from the "
                  "cluster CA) or the repository belongs to another database (a cluster rebuilt over it)",
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
                 creds: Credentials | None = None, prober: Prober | None = None) -> None:
        self.spec, self.transport = spec, transport
        self.reporter = reporter or Reporter()
        self.timings = Timings()
        self._creds = creds
        self._prober = prober
        self._last_wakeup = 0.0

    @property
    def creds(self) -> Credentials:
        """Loaded on first use: the PKI and secrets may be created by an earlier step."""
        if self._creds is None:
            self._creds = Credentials.of(self.spec)
        return self._creds

    @property
    def prober(self) -> Prober:
        """Made on first use, like the credentials it needs."""
        if self._prober is None:
            self._prober = Prober(self.spec, self.creds, self.transport)
        return self._prober

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
        try:
            return poll.until(step, check, timeout, interval=interval,
                              progress=lambda seen: self.reporter.update(step, seen))
        except poll.TimedOut as exc:
            raise StepFailed(step, f"not reached after {timeout:g} s: {exc.reason}",
                             hint=LIKELY_CAUSE.get(component), logs=self._logs(component, nodes)) from None

    def _logs(self, service: str, nodes: tuple[Node, ...]) -> str:
        parts = []
        for node in nodes:
            text = self.transport.logs(node, service, lines=12)
            parts.append(f"--- {node.name} {service} (last lines) ---\n{text or '(empty)'}")
        return "\n".join(parts)

    # -- checks: named predicates of one snapshot, with what was seen --------------------------------
    def etcd_healthy(self) -> tuple[bool, str]:
        snap = self.prober.snapshot()
        bad = [m.name for m in snap.etcd if not m.healthy]
        return snap.etcd_healthy, f"{len(snap.etcd) - len(bad)}/{len(snap.etcd)} etcd members healthy" + (
            f" (waiting for {', '.join(bad)})" if bad else "")

    def leader_is(self, node: Node) -> tuple[bool, str]:
        snap = self.prober.snapshot()
        return snap.leads(node.member_name), snap.describe()

    def replicas_streaming(self) -> tuple[bool, str]:
        """Every replica streaming with lag 0; the HA loops woken at most once a second meanwhile."""
        now = time.monotonic()
        if now - self._last_wakeup > 1.0:
            self._last_wakeup = now
            self.prober.wake_up()
        snap = self.prober.snapshot()
        return snap.healthy(caught_up=True), snap.describe()

    def routes_to_leader(self) -> tuple[bool, str]:
        snap = self.prober.snapshot()
        return snap.routes_to_leader, snap.describe()

    def vip_answers(self) -> tuple[bool, str]:
        """One holder, the VIP accepts connections, and SQL through it reaches the leader."""
        snap = self.prober.snapshot()
        if not snap.vip_answers or snap.vip_holders is None:
            return False, snap.describe()
        ok, seen = snap.lands_on_leader(self.spec, *self.prober.through_vip())
        return ok, f"VIP on {', '.join(snap.vip_holders)}: {seen}"

    # -- sequences ----------------------------------------------------------------------------
    def apply_plans(self, plans: list[NodePlan]) -> None:
        with self.step("certificates and configs"):
            for plan in plans:
                self.transport.apply(plan)
            self.transport.install_services(plans)

    def start_backup_servers(self) -> None:
        """pgBackRest's TLS servers (the backup node's and the PostgreSQL nodes'): archiving reaches the
        repository as soon as a primary runs."""
        nodes = [n for n in self.spec.nodes if "pgbackrest" in services_of(self.spec, n)]
        if nodes:
            with self.step("pgBackRest servers"):
                for node in nodes:
                    self.transport.start(node, "pgbackrest")

    STANZA = "pgBackRest stanza, archiving checked"

    def ensure_stanza(self, plans: list[NodePlan]) -> None:
        """The cluster's stanza in the repository (idempotent: pgBackRest accepts an existing, matching one),
        then pgBackRest's check: its forced WAL switch also wakes an archiver that failed before the stanza
        existed (PostgreSQL waits a minute after three failures), so archiving works when the step ends."""
        self.finish_stanza(self.stanza_in_background(plans))

    def stanza_in_background(self, plans: list[NodePlan]) -> Future[None] | None:
        """:meth:`ensure_stanza`'s work started in a thread (it needs only a running leader), so the
        bring-up goes on meanwhile; :meth:`finish_stanza` waits for it."""
        plan = next((p for p in plans if p.node.is_backup), None)
        if plan is None:
            return None
        repo = Repository(self.spec, self.transport, plan.layout)

        def ready(*command: str) -> Callable[[], tuple[bool, str]]:
            def check() -> tuple[bool, str]:
                res = repo.run(*command, timeout=60)
                return res.ok, f"{command[0]} on {plan.node.name}" if res.ok else str(repo.error(self.STANZA, res))
            return check

        def work() -> None:
            for command in ("stanza-create", "check"):
                try:
                    poll.until(self.STANZA, ready(command), 60, interval=1.0)
                except poll.TimedOut as exc:
                    raise StepFailed(self.STANZA, f"not reached after 60 s: {exc.reason}",
                                     hint=LIKELY_CAUSE["pgbackrest"],
                                     logs=self._logs("pgbackrest", (plan.node,))) from None

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgbackrest-stanza")
        future = pool.submit(work)
        pool.shutdown(wait=False)
        return future

    def finish_stanza(self, started: Future[None] | None) -> None:
        if started is not None:
            with self.step(self.STANZA):
                started.result()

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
                self.wait(name, self.replicas_streaming, 120, "patroni", tuple(others))
        self.ensure_roles()

    def ensure_roles(self) -> None:
        """The application role and its database, and the rewind role, on the leader (see :mod:`pgha.roles`)."""
        with self.step("application and rewind roles"):
            leader = self.prober.snapshot().leader
            node = self.spec.member_of(leader.name) if leader else None
            if node is None:
                raise StepFailed("application and rewind roles", "no leader to create them on")
            self.wait("application and rewind roles", lambda: roles.ensure_roles(self.spec, self.creds, node), 30,
                      "patroni", (node,))

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
            self.wait("HAProxy on the haproxy nodes", self.routes_to_leader, 30, "haproxy", ha)
        with self.step("keepalived, wait for the VIP"):
            for node in ha:
                self.transport.start(node, "keepalived")
            self.wait("keepalived, wait for the VIP", self.vip_answers, 30, "keepalived", ha)

    def bring_up(self, plans: list[NodePlan]) -> Timings:
        """The seed's order: configs, etcd, first Patroni, the others, etcd 'existing', HAProxy, VIP; the
        monitor node from the start (it needs nothing of the others: started last, its start-up overlapped the
        first checks and made them time out on two cores), postgres_exporter once its role exists."""
        self.apply_plans(plans)
        self.start_monitoring(self.spec.nodes_of(Role.MONITOR))
        self.start_backup_servers()
        self.start_etcd()
        self.start_patroni()
        stanza = self.stanza_in_background(plans)  # off the critical path: it needs only the leader
        self.start_monitoring(self.spec.postgres_nodes)
        self.set_etcd_state("existing", plans)
        self.start_proxies()
        self.finish_stanza(stanza)
        self.etcd_leader_off()
        return self.timings

    def start_monitoring(self, nodes: tuple[Node, ...]) -> None:
        """Monitoring's services of these nodes, started without waiting: a target that does not come up
        shows as down in Prometheus (and its alert), never as a failed bring-up."""
        todo = [(n, s) for n in nodes for s in services_of(self.spec, n) if s in monitoring.SERVICE_BUILDERS]
        if not todo:
            return
        with self.step(f"monitoring on {', '.join(dict.fromkeys(n.name for n, _ in todo))}"):
            for node, service in todo:
                self.transport.start(node, service)

    def etcd_leader_off(self) -> None:
        """etcd's raft leadership off the Patroni leader's node: a crash of that node then costs no extra ttl.
        A cluster that works is not failed for it: the step says why not, and doctor reports it."""
        name = "etcd leadership off the Patroni leader's node"
        with self.step(name):  # etcd may still be electing after the members' restarts: retried
            try:
                self.wait(name, lambda: (True, etcd_leader.move(etcd_leader.operator_gateway(self.spec, self.creds),
                                                                away_from=self.leader_member())),
                          30, "etcd", self.spec.postgres_nodes)
            except StepFailed as exc:
                self.reporter.update(name, f"not moved ({exc}); run `{pgha_command('etcd', 'move-leader')}`")

    def leader_member(self) -> str:
        leader = self.prober.snapshot().leader
        if leader is None:
            raise RuntimeError("no Patroni leader yet")
        return self.spec.node(leader.name).member_name

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
        with self.step("wipe etcd and PostgreSQL data and the backup repository (certificates kept)"):
            for plan in plans:
                if plan.node.is_backup:  # its backups are of the database being wiped
                    self.transport.remove_tree(plan.node, plan.layout.pgbackrest_repo)
                    for d in plan.dirs:
                        self.transport.ensure_dir(plan.node, d)
                if plan.node.is_postgres:
                    self.transport.remove_tree(plan.node, plan.layout.etcd_data)
                    self.transport.remove_tree(plan.node, plan.layout.pg_data)
                    for d in plan.dirs:
                        self.transport.ensure_dir(plan.node, d)
        self.set_etcd_state("new", plans, restart=False)
        self.start_etcd()
        self.start_patroni()
        self.ensure_stanza(plans)
        self.set_etcd_state("existing", plans)
        name = "HAProxy routes to the new leader, the VIP answers"
        with self.step(name):  # HAProxy and keepalived kept running: their checks find the new primary
            self.wait(name, self.routes_to_leader, 30, "haproxy", self.spec.haproxy_nodes)
            self.wait(name, self.vip_answers, 30, "keepalived", self.spec.haproxy_nodes)
        self.etcd_leader_off()
        return self.timings
