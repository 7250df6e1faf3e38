"""The CLI's one output path: results to stdout in the chosen format, progress and errors to stderr.

Imported by every command module at start-up, so it imports nothing heavy: rich and yaml are loaded on
first use (`pgha --version` and `pgha --help` never pay for them).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from pgha.errors import PghaError

FORMATS = ("pretty", "json", "yaml")


class _LazyConsole:
    """A rich Console built on first use."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


if TYPE_CHECKING:
    out: Console
    err: Console
else:
    out = _LazyConsole(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    err = _LazyConsole(stderr=True, highlight=False)


def emit(data: Any, fmt: str, pretty: Any = None) -> None:
    """Print a result: ``data`` as JSON/YAML, or ``pretty`` (a rich renderable or text) for people."""
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif fmt == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    else:
        out.print(pretty if pretty is not None else data)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*(str(x) if x is not None else "" for x in r))
    return t


def print_error(exc: PghaError) -> None:
    """``pgha: error: MESSAGE`` on one line (never wrapped), then the details and the hint."""
    from rich.markup import escape

    err.print(f"[bold red]pgha: error:[/] {escape(exc.message)}", markup=True, soft_wrap=True)
    if exc.details:
        err.print(exc.details, markup=False)
    if exc.hint:
        err.print(f"[yellow]hint:[/] {escape(exc.hint)}", markup=True)
