"""etcd authorization: one etcd user per client certificate, enabled once etcd is healthy.

    user        certificate (OU)     may                                        where
    root        client.crt           everything, auth included                  pgha, the operator's machine
    patroni     patroni.crt          read/write ``/<namespace>/<cluster>/``     Patroni on each PostgreSQL node
    pgha-probe  probe.crt            read ``/<namespace>/<cluster>/``           pgha's read-only probes

All Patroni and pgha speak is etcd's JSON gateway, and there a client is known by a password login
only: the gateway ignores a certificate's CN for auth and, with auth on, answers 400 to any client
certificate that has one (etcd 3.4 embed/serve.go). So these certificates name their user in the OU
and carry no CN; each user's password is in secrets.yml (Patroni's in its config). Certificates
with a CN — the members' (etcd-peer), the PostgreSQL servers' (the node name) — map to no user on
etcd's gRPC API either: etcd refuses their reads and writes. Health and status need no user
(``/health``, ``/v3/maintenance/status``; ``etcdctl endpoint health`` counts "permission denied"
as healthy), so the seed's etcdctl commands work with a node's own certificate.

:func:`ensure` is idempotent: it creates what is missing through the gateway, as root once auth is on.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from pgha.errors import PghaError
from pgha.pki import PATRONI_USER, PROBE_USER, ROOT_USER
from pgha.probe import Credentials
from pgha.probe.etcd import Gateway, GatewayError, b64, endpoint, prefix, range_end
from pgha.secrets import Secrets
from pgha.spec import ClusterSpec


@dataclass(frozen=True)
class EtcdUser:
    """An etcd user, the role of the same name and what that role may do on the cluster's prefix."""

    name: str
    password: str
    permission: str | None
    """READ or READWRITE on the prefix; None for root (etcd's built-in role ``root``)."""


def users(secrets: Secrets) -> tuple[EtcdUser, ...]:
    return (EtcdUser(ROOT_USER, secrets.etcd_root_password, None),
            EtcdUser(PATRONI_USER, secrets.etcd_patroni_password, "READWRITE"),
            EtcdUser(PROBE_USER, secrets.etcd_probe_password, "READ"))


def ensure(spec: ClusterSpec, creds: Credentials, timeout: float = 5.0) -> list[str]:
    """Users, roles and grants created if missing, then auth enabled if it is not; returns what was done.

    Asks the first member that answers; the changes go through raft to every member.
    """
    errors = []
    for node in spec.postgres_nodes:
        try:
            with Gateway(endpoint(spec, node), creds.tls(), timeout) as gw:
                return _ensure(spec, creds.secrets, gw)
        except httpx.HTTPError as exc:
            errors.append(f"{node.name}: {type(exc).__name__}: {exc}")
    raise PghaError("no etcd member answered to set up authorization: " + "; ".join(errors),
                    hint="check that etcd runs and is healthy: pgha status")


def _ensure(spec: ClusterSpec, secrets: Secrets, gw: Gateway) -> list[str]:
    done: list[str] = []
    try:
        gw.token = gw.login(ROOT_USER, secrets.etcd_root_password)
    except GatewayError as exc:
        raise PghaError(f"etcd refuses pgha's root login: {exc.message}",
                        hint="etcd's root password is not the one in secrets.yml (etcd_root_password): "
                             "restore secrets.yml, or reset the cluster (`pgha reset`) to rebuild etcd") from None
    enabled = gw.token is not None
    key = prefix(spec)
    perm = {"key": b64(key), "range_end": b64(range_end(key))}
    roles = set(gw.call("auth/role/list").get("roles", []))
    have_users = set(gw.call("auth/user/list").get("users", []))
    for u in users(secrets):
        if u.permission is not None:
            if u.name not in roles:
                gw.call("auth/role/add", {"name": u.name})
                done.append(f"role {u.name} added")
            perms = gw.call("auth/role/get", {"role": u.name}).get("perm", [])
            want = {**perm, "permType": u.permission}
            if not any({**p, "permType": p.get("permType", "READ")} == want for p in perms):
                gw.call("auth/role/grant", {"name": u.name, "perm": want})
                done.append(f"role {u.name}: {u.permission} on {key}")
        if u.name not in have_users:
            gw.call("auth/user/add", {"name": u.name, "password": u.password})
            done.append(f"user {u.name} added")
        elif enabled and u.name != ROOT_USER and not _logs_in(gw, u):
            gw.call("auth/user/changepw", {"name": u.name, "password": u.password})
            done.append(f"user {u.name}: password set from secrets.yml")
        role = u.name if u.permission is not None else "root"
        if role not in gw.call("auth/user/get", {"name": u.name}).get("roles", []):
            gw.call("auth/user/grant", {"user": u.name, "role": role})
            done.append(f"user {u.name}: role {role}")
    if not enabled:
        gw.call("auth/enable")
        done.append("auth enabled")
    return done


def _logs_in(gw: Gateway, user: EtcdUser) -> bool:
    try:
        gw.login(user.name, user.password)
    except GatewayError:
        return False
    return True
