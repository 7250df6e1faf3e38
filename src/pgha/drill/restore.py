"""`pgha drill restore`: a restore watched end to end, with every acknowledged row checked.

A full backup; a writer commits sequence-numbered rows through the VIP (one commit each, reconnecting
on errors); a target time T is read from the database between two commits; more rows; a switchover
(archiving must follow the new primary); more rows; then a restore to T into a scratch instance: every
row acknowledged before T must be there, none acknowledged after. Reported: the restore's duration,
rows checked, rows wrong (must be 0), the archive lag (a WAL switch on the primary to the segment being
in the repository) and pgBackRest's ``verify``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg

from pgha.backup.repo import Repository
from pgha.backup.restore import Restorer, Target
from pgha.ops import Operations
from pgha.probe import Credentials
from pgha.probe import pg as pg_probe

TABLE = "pgha_restore_drill"


@dataclass(frozen=True)
class RestoreDrill:
    target: str
    rows_before: int
    rows_after: int
    rows_checked: int
    rows_missing: int
    rows_extra: int
    restore_seconds: float
    archive_lag_seconds: float
    verify_ok: bool
    new_leader: str

    @property
    def rows_wrong(self) -> int:
        return self.rows_missing + self.rows_extra

    @property
    def safe(self) -> bool:
        return self.rows_wrong == 0 and self.verify_ok

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_wrong": self.rows_wrong, "safe": self.safe}


class Writer:
    """Sequence-numbered commits through the VIP; what was acknowledged, in order."""

    def __init__(self, ops: Operations) -> None:
        self.spec, self.creds = ops.spec, ops.creds
        self.next, self.acked = 1, []  # type: ignore[var-annotated]
        self.conn: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            self.conn = pg_probe.connect(str(self.spec.vip.address), self.spec.ports.postgresql, self.creds,
                                         connect_timeout=2)
        return self.conn

    def setup(self) -> None:
        conn = self._connect()
        conn.execute(f"drop table if exists {TABLE}")
        conn.execute(f"create table {TABLE}(i bigint primary key)")

    def write_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self._connect().execute(f"insert into {TABLE}(i) values (%s)", (self.next,))
                self.acked.append(self.next)
                self.next += 1
            except psycopg.errors.UniqueViolation:  # committed, its acknowledgement lost: not counted
                self.next += 1
            except psycopg.Error:  # a switchover: reconnect; the unacknowledged number is retried
                self.conn = None
                time.sleep(0.1)
            time.sleep(0.02)

    def now(self) -> datetime:
        """The database's clock between two commits: the target time."""
        row = self._connect().execute("select clock_timestamp()").fetchone()
        assert row is not None
        return row[0]


def archive_lag(repo: Repository) -> float:
    """Seconds of pgBackRest's check: a WAL switch on the primary until the segment is in the repository."""
    t0 = time.monotonic()
    repo.check()
    return round(time.monotonic() - t0, 2)


def run(repo: Repository, ops: Operations, creds: Credentials, say: Callable[[str], None],
        seconds: float = 3.0) -> RestoreDrill:
    restorer = Restorer(repo, creds)
    say("full backup")
    repo.backup("full")
    writer = Writer(ops)
    writer.setup()
    say(f"writing {seconds:g} s")
    writer.write_for(seconds)
    target = writer.now()
    before = len(writer.acked)
    say(f"target {target.isoformat()}; writing {seconds:g} s more")
    writer.write_for(seconds)
    snap = ops.snapshot()
    candidate = snap.replicas[0].name if snap.replicas else None
    say(f"switchover to {candidate}")
    ops.switchover(candidate)
    writer.write_for(seconds)
    lag = archive_lag(repo)
    name = f"drill-{int(time.time())}"
    say(f"restore to the target into {name}")
    scratch = restorer.restore(name, Target.of(target.isoformat(), None, False))
    try:
        with pg_probe.connect_dsn(restorer.dsn(name)) as conn:
            rows = {int(r[0]) for r in conn.execute(f"select i from {TABLE}").fetchall()}
    finally:
        restorer.drop(name)
    want = set(writer.acked[:before])
    verify = repo.run("verify", timeout=600)
    new = ops.snapshot().leader
    return RestoreDrill(target.isoformat(), before, len(writer.acked) - before, len(writer.acked),
                        len(want - rows), len(rows - want),  # every other number was written after T
                        round(scratch.seconds, 1), lag,
                        verify.ok, new.name if new else "")
