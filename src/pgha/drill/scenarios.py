"""Failure scenarios: each injects one fault through the Transport and later restores the node.

Written against the Transport, so the same scenarios run on the lab (supervisord, namespaces) and on
servers (systemd, SSH). ``primary-crash`` kills Patroni and the postmaster and leaves the node's etcd
running; ``node-crash`` kills every service of the node at once, etcd included (a power cut).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pgha.errors import PghaError, pgha_command
from pgha.ops import Operations
from pgha.spec import ClusterSpec, Node
from pgha.target import Target
from pgha.topology import services_of
from pgha.transport.base import Transport


@dataclass
class DrillContext:
    target: Target
    ops: Operations
    leader: Node
    replica: Node
    vip_holder: Node | None
    faulted: list[tuple[Node, str]]  # services held down, started again by restore
    frozen: list[tuple[Node, list[int]]] = field(default_factory=list)  # continued by restore

    @property
    def spec(self) -> ClusterSpec:
        return self.target.spec

    @property
    def transport(self) -> Transport:
        return self.target.transport

    def pg_data(self, node: Node) -> str:
        return self.target.layout(node).pg_data

    def crash(self, node: Node) -> str:
        """Patroni and the postmaster die at once and stay down; the node's etcd keeps running."""
        self.transport.kill(node, "patroni", "KILL", hold=True)
        pid = self.transport.kill_postmaster(node, self.pg_data(node), "KILL")
        self.faulted.append((node, "patroni"))
        return f"SIGKILL Patroni and postmaster (pid {pid}) on {node.name}, held down"

    def crash_node(self, node: Node) -> str:
        """The whole node at once — etcd included — held down: what a power cut does to its services."""
        services = services_of(self.spec, node)
        killed = self.transport.crash_node(node, self.pg_data(node), services)
        self.faulted += [(node, s) for s in services]
        return f"SIGKILL {', '.join(killed)} on {node.name}, held down (the whole node)"

    def down(self, node: Node, service: str, sig: str = "KILL") -> str:
        self.transport.kill(node, service, sig, hold=True)
        self.faulted.append((node, service))
        return f"SIG{sig} {service} on {node.name}, held down"

    def stop(self, node: Node, service: str) -> str:
        self.transport.stop(node, service)
        self.faulted.append((node, service))
        return f"stopped {service} on {node.name} (graceful)"

    def isolate(self, node: Node) -> str:
        self.transport.isolate(node)
        self.faulted.append((node, "network"))
        return f"cut {node.name} off the network"

    def freeze(self, node: Node) -> str:
        """Patroni and every PostgreSQL process of the node stopped (a hung machine) until restore."""
        pids = self.transport.freeze(node, self.pg_data(node))
        self.frozen.append((node, pids))
        return f"SIGSTOP Patroni and PostgreSQL on {node.name} ({len(pids)} processes)"

    def restore(self) -> None:
        """Continue what is frozen, heal what is cut off, start what is held down — each attempted even
        when another fails (the first failure is raised after)."""
        failure: Exception | None = None
        while self.frozen:
            node, pids = self.frozen.pop()
            try:
                self.transport.thaw(node, pids)
            except Exception as exc:  # the others must still be restored
                failure = failure or exc
        while self.faulted:
            node, service = self.faulted.pop(0)
            try:
                if service == "network":
                    self.transport.heal(node)
                else:
                    self.transport.start(node, service)
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    inject: Callable[[DrillContext], str]
    expects_failover: bool = False
    hold: float = 0.0
    """Seconds to keep the fault after the client's writes recover (or after injection if they never
    stopped), before restoring: long enough for the cluster to react."""
    setup: Callable[[DrillContext], str] | None = None
    """Run before the writers start (not timed): puts the cluster in the state the drill is about."""
    hold_past_ttl: float | None = None
    """Keep the fault for ttl + this many seconds whatever the writes do, then restore (faults that the
    cluster cannot heal by itself, like a lost etcd quorum)."""


def _switchover(ctx: DrillContext) -> str:
    # In synchronous mode Patroni only lets the synchronous standby take over (no acknowledged write lost).
    sync = ctx.ops.snapshot().sync_standbys
    return ctx.ops.switchover(sync[0] if sync else ctx.replica.name)


def _cert_rotate(ctx: DrillContext) -> str:
    from pgha.rotate import CertRotator

    return CertRotator(ctx.target).rotate_leaves().summary()


