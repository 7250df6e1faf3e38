"""`pgha backup [list|check]` and `pgha restore`: pgBackRest on the backup node (see pgha.backup)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from pgha.cli.common import cli, format_option, load_spec, require_target, spec_option
from pgha.cli.output import emit, err, table

if TYPE_CHECKING:
    from pgha.backup.repo import BackupSet, Repository
    from pgha.backup.restore import Restorer
    from pgha.spec import ClusterSpec


def repository(spec_path: str | None) -> Repository:
    from pgha.backup.repo import Repository, backup_node

    spec = load_spec(spec_path, lab_fallback=True)
    node = backup_node(spec)
    target = require_target(spec)
    return Repository(spec, target.transport, target.layout(node))


def restorer(spec_path: str | None) -> Restorer:
    from pgha.backup.restore import Restorer
    from pgha.probe import Credentials

    repo = repository(spec_path)
    return Restorer(repo, Credentials.of(repo.spec))


def archiving_check(spec: ClusterSpec) -> str | None:
    """pgBackRest's check as one line (never a failure of the command that moved the primary); None
    without a backup node or a target to run it on."""
    from pgha.backup.repo import Repository
    from pgha.cli.common import target_for
    from pgha.errors import PghaError

    node, target = spec.backup_node, target_for(spec)
    if node is None or target is None:
        return None
    try:
        return f"[green]backup[/]: {Repository(spec, target.transport, target.layout(node)).check()}"
    except PghaError as exc:
        return f"[red]backup[/]: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _sets_table(title: str, sets: list[BackupSet]) -> Any:
    return table(title, ["label", "type", "stopped (UTC)", "duration", "size", "in repo", "WAL start .. stop"],
                 [(b.label, b.type, f"{b.stopped:%Y-%m-%d %H:%M:%S}", f"{b.seconds:.0f} s", _mb(b.size),
                   _mb(b.repo_size), f"{b.wal_start} .. {b.wal_stop}") for b in sets])


@cli.group("backup", invoke_without_command=True)
@spec_option
@click.option("--type", "kind", type=click.Choice(["full", "diff", "incr"]), default="full", show_default=True,
              help="Full, differential (since the last full) or incremental (since the last backup).")
@format_option
@click.pass_context
def backup_group(ctx: click.Context, spec_path: str | None, kind: str, fmt: str) -> None:
    """Take a backup now (on the backup node, from a replica by default), waiting for it."""
    if ctx.invoked_subcommand is not None:
        return
    repo = repository(spec_path)
    with err.status(f"pgbackrest backup --type={kind} on {repo.node.name} …") as status:
        taken = repo.take(kind, lambda seen: status.update(f"pgbackrest backup --type={kind} on "
                                                           f"{repo.node.name} … [dim]{seen}[/]"))
    emit(taken.as_dict(), fmt, _sets_table(f"backup {taken.label} ({taken.type}) of {repo.spec.name}", [taken]))


@backup_group.command("list")
@spec_option
@format_option
def backup_list(spec_path: str | None, fmt: str) -> None:
    """The repository's backups and WAL archive range."""
    repo = repository(spec_path)
    info = repo.info()
    pretty = _sets_table(f"backups of {repo.spec.name} on {repo.node.name}: {info.status}; WAL archive "
                         f"{info.wal_min or '-'} .. {info.wal_max or '-'}", list(info.backups))
    emit(info.as_dict(), fmt, pretty)


@backup_group.command("check")
@spec_option
def backup_check(spec_path: str | None) -> None:
    """pgBackRest's check from the backup node: the stanza, the primary, and a WAL switch archived."""
    repo = repository(spec_path)
    with err.status(f"pgbackrest check on {repo.node.name} …"):
        said = repo.check()
    err.print(f"[green]ok[/]: {said}")


@cli.command("restore")
@spec_option
@click.option("--time", "time_", default=None, metavar="TS", help="Recover to this time (ISO 8601 with zone).")
@click.option("--lsn", default=None, help="Recover to this WAL position (e.g. 0/3000060).")
@click.option("--latest", is_flag=True, help="Recover to the end of the archive.")
@click.option("--into", "into", default=None, metavar="NAME",
              help="Into a scratch instance on the backup node; the cluster is not touched.")
@click.option("--drop", "drop", default=None, metavar="NAME", help="Stop and remove a scratch instance.")
@format_option
def restore_cmd(spec_path: str | None, time_: str | None, lsn: str | None, latest: bool, into: str | None,
                drop: str | None, fmt: str) -> None:
    """Point-in-time restore from the repository (--into NAME: a scratch instance; prints its DSN)."""
    from pgha.backup.restore import Target
    from pgha.errors import UsageError

    if drop:
        err.print(restorer(spec_path).drop(drop))
        return
    target = Target.of(time_, lsn, latest)
    if into is None:
        raise UsageError("an in-place restore of the whole cluster is not available yet",
                         hint="restore into a scratch instance with --into NAME (the cluster is not touched)")
    r = restorer(spec_path)
    with err.status(f"restoring {r.spec.name} ({target.kind} {target.value}) into {into} on {r.node.name} …"):
        scratch = r.restore(into, target)
    dsn = r.dsn(into)
    emit({"name": scratch.name, "host": scratch.host, "port": scratch.port, "seconds": round(scratch.seconds, 1),
          "dsn": dsn}, fmt, f"restored into {scratch.name} on {r.node.name} in {scratch.seconds:.1f} s\n{dsn}")
