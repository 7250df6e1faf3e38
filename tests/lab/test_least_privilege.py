"""Least privilege in PostgreSQL (issue 18, item 4): the application role through the VIP, the superuser
only from the PostgreSQL nodes and the admin addresses, pg_rewind's own role with only its grants."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from pgha.lab.control import Lab
from pgha.probe import Credentials
from pgha.probe import pg as pg_probe
from pgha.probe.cluster import Prober
from pgha.roles import REWIND_FUNCTIONS
from pgha.spec import Node

pytestmark = pytest.mark.lab

PGHA = str(Path(sys.executable).parent / "pgha")


def psql_from(lab: Lab, node: Node, dsn: str, sql: str, password: str) -> subprocess.CompletedProcess[str]:
    """psql inside a node's namespace (its own source address), the password in the environment."""
    return subprocess.run(["ip", "netns", "exec", lab.transport.netns(node), f"{lab.spec.pg_bin_dir}/psql", dsn,
                           "-Atc", sql], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"})


def leader(lab: Lab) -> Node:
    snap = Prober(lab.spec, Credentials.of(lab.spec), lab.transport).snapshot()
    assert snap.leader is not None
    return lab.spec.node(snap.leader.name)


def test_dsn_and_psql_use_the_application_role(lab: Lab, lab_spec_file: str) -> None:
    dsn = subprocess.run([PGHA, "dsn", "--vip", "--spec", lab_spec_file], capture_output=True, text=True).stdout
    assert " user=app " in dsn and " dbname=app " in dsn
    table = f"t_{uuid.uuid4().hex[:8]}"
    out = subprocess.run([PGHA, "psql", "--spec", lab_spec_file, "--", "-Atc",
                          f"create table {table} (v int); insert into {table} values (7); "
                          f"select current_user, current_database(), v, pg_is_in_recovery() from {table}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "app|app|7|f"


def test_application_role_is_no_superuser_and_owns_its_database(lab: Lab) -> None:
    rows = pg_probe.query(str(leader(lab).address), lab.spec.ports.postgresql, Credentials.of(lab.spec),
                          "select rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, "
                          "pg_get_userbyid(d.datdba) from pg_roles, pg_database d "
                          "where rolname = 'app' and d.datname = 'app'", superuser=True)
    assert rows == [(False, False, False, False, False, "app")]


def test_superuser_refused_through_the_vip_and_from_a_proxy_node(lab: Lab) -> None:
    spec, creds = lab.spec, Credentials.of(lab.spec)
    port = spec.ports.postgresql
    with pytest.raises(psycopg.OperationalError, match=r'pg_hba.conf rejects connection .* user "postgres"'):
        pg_probe.query(str(spec.vip.address), port, creds, "select 1", superuser=True)
    target = spec.postgres_nodes[1]
    # From this machine (the lab's admin address, the default postgresql.admin_addresses): allowed.
    assert pg_probe.query(str(target.address), port, creds, "select current_user", superuser=True) == \
        [("postgres",)]
    proxy = spec.haproxy_nodes[2]
    common = f"host={target.address} port={port} sslmode=verify-full sslrootcert={creds.ca}"
    refused = psql_from(lab, proxy, f"{common} user=postgres dbname=postgres", "select 1",
                        creds.secrets.superuser_password)
    assert refused.returncode != 0
    assert f'pg_hba.conf rejects connection for host "{proxy.address}", user "postgres"' in refused.stderr
    # The same path works for the application role: the refusal is the rule, not the network.
    app = psql_from(lab, proxy, f"{common} user=app dbname=app", "select current_user", creds.secrets.app_password)
    assert (app.returncode, app.stdout.strip()) == (0, "app"), app.stderr


def test_rewind_role_has_pg_rewinds_grants_only(lab: Lab) -> None:
    spec, creds = lab.spec, Credentials.of(lab.spec)
    port, primary = spec.ports.postgresql, leader(lab)
    granted = ", ".join(f"has_function_privilege('rewind', 'pg_catalog.{f}', 'execute')" for f in REWIND_FUNCTIONS)
    rows = pg_probe.query(str(primary.address), port, creds,
                          f"select rolsuper, rolreplication, {granted}, "
                          "has_function_privilege('rewind', 'pg_catalog.pg_read_file(text)', 'execute') "
                          "from pg_roles where rolname = 'rewind'", superuser=True)
    assert rows == [(False, False, *[True] * len(REWIND_FUNCTIONS), False)]
    # What pg_rewind does on its source, as the rewind role from another PostgreSQL node: allowed.
    other = next(n for n in spec.postgres_nodes if n != primary)
    dsn = (f"host={primary.address} port={port} user=rewind dbname=postgres sslmode=verify-full "
           f"sslrootcert={creds.ca}")
    ok = psql_from(lab, other, dsn, "select count(*) > 0 from pg_ls_dir('global', false, false)",
                   creds.secrets.rewind_password)
    assert (ok.returncode, ok.stdout.strip()) == (0, "t"), ok.stderr
    denied = psql_from(lab, other, dsn, "select pg_read_file('postgresql.conf')", creds.secrets.rewind_password)
    assert "permission denied for function pg_read_file" in denied.stderr
    # Not from an HAProxy node.
    proxy = psql_from(lab, spec.haproxy_nodes[0], dsn, "select 1", creds.secrets.rewind_password)
    assert 'pg_hba.conf rejects connection' in proxy.stderr and 'user "rewind"' in proxy.stderr
