"""The CLI's one output path: results to stdout in the chosen format, progress and errors to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from pgha.errors import PghaError
from pgha.orchestrate import Reporter

FORMATS = ("pretty", "json", "yaml")
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False)


def emit(data: Any, fmt: str, pretty: Any = None) -> None:
    """Print a result: ``data`` as JSON/YAML, or ``pretty`` (a rich renderable or text) for people."""
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    else:
        out.print(pretty if pretty is not None else data)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*(str(x) if x is not None else "" for x in r))
    return t


def print_error(exc: PghaError) -> None:
    err.print(f"[bold red]pgha: error:[/] {escape(exc.message)}", markup=True)
    if exc.details:
        err.print(exc.details, markup=False)
    if exc.hint:
        err.print(f"[yellow]hint:[/] {escape(exc.hint)}", markup=True)


class ConsoleReporter(Reporter):
    """Each step on its own line with elapsed time; the running one with a spinner and live detail."""

    def __init__(self) -> None:
        self.status: Status | None = None

    def start(self, name: str) -> None:
        self.status = err.status(f"{name} …")
        self.status.start()

    def update(self, name: str, detail: str) -> None:
        if self.status:
            self.status.update(f"{name} … [dim]{detail}[/]")

    def _stop(self) -> None:
        if self.status:
            self.status.stop()
            self.status = None

    def done(self, name: str, seconds: float, detail: str = "") -> None:
        self._stop()
        err.print(f"[green]✓[/] {name} [dim]({seconds:.1f} s)[/]")

    def failed(self, name: str, seconds: float) -> None:
        self._stop()
        err.print(f"[red]✗[/] {name} [dim]({seconds:.1f} s)[/]")
