"""pgha lab up|down|status|logs|kill|stop|start|crash|isolate|heal, pgha verify, pgha dsn, pgha psql."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import click

from pgha.cli.common import (
    LazyChoice,
    cli,
    format_option,
    lines_option,
    load_spec,
    show_logs,
    spec_option,
    transport_for,
)
from pgha.cli.output import emit, err, table
from pgha.errors import CheckFailed, pgha_command

if TYPE_CHECKING:
    from pgha.lab.control import Lab
    from pgha.spec import ClusterSpec
    from pgha.transport.base import Transport
    from pgha.verify import VerifyReport


def _lab(spec_path: str | None) -> Lab:
    from pgha.lab.control import Lab

    return Lab(load_spec(spec_path, lab_fallback=True))


def _fault_services() -> tuple[str, ...]:
    from pgha.lab.control import FAULT_SERVICES

    return FAULT_SERVICES


SERVICE = LazyChoice(_fault_services)


def _signal_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    import signal

    name = value.upper().removeprefix("SIG")
    if not isinstance(getattr(signal, f"SIG{name}", None), signal.Signals):
        raise click.BadParameter(f"{value} is not a signal name (KILL, TERM, STOP, ...)")
    return name


def print_verify_report(report: VerifyReport, fmt: str) -> None:
    rows = [("[green]PASS[/]" if c.passed else "[red]FAIL[/]", c.name, c.expected, c.seen)
            for c in report.checks]
    emit(report.as_dict(), fmt, table(f"pgha verify ({report.seconds:.1f} s)",
                                      ["", "check", "expected", "seen"], rows))


def run_verify(spec: ClusterSpec, fmt: str, transport: Transport | None) -> None:
    """`pgha verify` through ``transport`` (default: :func:`transport_for`): the report, and exit 3 when a
    check failed."""
    from pgha.probe import Credentials
    from pgha.verify import verify

    report = verify(spec, Credentials.of(spec), transport or transport_for(spec))
    print_verify_report(report, fmt)
    if not report.passed:
        failed = [c.name for c in report.checks if not c.passed]
        raise CheckFailed(f"{len(failed)} check(s) failed: {', '.join(failed)}")


@cli.group()
def lab() -> None:
    """The seed's six-host cluster running for real on this machine (network namespaces)."""


@lab.command("up")
@spec_option
@format_option
@click.option("--no-verify", is_flag=True, help="Skip the final `pgha verify`.")
def lab_up(spec_path: str | None, fmt: str, no_verify: bool) -> None:
    """Bring the lab up in the seed's order, then verify it."""
    from pgha.cli.progress import ConsoleReporter

    the_lab = _lab(spec_path)
    t0 = time.monotonic()
    try:
        timings = the_lab.up(ConsoleReporter())
    except KeyboardInterrupt:
        err.print("interrupted: taking the half-built lab down")
        the_lab.down()
        raise
    err.print(f"lab {the_lab.spec.name} is up in {time.monotonic() - t0:.1f} s "
              f"({len(timings.steps)} steps); VIP {the_lab.spec.vip.address}:{the_lab.spec.ports.postgresql}")
    if not no_verify:
        run_verify(the_lab.spec, fmt, the_lab.transport)
    err.print(f'connect: {pgha_command("psql")}  (or psql "$({pgha_command("dsn", "--vip")})": the password '
              'stays in a 0600 passfile)')


@lab.command("down")
@spec_option
@click.option("--keep-data", is_flag=True, help="Keep the state directory (data, certificates, logs).")
def lab_down(spec_path: str | None, keep_data: bool) -> None:
    """Stop every process by pid, remove namespaces and bridge, and (unless kept) the data."""
    t0 = time.monotonic()
    done = _lab(spec_path).down(keep_data=keep_data)
    for line in done:
        err.print(line)
    err.print(f"lab down in {time.monotonic() - t0:.1f} s")


@lab.command("status")
@spec_option
@format_option
def lab_status(spec_path: str | None, fmt: str) -> None:
    """Every lab process: node, service, state, pid; and the VIP holder."""
    the_lab = _lab(spec_path)
    rows = the_lab.processes()
    spec = the_lab.spec
    from pgha.probe.cluster import vip_holders

    holders = list(vip_holders(spec, the_lab.transport) or ())
    isolated = [n.name for n in spec.nodes if the_lab.network.is_isolated(n)]
    data = {"cluster": spec.name, "processes": [r.__dict__ for r in rows],
            "vip": {"address": str(spec.vip.address), "holders": holders}, "isolated": isolated}
    emit(data, fmt, table(f"lab {spec.name}: VIP {spec.vip.address} on {', '.join(holders) or 'nobody'}"
                          + (f"; isolated: {', '.join(isolated)}" if isolated else ""),
                          ["node", "service", "state", "pid"],
                          [(r.node, r.service, r.state, r.pid) for r in rows]))


@lab.command("logs")
@spec_option
@click.argument("node")
@click.argument("service", required=False)
@lines_option
def lab_logs(spec_path: str | None, node: str, service: str | None, lines: int) -> None:
    """Show the last lines of a node's service logs (all its services by default)."""
    the_lab = _lab(spec_path)
    show_logs(the_lab.transport, the_lab.spec, node, service, lines)


