"""Facts of the spec's topology: which services each node role runs, and which ports its nodes must
reach (the seed's section 2 table). Used by the plan builder, the lab, deploy, doctor and the CLI alike.
"""

from __future__ import annotations

from pgha.spec import ClusterSpec, Node

SERVICES = ("etcd", "patroni", "haproxy", "keepalived")
"""Every service pgha runs, in the seed's start order."""

PortTarget = tuple[Node, int, str]
"""(target node, port, what listens there)."""


def services_of(node: Node) -> tuple[str, ...]:
    """The long-running services of the node's role, in start order."""
    return ("etcd", "patroni") if node.is_postgres else ("haproxy", "keepalived")


def port_matrix(spec: ClusterSpec, source: Node | None) -> list[PortTarget]:
    """(target node, port, service) that ``source`` must reach; ``None`` is the operator's machine.

    The seed's section 2 table: PostgreSQL nodes reach each other on etcd's client and peer ports,
    PostgreSQL (replication, pg_rewind) and Patroni's REST API; HAProxy nodes reach PostgreSQL and the
    REST API (health checks). The operator's machine (pgha's probes) reaches etcd's client port,
    PostgreSQL and the REST API of the PostgreSQL nodes and the HAProxy nodes' stats port.
    VRRP (IP protocol 112, unicast between the HAProxy nodes) is not TCP: the VIP diagnoses judge it from the holders;
    the applications' port on the VIP exists once keepalived holds it (verify checks it).
    """
    p = spec.ports
    pg_ports = [(p.etcd_client, "etcd client"), (p.etcd_peer, "etcd peer"), (p.postgresql, "PostgreSQL"),
                (p.restapi, "Patroni REST API")]
    if source is None:
        probed = [(port, what) for port, what in pg_ports if port != p.etcd_peer]
        return [(t, port, what) for t in spec.postgres_nodes for port, what in probed] + [
            (t, p.haproxy_monitor, "HAProxy stats") for t in spec.haproxy_nodes]
    if source.is_haproxy:
        pg_ports = [(p.postgresql, "PostgreSQL"), (p.restapi, "Patroni REST API")]
    return [(t, port, what) for t in spec.postgres_nodes if t != source for port, what in pg_ports]
