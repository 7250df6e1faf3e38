"""What doctor looks at (Evidence, gathered once) and what it says (Finding).

The diagnoses are pure functions ``Evidence -> list[Finding]``: every fact they need is collected
beforehand by :mod:`pgha.doctor.collect` through the probes, the snapshot and the Transport, so each
diagnosis can be tested with hand-written evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pgha.backup.repo import RepoInfo
from pgha.probe.snapshot import ClusterSnapshot
from pgha.problems import Severity
from pgha.spec import ClusterSpec, Node
from pgha.transport.base import FileStat, ProcessInfo, ServiceState


@dataclass(frozen=True)
class Finding:
    """One problem: what is wrong, what was seen, what to do about it."""

    problem: str
    evidence: str
    fix: str
    severity: Severity = Severity.ERROR
    node: str | None = None
    code: str = ""
    """A stable identifier (``etcd.quorum``, ``tls.unreadable``...) for scripts and tests: a problem of
    :data:`pgha.problems.PROBLEMS`, the list the alert rules share."""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = self.severity.value
        return d


@dataclass(frozen=True)
class DoctorReport:
    findings: tuple[Finding, ...]
    seconds: float
    notes: tuple[str, ...] = ()
    """Diagnoses that could not run, and why (doctor never hides a crashed check)."""

    @property
    def healthy(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "seconds": round(self.seconds, 3),
                "findings": [f.as_dict() for f in self.findings], "notes": list(self.notes)}


# -- evidence ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileFact:
    """A file the plan puts on a node, as found there."""

    path: str
    want_owner: str
    want_group: str
    want_mode: int
    stat: FileStat | None
    acl: bool = False
    """The plan grants postgres read access through an ACL (the group bits then show the ACL mask)."""
    postgres_needs_read: bool = False
    postgres_can_read: bool | None = None
    content: bytes | None = None
    """Kept for certificates only (PEM), to check expiry, SANs and the chain."""

    @property
    def is_key(self) -> bool:
        return self.path.endswith((".key", ".pem"))


@dataclass(frozen=True)
class CertFact:
    """A certificate deployed on a node, decoded."""

    path: str
    kind: str  # ca, etcd, server, client, haproxy-ca
    not_after: datetime | None
    sans: tuple[str, ...]
    issued_by_node_ca: bool | None
    same_as_cluster_ca: bool | None = None
    """For CA files: byte-identical to pgha's own ca.crt (the CA every other certificate chains to)."""
    error: str | None = None


@dataclass(frozen=True)
class PortFact:
    """A TCP connect from one node to another node's port."""

    source: str
    target: str
    address: str
    port: int
    service: str
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class SlotFact:
    """A replication slot on the primary."""

    name: str
    active: bool
    retained_bytes: int
    """WAL the slot keeps from being recycled (pg_current_wal_lsn() - restart_lsn)."""


@dataclass(frozen=True)
class ArchiverFact:
    """pg_stat_archiver of one PostgreSQL (only a primary archives)."""

    archived_count: int
    failed_count: int
    last_archived_wal: str | None = None
    last_archived_time: datetime | None = None
    last_failed_wal: str | None = None
    last_failed_time: datetime | None = None

    @property
    def failing(self) -> bool:
        """The last attempt failed (a failure since the last success)."""
        if not self.failed_count or self.last_failed_time is None:
            return False
        return self.last_archived_time is None or self.last_failed_time > self.last_archived_time


@dataclass(frozen=True)
class BackupFact:
    """The repository as the backup node's pgBackRest sees it (``pgbackrest info``), or why it could not."""

    info: RepoInfo | None
    error: str | None = None


@dataclass(frozen=True)
class PgFact:
    """PostgreSQL on one node, asked directly over TLS with the superuser of Patroni's config."""

    reachable: bool
    error: str | None = None
    in_recovery: bool | None = None
    data_checksums: bool | None = None
    wal_log_hints: bool | None = None
    primary_conninfo: str | None = None
    receiver_status: str | None = None
    receiver_host: str | None = None
    senders: tuple[str, ...] = ()
    """Client addresses of pg_stat_replication rows (on a primary)."""
    slots: tuple[SlotFact, ...] = ()
    """Replication slots (read on a primary only)."""
    archiver: ArchiverFact | None = None


