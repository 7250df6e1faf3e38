"""pgha deploy, pgha bundle build: the cluster on real servers over SSH + systemd."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from pgha.cli.common import cli, format_option, load_spec, spec_option
from pgha.cli.lab_cmds import print_verify_report
from pgha.cli.output import emit, err, out, table
from pgha.errors import CheckFailed

if TYPE_CHECKING:
    from pgha.deploy import DeployResult


def print_result(result: DeployResult, fmt: str) -> None:
    from rich.markup import escape

    if fmt != "pretty":
        emit(result.as_dict(), fmt)
        return
    if not result.changes:
        out.print(f"no changes ({result.seconds:.1f} s)")
    else:
        verb = "would change" if result.dry_run else "changed"
        out.print(table(f"pgha deploy: {len(result.changes)} {verb} ({result.seconds:.1f} s)",
                        ["node", "kind", "what"], [(c.node, c.kind, escape(c.what)) for c in result.changes]))
        for c in result.changes:
            if c.diff:
                out.print(escape(c.diff), markup=False)
    if result.ports:
        out.print(result.ports.summary())
        notes = result.ports.notes if result.dry_run or not result.ports.passed else ()
        for line in [*result.ports.lines(), *notes]:
            out.print(f"  {escape(line)}")
    if result.verify:
        print_verify_report(result.verify, fmt)


@cli.command("deploy")
@spec_option
@format_option
@click.option("--dry-run", is_flag=True, help="Print what would change (files as diffs) and change nothing.")
@click.option("--limit", "limit", multiple=True, metavar="NODE", help="Only these nodes (repeatable).")
@click.option("--no-verify", is_flag=True, help="Skip the final `pgha verify`.")
@click.option("--no-port-check", is_flag=True,
              help="Skip the check that the seed's ports are open between the nodes (temporary listeners).")
def deploy_cmd(spec_path: str | None, fmt: str, dry_run: bool, limit: tuple[str, ...], no_verify: bool,
               no_port_check: bool) -> None:
    """Install and start the cluster on the spec's servers (SSH + systemd); re-runnable without harm."""
    from pgha.cli.progress import ConsoleReporter
    from pgha.deploy import deploy

    spec = load_spec(spec_path)
    t0 = time.monotonic()
    result = deploy(spec, dry_run=dry_run, limit=limit, check=not no_verify and not dry_run,
                    reporter=ConsoleReporter(), port_check=not no_port_check)
    err.print(f"deploy {'(dry run) ' if dry_run else ''}done in {time.monotonic() - t0:.1f} s")
    print_result(result, fmt)
    if result.ports and not result.ports.passed:  # a dry run: the report, then the deploy's own error
        raise result.ports.error()
    if result.verify and not result.verify.passed:
        failed = [c.name for c in result.verify.checks if not c.passed]
        raise CheckFailed(f"deployed, but {len(failed)} verify check(s) failed: {', '.join(failed)}")


@cli.group("bundle")
def bundle_group() -> None:
    """The offline package bundle for servers without internet access (deploy.packages: bundle)."""


@bundle_group.command("build")
@spec_option
@click.option("--distro", default=None, help="The servers' release (checked against this machine's).")
@click.option("--force", is_flag=True, help="Rebuild even if the bundle exists.")
def bundle_build(spec_path: str | None, distro: str | None, force: bool) -> None:
    """Download the .debs with their dependencies and Patroni's wheels into the bundle directory."""
    from pgha.deploy import bundle as bundle_mod

    spec = load_spec(spec_path)
    t0 = time.monotonic()
    b = bundle_mod.build(spec, distro, force=force)
    sizes = ", ".join(f"{r} {b.tar(r).stat().st_size / 1e6:.0f} MB" for r in bundle_mod.ROLES if b.tar(r).exists())
    err.print(f"bundle {b.dir} ({sizes}) ready in {time.monotonic() - t0:.1f} s")
