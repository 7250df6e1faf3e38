"""pgha status, switchover, failover, pause, resume, restart, reload, reinit, config, sync, lag,
history, metrics, ctl."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from pgha.cli.common import (
    cli,
    confirm,
    force_option,
    format_option,
    lines_option,
    load_spec,
    require_target,
    show_logs,
    spec_option,
    target_for,
)
from pgha.cli.output import emit, err, table
from pgha.errors import MissingPrerequisite, UsageError

if TYPE_CHECKING:
    from pgha.ops import Operations
    from pgha.probe.snapshot import ClusterSnapshot
    from pgha.spec import ClusterSpec


def _ops(spec_path: str | None) -> Operations:
    from pgha import routing
    from pgha.ops import Operations
    from pgha.probe import Credentials

    spec = load_spec(spec_path, lab_fallback=True)
    target = target_for(spec)
    return Operations(spec, Credentials.of(spec), target.transport if target else None,
                      router=routing.for_target(target) if target else None)


def status_data(spec: ClusterSpec, snap: ClusterSnapshot) -> dict[str, Any]:
    """The stable JSON schema of `pgha status` (documented in the README)."""
    return {
        "cluster": spec.name,
        "leader": snap.leader.name if snap.leader else None,
        "paused": snap.paused,
        "members": [{"name": m.name, "node": m.node, "host": m.host, "role": m.role, "state": m.state,
                     "timeline": m.timeline, "lag_mb": m.lag_mb, "tags": m.tags,
                     "pending_restart": m.pending_restart} for m in snap.members],
        "etcd": [{"name": e.name, "healthy": e.healthy, "is_leader": e.is_leader, "db_size": e.db_size,
                  "raft_term": e.raft_term, "error": e.error} for e in snap.etcd],
        "haproxy": [{"node": h.node, "reachable": h.reachable,
                     "backends": [{"backend": s.backend, "server": s.server, "status": s.status}
                                  for s in h.servers]} for h in snap.haproxy],
        "vip": {"address": snap.vip_address,
                "holders": list(snap.vip_holders) if snap.vip_holders is not None else None},
        "unanswered": [{"node": node, "what": what} for node, what in snap.unanswered],
        "backup": {"node": spec.backup_node.name} if spec.backup_node else None,
    }


def _status_pretty(spec: ClusterSpec, snap: ClusterSnapshot) -> Any:
    from rich.console import Group

    members = table(f"Patroni: cluster {spec.name}" + (" [yellow](PAUSED)[/]" if snap.paused else ""),
                    ["member", "node", "host", "role", "state", "TL", "lag MB", "pending restart"],
                    [(m.name, m.node, m.host, m.role, m.state, m.timeline, m.lag_mb,
                      "yes" if m.pending_restart else "") for m in snap.members])
    etcd = table("etcd", ["member", "healthy", "leader", "db size", "raft term"],
                 [(e.name, "yes" if e.healthy else f"[red]no[/] {e.error}", "yes" if e.is_leader else "",
                   e.db_size, e.raft_term) for e in snap.etcd])
    ha = table("HAProxy backends (UP servers)", ["node", "primary", "replicas"],
               [(h.node, ", ".join(h.primary) if h.reachable else f"[red]unreachable[/] {h.error}",
                 ", ".join(h.replicas)) for h in snap.haproxy])
    holders = "not inspected" if snap.vip_holders is None else (", ".join(snap.vip_holders) or "[red]nobody[/]")
    silent = [f"[red]no answer:[/] {node}: {what}" for node, what in snap.unanswered]
    backup = (f"Backups: repository on {spec.backup_node.name}" if spec.backup_node else
              "Backups: [yellow]none[/] (the spec has no backup node)")
    return Group(members, etcd, ha, f"VIP {snap.vip_address}: held by {holders}", backup, *silent)


@cli.command("logs")
@spec_option
@click.argument("node")
@click.argument("service", required=False)
@lines_option
def logs_cmd(spec_path: str | None, node: str, service: str | None, lines: int) -> None:
    """Show the last lines of a node's service logs: the lab's, or the servers' journal over SSH."""
    spec = load_spec(spec_path)
    show_logs(require_target(spec).transport, spec, node, service, lines)


@cli.command("status")
@spec_option
@format_option
@click.option("--watch", "watch", type=click.FloatRange(min=0.1), default=None, metavar="SECONDS",
              help="Refresh every N seconds.")
def status_cmd(spec_path: str | None, fmt: str, watch: float | None) -> None:
    """One view of the stack: etcd, Patroni members, HAProxy backends, the VIP holder."""
    ops = _ops(spec_path)
    while True:
        snap = ops.snapshot()
        if watch and fmt == "pretty":
            click.clear()
        emit(status_data(ops.spec, snap), fmt, _status_pretty(ops.spec, snap))
        if not watch:
            return
        time.sleep(watch)


