"""The lab as a :class:`~pgha.target.Target`: six network namespaces on this machine, one supervisord.

The namespaces share this machine's filesystem and kernel, so each node's paths live under its own
root in the state directory, no node gets files that belong to the whole machine (apt sources,
tmpfiles.d, /usr/local/bin), and Patroni's watchdog is never on (it would reset the machine).
"""

from __future__ import annotations

from pgha.errors import pgha_command
from pgha.lab.transport import NetnsTransport
from pgha.spec import Node
from pgha.target import Target
from pgha.transport.base import Transport


class LabTarget(Target):
    """One cluster's lab."""

    allows_watchdog = False
    whole_hosts = False

    def _connect(self) -> Transport:
        return NetnsTransport(self.spec, self.state)

    def root(self, node: Node) -> str:
        return str(self.state.node_root(node))

    def service_command(self, node: Node, service: str, action: str) -> str:
        if action == "restart":
            return " && ".join(pgha_command("lab", verb, node.name, service) for verb in ("stop", "start"))
        return pgha_command("lab", action, node.name, service)