@lab.command("stop")
@spec_option
@click.argument("node")
@click.argument("service", type=SERVICE)
def lab_stop(spec_path: str | None, node: str, service: str) -> None:
    """Stop a service and hold it down."""
    err.print(_lab(spec_path).stop(node, service))


@lab.command("start")
@spec_option
@click.argument("node")
@click.argument("service", type=SERVICE, required=False)
def lab_start(spec_path: str | None, node: str, service: str | None) -> None:
    """Start a stopped, held or crashed service (every service of the node by default)."""
    err.print(_lab(spec_path).start(node, service))


@lab.command("kill")
@spec_option
@click.argument("node")
@click.argument("service", type=SERVICE)
@click.option("--signal", "sig", default="KILL", show_default=True, callback=_signal_name,
              help="Signal name (KILL, TERM, STOP...).")
def lab_kill(spec_path: str | None, node: str, service: str, sig: str) -> None:
    """Signal a service (`postgres` = the postmaster); its restart policy then applies."""
    err.print(_lab(spec_path).kill(node, service, sig))


@lab.command("crash")
@spec_option
@click.argument("node")
def lab_crash(spec_path: str | None, node: str) -> None:
    """A node's power cut: every service SIGKILLed (and the postmaster) and held down until `lab start NODE`."""
    err.print(_lab(spec_path).crash(node))


@lab.command("isolate")
@spec_option
@click.argument("node")
def lab_isolate(spec_path: str | None, node: str) -> None:
    """Cut a node off the network (its processes keep running)."""
    err.print(_lab(spec_path).isolate(node))


@lab.command("heal")
@spec_option
@click.argument("node")
def lab_heal(spec_path: str | None, node: str) -> None:
    """Put an isolated node back on the network."""
    err.print(_lab(spec_path).heal(node))


@cli.command("verify")
@spec_option
@format_option
def verify_cmd(spec_path: str | None, fmt: str) -> None:
    """The seed's section 12 checks plus TLS properties; exit 0 only if all pass."""
    run_verify(load_spec(spec_path, lab_fallback=True), fmt, None)


def _target(fn):  # type: ignore[no-untyped-def]
    """The options shared by `pgha dsn` and `pgha psql`: where to connect, as whom."""
    for option in reversed([
        spec_option,
        click.option("--vip", "target", flag_value="vip", default=True, help="Through the VIP (the primary)."),
        click.option("--replicas", "target", flag_value="replicas", help="Through the VIP's read-only port."),
        click.option("--multi-host", "target", flag_value="multi-host",
                     help="Straight to the PostgreSQL nodes, no proxy: a libpq multi-host list with "
                          "target_session_attrs=read-write (libpq finds the primary)."),
        click.option("--node", "node", default=None, help="Directly to one PostgreSQL node."),
        click.option("--superuser", is_flag=True,
                     help="As postgres, not the application role: only directly to a node (--node) from an "
                          "admin address (postgresql.admin_addresses); through the VIP it is refused."),
        click.option("--dbname", default=None, help="Default: the application role's database (postgres "
                                                     "with --superuser)."),
    ]):
        fn = option(fn)
    return fn


@cli.command("dsn")
@_target
@click.option("--with-password", is_flag=True,
              help="Put the password in the DSN (default: a passfile= of the state directory, mode 0600).")
@click.option("--restore", "restore", default=None, metavar="NAME",
              help="The scratch instance of `pgha restore --into NAME` (on the backup node).")
def dsn_cmd(spec_path: str | None, target: str, node: str | None, superuser: bool, dbname: str | None,
            with_password: bool, restore: str | None) -> None:
    """Print a libpq DSN (verify-full against the CA): psql "$(pgha dsn --vip)"."""
    from pgha.probe import Credentials
    from pgha.probe.pg import client_dsn

    if restore:
        from pgha.cli.backup_cmds import restorer

        click.echo(restorer(spec_path).dsn(restore, superuser=superuser))
        return

    spec = load_spec(spec_path, lab_fallback=True)
    if node:
        spec.node(node)  # a wrong name is named before the credentials are looked for
    click.echo(client_dsn(spec, Credentials.of(spec), node=node, replicas=target == "replicas",
                          multi_host=target == "multi-host", superuser=superuser, dbname=dbname,
                          with_password=with_password))


@cli.command("psql", context_settings={"ignore_unknown_options": True})
@_target
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def psql_cmd(spec_path: str | None, target: str, node: str | None, superuser: bool, dbname: str | None,
             args: tuple[str, ...]) -> None:
    """Run psql against the cluster (verify-full; the password from a 0600 passfile): pgha psql -- -c 'select 1'."""
    from pgha.probe import Credentials
    from pgha.probe.pg import psql_argv

    spec = load_spec(spec_path, lab_fallback=True)
    if node:
        spec.node(node)
    argv = psql_argv(spec, Credentials.of(spec), args, node=node, replicas=target == "replicas",
                     multi_host=target == "multi-host", superuser=superuser, dbname=dbname)
    os.execv(argv[0], argv)  # psql takes over the terminal (Ctrl-C cancels its query, not pgha)