def archiving_after(spec: ClusterSpec) -> None:
    """After the primary moved: pgBackRest's check says whether WAL archiving follows the new primary."""
    from pgha.cli.backup_cmds import archiving_check

    said = archiving_check(spec)
    if said:
        err.print(said)


def _after(ops: Operations, message: str) -> None:
    err.print(message)
    snap = ops.snapshot()
    emit(status_data(ops.spec, snap), "pretty", _status_pretty(ops.spec, snap))


@cli.command()
@spec_option
@click.option("--candidate", default=None, help="Node or member to promote (default: Patroni's choice).")
@click.option("--at", "at", default=None, help="Schedule it (ISO 8601 time with timezone).")
@force_option
def switchover(spec_path: str | None, candidate: str | None, at: str | None, force: bool) -> None:
    """Planned switchover to a replica (zero data loss), waiting for the new topology."""
    ops = _ops(spec_path)
    confirm(force, f"switch the primary over to {candidate or 'the best replica'}")
    _after(ops, ops.switchover(candidate, at))
    if not at:
        archiving_after(ops.spec)


@cli.command()
@spec_option
@click.option("--candidate", required=True, help="Node or member to promote.")
@force_option
def failover(spec_path: str | None, candidate: str, force: bool) -> None:
    """Manual failover (only when the primary is confirmed down)."""
    ops = _ops(spec_path)
    confirm(force, f"fail over to {candidate}")
    _after(ops, ops.failover(candidate))
    archiving_after(ops.spec)


@cli.group("etcd")
def etcd_group() -> None:
    """etcd's raft leadership."""


@etcd_group.command("move-leader")
@spec_option
@click.option("--to", "to", default=None, metavar="NODE", help="This node's etcd member leads (default: any member "
              "but the Patroni leader's node's).")
@force_option
def etcd_move_leader(spec_path: str | None, to: str | None, force: bool) -> None:
    """Move etcd's leadership off the Patroni leader's node (or onto --to NODE).

    A crash of a node that leads both costs one more ttl of write outage: the new etcd leader gives
    the dead Patroni leader's lease its full ttl again.
    """
    ops = _ops(spec_path)
    if to is not None:
        ops.pg_node(to)  # a bad name is refused before anything is asked
    confirm(force, "move etcd's leadership")
    err.print(ops.move_etcd_leader(to))


@cli.command()
@spec_option
@force_option
def pause(spec_path: str | None, force: bool) -> None:
    """Disable automatic failover (maintenance)."""
    ops = _ops(spec_path)
    confirm(force, "pause automatic failover")
    err.print(ops.set_pause(True))


@cli.command()
@spec_option
@force_option
def resume(spec_path: str | None, force: bool) -> None:
    """Re-enable automatic failover."""
    ops = _ops(spec_path)
    confirm(force, "resume automatic failover")
    err.print(ops.set_pause(False))


@cli.command()
@spec_option
@click.argument("nodes", nargs=-1)
@click.option("--all", "all_nodes", is_flag=True, help="Every PostgreSQL node.")
@click.option("--pending", is_flag=True, help="Only nodes with a pending restart.")
@click.option("--rolling", is_flag=True, help="Every node, replicas first one at a time, then a switchover and the "
              "old primary: the primary's role stays available.")
@force_option
def restart(spec_path: str | None, nodes: tuple[str, ...], all_nodes: bool, pending: bool, rolling: bool,
            force: bool) -> None:
    """Restart PostgreSQL through Patroni (never through systemctl)."""
    ops = _ops(spec_path)
    if rolling:
        from pgha.rolling import rolling_restart

        if nodes or all_nodes:
            raise UsageError("--rolling restarts every node in its own order: name no NODE, no --all")
        confirm(force, "restart PostgreSQL on every node, one at a time, with a switchover"
                + (" (only those with a pending restart)" if pending else ""))
        _after(ops, rolling_restart(ops, pending, say=lambda m: err.print(f"[dim]{m}[/]")))
        return
    targets = [n.name for n in ops.spec.postgres_nodes] if all_nodes else list(nodes)
    if not targets:
        raise UsageError("name a NODE or pass --all")
    confirm(force, f"restart PostgreSQL on {', '.join(targets)}")
    _after(ops, ops.restart(targets, pending))


@cli.command()
@spec_option
@force_option
def reload(spec_path: str | None, force: bool) -> None:
    """Reload the configuration on every node."""
    ops = _ops(spec_path)
    confirm(force, "reload the configuration on every PostgreSQL node")
    err.print(ops.reload())


@cli.command()
@spec_option
@click.argument("node")
@force_option
def reinit(spec_path: str | None, node: str, force: bool) -> None:
    """Wipe a replica and rebuild it from the leader."""
    ops = _ops(spec_path)
    confirm(force, f"wipe and rebuild {node}")
    _after(ops, ops.reinit(node))


