"""PostgreSQL connections as a client of the cluster sees them: TLS verify-full against the CA."""

from __future__ import annotations

from typing import Any

import psycopg

from pgha.probe import Credentials


def dsn(host: str, port: int, creds: Credentials, *, dbname: str = "postgres", user: str = "postgres",
        sslmode: str = "verify-full", connect_timeout: int = 3) -> str:
    password = creds.secrets.superuser_password
    return (f"host={host} port={port} dbname={dbname} user={user} password={password} "
            f"sslmode={sslmode} sslrootcert={creds.ca} connect_timeout={connect_timeout}")


def connect(host: str, port: int, creds: Credentials, **kw: Any) -> psycopg.Connection[Any]:
    autocommit = kw.pop("autocommit", True)
    return psycopg.connect(dsn(host, port, creds, **kw), autocommit=autocommit)


def query(host: str, port: int, creds: Credentials, sql: str, params: Any = None,
          **kw: Any) -> list[tuple[Any, ...]]:
    with connect(host, port, creds, **kw) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []
