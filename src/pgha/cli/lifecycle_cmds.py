"""pgha certs rotate: changing a running cluster without downtime."""

from __future__ import annotations

from typing import Any

from pgha.cli.common import confirm, force_option, format_option, load_spec, require_target, spec_option
from pgha.cli.output import emit, err, table
from pgha.cli.spec_cmds import certs


@certs.command("rotate")
@spec_option
@format_option
@force_option
def certs_rotate(spec_path: str | None, fmt: str, force: bool) -> None:
    """Re-issue every leaf certificate from the cluster CA and put it in use on the running cluster:
    Patroni and PostgreSQL reload, etcd re-reads its files (a member that does not is restarted, one at a
    time); waits until every TLS port presents its new certificate."""
    from pgha.cli.progress import ConsoleReporter
    from pgha.rotate import CertRotator, serial_hex

    spec = load_spec(spec_path, lab_fallback=True)
    target = require_target(spec)
    confirm(force, f"re-issue every leaf certificate of cluster {spec.name} and reload the engines")
    result = CertRotator(target, ConsoleReporter()).rotate_leaves()
    data: list[dict[str, Any]] = [
        {"node": a.node, "port": a.port, "what": a.what, "serial_before": serial_hex(b.serial),
         "serial_after": serial_hex(a.serial)} for b, a in zip(result.before, result.after, strict=True)]
    emit({"listeners": data, "restarted": list(result.restarted), "reloaded": list(result.reloaded),
          "seconds": round(result.seconds, 2)}, fmt,
         table("TLS listeners (serial on a new connection)", ["node", "port", "what", "before", "after"],
               [tuple(d.values()) for d in data]))
    err.print(result.summary())
