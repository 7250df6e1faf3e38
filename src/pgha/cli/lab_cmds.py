"""pgha lab up|down|status|logs|kill|stop|start|isolate|heal, pgha verify, pgha dsn, pgha psql."""

from __future__ import annotations

import os
import time

import click

from pgha.cli.common import cli, format_option, load_spec, show_logs, spec_option, transport_for
from pgha.cli.output import ConsoleReporter, emit, err, table
from pgha.errors import CheckFailed
from pgha.lab.control import FAULT_SERVICES, Lab
from pgha.probe import Credentials
from pgha.probe.pg import client_dsn, psql_argv
from pgha.spec import ClusterSpec
from pgha.verify import Report, verify


def _lab(spec_path: str | None) -> Lab:
    return Lab(load_spec(spec_path, lab_fallback=True))


def print_report(report: Report, fmt: str) -> None:
    rows = [("[green]PASS[/]" if c.passed else "[red]FAIL[/]", c.name, c.expected, c.seen)
            for c in report.checks]
    emit(report.as_dict(), fmt, table(f"pgha verify ({report.seconds:.1f} s)",
                                      ["", "check", "expected", "seen"], rows))


def run_verify(spec: ClusterSpec, fmt: str, lab: Lab | None) -> None:
    report = verify(spec, Credentials.of(spec), lab.transport if lab else None)
    print_report(report, fmt)
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
        run_verify(the_lab.spec, fmt, the_lab)
    err.print('connect: pgha psql  (or psql "$(pgha dsn --vip)": the password stays in a 0600 passfile)')


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
    holders = [n.name for n in spec.haproxy_nodes
               if the_lab.network.holds_address(n, str(spec.vip.address))]
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
@click.option("-n", "--lines", default=50, show_default=True)
def lab_logs(spec_path: str | None, node: str, service: str | None, lines: int) -> None:
    """Show the last lines of a node's service logs (all its services by default)."""
    the_lab = _lab(spec_path)
    show_logs(the_lab.transport, the_lab.spec, node, service, lines)


def _fault(verb: str) -> None:
    @lab.command(verb, help={"stop": "Stop a service and hold it down.", "start": "Start a stopped service.",
                             }[verb])
    @spec_option
    @click.argument("node")
    @click.argument("service", type=click.Choice(FAULT_SERVICES))
    def command(spec_path: str | None, node: str, service: str) -> None:
        err.print(getattr(_lab(spec_path), verb)(node, service))


_fault("stop")
_fault("start")


@lab.command("kill")
@spec_option
@click.argument("node")
@click.argument("service", type=click.Choice(FAULT_SERVICES))
@click.option("--signal", "sig", default="KILL", show_default=True, help="Signal name (KILL, TERM, STOP...).")
def lab_kill(spec_path: str | None, node: str, service: str, sig: str) -> None:
    """Signal a service (`postgres` = the postmaster); its restart policy then applies."""
    err.print(_lab(spec_path).kill(node, service, sig))


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
    spec = load_spec(spec_path, lab_fallback=True)
    report = verify(spec, Credentials.of(spec), transport_for(spec))
    print_report(report, fmt)
    if not report.passed:
        failed = [c.name for c in report.checks if not c.passed]
        raise CheckFailed(f"{len(failed)} check(s) failed: {', '.join(failed)}")


def _target(fn):  # type: ignore[no-untyped-def]
    """The options shared by `pgha dsn` and `pgha psql`: where to connect, as whom."""
    for option in reversed([
        spec_option,
        click.option("--vip", "target", flag_value="vip", default=True, help="Through the VIP (the primary)."),
        click.option("--replicas", "target", flag_value="replicas", help="Through the VIP's read-only port."),
        click.option("--node", "node", default=None, help="Directly to one PostgreSQL node."),
        click.option("--dbname", default="postgres", show_default=True),
    ]):
        fn = option(fn)
    return fn


@cli.command("dsn")
@_target
@click.option("--with-password", is_flag=True,
              help="Put the password in the DSN (default: a passfile= of the state directory, mode 0600).")
def dsn_cmd(spec_path: str | None, target: str, node: str | None, dbname: str, with_password: bool) -> None:
    """Print a libpq DSN (verify-full against the CA): psql "$(pgha dsn --vip)"."""
    spec = load_spec(spec_path, lab_fallback=True)
    click.echo(client_dsn(spec, Credentials.of(spec), node=node, replicas=target == "replicas", dbname=dbname,
                          with_password=with_password))


@cli.command("psql", context_settings={"ignore_unknown_options": True})
@_target
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def psql_cmd(spec_path: str | None, target: str, node: str | None, dbname: str, args: tuple[str, ...]) -> None:
    """Run psql against the cluster (verify-full; the password from a 0600 passfile): pgha psql -- -c 'select 1'."""
    spec = load_spec(spec_path, lab_fallback=True)
    argv = psql_argv(spec, Credentials.of(spec), args, node=node, replicas=target == "replicas", dbname=dbname)
    os.execv(argv[0], argv)  # psql takes over the terminal (Ctrl-C cancels its query, not pgha)
