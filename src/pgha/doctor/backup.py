"""Backups: WAL archiving failing on the primary, the repository unreachable or without its stanza, no
backup or none recent enough where backups run on a schedule (servers' timers; the lab takes them on
demand). A cluster without a backup node has no backups: `status` says so."""

from __future__ import annotations

from datetime import timedelta

from pgha.doctor.model import Evidence, Finding, Severity
from pgha.errors import pgha_command


def archiving(ev: Evidence) -> list[Finding]:
    """pg_stat_archiver on the primary: the last attempt failed. The error is pgBackRest's, from the log."""
    if ev.spec.backup_node is None:
        return []
    out = []
    for f in ev.pg_facts:
        a = f.pg.archiver if f.pg else None
        if f.pg is None or f.pg.in_recovery or a is None or not a.failing:
            continue
        said = [line.strip() for line in f.logs.get("patroni", "").splitlines() if "ERROR: [" in line]
        out.append(Finding(
            f"WAL archiving is failing on the primary {f.node.name}: WAL piles up and restores stop at "
            f"{a.last_archived_wal or 'the start'}",
            f"pg_stat_archiver: {a.failed_count} failures, the last for {a.last_failed_wal} at "
            f"{a.last_failed_time:%H:%M:%S}" + (f"; pgBackRest: {said[-1]}" if said else ""),
            f"fix the cause, then `{pgha_command('backup', 'check')}`; "
            f"`{pgha_command('logs', f.node.name, 'patroni')}` shows every attempt",
            node=f.node.name, code="backup.archiving_failing"))
    return out


def repository(ev: Evidence) -> list[Finding]:
    b, node = ev.backup, ev.spec.backup_node
    if b is None or node is None:
        return []
    if b.info is None or not b.info.ok:
        why = b.error if b.info is None else b.info.status
        return [Finding(f"the backup repository on {node.name} cannot be used: no backup can be taken or restored",
                        str(why), f"`{pgha_command('logs', node.name, 'pgbackrest')}`; "
                                  f"`{pgha_command('backup', 'check')}` says what pgBackRest sees",
                        node=node.name, code="backup.repo_unreachable")]
    newest = b.info.newest
    if not ev.scheduled_backups:  # the lab: backups on demand, nothing is late
        return []
    if newest is None:
        return [Finding("the repository holds no backup: nothing can be restored", f"pgbackrest info on {node.name}: "
                        f"{b.info.status}", f"`{pgha_command('backup')}`", Severity.WARNING, node.name,
                        code="backup.none")]
    limit = timedelta(hours=ev.spec.backup.max_age_hours)
    age = ev.now - newest.stopped
    if age > limit:
        return [Finding(f"the newest backup is {age.total_seconds() / 3600:.0f} h old (backup.max_age_hours "
                        f"{ev.spec.backup.max_age_hours})",
                        f"{newest.label} ({newest.type}) ended {newest.stopped:%Y-%m-%d %H:%M} UTC",
                        f"`{pgha_command('backup', '--type', 'diff')}`", Severity.WARNING, node.name,
                        code="backup.stale")]
    return []


DIAGNOSES = (archiving, repository)
