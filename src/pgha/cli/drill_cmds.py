"""pgha drill SCENARIO: run a failure drill against the lab and report what a client saw."""

from __future__ import annotations

from pathlib import Path

import click

from pgha.cli.common import LazyChoice, cli, format_option, load_spec, require_target, spec_option
from pgha.cli.output import emit, err, table
from pgha.errors import CheckFailed


def _scenarios() -> list[str]:
    from pgha.drill.scenarios import SCENARIOS

    return list(SCENARIOS)


@cli.command()
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
def drill(spec_path: str | None, fmt: str, name: str, repeat: int, sync: bool, via: str,
          report_dir: str | None) -> None:
    """Inject a fault under load and measure outage, lost writes, split brain and recovery."""
    from pgha.drill import report, timeline
    from pgha.drill.runner import DrillRunner, scenario
    from pgha.probe import Credentials

    spec = load_spec(spec_path, lab_fallback=True)
    runner = DrillRunner(require_target(spec), Credentials.of(spec), say=lambda m: err.print(f"[dim]{m}[/]"))
    chosen = scenario(name)
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
