"""HAProxy's view of its backends, from the stats page each HAProxy node serves (CSV)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import httpx

from pgha.secrets import STATS_USERNAME, Secrets
from pgha.spec import ClusterSpec, Node

PRIMARY_BACKEND = "postgres_primary"
REPLICA_BACKEND = "postgres_replicas"
"""The two backends haproxy.cfg defines (render/templates/haproxy.cfg): the VIP's 5432 and 5433."""


@dataclass(frozen=True)
class BackendServer:
    backend: str
    server: str
    status: str  # UP, DOWN, MAINT, no check...


@dataclass(frozen=True)
class HaproxyView:
    node: str
    reachable: bool
    servers: tuple[BackendServer, ...] = ()
    error: str | None = None

    def up(self, backend: str) -> list[str]:
        return [s.server for s in self.servers if s.backend == backend and s.status.startswith("UP")]

    @property
    def primary(self) -> list[str]:
        """The servers UP in the primary backend: where this HAProxy sends writes."""
        return self.up(PRIMARY_BACKEND)

    @property
    def replicas(self) -> list[str]:
        """The servers UP in the replicas backend."""
        return self.up(REPLICA_BACKEND)


def view(spec: ClusterSpec, node: Node, secrets: Secrets, timeout: float = 2.0) -> HaproxyView:
    """The backends' states from the node's stats page (behind a password, see the rendered haproxy.cfg)."""
    url = f"http://{node.address}:{spec.ports.haproxy_monitor}/stats;csv"
    try:
        r = httpx.get(url, timeout=timeout, auth=(STATS_USERNAME, secrets.haproxy_stats_password))
        r.raise_for_status()
    except httpx.HTTPError as exc:
        return HaproxyView(node.name, False, error=f"{type(exc).__name__}: {exc}")
    rows = csv.DictReader(io.StringIO(r.text.lstrip("# ")))
    servers = tuple(
        BackendServer(row["pxname"], row["svname"], row["status"])
        for row in rows
        if row.get("svname") not in ("FRONTEND", "BACKEND") and row.get("pxname", "").startswith("postgres")
    )
    return HaproxyView(node.name, True, servers)
