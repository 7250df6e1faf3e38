"""What a client sees during a drill: sequence-numbered writes through the VIP, each acknowledged
commit recorded with its time, the server that acknowledged it and its WAL position; plus a direct
writer per PostgreSQL node that records which nodes accept writes (two at once = split brain).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgha.probe import Credentials
from pgha.probe import pg as pg_probe

TABLE = "pgha_drill"
DIRECT_TABLE = "pgha_drill_direct"


@dataclass(frozen=True)
class Attempt:
    seq: int
    started: float
    ended: float
    ok: bool
    server: str | None = None
    lsn: int | None = None
    error: str | None = None
    timeline: int | None = None
    server_start: str | None = None
    """``pg_postmaster_start_time()`` of the server that acknowledged."""


def lsn_int(lsn: str) -> int:
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def create_tables(host: str, port: int, creds: Credentials) -> None:
    pg_probe.query(host, port, creds,
                   f"create table if not exists {TABLE} (run text, seq bigint, server inet, "
                   f"at timestamptz default clock_timestamp(), primary key (run, seq))")
    pg_probe.query(host, port, creds,
                   f"create table if not exists {DIRECT_TABLE} (run text, node text, seq bigint, "
                   f"at timestamptz default clock_timestamp())")
    # Direct writers probe every node 5 times a second; on a standby this returns null instead of an
    # error, so the PostgreSQL logs stay readable during a drill.
    pg_probe.query(host, port, creds,
                   f"create or replace function {DIRECT_TABLE}_write(r text, n text, s bigint) returns text "
                   f"language plpgsql as $$ begin if pg_is_in_recovery() then return null; end if; "
                   f"insert into {DIRECT_TABLE} (run, node, seq) values (r, n, s); "
                   f"return concat_ws(' ', host(inet_server_addr()), pg_current_wal_lsn()::text, "
                   f"substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), "
                   f"replace(pg_postmaster_start_time()::text, ' ', 'T')); end $$")


@dataclass
class Writer:
    """One writer thread: insert, commit, record; reconnect at once on failure."""

    host: str
    port: int
    creds: Credentials
    run: str
    interval: float = 0.05
    node: str | None = None  # set for a direct-to-node writer
    dsn: str | None = None
    """A libpq connection string to use instead of host/port (e.g. a multi-host string, for a peer tool)."""
    attempts: list[Attempt] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"writer-{self.node or 'vip'}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _sql(self) -> str:
        if self.node:
            return f"select {DIRECT_TABLE}_write(%s, %s, %s)"
        return (f"insert into {TABLE} (run, seq, server) values (%s, %s, inet_server_addr()) "
                "returning host(inet_server_addr()), pg_current_wal_lsn()::text, "
                "substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), "
                "replace(pg_postmaster_start_time()::text, ' ', 'T')")

    def _loop(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        seq = 0
        sql = self._sql()
        while not self._stop.is_set():
            seq += 1
            t0 = time.time()
            try:
                if conn is None or conn.closed:
                    conn = (pg_probe.connect_dsn(self.dsn) if self.dsn else
                            pg_probe.connect(self.host, self.port, self.creds, connect_timeout=2))
                params = (self.run, self.node, seq) if self.node else (self.run, seq)
                row = conn.execute(sql, params).fetchone()
                assert row is not None
                if self.node:  # "server lsn timeline start", or null on a standby
                    if row[0] is None:
                        self.attempts.append(Attempt(seq, t0, time.time(), False, error="in recovery"))
                        self._stop.wait(self.interval)
                        continue
                    row = tuple(row[0].split(" "))
                self.attempts.append(Attempt(seq, t0, time.time(), True, row[0], lsn_int(row[1]),
                                             timeline=int(row[2], 16), server_start=row[3]))
            except (psycopg.Error, OSError) as exc:
                self.attempts.append(Attempt(seq, t0, time.time(), False,
                                             error=str(exc).strip().splitlines()[0][:160] if str(exc) else
                                             type(exc).__name__))
                if conn is not None and (conn.broken or not isinstance(exc, psycopg.errors.ReadOnlySqlTransaction)):
                    conn.close()
                    conn = None
                self._stop.wait(0.1 if conn is None else self.interval)
                continue
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    @property
    def acked(self) -> list[Attempt]:
        return [a for a in self.attempts if a.ok]
