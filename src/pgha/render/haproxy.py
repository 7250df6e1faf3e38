"""haproxy.cfg: the VIP's port 5432 to the primary, 5433 to the replicas, checks over verified TLS."""

from __future__ import annotations

from pgha.layout import NodeLayout
from pgha.render import fill
from pgha.spec import ClusterSpec
from pgha.tlspolicy import MIN_VERSION, OPENSSL_CIPHERS


def _servers(spec: ClusterSpec, ca_file: str) -> str:
    lines = []
    for node in spec.postgres_nodes:
        # verifyhost: the REST certificate must name this node (DNS SAN), not just chain to the CA.
        lines.append(
            f"    server {node.member_name} {node.address}:{spec.ports.postgresql} "
            f"check port {spec.ports.restapi} check-ssl verify required ca-file {ca_file} "
            f"verifyhost {node.name}"
        )
    return "\n".join(lines)


def render(layout: NodeLayout, stats_user: str, stats_password: str) -> str:
    spec, t = layout.spec, layout.spec.haproxy
    servers = _servers(spec, layout.haproxy_ca)
    return fill(
        "haproxy.cfg",
        cluster=spec.name,
        node=layout.node.name,
        node_address=layout.node.address,
        stats_socket=layout.haproxy_socket,
        ciphers=OPENSSL_CIPHERS,
        min_version=MIN_VERSION,
        stats_auth=f"{stats_user}:{stats_password}",
        timeout_connect=t.timeout_connect_ms,
        timeout_client=t.timeout_client_ms,
        timeout_server=t.timeout_server_ms,
        timeout_check=t.timeout_check_ms,
        inter=t.inter_ms,
        fastinter=t.fastinter_ms,
        downinter=t.downinter_ms,
        rise=t.rise,
        fall=t.fall,
        monitor_port=spec.ports.haproxy_monitor,
        pg_port=spec.ports.postgresql,
        replica_port=spec.ports.postgresql_replicas,
        primary_servers=servers,
        replica_servers=servers,
    )
