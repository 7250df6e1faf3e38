"""Whatever ends a chaos step, restore puts every fault back: frozen processes continued, cut-off nodes
healed, held-down services started — each attempted even when another fails."""

from __future__ import annotations

import pytest

from pgha import spec as spec_mod
from pgha.drill.scenarios import DrillContext
from pgha.lab.target import LabTarget
from pgha.spec import Node
from pgha.topology import services_of
from tests.unit.fakes import FakeTransport

SPEC = spec_mod.parse(spec_mod.default_data(lab=True, name="pgha-unit-chaos"))


class FaultyTransport(FakeTransport):
    """Records freeze/thaw and isolate/heal; starting etcd on postgres-01 fails."""

    def freeze(self, node: Node, pg_data: str) -> list[int]:
        self.calls.append(("freeze", node.name, pg_data))
        return [101, 102]

    def thaw(self, node: Node, pids: list[int]) -> None:
        self.calls.append(("thaw", node.name, ",".join(map(str, pids))))

    def isolate(self, node: Node) -> None:
        self.calls.append(("isolate", node.name, ""))

    def heal(self, node: Node) -> None:
        self.calls.append(("heal", node.name, ""))

    def start(self, node: Node, service: str) -> None:
        super().start(node, service)
        if (node.name, service) == ("postgres-01", "etcd"):
            raise RuntimeError("etcd would not start")


def test_restore_puts_back_every_fault_even_when_one_fails() -> None:
    fake = FaultyTransport()
    pg1, pg2, pg3 = SPEC.postgres_nodes
    ha1 = SPEC.haproxy_nodes[0]
    ctx = DrillContext(LabTarget(SPEC, fake), None, pg1, pg2, ha1, [])  # type: ignore[arg-type]
    ctx.crash_node(pg1)
    assert "SIGSTOP" in ctx.freeze(pg2)
    ctx.isolate(pg3)
    ctx.down(ha1, "keepalived")
    with pytest.raises(RuntimeError, match="etcd would not start"):
        ctx.restore()
    assert fake.verbs("thaw") == [("thaw", "postgres-02", "101,102")]
    assert fake.verbs("heal") == [("heal", "postgres-03", "")]
    assert fake.verbs("start") == [("start", "postgres-01", s) for s in services_of(SPEC, pg1)] + [
        ("start", "haproxy-01", "keepalived")]
    assert ctx.faulted == [] and ctx.frozen == []
    ctx.restore()  # nothing left: nothing done twice
    assert len(fake.verbs("start", "thaw", "heal")) == 3 + len(services_of(SPEC, pg1))
