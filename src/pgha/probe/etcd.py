"""etcd over its v3 JSON gateway, with mutual TLS (etcd 3.4: /health, /v3/maintenance/status)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from pgha.probe import Credentials
from pgha.spec import ClusterSpec, Node


@dataclass(frozen=True)
class EtcdMember:
    name: str
    endpoint: str
    healthy: bool
    is_leader: bool = False
    db_size: int | None = None
    raft_term: int | None = None
    error: str | None = None


def endpoint(spec: ClusterSpec, node: Node) -> str:
    return f"https://{node.address}:{spec.ports.etcd_client}"


def client(creds: Credentials, timeout: float = 2.0, with_cert: bool = True) -> httpx.Client:
    return httpx.Client(verify=creds.tls(with_cert), timeout=timeout)


def member(spec: ClusterSpec, node: Node, creds: Credentials, timeout: float = 2.0) -> EtcdMember:
    """Health and status of one member, as `etcdctl endpoint health/status` report them."""
    url = endpoint(spec, node)
    try:
        with client(creds, timeout) as http:
            health = http.get(f"{url}/health").json()
            status = http.post(f"{url}/v3/maintenance/status", json={}).json()
    except (httpx.HTTPError, ValueError) as exc:
        return EtcdMember(node.member_name, url, False, error=f"{type(exc).__name__}: {exc}")
    healthy = str(health.get("health")) == "true"
    header = status.get("header", {})
    return EtcdMember(
        node.member_name, url, healthy,
        is_leader=bool(status.get("leader")) and status.get("leader") == header.get("member_id"),
        db_size=int(status.get("dbSize", 0)), raft_term=int(status.get("raftTerm", 0)),
        error=None if healthy else str(health.get("reason") or health),
    )


def members(spec: ClusterSpec, creds: Credentials, timeout: float = 2.0) -> list[EtcdMember]:
    return [member(spec, n, creds, timeout) for n in spec.postgres_nodes]


def refuses_without_cert(spec: ClusterSpec, node: Node, creds: Credentials) -> tuple[bool, str]:
    """True if the member rejects a TLS client that presents no certificate."""
    try:
        with client(creds, with_cert=False) as http:
            r = http.post(f"{endpoint(spec, node)}/v3/kv/range", json={"key": "Lw=="})
        return False, f"answered HTTP {r.status_code} without a client certificate"
    except httpx.HTTPError as exc:
        return True, f"refused: {type(exc).__name__}"
