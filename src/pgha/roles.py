"""The roles pgha makes sure of besides Patroni's superuser and replicator: the application role with its
own database, and the rewind role with the grants pg_rewind needs (Patroni creates that one at bootstrap;
a cluster bootstrapped by an older pgha, whose rewind user was the superuser, gets it here).

Passwords go to the server as SCRAM verifiers computed on this side, in a session with statement logging
off (as Patroni does for its roles): neither a server log nor a statistics view can show a password.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgha.probe import Credentials
from pgha.probe import pg as pg_probe
from pgha.spec import MONITOR_USER, REWIND_USER, ClusterSpec, Node

REWIND_FUNCTIONS = ("pg_ls_dir(text, boolean, boolean)", "pg_stat_file(text, boolean)",
                    "pg_read_binary_file(text)", "pg_read_binary_file(text, bigint, bigint, boolean)")
"""What pg_rewind calls on the source server (PostgreSQL's pg_rewind documentation); nothing else."""

_QUIET = ("SET log_statement TO none", "SET log_min_duration_statement TO -1",
          "SET log_min_error_statement TO panic", "SET pg_stat_statements.track_utility TO off")


def _set_role(conn: psycopg.Connection[object], user: str, password: str, options: str = "LOGIN") -> None:
    verifier = conn.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256").decode()
    exists = conn.execute("select 1 from pg_roles where rolname = %s", (user,)).fetchone()
    conn.execute(sql.SQL("{verb} ROLE {user} WITH {options} PASSWORD {verifier}").format(
        verb=sql.SQL("ALTER" if exists else "CREATE"), user=sql.Identifier(user), options=sql.SQL(options),
        verifier=sql.Literal(verifier)))


def ensure_roles(spec: ClusterSpec, creds: Credentials, leader: Node) -> tuple[bool, str]:
    """On the leader: the application role can log into its database, the rewind role exists with its grants.

    Returns (done, what was done) for :meth:`Orchestrator.wait`.
    """
    host, port, app = str(leader.address), spec.ports.postgresql, creds.app_user
    done = []
    with pg_probe.connect(host, port, creds, superuser=True, connect_timeout=3) as conn:
        for statement in _QUIET:
            conn.execute(statement)
        try:
            pg_probe.query(host, port, creds, "select 1", connect_timeout=3)
        except psycopg.OperationalError:  # no such role or database, or another password
            _set_role(conn, app, creds.secrets.app_password)
            if not conn.execute("select 1 from pg_database where datname = %s", (app,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {db} OWNER {user}").format(
                    db=sql.Identifier(app), user=sql.Identifier(app)))
            done.append(f"role and database {app}")
        # postgres_exporter's role: pg_monitor's statistics, no data; its password kept in step with secrets.yml.
        _set_role(conn, MONITOR_USER, creds.secrets.monitor_password)
        conn.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(MONITOR_USER)))
        if not conn.execute("select 1 from pg_roles where rolname = %s", (REWIND_USER,)).fetchone():
            _set_role(conn, REWIND_USER, creds.secrets.rewind_password)
            for function in REWIND_FUNCTIONS:
                conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION pg_catalog.{} TO {}").format(
                    sql.SQL(function), sql.Identifier(REWIND_USER)))
            done.append(f"role {REWIND_USER}")
    return True, ("created " + ", ".join(done)) if done else "roles present"
