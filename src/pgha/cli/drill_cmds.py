"""pgha drill SCENARIO: run a failure drill against the lab and report what a client saw;
pgha drill chaos: a seeded schedule of faults under continuous writes, checked for lost writes and split brain."""

from __future__ import annotations

from pathlib import Path

import click

from pgha.cli.common import LazyChoice, cli, format_option, load_spec, require_target, spec_option
from pgha.cli.output import emit, err, table
from pgha.errors import CheckFailed, Interrupted, PghaError


class _DrillGroup(click.Group):
    """`pgha drill chaos ...` is a command of its own; anything else is a scenario's name (`pgha drill
    node-crash ...`), run by the hidden `scenario` command."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                             list[str]]:
        if args and args[0] in self.commands and args[0] != "scenario":
            return super().resolve_command(ctx, args)
        return "SCENARIO", self.commands["scenario"], args


class _ScenarioCommand(click.Command):
    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [self.options_metavar or "[OPTIONS]"]  # the name is SCENARIO, already in the command path


def restore_drill(spec_path: str | None, fmt: str) -> None:
    from pgha.cli.backup_cmds import repository
    from pgha.drill import restore
    from pgha.ops import Operations
    from pgha.probe import Credentials

    repo = repository(spec_path)
    creds = Credentials.of(repo.spec)
    r = restore.run(repo, Operations(repo.spec, creds, repo.transport), creds, say=lambda m: err.print(f"[dim]{m}[/]"))
    emit(r.as_dict(), fmt, table("pgha drill restore", ["target", "rows checked", "rows wrong", "restore",
                                                        "archive lag", "verify", "new leader"],
                                 [(r.target, r.rows_checked, r.rows_wrong, f"{r.restore_seconds} s",
                                   f"{r.archive_lag_seconds} s", "ok" if r.verify_ok else "FAILED", r.new_leader)]))
    if not r.safe:
        raise CheckFailed(f"restore drill: {r.rows_missing} rows missing, {r.rows_extra} rows after the target, "
                          f"verify {'ok' if r.verify_ok else 'failed'}")


def _scenarios() -> list[str]:
    from pgha.drill.scenarios import SCENARIOS

    return [*SCENARIOS, "restore"]


@cli.group(cls=_DrillGroup, no_args_is_help=True)
def drill() -> None:
    """Inject faults under load: `pgha drill SCENARIO [OPTIONS]` runs one drill (see `pgha drill SCENARIO
    --help`), `pgha drill chaos [OPTIONS]` a seeded random schedule of them, checked for lost writes and split
    brain."""


@drill.command("scenario", cls=_ScenarioCommand, hidden=True)
@spec_option
@format_option
@click.argument("name", metavar="SCENARIO", type=LazyChoice(_scenarios))
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 100))
@click.option("--sync", is_flag=True, help="Run with synchronous_mode on: no acknowledged write may be lost.")
@click.option("--via", type=click.Choice(["vip", "multi-host"]), default="vip", show_default=True,
              help="The client's way to the primary: the VIP (HAProxy), or a libpq multi-host string over "
                   "the PostgreSQL nodes with target_session_attrs=read-write (no proxy).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write drill.json and one timeline PNG per run into this directory.")
def scenario(spec_path: str | None, fmt: str, name: str, repeat: int, sync: bool, via: str,
             report_dir: str | None) -> None:
    """Inject a fault under load and measure outage, lost writes, split brain and recovery; `restore`:
    backup, writes, a target time, writes, switchover, restore to the target, every row checked."""
    if name == "restore":
        restore_drill(spec_path, fmt)
        return
    from pgha.drill import report, timeline
    from pgha.drill.runner import DrillRunner
    from pgha.drill.runner import scenario as find
    from pgha.probe import Credentials

    spec = load_spec(spec_path, lab_fallback=True)
    runner = DrillRunner(require_target(spec), Credentials.of(spec), say=lambda m: err.print(f"[dim]{m}[/]"))
    chosen = find(name)
    results = []
    for i in range(repeat):
        err.print(f"[bold]drill {name} {i + 1}/{repeat}[/]")
        results.append(runner.run(chosen, sync=sync, via=via))
        r = results[-1]
        err.print(f"  old leader led etcd: {r.old_leader_led_etcd}, outage {r.write_outage_s} s,"
                  f" lost {r.lost_acked_writes}, healthy after {r.healthy_after_s} s"
                  + "".join(f"\n  note: {n}" for n in r.notes))
        if r.timeline:
            err.print("  where the time went (seconds since the fault, since the step before):\n    "
                      + "\n    ".join(timeline.render([timeline.Phase(n, at) for n, at in r.timeline])))
    if report_dir:
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        report.write_json(results, out / "drill.json")
        for r in results:
            report.timeline_png(r, out / f"{r.scenario}-{r.run}.png")
        err.print(f"report in {out}/")
    emit([r.as_dict() for r in results], fmt,
         table(f"pgha drill {name} ({spec.profile.value} profile{', sync' if sync else ''}, via {via})",
               report.COLUMNS, [report.row(r) for r in results]))
    unsafe = [r.run for r in results if not r.safe]
    if unsafe:
        raise CheckFailed(f"{len(unsafe)} run(s) broke a safety property: {', '.join(unsafe)}")


@drill.command()
@spec_option
@format_option
@click.option("--duration", default="30m", show_default=True, help="How long: e.g. 90s, 30m, 1h.")
@click.option("--seed", type=int, default=None, help="The schedule's seed (default: a random one, in the report).")
@click.option("--faults", default=None, help="Comma-separated fault kinds (default: every kind the target can "
              "inject): power-cut, freeze, partition, patroni-crash, etcd-member-loss, etcd-quorum-loss, "
              "haproxy-kill, keepalived-kill, switchover, failover.")
@click.option("--sync", is_flag=True, help="synchronous_mode on: no acknowledged write may be lost.")
@click.option("--overlap", is_flag=True, help="Let a second fault start during a fault's hold.")
@click.option("--allow-quorum-loss", is_flag=True,
              help="With --overlap: let overlapping faults take a majority of etcd members away.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write report.json, history.jsonl and timeline.png into this directory.")
@click.option("--replay", type=click.Path(dir_okay=False), default=None,
              help="Run the faults a report.json recorded (its seed, faults and mode), in order.")
def chaos(spec_path: str | None, fmt: str, duration: str, seed: int | None, faults: str | None, sync: bool,
          overlap: bool, allow_quorum_loss: bool, report_dir: str | None, replay: str | None) -> None:
    """Faults drawn at random (same seed, same schedule) under continuous writes through the VIP and to each
    node; then every acknowledged write looked up on the final primary, split brain and stale timelines
    searched, availability and outage per fault measured."""
    import random

    from pgha.drill import chaos_report, schedule
    from pgha.drill.chaos import ChaosRunner
    from pgha.drill.runner import DrillRunner
    from pgha.probe import Credentials

    seconds: float | None = schedule.parse_duration(duration)
    kinds = schedule.parse_faults(faults)
    steps = None
    if replay:  # the report's run, as it ran: its seed, faults, mode and steps; no time limit
        data = chaos_report.load_replay(replay)
        seed, kinds, sync, overlap = data["seed"], tuple(data["faults"]), data["sync"], data["overlap"]
        steps, seconds = data["steps"], None
    schedule.overlap_pairs(kinds, overlap, allow_quorum_loss or bool(replay))
    seed = seed if seed is not None else random.SystemRandom().randrange(1_000_000)
    spec = load_spec(spec_path, lab_fallback=True)
    runner = ChaosRunner(DrillRunner(require_target(spec), Credentials.of(spec),
                                     say=lambda m: err.print(f"[dim]{m}[/]")))
    kinds = runner.injectable(kinds, explicit=faults is not None or bool(replay))
    ttl = runner.live_ttl()
    if steps is None:
        assert seconds is not None
        steps = schedule.plan(seed, seconds, kinds, ttl, overlap, allow_quorum_loss)
    err.print(f"[bold]chaos seed {seed}[/]: {len(steps)} faults planned from {', '.join(kinds)} "
              f"(ttl {ttl} s{', sync' if sync else ''}{', overlapping' if overlap else ''})")
    out = Path(report_dir) if report_dir else None
    r = runner.run(steps, seconds, seed, kinds, sync, overlap)
    if out:
        chaos_report.write(r, out)
        err.print(f"report in {out}/ (replay: `pgha drill chaos --replay {out / 'report.json'}`)")
    v = r.verdict
    err.print(f"{len(r.history.faults)} faults, {v.acks} acknowledged writes, {len(v.lost)} lost"
              f"{'' if v.checked_lost else ' (not counted)'}, {len(v.split_brain)} split-brain intervals, "
              f"{len(v.stale)} stale-timeline acks, VIP on two hosts {len(v.vip_on_two)} times, "
              f"availability {v.availability}, MTTR {v.mttr_s} s"
              + "".join(f"\n  note: {n}" for n in r.notes))
    emit(r.as_dict(), fmt, table(f"pgha drill chaos seed {seed} ({spec.profile.value} profile"
                                 f"{', sync' if sync else ''})", chaos_report.COLUMNS, chaos_report.summary_rows(r)))
    if r.interrupted:
        raise Interrupted(f"chaos run {r.run} interrupted after {r.ended - r.started:.0f} s; every fault restored"
                          + ("; partial report written" if out else ""))
    if r.error:
        raise PghaError(f"chaos run {r.run} stopped: {r.error.splitlines()[0]}",
                        details="\n".join(r.error.splitlines()[1:]) or None,
                        hint=f"replay it: `pgha drill chaos --replay {out / 'report.json'}`" if out else None)
    if not r.verdict.safe:
        raise CheckFailed(f"chaos run {r.run} broke a safety property: " + "; ".join(v.problems(r.started)))
