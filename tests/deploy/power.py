"""A power cut of a machine as a drill fault: the deploy tests and bench/power_cut_servers.py share it."""

from __future__ import annotations

from pgha import spec as spec_mod
from pgha.drill.scenarios import DrillContext, Scenario
from pgha.spec import Node
from pgha.transport.ssh import SshTransport
from tests.deploy.nspawn import Machines


class PowerTransport(SshTransport):
    """The SSH transport, plus the machine's power switch as a pseudo-service for drills."""

    def __init__(self, spec: spec_mod.ClusterSpec, machines: Machines) -> None:
        super().__init__(spec)
        self.machines = machines

    def start(self, node: Node, service: str) -> None:
        if service == "power":
            self.machines.power_on(node.name)
            self.machines.wait_ssh([node.name], timeout=60)
            return
        super().start(node, service)


def power_cut(machines: Machines, led_etcd: bool) -> Scenario:
    """The leader's machine loses power; set-up first puts etcd's leader on it (``led_etcd``) or elsewhere."""
    def inject(ctx: DrillContext) -> str:
        machines.power_cut(ctx.leader.name)
        ctx.faulted.append((ctx.leader, "power"))
        return f"power cut of {ctx.leader.name} (SIGKILL to its systemd-nspawn: etcd, Patroni, PostgreSQL)"

    def setup(ctx: DrillContext) -> str:
        return ctx.ops.move_etcd_leader(to=ctx.leader.name) if led_etcd else ctx.ops.move_etcd_leader()

    return Scenario("primary-power-cut", "power cut of the leader's machine", inject, expects_failover=True, hold=3,
                    setup=setup)
