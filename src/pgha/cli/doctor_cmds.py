"""pgha doctor: name what is wrong with a cluster, the evidence, and the command that fixes it."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from pgha.cli.common import cli, format_option, load_spec, require_transport, spec_option
from pgha.cli.output import emit, err
from pgha.doctor import Report, diagnose
from pgha.errors import CheckFailed
from pgha.probe import Credentials


def print_report(report: Report, fmt: str) -> None:
    rows = [(("[red]" if f.severity == "error" else "[yellow]") + f.severity.value + "[/]", escape(f.problem),
             escape(f.evidence), escape(f.fix)) for f in report.findings]
    title = f"pgha doctor ({report.seconds:.1f} s): " + (
        "[green]nothing wrong found[/]" if report.healthy else f"{len(report.findings)} problem(s)")
    # Folded, never cut with an ellipsis: a fix is a command to copy whole.
    pretty = Table(title=title, title_justify="left", show_lines=True)
    for column in ("", "problem", "evidence", "fix"):
        pretty.add_column(column, overflow="fold")
    for row in rows:
        pretty.add_row(*row)
    emit(report.as_dict(), fmt, pretty)
    for note in report.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")


@cli.command("doctor")
@spec_option
@format_option
def doctor_cmd(spec_path: str | None, fmt: str) -> None:
    """Diagnose the seed's common problems: problem -> evidence -> fix; exit 3 if any is found."""
    spec = load_spec(spec_path, lab_fallback=True)
    report = diagnose(spec, Credentials.of(spec), require_transport(spec))
    print_report(report, fmt)
    if not report.healthy:
        raise CheckFailed(f"{len(report.findings)} problem(s) found", hint="apply the fixes above, then run "
                                                                          "`pgha doctor` again")
