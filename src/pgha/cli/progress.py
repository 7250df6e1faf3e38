"""The live display of orchestration steps (lab up, deploy, reset): imported by those commands only."""

from __future__ import annotations

from rich.status import Status

from pgha.cli.output import err
from pgha.orchestrate import Reporter


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
