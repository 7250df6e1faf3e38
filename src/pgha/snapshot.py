"""ClusterSnapshot: one frozen picture of the running stack, built from the probes.

`verify`, `status`, operations and drills all read this type, so they agree on what "the leader",
"healthy" and "the VIP holder" mean.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pgha.probe import Credentials
from pgha.probe import etcd as etcd_probe
from pgha.probe import haproxy as haproxy_probe
from pgha.probe import patroni as patroni_probe
from pgha.spec import ClusterSpec
from pgha.transport.base import Transport


@dataclass(frozen=True)
class ClusterSnapshot:
    taken_at: float
    etcd: tuple[etcd_probe.EtcdMember, ...]
    members: tuple[patroni_probe.PatroniMember, ...]
    paused: bool
    patroni_error: str | None
    haproxy: tuple[haproxy_probe.HaproxyView, ...]
    vip_address: str
    vip_holders: tuple[str, ...] | None
    """HAProxy nodes holding the VIP; None when no transport can look (verify from afar)."""

    @property
    def leader(self) -> patroni_probe.PatroniMember | None:
        leaders = [m for m in self.members if m.is_leader]
        return leaders[0] if len(leaders) == 1 else None

    @property
    def replicas(self) -> tuple[patroni_probe.PatroniMember, ...]:
        return tuple(m for m in self.members if not m.is_leader)

    @property
    def sync_standbys(self) -> tuple[str, ...]:
        """Members the DCS names synchronous standby: in synchronous mode, the only ones Patroni promotes."""
        return tuple(m.name for m in self.members if m.role == "sync_standby")

    def routes_to(self, member: str) -> bool:
        """Every reachable HAProxy sends primary traffic to this member, and only to it."""
        views = [h for h in self.haproxy if h.reachable]
        return bool(views) and all(h.up("postgres_primary") == [member] for h in views)

    @property
    def etcd_leader(self) -> str | None:
        return next((m.name for m in self.etcd if m.is_leader), None)


def take(spec: ClusterSpec, creds: Credentials, transport: Transport | None = None) -> ClusterSnapshot:
    """Probe every component once."""
    body, err = patroni_probe.cluster(spec, creds)
    members = tuple(patroni_probe.parse_members(spec, body)) if body else ()
    holders: tuple[str, ...] | None = None
    if transport is not None:
        holders = tuple(n.name for n in spec.haproxy_nodes
                        if transport.holds_address(n, str(spec.vip.address), spec.vip.interface))
    return ClusterSnapshot(
        taken_at=time.time(),
        etcd=tuple(etcd_probe.members(spec, creds)),
        members=members,
        paused=bool(body.get("pause", False)) if body else False,
        patroni_error=err,
        haproxy=tuple(haproxy_probe.view(spec, n) for n in spec.haproxy_nodes),
        vip_address=str(spec.vip.address),
        vip_holders=holders,
    )