def _ca_rotate(ctx: DrillContext) -> str:
    from pgha.rotate import CertRotator

    return CertRotator(ctx.target).rotate_ca().summary()


def _rolling_restart(ctx: DrillContext) -> str:
    from pgha.rolling import rolling_restart

    return rolling_restart(ctx.ops)


def _etcd_member_lost(ctx: DrillContext) -> str:
    """A replica node's etcd dies with its disk: stopped, its data directory gone."""
    ctx.transport.stop(ctx.replica, "etcd")
    ctx.transport.remove_tree(ctx.replica, ctx.target.layout(ctx.replica).etcd_data)
    return f"etcd on {ctx.replica.name} stopped, its data directory removed (a lost disk)"


def _etcd_replace(ctx: DrillContext) -> str:
    from pgha.etcd_member import EtcdReplacer

    return EtcdReplacer(ctx.target).replace(ctx.replica.name)


def _etcd_quorum_loss(ctx: DrillContext) -> str:
    members = [n for n in ctx.spec.postgres_nodes if n != ctx.leader][:2]
    return "; ".join(ctx.down(n, "etcd", "KILL") for n in members)


def _etcd_leader_onto_leader(ctx: DrillContext) -> str:
    return ctx.ops.move_etcd_leader(to=ctx.leader.name)


def _vip_holder(ctx: DrillContext) -> Node:
    if ctx.vip_holder is None:
        raise PghaError("no HAProxy node holds the VIP: this drill faults the VIP holder",
                        hint=f"see `{pgha_command('status')}`; `{pgha_command('doctor')}` names why the VIP "
                             "is missing")
    return ctx.vip_holder


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("primary-crash", "SIGKILL the leader's Patroni and postmaster (its etcd keeps running)",
             lambda c: c.crash(c.leader), expects_failover=True),
    Scenario("node-crash", "SIGKILL every service of the leader's node at once, etcd included, held down",
             lambda c: c.crash_node(c.leader), expects_failover=True),
    Scenario("node-crash-etcd-leader", "the same, with etcd's leadership moved onto the leader's node first "
             "(the case pgha avoids: the new etcd leader renews the dead leader's key for a full ttl)",
             lambda c: c.crash_node(c.leader), expects_failover=True, setup=_etcd_leader_onto_leader),
    Scenario("primary-stop", "stop Patroni on the leader gracefully (seed section 14)",
             lambda c: c.stop(c.leader, "patroni"), expects_failover=True),
    Scenario("primary-partition", "cut the leader's network, heal it after the failover",
             lambda c: c.isolate(c.leader), expects_failover=True, hold=3),
    Scenario("switchover", "planned switchover under load", _switchover, expects_failover=True),
    Scenario("replica-crash", "SIGKILL a replica's Patroni and postmaster", lambda c: c.crash(c.replica),
             hold=5),
    Scenario("etcd-member-loss", "SIGKILL one etcd member (of three)",
             lambda c: c.down(c.replica, "etcd"), hold=10),
    Scenario("etcd-quorum-loss", "SIGKILL two etcd members of three: no quorum",
             _etcd_quorum_loss, hold_past_ttl=10),
    Scenario("haproxy-down", "SIGKILL HAProxy on the VIP holder, held down",
             lambda c: c.down(_vip_holder(c), "haproxy"), hold=3),
    Scenario("keepalived-down", "SIGKILL keepalived on the VIP holder, held down",
             lambda c: c.down(_vip_holder(c), "keepalived"), hold=8),
    Scenario("cert-rotate", "`pgha certs rotate`: every leaf certificate re-issued and reloaded under load",
             _cert_rotate),
    Scenario("ca-rotate", "`pgha certs rotate --ca`: a new CA in three phases under load", _ca_rotate),
    Scenario("rolling-restart", "`pgha restart --rolling`: replicas one at a time, a switchover, the old primary",
             _rolling_restart, expects_failover=True),
    Scenario("etcd-replace", "`pgha etcd replace`: a replica node's etcd member, its data lost, rebuilt",
             _etcd_replace, setup=_etcd_member_lost),
    Scenario("patroni-only-crash", "SIGKILL only Patroni on the leader (the postmaster keeps running)",
             lambda c: c.down(c.leader, "patroni"), expects_failover=True, hold=3),
]}
