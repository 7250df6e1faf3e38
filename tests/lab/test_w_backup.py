"""Backups and PITR against the real lab: pgBackRest on backup-01 over TLS, WAL archived through Patroni,
a point-in-time restore into a scratch instance with every row checked, archiving after a switchover,
and a replica rebuilt from the repository."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from pgha.backup.repo import Repository
from pgha.backup.restore import Restorer
from pgha.cli import main
from pgha.lab.control import Lab
from pgha.ops import Operations
from pgha.probe import Credentials
from pgha.probe import pg as pg_probe

pytestmark = pytest.mark.lab


@pytest.fixture
def ops(lab: Lab) -> Operations:
    return Operations(lab.spec, Credentials.of(lab.spec), lab.transport)


@pytest.fixture
def repo(lab: Lab) -> Repository:
    node = lab.spec.node("backup-01")
    return Repository(lab.spec, lab.transport, lab.target.layout(node))


def vip(lab: Lab) -> psycopg.Connection[object]:
    return pg_probe.connect(str(lab.spec.vip.address), lab.spec.ports.postgresql, Credentials.of(lab.spec))


def insert(conn: psycopg.Connection[object], first: int, last: int) -> None:
    for i in range(first, last + 1):  # one commit each: the target time falls between two commits
        conn.execute("insert into pitr(i) values (%s)", (i,))


def test_backup_writes_then_restore_into_has_exactly_the_rows_before_the_target(
        lab: Lab, lab_spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backup", "--type", "full", "--spec", lab_spec_file, "--format", "json"]) == 0
    taken = json.loads(capsys.readouterr().out)
    assert taken["type"] == "full" and taken["size"] > 0 and taken["wal_start"] <= taken["wal_stop"]
    with vip(lab) as conn:
        conn.execute("create table pitr(i int primary key)")
        insert(conn, 1, 150)
        target = conn.execute("select clock_timestamp()").fetchone()[0]  # type: ignore[index]
        insert(conn, 151, 300)
    assert main(["restore", "--time", target.isoformat(), "--into", "pitr", "--spec", lab_spec_file,
                 "--format", "json"]) == 0
    restored = json.loads(capsys.readouterr().out)
    try:
        with psycopg.connect(restored["dsn"]) as scratch:
            rows = [r[0] for r in scratch.execute("select i from pitr order by i").fetchall()]
        assert rows == list(range(1, 151))  # every row committed before the target, none after
        assert main(["dsn", "--restore", "pitr", "--spec", lab_spec_file]) == 0
        assert capsys.readouterr().out.strip() == restored["dsn"]
    finally:
        assert main(["restore", "--drop", "pitr", "--spec", lab_spec_file]) == 0
    with vip(lab) as conn:  # the cluster was not touched
        assert conn.execute("select count(*) from pitr").fetchone() == (300,)


def test_a_target_outside_the_repository_is_refused_naming_the_range(
        lab: Lab, lab_spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["restore", "--time", "2001-01-01T00:00:00+00:00", "--into", "old", "--spec", lab_spec_file]) == 2
    said = capsys.readouterr().err
    assert "is outside the restorable range" in said and "end of the oldest backup" in said
    assert Restorer(Repository(lab.spec, lab.transport, lab.target.layout(lab.spec.node("backup-01"))),
                    Credentials.of(lab.spec)).existing() == {}  # nothing was made


def test_archiving_follows_a_switchover(ops: Operations, repo: Repository) -> None:
    snap = ops.snapshot()
    assert snap.leader is not None
    old, new = snap.leader.name, snap.replicas[0].name
    ops.switchover(new)
    try:
        assert "archiving works" in repo.check()  # a WAL switch on the new primary reached the repository
        before = repo.info().wal_max
        taken = repo.backup("incr")
        leader = ops.snapshot().leader
        assert leader is not None and leader.name == new
        assert taken.type == "incr" and int(taken.wal_start[:8], 16) == leader.timeline  # the new timeline
        assert (repo.info().wal_max or "") > (before or "")
    finally:
        ops.switchover(old)
    assert "archiving works" in repo.check()


def test_a_reinitialised_replica_comes_from_the_repository(lab: Lab, ops: Operations) -> None:
    node = lab.spec.node("postgres-03")
    log = lab.state.log_file(node, "patroni")
    before = log.read_text().count("replica has been created using pgbackrest")
    ops.reinit("postgres-03")
    assert log.read_text().count("replica has been created using pgbackrest") == before + 1
    snap = ops.snapshot()
    assert snap.healthy()


def test_doctor_names_archiving_failing_and_the_repository_unreachable(lab: Lab, repo: Repository) -> None:
    """The repository host's pgBackRest server held down: the primary's archive-push fails and doctor says
    so (with the server down on backup-01); started again, archiving recovers."""
    from pgha.doctor import diagnose

    creds = Credentials.of(lab.spec)
    leader = Operations(lab.spec, creds, lab.transport).snapshot().leader
    assert leader is not None
    primary = lab.spec.node(leader.name)
    lab.stop("backup-01", "pgbackrest")
    try:
        with pg_probe.connect(str(primary.address), lab.spec.ports.postgresql, creds, superuser=True) as conn:
            conn.execute("create table if not exists archiving_probe(i int)")
            conn.execute("insert into archiving_probe values (1)")
            conn.execute("select pg_switch_wal()")  # a segment to archive now
        found: list[tuple[str, str | None]] = []
        # archive-push to a repository that refuses connections fails only after more than 30 s (measured:
        # not within 30 s), so PostgreSQL's archiver records the failure late
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = [(f.code, f.node) for f in diagnose(lab.target, creds).findings]
            if ("backup.archiving_failing", primary.name) in found:
                break
            time.sleep(1)
        assert ("backup.archiving_failing", primary.name) in found and ("service.down", "backup-01") in found
    finally:
        lab.start("backup-01", "pgbackrest")
    time.sleep(1)
    assert "archiving works" in repo.check()
    assert not [f for f in diagnose(lab.target, creds).findings if f.code.startswith("backup.")]


def test_restore_drill(lab: Lab, lab_spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Backup, writes, a target time, writes, switchover, writes, restore to the target: every row."""
    snap = Operations(lab.spec, Credentials.of(lab.spec), lab.transport).snapshot()
    assert snap.leader is not None
    leader = snap.leader.name
    try:
        assert main(["drill", "restore", "--spec", lab_spec_file, "--format", "json"]) == 0
        r = json.loads(capsys.readouterr().out)
        assert r["rows_before"] > 10 and r["rows_after"] > 10 and r["rows_wrong"] == 0 and r["verify_ok"]
        assert r["new_leader"] != leader and r["safe"]
    finally:
        Operations(lab.spec, Credentials.of(lab.spec), lab.transport).switchover(leader)
