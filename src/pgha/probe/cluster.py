"""The Prober: the one way a snapshot of the running cluster is taken.

Every probe of every node runs at once, each bounded by :data:`~pgha.probe.bounded.PROBE_TIMEOUT`
(see :mod:`pgha.probe.bounded`), so a snapshot takes about as long as the slowest node's answer
and never longer than the deadline, whatever one node does; the nodes that did not answer are named
in the snapshot. Tests inject a fake (tests/unit/fakes.py) that answers from a script.
"""

from __future__ import annotations

import contextlib
import socket
import time
from functools import partial
from typing import Any

import httpx

from pgha.probe import Credentials
from pgha.probe import etcd as etcd_probe
from pgha.probe import haproxy as haproxy_probe
from pgha.probe import patroni as patroni_probe
from pgha.probe import pg as pg_probe
from pgha.probe.bounded import PROBE_TIMEOUT, NoAnswer, gather
from pgha.probe.snapshot import ClusterSnapshot
from pgha.spec import ClusterSpec, Dcs, Node
from pgha.transport.base import Transport


def vip_holders(spec: ClusterSpec, transport: Transport, timeout: float = PROBE_TIMEOUT) -> tuple[str, ...] | None:
    """The HAProxy nodes that hold the VIP (asked concurrently); None if one of them could not be asked."""
    address = str(spec.vip.address)
    seen = gather({n.name: partial(transport.holds_address, n, address, spec.vip.interface)
                   for n in spec.haproxy_nodes}, timeout)
    if any(isinstance(v, NoAnswer) for v in seen.values()):
        return None
    return tuple(name for name, held in seen.items() if held)


class Prober:
    """Takes snapshots of one cluster, through the spec's addresses (and the Transport for the VIP)."""

    def __init__(self, spec: ClusterSpec, creds: Credentials, transport: Transport | None = None,
                 timeout: float = PROBE_TIMEOUT) -> None:
        self.spec, self.creds, self.transport, self.timeout = spec, creds, transport, timeout

    def api(self, node: Node, timeout: float | None = None) -> patroni_probe.PatroniApi:
        """A node's Patroni REST API (operations change the cluster through it)."""
        return patroni_probe.PatroniApi(self.spec, node, self.creds, timeout or self.timeout)

    def through_vip(self) -> tuple[str, bool]:
        """Where a client of the VIP lands: (the server's address, whether it is in recovery)."""
        return pg_probe.through_vip(self.spec, self.creds)

    def _patroni(self, node: Node) -> tuple[dict[str, Any], dict[str, Any]]:
        api = self.api(node)
        code, body = api.get("/cluster")
        if code != 200 or not isinstance(body, dict):
            raise RuntimeError(f"HTTP {code} on /cluster")
        code, config = api.get("/config")
        return body, config if code == 200 and isinstance(config, dict) else {}

    def _vip_tcp(self) -> None:
        with socket.create_connection((str(self.spec.vip.address), self.spec.ports.postgresql), self.timeout):
            pass

    def _vip_holders_answering(self, timeout: float) -> tuple[tuple[str, ...] | None, NoAnswer | None]:
        """The holders, and whether the VIP answers TCP: asked only when someone holds it (a connect to
        an address nobody has waits for ARP to give up, seconds a bring-up would spend per look)."""
        assert self.transport is not None
        holders = vip_holders(self.spec, self.transport, timeout)
        if holders == ():
            return holders, NoAnswer("held by nobody")
        vip = gather({"vip": self._vip_tcp}, timeout)["vip"]
        return holders, vip if isinstance(vip, NoAnswer) else None

    def snapshot(self) -> ClusterSnapshot:
        """Probe every component once, concurrently; at most ``timeout`` seconds and a little."""
        spec, t = self.spec, self.timeout
        calls: dict[tuple[str, str], Any] = {}
        for n in spec.postgres_nodes:
            calls[("etcd", n.name)] = partial(etcd_probe.member, spec, n, self.creds, t)
            calls[("patroni", n.name)] = partial(self._patroni, n)
        for n in spec.haproxy_nodes:
            calls[("haproxy", n.name)] = partial(haproxy_probe.view, spec, n, self.creds.secrets, t)
        if self.transport is not None:
            calls[("holders", "")] = lambda: self._vip_holders_answering(t)
        else:
            calls[("vip", "")] = self._vip_tcp
        seen = gather(calls, t + 0.5)  # each probe has its own timeout; this bounds the ones that have none
        unanswered: list[tuple[str, str]] = []
        etcd = []
        for n in spec.postgres_nodes:
            m = seen[("etcd", n.name)]
            if isinstance(m, NoAnswer):
                unanswered.append((n.name, f"etcd: {m}"))
                m = etcd_probe.EtcdMember(n.member_name, etcd_probe.endpoint(spec, n), False, error=str(m))
            etcd.append(m)
        body: dict[str, Any] | None = None
        config: dict[str, Any] = {}
        errors = []
        for n in spec.postgres_nodes:
            answer = seen[("patroni", n.name)]
            if isinstance(answer, NoAnswer):
                unanswered.append((n.name, f"Patroni REST API: {answer}"))
                errors.append(f"{n.name}: {answer}")
            elif body is None:
                body, config = answer
        views = []
        for n in spec.haproxy_nodes:
            v = seen[("haproxy", n.name)]
            if isinstance(v, NoAnswer):
                unanswered.append((n.name, f"HAProxy stats: {v}"))
                v = haproxy_probe.HaproxyView(n.name, False, error=str(v))
            views.append(v)
        holders, vip = seen.get(("holders", ""), (None, None)), seen.get(("vip", ""))
        if isinstance(holders, NoAnswer):  # the holders did not say in time: the VIP is not known to answer
            holders, vip = None, holders
        elif isinstance(holders, tuple):
            holders, vip = holders
        live: Dcs | None = None
        with contextlib.suppress(ValueError):  # a value Patroni accepts but the model does not: not shown
            live = Dcs.live(config) if config else None
        return ClusterSnapshot(
            taken_at=time.time(),
            etcd=tuple(etcd),
            members=tuple(patroni_probe.parse_members(spec, body)) if body else (),
            paused=bool(body.get("pause", False)) if body else False,
            patroni_error=None if body else "; ".join(errors) or "no PostgreSQL node",
            haproxy=tuple(views),
            vip_address=str(spec.vip.address),
            vip_holders=holders,
            config=live,
            expected_members=tuple(n.member_name for n in spec.postgres_nodes),
            unanswered=tuple(unanswered),
            vip_error=str(vip) if isinstance(vip, NoAnswer) else None,
        )

    def wake_up(self, nodes: tuple[Node, ...] | None = None) -> None:
        """Run the HA loop of these nodes (all PostgreSQL nodes by default) now, not at the next loop_wait.

        Patroni answers a PATCH /config by waking its HA loop even when nothing changes. Removing a key
        that does not exist (a null value) changes nothing, whatever the live configuration is — unlike
        re-sending a value, which could undo a change made meanwhile. The leader then creates a new
        member's replication slot at once and a replica reports its lag at once.
        """
        def one(node: Node) -> None:
            with contextlib.suppress(httpx.HTTPError):  # not up yet: nothing to wake
                self.api(node, 1.0).call("PATCH", "/config", {WAKE_UP_KEY: None}, timeout=1.0)

        gather({n.name: partial(one, n) for n in nodes or self.spec.postgres_nodes}, 1.5)


WAKE_UP_KEY = "pgha_wake_up"
"""Never set: PATCHing it to null removes nothing (see :meth:`Prober.wake_up`)."""
