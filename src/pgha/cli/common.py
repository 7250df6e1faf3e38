"""The root group and what every command shares: --spec, --format, --force and its question, the spec.

Start-up cost matters (every `pgha` call pays it): this module and the command modules import click and
nothing heavy; each command imports what it runs inside its function.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pgha import DEFAULT_SPEC_FILE, __version__
from pgha.cli.output import FORMATS, err
from pgha.errors import Interrupted, UsageError, use_spec_file

if TYPE_CHECKING:
    from pgha.spec import ClusterSpec
    from pgha.target import Target
    from pgha.transport.base import Transport

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="pgha")
def cli() -> None:
    """pgha: the PostgreSQL HA stack (etcd + Patroni + HAProxy + keepalived), as software.

    Start with `pgha lab up` (the whole six-host stack on this machine) or `pgha init`.
    """


class LazyChoice(click.Choice):
    """A Choice whose values come from a module imported only when the command runs (or shows help)."""

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        super().__init__(())
        self._load = load
        self._choices: tuple[str, ...] | None = None

    @property
    def choices(self) -> tuple[str, ...]:
        if self._choices is None:
            self._choices = tuple(self._load())
        return self._choices

    @choices.setter
    def choices(self, value: Any) -> None:  # click's __init__ assigns; the loader wins
        pass


def spec_option(f: Any) -> Any:
    return click.option("--spec", "spec_path", type=click.Path(dir_okay=False), default=None,
                        help=f"Cluster spec file (default: ./{DEFAULT_SPEC_FILE}).")(f)


def format_option(f: Any) -> Any:
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="pretty", show_default=True,
                        help="Output format.")(f)


def lines_option(f: Any) -> Any:
    return click.option("-n", "--lines", type=click.IntRange(min=1), default=50, show_default=True,
                        help="How many lines of each log.")(f)


def force_option(f: Any) -> Any:
    """`--force` for a command that changes the cluster; the command calls :func:`confirm` with it."""
    return click.option("--force", is_flag=True, help="Do not ask for confirmation.")(f)


def confirm(force: bool, what: str) -> None:
    """The README's rule for commands that change the cluster: ask on a terminal, refuse without one,
    `--force` skips the question."""
    if force:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{what}: confirm on a terminal, or pass --force")
    if not click.confirm(f"{what}?"):
        raise Interrupted("not confirmed: nothing was changed")


def load_spec(spec_path: str | None, *, lab_fallback: bool = False) -> ClusterSpec:
    """The spec from --spec, else ./cluster.yml, else (lab commands) the built-in lab spec."""
    from pgha import spec as spec_mod

    default = Path(DEFAULT_SPEC_FILE)
    use_spec_file(None if spec_path is None or Path(spec_path).resolve() == default.resolve() else spec_path)
    if spec_path is None:
        if not default.exists() and lab_fallback:
            err.print("[dim]no ./cluster.yml: using the built-in lab spec (`pgha init --lab` writes it)[/]")
            return spec_mod.parse(spec_mod.default_data(lab=True), "(built-in lab spec)")
        spec_path = str(default)
    return spec_mod.load(spec_path)


def target_for(spec: ClusterSpec) -> Target | None:
    """Where the cluster runs: its servers for a spec of servers (it has `deploy:`), the lab when that
    lab runs, else None (probes over the network only)."""
    if spec.deploy is not None:
        import atexit

        from pgha.target import ServerTarget

        servers = ServerTarget(spec)
        atexit.register(servers.close)
        return servers
    from pgha.lab.control import Lab

    lab = Lab(spec)
    return lab.target if lab.transport.supervisor.is_running() else None


def transport_for(spec: ClusterSpec) -> Transport | None:
    """How commands reach the nodes (:func:`target_for`'s transport), None without a target."""
    target = target_for(spec)
    return target.transport if target else None


def require_target(spec: ClusterSpec) -> Target:
    """A target that can inject faults, read logs and rebuild: the servers, or a running lab."""
    target = target_for(spec)
    if target is None:
        from pgha.lab.control import Lab

        Lab(spec).require_running()  # raises the lab's own message
        raise AssertionError("unreachable")
    return target


def show_logs(transport: Transport, spec: ClusterSpec, node_name: str, service: str | None, lines: int) -> None:
    """The last lines of a node's service logs (all its services by default): the lab's log files or
    the servers' journal, through the Transport."""
    from pgha.topology import services_of

    node = spec.node(node_name)
    services = services_of(spec, node)
    if service is not None and service not in services:
        raise UsageError(f"{node.name} runs no {service}", hint=f"its services: {', '.join(services)}")
    for s in [service] if service else services:
        click.echo(f"==> {node.name} {s} <==")
        click.echo(transport.logs(node, s, lines))
