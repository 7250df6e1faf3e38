"""Where a cluster runs: the lab's namespaces on this machine, or real servers over SSH.

A Target owns everything that differs between the two, so nothing above it asks which one it drives:

    transport   how commands, files and services reach a node (namespaces + supervisord | SSH + systemd)
    plans       every directory, file and link a node gets, from the one plan builder
                (:func:`pgha.plan.build`) with this target's layout roots and what it allows
    roots       the prefix of a node's paths: "" on a server, the node's directory in the lab
    allows      Patroni's watchdog (never in the lab: one kernel for six nodes, it would reset the
                machine) and the files only a whole machine owns (tmpfiles.d, apt sources, /usr/local/bin)
    commands    how a person starts or stops a node's service (doctor's fixes name them)

:class:`ServerTarget` is here; :class:`pgha.lab.target.LabTarget` lives with the lab.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

from pgha.layout import NodeLayout, StateLayout
from pgha.pki import ensure_pki
from pgha.plan import CertFiles, NodePlan, build, read_pgdg_key
from pgha.render.etcd import ClusterState
from pgha.secrets import ensure_secrets, load_secrets
from pgha.spec import ClusterSpec, Node
from pgha.transport.base import Transport

if TYPE_CHECKING:
    from pgha.transport.ssh import SshTransport


class Target(abc.ABC):
    """One cluster's nodes, where they run."""

    allows_watchdog: ClassVar[bool] = False
    """Whether Patroni's watchdog (the spec's ``watchdog:``) may be used."""
    whole_hosts: ClassVar[bool] = False
    """Whether each node is a machine of its own (its /etc/apt, tmpfiles.d and /usr/local/bin are its own)."""

    def __init__(self, spec: ClusterSpec, transport: Transport | None = None,
                 state: StateLayout | None = None) -> None:
        self.spec = spec
        self.state = state or StateLayout(spec.state_dir)
        self._transport = transport

    @property
    def transport(self) -> Transport:
        """The way to the nodes, made on first use (``transport`` given: that one, e.g. a fake)."""
        if self._transport is None:
            self._transport = self._connect()
        return self._transport

    @abc.abstractmethod
    def _connect(self) -> Transport: ...

    def root(self, node: Node) -> str:
        """The prefix of every path of the node ("" on a machine of its own)."""
        return ""

    def layout(self, node: Node) -> NodeLayout:
        return NodeLayout(self.spec, node, self.root(node))

    # -- plans ----------------------------------------------------------------------------------------
    def ensure_material(self) -> None:
        """The CA, every certificate and the secrets, created where missing (idempotent)."""
        ensure_pki(self.spec, self.state)
        ensure_secrets(self.state)

    def plan(self, node: Node, etcd_state: ClusterState = "new") -> NodePlan:
        """Everything the node gets (from the PKI and secrets on disk; see :meth:`ensure_material`)."""
        return build(self.spec, node, CertFiles.load(self.state, self.spec, node), load_secrets(self.state),
                     root=self.root(node), etcd_state=etcd_state, watchdog=self.allows_watchdog,
                     whole_host=self.whole_hosts, pgdg_key=read_pgdg_key(self.spec) if self.whole_hosts else None,
                     peer_root=self.root)

    def plans(self, etcd_state: ClusterState = "new") -> list[NodePlan]:
        """Every node's plan, in the spec's order."""
        return [self.plan(n, etcd_state) for n in self.spec.nodes]

    # -- service commands -------------------------------------------------------------------------------
    @abc.abstractmethod
    def service_command(self, node: Node, service: str, action: str) -> str:
        """The command a person runs to start/stop/restart a service of the node (named in fixes)."""


class ServerTarget(Target):
    """Real servers: SSH + systemd, the seed's absolute paths, the watchdog as the spec says."""

    allows_watchdog = True
    whole_hosts = True

    @property
    def transport(self) -> SshTransport:
        t = super().transport
        return t  # type: ignore[return-value]  # _connect makes an SshTransport; a test may inject a subclass

    def _connect(self) -> Transport:
        from pgha.transport.ssh import SshTransport  # asyncssh: loaded only when a server is reached

        return SshTransport(self.spec)

    def service_command(self, node: Node, service: str, action: str) -> str:
        t = self.spec.ssh_of(node)
        sudo = "" if t.user == "root" else "sudo "
        return f"ssh {t.user}@{t.host} {sudo}systemctl {action} {service}"

    def close(self) -> None:
        """Close the SSH connections, if any were made."""
        if self._transport is not None:
            self.transport.close()

    def __enter__(self) -> ServerTarget:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
