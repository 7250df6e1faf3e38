"""doctor's backup diagnoses on hand-written evidence: archiving failing, the repository unusable, no backup,
no recent backup; nothing when all is well or when the spec has no backup node."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from pgha.backup.repo import BackupSet, RepoInfo
from pgha.doctor import backup, run_diagnoses
from pgha.doctor.model import ArchiverFact, BackupFact, PgFact
from tests.unit.test_doctor import NOW, evidence, pg_facts

FULL = BackupSet("20291231-120000F", "full", NOW - timedelta(hours=2, minutes=1), NOW - timedelta(hours=2), 30_000_000,
                 3_000_000, "000000010000000000000002", "000000010000000000000002", "0/2000028", "0/2000100", None)
GOOD = BackupFact(RepoInfo("ok", (FULL,), "000000010000000000000001", "000000010000000000000009"))
ARCHIVING = ArchiverFact(12, 0, "000000010000000000000009", NOW - timedelta(seconds=30))


def primary(archiver: ArchiverFact, log: str = "") -> dict[int, dict[str, object]]:
    pg = PgFact(True, in_recovery=False, data_checksums=True, wal_log_hints=True, archiver=archiver)
    return {0: {"pg": pg, "logs": {"patroni": log}}}


def test_all_well_gives_no_backup_finding() -> None:
    found, notes = run_diagnoses(evidence(pg=primary(ARCHIVING), backup=GOOD))
    assert found == [] and notes == []


def test_archiving_failing_on_the_primary_with_pgbackrest_error() -> None:
    failing = dataclasses.replace(ARCHIVING, failed_count=3, last_failed_wal="00000001000000000000000A",
                                  last_failed_time=NOW - timedelta(seconds=5))
    log = ("2029-12-31 23:59:55 P00  ERROR: [103]: unable to find a valid repository\n"
           "LOG:  archive command failed with exit code 103")
    [f] = backup.archiving(evidence(pg=primary(failing, log), backup=GOOD))
    assert f.code == "backup.archiving_failing" and f.node == "postgres-01"
    assert "restores stop at 000000010000000000000009" in f.problem
    assert "3 failures, the last for 00000001000000000000000A" in f.evidence
    assert "pgBackRest: 2029-12-31 23:59:55 P00  ERROR: [103]: unable to find a valid repository" in f.evidence
    recovered = dataclasses.replace(failing, last_archived_time=NOW)  # a success since the last failure
    assert backup.archiving(evidence(pg=primary(recovered), backup=GOOD)) == []
    replica = {1: {"pg": PgFact(True, in_recovery=True, archiver=failing)}}
    assert backup.archiving(evidence(pg=replica, backup=GOOD)) == []  # only a primary archives


def test_the_repository_unusable_empty_or_stale() -> None:
    [f] = backup.repository(evidence(backup=BackupFact(None, "pgbackrest info on backup-01 failed: unable to connect")))
    assert (f.code, f.node) == ("backup.repo_unreachable", "backup-01") and "unable to connect" in f.evidence
    [f] = backup.repository(evidence(backup=BackupFact(RepoInfo("missing stanza", (), None, None))))
    assert f.code == "backup.repo_unreachable" and f.evidence == "missing stanza"
    empty = BackupFact(RepoInfo("no valid backups", (), None, None))
    [f] = backup.repository(evidence(backup=empty, scheduled_backups=True))
    assert f.code == "backup.none"
    old = BackupFact(RepoInfo("ok", (dataclasses.replace(FULL, stopped=NOW - timedelta(hours=30)),), None, None))
    [f] = backup.repository(evidence(backup=old, scheduled_backups=True))
    assert f.code == "backup.stale" and f.problem.startswith("the newest backup is 30 h old")
    # The lab: backups on demand, none is late.
    assert backup.repository(evidence(backup=empty)) == backup.repository(evidence(backup=old)) == []


def test_a_spec_without_a_backup_node_has_no_backup_findings() -> None:
    ev = evidence(backup=None)
    ev = dataclasses.replace(ev, spec=ev.spec.model_copy(update={"nodes": tuple(n for n in ev.spec.nodes
                                                                                if not n.is_backup)}))
    failing = dataclasses.replace(ARCHIVING, failed_count=1, last_failed_time=NOW)
    assert backup.repository(ev) == [] and backup.archiving(dataclasses.replace(
        ev, nodes=(*ev.nodes[:3], pg_facts(0, **primary(failing)[0]), *ev.nodes[4:]))) == []
