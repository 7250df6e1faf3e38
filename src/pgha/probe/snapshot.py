"""ClusterSnapshot: one frozen picture of the running stack, and the named predicates read from it.

`verify`, `status`, operations, the bring-up, deploy and drills all read this type (taken through
:class:`pgha.probe.cluster.Prober`), so they agree on what "the leader", "healthy", "routes to the
leader", "the VIP holders", "the VIP answers" and "ttl" mean — the live values (ttl, loop_wait,
synchronous_mode...) are Patroni's dynamic configuration, not the spec's bootstrap section.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgha.probe.etcd import EtcdMember
from pgha.probe.haproxy import HaproxyView
from pgha.probe.patroni import PatroniMember
from pgha.spec import ClusterSpec, Dcs


@dataclass(frozen=True)
class ClusterSnapshot:
    taken_at: float
    etcd: tuple[EtcdMember, ...]
    members: tuple[PatroniMember, ...]
    paused: bool
    patroni_error: str | None
    haproxy: tuple[HaproxyView, ...]
    vip_address: str
    vip_holders: tuple[str, ...] | None
    """HAProxy nodes holding the VIP; None when no transport can look (verify from afar)."""
    config: Dcs | None = None
    """Patroni's live dynamic configuration (``GET /config``); None when no REST API answered."""
    expected_members: tuple[str, ...] = ()
    """The spec's Patroni member names: the members a healthy cluster has."""
    unanswered: tuple[tuple[str, str], ...] = ()
    """(node, what did not answer and why): probes that failed or hit their deadline."""
    vip_error: str | None = None
    """Why a TCP connect to the VIP's PostgreSQL port failed; None when it answered."""

    # -- Patroni ----------------------------------------------------------------------------------
    @property
    def leader(self) -> PatroniMember | None:
        leaders = [m for m in self.members if m.is_leader]
        return leaders[0] if len(leaders) == 1 else None

    @property
    def replicas(self) -> tuple[PatroniMember, ...]:
        return tuple(m for m in self.members if not m.is_leader)

    @property
    def sync_standbys(self) -> tuple[str, ...]:
        """Members the DCS names synchronous standby: in synchronous mode, the only ones Patroni promotes."""
        return tuple(m.name for m in self.members if m.role == "sync_standby")

    def streaming(self, caught_up: bool = False) -> tuple[PatroniMember, ...]:
        """Replicas streaming from the leader (with no lag at all when ``caught_up``)."""
        return tuple(m for m in self.replicas if m.state == "streaming" and (not caught_up or m.lag_mb == 0))

    def leads(self, member: str) -> bool:
        """This member holds the leader key and its PostgreSQL runs."""
        return self.leader is not None and self.leader.name == member and self.leader.is_running

    def healthy(self, leader: str | None = None, caught_up: bool = False) -> bool:
        """A running leader (this one, if named) and every other member streaming (and caught up)."""
        if self.leader is None or not self.leader.is_running or (leader and self.leader.name != leader):
            return False
        want = (len(self.expected_members) or len(self.members)) - 1
        return len(self.streaming(caught_up)) == want

    # -- etcd, HAProxy, the VIP ---------------------------------------------------------------------
    @property
    def etcd_leader(self) -> str | None:
        return next((m.name for m in self.etcd if m.is_leader), None)

    @property
    def etcd_healthy(self) -> bool:
        return bool(self.etcd) and all(m.healthy for m in self.etcd)

    @property
    def etcd_majority(self) -> int:
        """How many etcd members make a quorum (one per PostgreSQL node, each in the snapshot)."""
        return len(self.etcd) // 2 + 1

    @property
    def etcd_quorum(self) -> bool:
        """A majority of etcd members healthy: Patroni can hold and take the leader key."""
        return sum(1 for m in self.etcd if m.healthy) >= self.etcd_majority

    def routes_to(self, member: str) -> bool:
        """Every reachable HAProxy sends primary traffic to this member, and only to it."""
        views = [h for h in self.haproxy if h.reachable]
        return bool(views) and all(h.primary == [member] for h in views)

    @property
    def routes_to_leader(self) -> bool:
        """Every HAProxy answers and sends primary traffic to the leader, and only to it."""
        return (self.leader is not None and all(h.reachable for h in self.haproxy)
                and self.routes_to(self.leader.name))

    @property
    def vip_answers(self) -> bool:
        """The VIP accepts connections, held by exactly one HAProxy node (when the holders were looked at)."""
        return self.vip_error is None and (self.vip_holders is None or len(self.vip_holders) == 1)

    def lands_on_leader(self, spec: ClusterSpec, address: str, in_recovery: bool) -> tuple[bool, str]:
        """Whether a client of the VIP landed on the leader (``address`` and ``in_recovery``: what the server
        it reached says of itself, :meth:`~pgha.probe.cluster.Prober.through_vip`), and what was seen."""
        leader = spec.node(self.leader.name).address if self.leader else None
        return (not in_recovery and address == str(leader),
                f"inet_server_addr={address}, pg_is_in_recovery={'t' if in_recovery else 'f'}, "
                f"leader address {leader}")

    # -- the whole stack ----------------------------------------------------------------------------
    @property
    def whole(self) -> bool:
        """Everything back after a fault: every member streaming behind a leader HAProxy routes to, every
        etcd member healthy, one VIP holder answering, every node answering; in synchronous mode a
        synchronous standby named (else no replica may be promoted). Lag is allowed: under a steady
        write load Patroni's reported lag is rarely exactly 0."""
        sync = self.config is not None and self.config.synchronous_mode
        return (self.healthy() and self.etcd_healthy and self.routes_to_leader
                and self.vip_answers and not self.unanswered and (not sync or bool(self.sync_standbys)))

    def describe_members(self) -> str:
        """Each Patroni member's role and state (and a replica's lag), in one line."""
        return ", ".join(f"{m.name} {m.role}/{m.state}" + (f" lag {m.lag_mb} MB" if not m.is_leader else "")
                         for m in self.members)

    def describe(self) -> str:
        """What the snapshot shows, in one line (a wait's reason when it times out)."""
        parts = [self.describe_members() or f"no Patroni member seen ({self.patroni_error})"]
        bad = [m.name for m in self.etcd if not m.healthy]
        parts.append(f"etcd {len(self.etcd) - len(bad)}/{len(self.etcd)} healthy"
                     + (f" (not {', '.join(bad)})" if bad else ""))
        if self.haproxy:
            parts.append("HAProxy primary: " + ", ".join(
                f"{h.node}->{'/'.join(h.primary) or 'none'}" if h.reachable else f"{h.node} unreachable"
                for h in self.haproxy))
        if self.vip_holders is not None:
            parts.append(f"VIP on {', '.join(self.vip_holders) or 'nobody'}")
        if self.vip_error:
            parts.append(f"VIP: {self.vip_error}")
        parts += [f"{node}: {why}" for node, why in self.unanswered]
        return "; ".join(parts)
