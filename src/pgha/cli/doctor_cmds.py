"""pgha doctor: name what is wrong with a cluster, the evidence, and the command that fixes it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgha.cli.common import cli, format_option, load_spec, require_target, spec_option
from pgha.cli.output import emit, err, out
from pgha.errors import CheckFailed, pgha_command

if TYPE_CHECKING:
    from pgha.doctor import DoctorReport


def print_diagnosis(report: DoctorReport, fmt: str) -> None:
    """The findings as a table (problem, evidence, fix); a healthy cluster in one sentence."""
    from rich.markup import escape
    from rich.table import Table

    if report.healthy and fmt == "pretty":
        out.print(f"pgha doctor: nothing wrong found ({report.seconds:.1f} s)")
    else:
        rows = [(("[red]" if f.severity == "error" else "[yellow]") + f.severity.value + "[/]",
                 escape(f.problem), escape(f.evidence), escape(f.fix)) for f in report.findings]
        # Folded, never cut with an ellipsis: a fix is a command to copy whole.
        pretty = Table(title=f"pgha doctor ({report.seconds:.1f} s): {len(report.findings)} problem(s)",
                       title_justify="left", show_lines=True)
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
    from pgha.doctor import diagnose
    from pgha.probe import Credentials

    spec = load_spec(spec_path, lab_fallback=True)
    report = diagnose(require_target(spec), Credentials.of(spec))
    print_diagnosis(report, fmt)
    if not report.healthy:
        raise CheckFailed(f"{len(report.findings)} problem(s) found",
                          hint=f"apply the fixes above, then run `{pgha_command('doctor')}` again")
