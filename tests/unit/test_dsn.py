"""The DSNs pgha prints: through the VIP, or straight to the PostgreSQL nodes as a libpq multi-host list."""

from __future__ import annotations

from pgha import spec as spec_mod
from pgha.probe import pg
from tests.unit.fakes import CREDS

SPEC = spec_mod.parse(spec_mod.default_data(lab=True))


def test_multi_host_lists_every_postgres_node_and_asks_for_the_primary() -> None:
    host, port = pg.endpoint(SPEC, multi_host=True)
    assert (host, port) == ("10.203.0.203,10.203.0.204,10.203.0.205", 5432)
    dsn = pg.dsn(host, port, CREDS, connect_timeout=2)
    assert dsn.startswith("host=10.203.0.203,10.203.0.204,10.203.0.205 port=5432 ")
    assert dsn.endswith("sslmode=verify-full sslrootcert=/nonexistent/ca.crt connect_timeout=2 "
                        "target_session_attrs=read-write")


def test_one_host_needs_no_session_attributes() -> None:
    dsn = pg.dsn(*pg.endpoint(SPEC), CREDS)
    assert dsn.startswith("host=10.203.0.210 port=5432 ") and "target_session_attrs" not in dsn
