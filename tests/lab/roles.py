"""Which lab node leads right now, for lab tests that fault the leader or a replica."""

from __future__ import annotations

from pgha.lab.control import Lab
from pgha.probe import Credentials
from pgha.probe.cluster import Prober
from pgha.spec import Node


def roles(lab: Lab) -> tuple[Node, list[Node]]:
    """(the leader's node, the other PostgreSQL nodes), from one snapshot."""
    snap = Prober(lab.spec, Credentials.of(lab.spec), lab.transport).snapshot()
    assert snap.leader is not None
    leader = lab.spec.node(snap.leader.name)
    return leader, [n for n in lab.spec.postgres_nodes if n != leader]
