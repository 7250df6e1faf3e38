"""pgha certs rotate, pgha etcd replace: changing a running cluster without downtime."""

from __future__ import annotations

from typing import Any

import click

from pgha.cli.common import confirm, force_option, format_option, load_spec, require_target, spec_option
from pgha.cli.ops_cmds import etcd_group
from pgha.cli.output import emit, err, table
from pgha.cli.spec_cmds import certs


@certs.command("rotate")
@spec_option
@format_option
@click.option("--ca", "new_ca", is_flag=True, help="Replace the CA too, in three recorded phases (trust both, "
              "re-issue, drop the old); resumes an interrupted one.")
@force_option
def certs_rotate(spec_path: str | None, fmt: str, new_ca: bool, force: bool) -> None:
    """Re-issue every leaf certificate from the cluster CA and put it in use on the running cluster:
    Patroni and PostgreSQL reload, etcd re-reads its files (a member that does not is restarted, one at a
    time); waits until every TLS port presents its new certificate. --ca: a new CA, without a failed
    connection for clients that use pgha's CA file."""
    from pgha.cli.progress import ConsoleReporter
    from pgha.rotate import CertRotator, serial_hex

    spec = load_spec(spec_path, lab_fallback=True)
    target = require_target(spec)
    confirm(force, f"replace the CA of cluster {spec.name} and every certificate" if new_ca else
            f"re-issue every leaf certificate of cluster {spec.name} and reload the engines")
    rotator = CertRotator(target, ConsoleReporter())
    result = rotator.rotate_ca() if new_ca else rotator.rotate_leaves()
    data: list[dict[str, Any]] = [
        {"node": a.node, "port": a.port, "what": a.what, "serial_before": serial_hex(b.serial),
         "serial_after": serial_hex(a.serial)} for b, a in zip(result.before, result.after, strict=True)]
    emit({"listeners": data, "restarted": list(result.restarted), "reloaded": list(result.reloaded),
          "seconds": round(result.seconds, 2)}, fmt,
         table("TLS listeners (serial on a new connection)", ["node", "port", "what", "before", "after"],
               [tuple(d.values()) for d in data]))
    err.print(result.summary())


@etcd_group.command("replace")
@spec_option
@click.argument("node")
@force_option
def etcd_replace(spec_path: str | None, node: str, force: bool) -> None:
    """Rebuild a failed etcd member (its data lost or not): removed, wiped, added back as a learner with
    initial-cluster-state=existing, promoted once in sync; refused unless every other member is healthy."""
    from pgha.cli.progress import ConsoleReporter
    from pgha.etcd_member import EtcdReplacer

    spec = load_spec(spec_path, lab_fallback=True)
    spec.node(node)  # a wrong name is named before anything else
    target = require_target(spec)
    confirm(force, f"remove, wipe and re-add the etcd member of {node}")
    err.print(EtcdReplacer(target, ConsoleReporter()).replace(node))
