"""The client path: services down, the VIP not answering or held twice, HAProxy routing to the wrong
node or to none (the seed's section 19: "VIP not answering", "HAProxy routing to the wrong node")."""

from __future__ import annotations

from pgha.doctor.model import Evidence, Finding, NodeFacts, last_line
from pgha.doctor.postgres import postmasters
from pgha.probe.haproxy import PRIMARY_BACKEND
from pgha.problems import BY_CODE
from pgha.transport.base import ServiceState


def services_down(ev: Evidence) -> list[Finding]:
    """Patroni, HAProxy or keepalived not running (etcd is judged with its quorum in dcs.py; Patroni's
    PostgreSQL left running is judged in postgres.py)."""
    out = []
    for f in ev.nodes:
        for s in f.services:
            if s.running or s.service == "etcd" or (s.service == "patroni" and postmasters(f.processes)):
                continue
            log = last_line(f.log(s.service), "error", "fatal", "alert", "exit", "stopped", "killed")
            role = {"haproxy": "this node routes no client", "keepalived": "this node can no longer hold the VIP",
                    "patroni": "its PostgreSQL is not managed and not a member",
                    "pgbackrest": "WAL archiving, backups and restores through it stop"}.get(s.service, "")
            out.append(Finding(f"{s.service} is not running on {f.node.name}" + (f": {role}" if role else ""),
                               f"service state: {s.detail}" + (f"; last log line: {log}" if log else ""),
                               ev.start(f.node, s.service), node=f.node.name, code=_down_code(s.service)))
    return out


def _down_code(service: str) -> str:
    code = f"service.{service}_down"
    return code if code in BY_CODE else "service.down"


def _running(state: ServiceState | None) -> bool:
    return state is not None and state.running


def _vrrp_state(f: NodeFacts) -> str | None:
    line = last_line(f.log("keepalived"), "entering master state", "entering backup state", "entering fault state")
    if not line:
        return None
    return "MASTER" if "master" in line.lower() else "BACKUP" if "backup" in line.lower() else "FAULT"


def vip(ev: Evidence) -> list[Finding]:
    snap = ev.snapshot
    holders = snap.vip_holders or ()
    out = []
    address = f"{snap.vip_address}:{ev.spec.ports.postgresql}"
    if snap.vip_error is not None:
        keep_up = [f for f in ev.ha_facts if (s := f.service("keepalived")) is not None and s.running]
        ha_up = [f for f in ev.ha_facts if (s := f.service("haproxy")) is not None and s.running]
        seen = [f"TCP {address}: {snap.vip_error}", f"held by {', '.join(holders) or 'nobody'}",
                f"keepalived running on {', '.join(f.node.name for f in keep_up) or 'no node'}",
                f"HAProxy running on {', '.join(f.node.name for f in ha_up) or 'no node'}"]
        if not keep_up:
            fix = " ; ".join(ev.start(f.node, "keepalived") for f in ev.ha_facts)
        elif holders and not any(h.node.name in holders for h in ha_up):
            fix = " ; ".join(ev.start(ev.spec.node(h), "haproxy") for h in holders)
        elif not holders:
            fix = ("keepalived runs but no node took the VIP: its check of the local HAProxy fails everywhere "
                   "(see the HAProxy findings) ; " + " ; ".join(ev.start(f.node, "haproxy") for f in ev.ha_facts
                                                                if f not in ha_up))
        else:
            fix = f"the holder's HAProxy does not accept on {ev.spec.ports.postgresql}: see its log"
        out.append(Finding(f"the VIP {snap.vip_address} does not answer", "; ".join(seen), fix.strip(" ;"),
                           code="vip.down"))
    if len(holders) > 1:
        facts = [f for f in ev.ha_facts if f.node.name in holders]
        states = {f.node.name: (_vrrp_state(f), f.service("keepalived")) for f in facts}
        seen = [f"{n}: keepalived {'running' if s and s.running else (s.detail if s else '?')}, "
                f"last VRRP state {v or 'unknown'}" for n, (v, s) in states.items()]
        stale = [f for f in facts if not _running(states[f.node.name][1]) or states[f.node.name][0] != "MASTER"]
        if stale and len(stale) < len(facts):
            fix = " ; ".join(ev.restart(f.node, "keepalived") for f in stale) + \
                " (a keepalived restart releases an address it no longer owns)"
        else:
            fix = ("every holder believes it is MASTER: VRRP adverts do not pass between the HAProxy nodes; "
                   "allow IP protocol 112 (unicast between their addresses) between them, then "
                   + " ; ".join(ev.restart(f.node, "keepalived") for f in facts))
        out.append(Finding(f"the VIP {snap.vip_address} is held by {len(holders)} hosts: {', '.join(holders)}",
                           "; ".join(seen), fix, code="vip.split"))
    return out


def haproxy_routing(ev: Evidence) -> list[Finding]:
    leader = ev.snapshot.leader
    if leader is None:
        return []  # no leader: reported by the leader diagnoses; HAProxy routing nowhere is the consequence
    lnode = ev.spec.member_of(leader.name)
    lf = ev.facts(lnode.name) if lnode else None
    out = []
    for view in ev.snapshot.haproxy:
        f = ev.facts(view.node)
        if f is None or not view.reachable:
            continue  # a stopped HAProxy is reported by services_down
        up = view.primary
        if up == [leader.name]:
            continue
        statuses = ", ".join(f"{s.server} {s.status}" for s in view.servers if s.backend == PRIMARY_BACKEND)
        seen = [f"{PRIMARY_BACKEND} backend: {statuses}", f"the leader is {leader.name}"]
        port = next((p for p in f.ports if lnode and p.target == lnode.name and p.port == ev.spec.ports.restapi), None)
        ca = next((c for c in f.certs if c.kind == "haproxy-ca"), None)
        fix = ""
        if port is not None and not port.ok:
            seen.append(f"{view.node} cannot reach {port.address}:{port.port}: {port.error}")
            fix = (f"Patroni's REST API on {lnode.name if lnode else '?'} is unreachable from {view.node}: "
                   f"open TCP {ev.spec.ports.restapi} from {f.node.address} to {port.address}")
            if lf is not None and (s := lf.service("patroni")) is not None and not s.running and lnode:
                fix = ev.start(lnode, "patroni")
        elif ca is not None and ca.same_as_cluster_ca is False:
            seen.append(f"{ca.path} is not the cluster CA: the checks' TLS verification fails")
            fix = (f"copy the cluster CA (pgha's pki/ca.crt) to {ca.path} on {view.node}, then "
                   f"{ev.restart(f.node, 'haproxy')}")
        else:
            line = last_line(f.log("haproxy"), "is down", "layer", "ssl")
            if line:
                seen.append(f"log: {line}")
            fix = (f"the health check (GET /primary on port {ev.spec.ports.restapi}, TLS verified) fails: "
                   f"compare `curl --cacert CA https://{lnode.address if lnode else '?'}:{ev.spec.ports.restapi}"
                   f"/primary` from {view.node}")
        where = ", ".join(up) if up else "no server"
        out.append(Finding(f"HAProxy on {view.node} routes primary traffic to {where}, not the leader {leader.name}",
                           "; ".join(seen), fix, node=view.node,
                           code="haproxy.routing" if up else "haproxy.no_server"))
    return out


DIAGNOSES = (services_down, vip, haproxy_routing)
