"""PostgreSQL connections as a client of the cluster sees them: TLS verify-full against the CA."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg

from pgha.errors import MissingPrerequisite
from pgha.layout import StateLayout
from pgha.probe import Credentials
from pgha.secrets import ensure_passfile
from pgha.spec import ClusterSpec


def dsn(host: str, port: int, creds: Credentials, *, superuser: bool = False, dbname: str | None = None,
        sslmode: str = "verify-full", connect_timeout: int = 3, passfile: str | None = None) -> str:
    """A libpq DSN as the application role (in its database) or the superuser; with ``passfile`` it names
    libpq's password file instead of holding the password. Several hosts (``a,b,c``): libpq tries each in
    turn and keeps the one that accepts writes (``target_session_attrs=read-write``), each verified by its
    own certificate; ``connect_timeout`` is then per host."""
    user, password, database = creds.login(superuser)
    secret = f"passfile={passfile}" if passfile else f"password={password}"
    attrs = " target_session_attrs=read-write" if "," in host else ""
    return (f"host={host} port={port} dbname={dbname or database} user={user} {secret} "
            f"sslmode={sslmode} sslrootcert={creds.ca} connect_timeout={connect_timeout}{attrs}")


def connect(host: str, port: int, creds: Credentials, **kw: Any) -> psycopg.Connection[Any]:
    autocommit = kw.pop("autocommit", True)
    return connect_dsn(dsn(host, port, creds, **kw), autocommit=autocommit)


def connect_dsn(conninfo: str, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection from a whole DSN (the peer benchmark's libpq multi-host string, for one)."""
    return psycopg.connect(conninfo, autocommit=autocommit)


def query(host: str, port: int, creds: Credentials, sql: str, params: Any = None,
          **kw: Any) -> list[tuple[Any, ...]]:
    with connect(host, port, creds, **kw) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


def endpoint(spec: ClusterSpec, node: str | None = None, replicas: bool = False,
             multi_host: bool = False) -> tuple[str, int]:
    """Where a client connects: one PostgreSQL node, the VIP's read-only port, the VIP (the primary), or
    every PostgreSQL node (a libpq multi-host list: the client finds the primary itself)."""
    if node:
        return str(spec.node(node).address), spec.ports.postgresql
    if multi_host:
        return ",".join(str(n.address) for n in spec.postgres_nodes), spec.ports.postgresql
    return str(spec.vip.address), spec.ports.postgresql_replicas if replicas else spec.ports.postgresql


def _passfile(spec: ClusterSpec, creds: Credentials) -> str:
    return str(ensure_passfile(StateLayout(spec.state_dir), creds.passwords))


def client_env(spec: ClusterSpec, creds: Credentials) -> dict[str, str]:
    """libpq's environment for a client tool (pgbench) as the application role: the passfile, verify-full
    against the CA."""
    user, _, database = creds.login()
    return {"PGPASSFILE": _passfile(spec, creds), "PGSSLMODE": "verify-full", "PGSSLROOTCERT": creds.ca,
            "PGUSER": user, "PGDATABASE": database}


def client_dsn(spec: ClusterSpec, creds: Credentials, *, node: str | None = None, replicas: bool = False,
               multi_host: bool = False, superuser: bool = False, dbname: str | None = None,
               with_password: bool = False, at: tuple[str, int] | None = None) -> str:
    """The DSN `pgha dsn` prints: the password in a 0600 passfile of the state directory unless asked for;
    ``at``: (host, port) of another instance of the cluster's data (a restore's scratch instance)."""
    passfile = None if with_password else _passfile(spec, creds)
    host, port = at or endpoint(spec, node, replicas, multi_host)
    return dsn(host, port, creds, superuser=superuser, dbname=dbname, connect_timeout=5 if not multi_host else 2,
               passfile=passfile)


def psql_argv(spec: ClusterSpec, creds: Credentials, args: tuple[str, ...], **target: Any) -> list[str]:
    """psql with the cluster's DSN (password in the passfile, never on the command line) and ``args``."""
    found = Path(spec.pg_bin_dir) / "psql"
    psql = str(found) if found.exists() else shutil.which("psql")
    if psql is None:
        raise MissingPrerequisite("psql is not installed", hint="apt-get install postgresql-client")
    return [psql, client_dsn(spec, creds, **target), *args]


def through_vip(spec: ClusterSpec, creds: Credentials, connect_timeout: int = 2) -> tuple[str, bool]:
    """Where a client of the VIP lands: (the server's address, whether it is in recovery)."""
    rows = query(str(spec.vip.address), spec.ports.postgresql, creds,
                 "select host(inet_server_addr()), pg_is_in_recovery()", connect_timeout=connect_timeout)
    return str(rows[0][0]), bool(rows[0][1])
