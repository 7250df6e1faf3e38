"""The lab's network: one namespace per spec node, veth pairs into one bridge, no default route.

Names are derived from the cluster name so two labs (different names, different subnets) coexist:
namespace ``pgha-<cluster>-<node>``, bridge ``pb-<hash>``, host-side veth ``pv<hash><index>``
(Linux caps interface names at 15 characters). No namespace gets a default route: nothing can leave
the machine, and Patroni's REST server does not stall on a reverse DNS lookup at start.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass

from pgha.errors import MissingPrerequisite, PghaError
from pgha.spec import ClusterSpec, Node


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:6]


@dataclass(frozen=True)
class LabNames:
    """Kernel object names for one cluster's lab."""

    spec: ClusterSpec

    @property
    def bridge(self) -> str:
        return f"pb-{_short_hash(self.spec.name)}"

    def netns(self, node: Node) -> str:
        return f"pgha-{self.spec.name}-{node.name}"

    def host_veth(self, node: Node) -> str:
        return f"pv{_short_hash(self.spec.name)}{self.spec.nodes.index(node)}"

    def peer_veth(self, node: Node) -> str:
        return f"pp{_short_hash(self.spec.name)}{self.spec.nodes.index(node)}"

    @property
    def prefix(self) -> str:
        return f"pgha-{self.spec.name}-"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; a failure becomes a PghaError with iproute2's own words."""
    try:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise MissingPrerequisite("the `ip` command is missing", hint="apt-get install iproute2") from None
    if check and proc.returncode != 0:
        raise PghaError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def existing_namespaces() -> set[str]:
    out = ip("netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def link_exists(name: str) -> bool:
    return ip("link", "show", name, check=False).returncode == 0


class LabNetwork:
    """Create and remove the bridge and namespaces of one lab (idempotent both ways)."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.names = LabNames(spec)

    def create(self) -> None:
        spec, names = self.spec, self.names
        if not link_exists(names.bridge):
            ip("link", "add", names.bridge, "type", "bridge")
        ip("addr", "replace", f"{spec.bridge_address}/{spec.vip.prefix}", "dev", names.bridge)
        ip("link", "set", names.bridge, "up")
        have = existing_namespaces()
        for node in spec.nodes:
            self._create_node(node, have)

    def _create_node(self, node: Node, have: set[str]) -> None:
        spec, names = self.spec, self.names
        ns, host, peer = names.netns(node), names.host_veth(node), names.peer_veth(node)
        if ns not in have:
            ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
        in_ns = ip("-n", ns, "link", "show", spec.vip.interface, check=False).returncode == 0
        if not in_ns:
            if link_exists(host):
                ip("link", "del", host)
            ip("link", "add", host, "type", "veth", "peer", "name", peer)
            ip("link", "set", peer, "netns", ns)
            ip("-n", ns, "link", "set", peer, "name", spec.vip.interface)
        ip("link", "set", host, "master", names.bridge)
        ip("link", "set", host, "up")
        ip("-n", ns, "addr", "replace", f"{node.address}/{spec.vip.prefix}", "dev", spec.vip.interface)
        ip("-n", ns, "link", "set", spec.vip.interface, "up")

    def destroy(self) -> list[str]:
        """Remove namespaces (theirs and any stale ones of this cluster) and the bridge."""
        removed = []
        for ns in sorted(existing_namespaces()):
            if ns.startswith(self.names.prefix):
                ip("netns", "del", ns, check=False)
                removed.append(ns)
        for node in self.spec.nodes:
            if link_exists(self.names.host_veth(node)):
                ip("link", "del", self.names.host_veth(node), check=False)
        if link_exists(self.names.bridge):
            ip("link", "del", self.names.bridge, check=False)
            removed.append(self.names.bridge)
        return removed

    def exists(self) -> bool:
        return link_exists(self.names.bridge) or any(
            ns.startswith(self.names.prefix) for ns in existing_namespaces())

    # -- faults -------------------------------------------------------------------------------
    def isolate(self, node: Node) -> None:
        """Cut the node off the bridge (its processes keep running, like a pulled cable)."""
        ip("link", "set", self.names.host_veth(node), "down")

    def heal(self, node: Node) -> None:
        ip("link", "set", self.names.host_veth(node), "up")

    def is_isolated(self, node: Node) -> bool:
        out = ip("-o", "link", "show", self.names.host_veth(node), check=False).stdout
        return "state UP" not in out and ",UP" not in out