def etcd3_section(config: dict[str, Any] | None) -> dict[str, Any]:
    """Patroni's etcd settings (``etcd3``, or the older ``etcd`` section)."""
    section = (config or {}).get("etcd3") or (config or {}).get("etcd") or {}
    return section if isinstance(section, dict) else {}


@dataclass(frozen=True)
class NodeFacts:
    """Everything collected on one node."""

    node: Node
    services: tuple[ServiceState, ...] = ()
    processes: tuple[ProcessInfo, ...] = ()
    files: tuple[FileFact, ...] = ()
    certs: tuple[CertFact, ...] = ()
    logs: dict[str, str] = field(default_factory=dict)
    etcd_env: dict[str, str] | None = None
    etcd_env_path: str = ""
    etcd_has_data: bool = False
    patroni_config: dict[str, Any] | None = None
    patroni_config_path: str = ""
    pg_data: str = ""
    pg_hba: str | None = None
    """The pg_hba.conf PostgreSQL runs with (in the data directory)."""
    patroni_api: dict[str, Any] | None = None
    patroni_api_error: str | None = None
    etcd3_ca_is_cluster_ca: bool | None = None
    """Whether the file Patroni's config names as etcd3.cacert is the cluster CA (None: not known)."""
    pg: PgFact | None = None
    clock_offset: float | None = None
    """Seconds the node's clock is ahead of the operator's; None if it could not be read."""
    clock_uncertainty: float = 0.0
    ports: tuple[PortFact, ...] = ()

    def service(self, name: str) -> ServiceState | None:
        return next((s for s in self.services if s.service == name), None)

    def log(self, service: str) -> str:
        return self.logs.get(service, "")


@dataclass(frozen=True)
class Evidence:
    """One look at the whole cluster."""

    spec: ClusterSpec
    snapshot: ClusterSnapshot
    nodes: tuple[NodeFacts, ...]
    expected_superuser_password: str
    """pgha's own copy (secrets.yml): what every config.yml should carry."""
    now: datetime
    command: Callable[[str, str, str], str] = field(
        default=lambda node, service, action: f"on {node}: systemctl {action} {service}")
    """How a person starts/stops/restarts a service: (node name, service, action) -> command."""
    operator_ports: tuple[PortFact, ...] = ()
    """The same connects from the operator's machine: tells a dead service from a blocked path."""
    notes: tuple[str, ...] = ()
    """Facts that could not be collected, and why."""
    backup: BackupFact | None = None
    """The repository (None: the spec has no backup node)."""
    scheduled_backups: bool = False
    """Backups run on a schedule (servers' timers); in the lab they are taken on demand only."""

    def facts(self, name: str) -> NodeFacts | None:
        return next((f for f in self.nodes if f.node.name == name or f.node.member_name == name), None)

    @property
    def pg_facts(self) -> tuple[NodeFacts, ...]:
        return tuple(f for f in self.nodes if f.node.is_postgres)

    @property
    def ha_facts(self) -> tuple[NodeFacts, ...]:
        return tuple(f for f in self.nodes if f.node.is_haproxy)

    def start(self, node: Node, service: str) -> str:
        return self.command(node.name, service, "start")

    def restart(self, node: Node, service: str) -> str:
        return self.command(node.name, service, "restart")


Diagnosis = Callable[[Evidence], list[Finding]]


def last_line(text: str, *needles: str) -> str | None:
    """The last log line containing any of the needles (case-insensitive), stripped."""
    lowered = [n.lower() for n in needles]
    for line in reversed(text.splitlines()):
        low = line.lower()
        if any(n in low for n in lowered):
            return line.strip()
    return None
