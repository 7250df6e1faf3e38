"""`pgha etcd replace NODE`: a failed etcd member (its data lost or not) rebuilt, quorum kept throughout.

The seed's traps, automated: a member whose data directory is gone cannot simply be started again (its
old identity is still in the cluster: "member ... has already been bootstrapped"), and one started with
``initial-cluster-state=new`` forms a cluster of its own. So, with every other member healthy first:

    1. stop the member (if it still runs)
    2. remove it from the cluster (asked of a healthy member, as etcd's root)
    3. wipe its data directory
    4. etcd.env with ``initial-cluster-state=existing`` (from the one plan builder)
    5. add it back as a *learner*: a learner never counts toward the quorum, so the cluster's majority is
       the same as before while it catches up
    6. start it, promote it once it is in sync (etcd refuses before), wait for every member healthy

The members' v3 JSON gateway through :mod:`pgha.etcd_leader`'s client (the operator's certificate, etcd's
root user), the node's files and service through the Transport: the lab and servers alike.
"""

from __future__ import annotations

import time
from typing import Any

from pgha.errors import PghaError, UsageError, pgha_command
from pgha.etcd_leader import Gateway, MoveError, operator_gateway
from pgha.orchestrate import Orchestrator, Reporter
from pgha.plan import etcd_env_file
from pgha.probe import Credentials
from pgha.probe.cluster import Prober
from pgha.render.etcd import peer_url
from pgha.spec import Node
from pgha.target import Target


def _call(gw: Gateway, member: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        return gw.post(member, path, body)
    except MoveError as exc:
        raise PghaError(f"etcd: {exc}", hint=f"see `{pgha_command('status')}` (etcd section)") from None


def members(gw: Gateway, via: str) -> list[dict[str, Any]]:
    """The cluster's members as etcd lists them (ID, name — empty until a new member starts —, peerURLs,
    isLearner)."""
    return list(_call(gw, via, "/v3/cluster/member/list", {}).get("members", []))


class EtcdReplacer:
    """Replaces one etcd member of a running cluster."""

    def __init__(self, target: Target, reporter: Reporter | None = None, *, gateway: Gateway | None = None,
                 prober: Prober | None = None) -> None:
        self.target, self.spec, self.transport = target, target.spec, target.transport
        creds = prober.creds if prober else Credentials.of(self.spec)
        self.orch = Orchestrator(self.spec, self.transport, reporter, creds, prober)
        self.gw = gateway or operator_gateway(self.spec, creds)

    def replace(self, name: str) -> str:
        node = self.spec.node(name)
        if not node.is_postgres:
            raise UsageError(f"{node.name} runs no etcd member (not a PostgreSQL node)")
        t0 = time.monotonic()
        via = self._healthy_peer(node)
        url = peer_url(self.spec, node.address)
        o = self.orch
        with o.step(f"stop etcd on {node.name}"):
            self.transport.stop(node, "etcd")
        with o.step(f"remove {node.member_name} from the etcd cluster"):
            for m in members(self.gw, via):
                if url in m.get("peerURLs", []) or m.get("name") == node.member_name:
                    _call(self.gw, via, "/v3/cluster/member/remove", {"ID": m["ID"]})
        layout = self.target.layout(node)
        plan = self.target.plan(node, "existing")
        with o.step(f"wipe {node.name}'s etcd data, initial-cluster-state=existing"):
            self.transport.remove_tree(node, layout.etcd_data)
            for d in plan.dirs:
                if d.path == layout.etcd_data:
                    self.transport.ensure_dir(node, d)
            self.transport.put_file(node, etcd_env_file(layout, "existing"))
        with o.step(f"add {node.member_name} back as a learner"):
            added = _call(self.gw, via, "/v3/cluster/member/add", {"peerURLs": [url], "isLearner": True})
            new_id = added["member"]["ID"]
        with o.step(f"start etcd on {node.name}, promote it once in sync"):
            self.transport.start(node, "etcd")
            o.wait(f"promote {node.member_name}", lambda: self._promote(via, new_id), 60, "etcd", (node,),
                   interval=0.5)
        with o.step("every etcd member healthy"):
            o.wait("every etcd member healthy", o.etcd_healthy, 60, "etcd", self.spec.postgres_nodes)
        o.etcd_leader_off()
        return (f"etcd member {node.member_name} on {node.name} replaced (new ID {int(new_id):x}) in "
                f"{time.monotonic() - t0:.1f} s; quorum kept throughout")

    def _healthy_peer(self, node: Node) -> str:
        """A member that answers, after checking that every member but ``node``'s is healthy: without
        that, taking one more member out could cost the quorum."""
        snap = self.orch.prober.snapshot()
        down = [e.name for e in snap.etcd if e.name != node.member_name and not e.healthy]
        if down:
            raise UsageError(f"etcd member(s) {', '.join(down)} not healthy: replacing {node.member_name} now "
                             "could lose the quorum", hint=f"bring them back first (`{pgha_command('status')}`)")
        peers = [e.name for e in snap.etcd if e.name != node.member_name and e.healthy]
        if not peers:
            raise UsageError("no other etcd member answers")
        return peers[0]

    def _promote(self, via: str, member_id: str) -> tuple[bool, str]:
        try:
            self.gw.post(via, "/v3/cluster/member/promote", {"ID": member_id})
        except MoveError as exc:
            if "not started" in str(exc) or "in sync" in str(exc) or "learner" in str(exc):
                return False, str(exc)  # etcd refuses until the learner has caught up: not yet
            raise PghaError(f"etcd: {exc}") from None
        return True, "promoted"

