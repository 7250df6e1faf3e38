"""Facts of the spec's topology: which services each node role runs, and which ports its nodes must
reach (the seed's section 2 table). Used by the plan builder, the lab, deploy, doctor and the CLI alike.

A new role is a row in :data:`ROLE_SERVICES` and its lines in :func:`_reaches`; the rest follows.
"""

from __future__ import annotations

from pgha.spec import ClusterSpec, Node, Ports, Role

MONITOR_SERVICES = ("pgha-webhook", "prometheus-alertmanager", "prometheus-blackbox-exporter", "prometheus")
"""The monitor role's services (pgha.monitoring builds them), in start order."""
SERVICES = ("etcd", "patroni", "haproxy", "keepalived", "pgbackrest", "postgres_exporter", *MONITOR_SERVICES)
"""Every service pgha runs, in the seed's start order, then backups' and monitoring's."""

ROLE_SERVICES: dict[Role, tuple[str, ...]] = {
    Role.POSTGRES: ("etcd", "patroni", "postgres_exporter"),
    Role.HAPROXY: ("haproxy", "keepalived"),
    Role.BACKUP: ("pgbackrest",),
    Role.MONITOR: MONITOR_SERVICES,
}
"""The long-running services of each role, in start order."""
WITH_BACKUP: dict[Role, tuple[str, ...]] = {Role.POSTGRES: ("pgbackrest",)}
"""Services a role runs besides its own when the spec has a backup node (started first)."""

PortTarget = tuple[Node, int, str]
"""(target node, port, what listens there)."""


def services_of(spec: ClusterSpec, node: Node) -> tuple[str, ...]:
    """The long-running services of the node's role, in start order (the spec decides the ones that
    depend on other roles being present)."""
    extra = WITH_BACKUP.get(node.role, ()) if spec.backup_node is not None else ()
    return extra + ROLE_SERVICES[node.role]  # first: archiving reaches it as soon as PostgreSQL runs


def _reaches(p: Ports, source: Role | None) -> list[tuple[Role, int, str]]:
    """(target role, port, what listens there) that a node of role ``source`` connects to; ``None`` is the
    operator's machine."""
    if source is None:
        return [(Role.POSTGRES, p.etcd_client, "etcd client"), (Role.POSTGRES, p.postgresql, "PostgreSQL"),
                (Role.POSTGRES, p.restapi, "Patroni REST API"), (Role.HAPROXY, p.haproxy_monitor, "HAProxy stats"),
                (Role.MONITOR, p.prometheus, "Prometheus"), (Role.MONITOR, p.alertmanager, "Alertmanager")]
    if source is Role.MONITOR:  # Prometheus' scrapes (and the blackbox exporter's TLS probes)
        return [(Role.POSTGRES, p.restapi, "Patroni REST API"), (Role.POSTGRES, p.etcd_client, "etcd client"),
                (Role.POSTGRES, p.postgres_exporter, "postgres_exporter"),
                (Role.HAPROXY, p.haproxy_monitor, "HAProxy stats")]
    if source is Role.POSTGRES:
        return [(Role.POSTGRES, p.etcd_client, "etcd client"), (Role.POSTGRES, p.etcd_peer, "etcd peer"),
                (Role.POSTGRES, p.postgresql, "PostgreSQL"), (Role.POSTGRES, p.restapi, "Patroni REST API"),
                (Role.BACKUP, p.pgbackrest, "pgBackRest")]  # archive-push/get, restores
    if source is Role.HAPROXY:
        return [(Role.POSTGRES, p.postgresql, "PostgreSQL"), (Role.POSTGRES, p.restapi, "Patroni REST API")]
    if source is Role.BACKUP:
        return [(Role.POSTGRES, p.pgbackrest, "pgBackRest")]  # backups
    return []


def port_matrix(spec: ClusterSpec, source: Node | None) -> list[PortTarget]:
    """(target node, port, service) that ``source`` must reach; ``None`` is the operator's machine.

    The seed's section 2 table: PostgreSQL nodes reach each other on etcd's client and peer ports,
    PostgreSQL (replication, pg_rewind) and Patroni's REST API; HAProxy nodes reach PostgreSQL and the
    REST API (health checks); PostgreSQL nodes and the backup node reach each other's pgBackRest
    servers. The operator's machine (pgha's probes) reaches etcd's client port,
    PostgreSQL and the REST API of the PostgreSQL nodes and the HAProxy nodes' stats port.
    VRRP (IP protocol 112, unicast between the HAProxy nodes) is not TCP: the VIP diagnoses judge it from the holders;
    the applications' port on the VIP exists once keepalived holds it (verify checks it).
    """
    wanted = _reaches(spec.ports, source.role if source is not None else None)
    return [(t, port, what) for role in dict.fromkeys(r for r, _, _ in wanted) for t in spec.nodes_of(role)
            if t != source for r, port, what in wanted if r is role]