@cli.group("config")
def config_group() -> None:
    """The cluster's dynamic (DCS) configuration."""


@config_group.command("show")
@spec_option
@format_option
def config_show(spec_path: str | None, fmt: str) -> None:
    data = _ops(spec_path).config()
    emit(data, "yaml" if fmt == "pretty" else fmt)


@config_group.command("set")
@spec_option
@force_option
@click.argument("assignments", nargs=-1, required=True)
def config_set(spec_path: str | None, force: bool, assignments: tuple[str, ...]) -> None:
    """KEY=VALUE… (dotted keys nest: postgresql.parameters.work_mem=8MB), validated before sending."""
    from pgha.ops import parse_assignments

    changes = parse_assignments(assignments)
    ops = _ops(spec_path)
    confirm(force, f"change the cluster's configuration: {', '.join(assignments)}")
    emit(ops.set_config(changes), "yaml")


@config_group.command("edit")
@spec_option
@force_option
def config_edit(spec_path: str | None, force: bool) -> None:
    """Edit the configuration in $EDITOR; only the changed keys are sent."""
    import yaml

    ops = _ops(spec_path)
    current = ops.config()
    edited = click.edit(yaml.safe_dump(current, sort_keys=False), extension=".yml")
    if edited is None:
        err.print("no change")
        return
    new = yaml.safe_load(edited) or {}
    changes = {k: v for k, v in new.items() if current.get(k) != v}
    changes.update({k: None for k in current if k not in new})
    if not changes:
        err.print("no change")
        return
    confirm(force, f"change the cluster's configuration: {', '.join(sorted(changes))}")
    emit(ops.set_config(changes), "yaml")


@cli.command("sync")
@spec_option
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--strict", is_flag=True, help="Refuse writes when no synchronous standby is available.")
@force_option
def sync_cmd(spec_path: str | None, state: str, strict: bool, force: bool) -> None:
    """Synchronous replication on or off (zero acknowledged-write loss when on)."""
    ops = _ops(spec_path)
    confirm(force, f"turn synchronous replication {state}")
    err.print(ops.set_sync(state == "on", strict))


@cli.command()
@spec_option
@format_option
def lag(spec_path: str | None, fmt: str) -> None:
    """Replication lag from pg_stat_replication on the leader."""
    rows = _ops(spec_path).lag()
    data = [{"client_addr": r[0], "state": r[1], "sync_state": r[2], "lag_bytes": r[3]} for r in rows]
    emit(data, fmt, table("pg_stat_replication", ["client", "state", "sync", "lag bytes"], rows))


@cli.command()
@spec_option
@format_option
def history(spec_path: str | None, fmt: str) -> None:
    """Timeline history: every failover and switchover."""
    rows = _ops(spec_path).history()
    emit(rows, fmt, table("history", ["TL", "LSN", "reason", "timestamp", "new leader"],
                          [tuple(r) + ("",) * (5 - len(r)) for r in rows]))


@cli.command()
@spec_option
@click.argument("node")
def metrics(spec_path: str | None, node: str) -> None:
    """Patroni's Prometheus metrics of one node."""
    click.echo(_ops(spec_path).metrics(node))


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@spec_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ctl(spec_path: str | None, args: tuple[str, ...]) -> None:
    """The real patronictl with a generated, CA-verifying config: pgha ctl -- list."""
    from pgha.patronictl import config_file

    spec = load_spec(spec_path, lab_fallback=True)
    path = config_file(spec)
    exe = f"{spec.paths.patroni_venv}/bin/patronictl"
    if not os.access(exe, os.X_OK):
        raise MissingPrerequisite(f"no patronictl at {exe}", hint="run scripts/bootstrap.sh (builds Patroni's "
                                                                  "virtualenv), or set paths.patroni_venv")
    sys.stdout.flush()
    os.execv(exe, [exe, "-c", str(path), *args])


@cli.command()
@spec_option
@force_option
def reset(spec_path: str | None, force: bool) -> None:
    """Wipe etcd and PostgreSQL data everywhere and rebuild the cluster (certificates kept), then verify.

    Refused while clients are connected through the VIP, unless --force."""
    from pgha.cli.lab_cmds import run_verify
    from pgha.cli.progress import ConsoleReporter
    from pgha.ops import Operations
    from pgha.probe import Credentials

    spec = load_spec(spec_path, lab_fallback=True)
    target = require_target(spec)
    ops = Operations(spec, Credentials.of(spec), target.transport)
    confirm(force, f"wipe ALL data of cluster {spec.name} and rebuild it")
    err.print(ops.reset(target.plans(), ConsoleReporter(), force=force))
    run_verify(spec, "pretty", target.transport)
