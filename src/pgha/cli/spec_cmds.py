"""pgha init, spec schema/check, certs, certs check, render."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pgha import DEFAULT_SPEC_FILE
from pgha.cli.common import LazyChoice, cli, format_option, load_spec, spec_option
from pgha.cli.output import emit, err, table
from pgha.errors import CheckFailed, UsageError, pgha_command


def _profiles() -> list[str]:
    from pgha.spec import Profile

    return [p.value for p in Profile]


@cli.command()
@click.option("--lab", is_flag=True, help="The lab's spec: 10.203.0.0/24, interface eth0, bridge .1.")
@click.option("-o", "--output", "output", default=DEFAULT_SPEC_FILE, show_default=True,
              type=click.Path(dir_okay=False), help="Where to write the spec.")
@click.option("--name", default="postgresql-cluster", show_default=True, help="Cluster name (Patroni scope).")
@click.option("--subnet", default=None, help="Subnet for the hosts (the seed's last octets are kept).")
@click.option("--profile", type=LazyChoice(_profiles), default="seed",
              show_default=True, help="Failover timings: the seed's, or the fastest safe ones.")
@click.option("--force", is_flag=True, help="Overwrite an existing spec file.")
def init(lab: bool, output: str, name: str, subnet: str | None, profile: str, force: bool) -> None:
    """Write the default spec (the seed's six hosts, VIP and a backup node) and generate the cluster's secrets."""
    from pgha import spec as spec_mod
    from pgha.layout import StateLayout
    from pgha.secrets import ensure_secrets

    path = Path(output)
    if path.exists() and not force:
        raise UsageError(f"{path} exists", hint="pass --force to overwrite it, or -o another file")
    data = spec_mod.default_data(lab=lab, subnet=subnet, name=name, profile=spec_mod.Profile(profile))
    spec = spec_mod.parse(data, str(path))  # never write a spec we would refuse to read
    path.write_text(spec_mod.dump(data))
    ensure_secrets(StateLayout(spec.state_dir))
    err.print(f"wrote {path} ({len(spec.nodes)} nodes, VIP {spec.vip.address}); "
              f"secrets in {StateLayout(spec.state_dir).secrets} (0600)")


@cli.group("spec")
def spec_group() -> None:
    """The cluster spec: its JSON schema, and validation."""


@spec_group.command("schema")
def spec_schema() -> None:
    """Print the JSON schema of cluster.yml."""
    from pgha import spec as spec_mod

    click.echo(json.dumps(spec_mod.json_schema(), indent=2))


@spec_group.command("check")
@spec_option
def spec_check(spec_path: str | None) -> None:
    """Validate a spec file and summarise it."""
    from pgha.spec import Role

    spec = load_spec(spec_path)
    roles = " + ".join(f"{len(spec.nodes_of(r))} {r.value}" for r in Role if spec.nodes_of(r))
    err.print(f"ok: cluster {spec.name}, {roles} nodes, VIP {spec.vip.address}, profile {spec.profile.value}, "
              f"ttl/loop_wait/retry {spec.dcs.ttl}/{spec.dcs.loop_wait}/{spec.dcs.retry_timeout}")


@cli.group("certs", invoke_without_command=True)
@spec_option
@click.pass_context
def certs(ctx: click.Context, spec_path: str | None) -> None:
    """Create the CA and every certificate (idempotent: valid ones are kept)."""
    if ctx.invoked_subcommand is not None:
        return
    from pgha.layout import StateLayout
    from pgha.pki import ensure_pki
    from pgha.secrets import ensure_secrets

    spec = load_spec(spec_path)
    state = StateLayout(spec.state_dir)
    report = ensure_pki(spec, state)
    ensure_secrets(state)
    for action in report.actions:
        why = f" ({action.reason})" if action.reason else ""
        err.print(f"{action.action.value:9} {action.path.name}{why}")
    err.print(f"PKI in {report.directory}")


@certs.command("check")
@spec_option
@format_option
def certs_check(spec_path: str | None, fmt: str) -> None:
    """List each certificate, its SANs and expiry; flag missing SANs, usage, chain, expiry < 30 days."""
    from pgha.layout import StateLayout
    from pgha.pki import check_pki

    spec = load_spec(spec_path)
    statuses = check_pki(spec, StateLayout(spec.state_dir))
    data = [{"name": s.name, "path": str(s.path), "common_name": s.common_name, "sans": list(s.sans),
             "not_after": s.not_after.isoformat() if s.not_after else None, "days_left": s.days_left,
             "problems": list(s.problems)} for s in statuses]
    rows = [(s.name, s.common_name, ", ".join(s.sans), s.days_left,
             "[green]ok[/]" if s.ok else "[red]" + "; ".join(s.problems) + "[/]") for s in statuses]
    emit(data, fmt, table("certificates", ["file", "CN", "SANs", "days left", "status"], rows))
    bad = [s for s in statuses if not s.ok]
    if bad:
        raise CheckFailed(f"{len(bad)} certificate(s) with problems",
                          hint=f"run `{pgha_command('certs')}` to (re)issue them")


@cli.command()
@spec_option
@click.option("--out", "out_dir", default="out", show_default=True, type=click.Path(file_okay=False),
              help="A new or empty directory to write DIR/<node>/<absolute path> into (created 0700).")
@click.option("--force", is_flag=True, help="Replace an earlier `pgha render` output in --out.")
def render(spec_path: str | None, out_dir: str, force: bool) -> None:
    """Write every node's files (configs, certificates, units) exactly as `pgha deploy` installs them."""
    from pgha import render_out
    from pgha.target import ServerTarget

    spec = load_spec(spec_path)
    written = render_out.write_tree(ServerTarget(spec), Path(out_dir), force=force)
    for node, count in written.items():
        err.print(f"{node}: {count} files")
    err.print(f"rendered into {out_dir}/ (owners and modes in {out_dir}/MANIFEST.tsv)")
