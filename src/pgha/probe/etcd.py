"""etcd over its v3 JSON gateway, with mutual TLS (etcd 3.4: /health, /v3/maintenance/status)."""

from __future__ import annotations

import base64
import re
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from pgha.errors import PghaError
from pgha.pki import PROBE_USER
from pgha.probe import Credentials
from pgha.spec import ClusterSpec, Node

AUTH_NOT_ENABLED = "authentication is not enabled"


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
    """A client of etcd's gateway with the read-only probes' certificate (or none)."""
    return httpx.Client(verify=creds.probe_tls() if with_cert else creds.tls(False), timeout=timeout)


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


# -- the v3 gateway's RPCs, with a password login (etcd auth: pgha.etcd_auth) -----------------------


def prefix(spec: ClusterSpec) -> str:
    """Patroni's keys: ``/<namespace>/<scope>/``, as Patroni builds it (one slash between the parts)."""
    return re.sub("/+", "/", f"/{spec.cluster.namespace}/{spec.name}/")


def range_end(key: str) -> str:
    """The end of the key range that holds every key starting with ``key``."""
    return key[:-1] + chr(ord(key[-1]) + 1)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class GatewayError(PghaError):
    """etcd refused a call; the message is etcd's own."""


class Gateway:
    """RPCs of etcd's JSON gateway (``/v3/<path>``) with one TLS identity and, after :meth:`login`, a token."""

    def __init__(self, url: str, tls: ssl.SSLContext, timeout: float = 5.0) -> None:
        self.url = url
        self.http = httpx.Client(verify=tls, timeout=timeout)
        self.token: str | None = None

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Authorization": self.token} if self.token else {}
        r = self.http.post(f"{self.url}/v3/{path}", json=body or {}, headers=headers)
        try:
            data = r.json()
        except ValueError:
            data = {"error": r.text.strip()}
        if r.status_code != 200 or "error" in data:
            message = str(data.get("error") or data.get("message") or f"HTTP {r.status_code}")
            raise GatewayError(f"etcd {path}: {message.removeprefix('etcdserver: ')}")
        return data

    def login(self, name: str, password: str) -> str | None:
        """A token for the user; None while auth is not enabled."""
        try:
            return str(self.call("auth/authenticate", {"name": name, "password": password})["token"])
        except GatewayError as exc:
            if AUTH_NOT_ENABLED in exc.message:
                return None
            raise


def read_only_enforced(spec: ClusterSpec, creds: Credentials) -> tuple[bool, str]:
    """Logged in as the read-only probe user (at the first member that answers): the cluster's keys
    read, a write under them refused."""
    key, errors = prefix(spec), []
    for node in spec.postgres_nodes:
        try:
            with Gateway(endpoint(spec, node), creds.probe_tls(), 3.0) as gw:
                gw.token = gw.login(PROBE_USER, creds.secrets.etcd_probe_password)
                if gw.token is None:
                    return False, "etcd authentication is off: any certificate of the CA may write every key"
                found = gw.call("kv/range", {"key": b64(key), "range_end": b64(range_end(key)), "count_only": True})
                try:
                    gw.call("kv/put", {"key": b64(f"{key}pgha-verify"), "value": b64("x")})
                except GatewayError as exc:
                    if "permission denied" not in exc.message:
                        raise
                    return True, f"{PROBE_USER} reads {found.get('count', 0)} keys under {key}, its write is refused"
                return False, f"{PROBE_USER} wrote {key}pgha-verify: its role is not read-only"
        except (httpx.HTTPError, GatewayError) as exc:
            errors.append(f"{node.name}: {type(exc).__name__}: {exc}")
    return False, "; ".join(errors)
