"""etcd and leader election: quorum lost, a member down, no leader elected, initial-cluster-state left
at ``new`` (the seed's section 19: "no leader elected", "etcd re-forms on restart")."""

from __future__ import annotations

from pgha.doctor.model import Evidence, Finding, Severity, last_line
from pgha.errors import pgha_command


def _member_detail(ev: Evidence, member: str, error: str | None) -> tuple[str, str | None]:
    """Evidence for one unhealthy etcd member, and the command that fixes it if it is simply stopped."""
    node = ev.spec.member_of(member)
    facts = ev.facts(node.name) if node else None
    state = facts.service("etcd") if facts else None
    where = f"{member} ({node.name})" if node else member
    if state is not None and not state.running:
        return f"{where}: etcd is {state.detail}", ev.start(node, "etcd") if node else None
    line = last_line(facts.log("etcd"), "error", "fatal", "rejected") if facts else None
    return f"{where}: {error or 'unhealthy'}" + (f"; log: {line}" if line else ""), None


def etcd_quorum(ev: Evidence) -> list[Finding]:
    """Fewer than a majority of etcd members healthy: Patroni cannot hold or take the leader key."""
    members = ev.snapshot.etcd
    down = [m for m in members if not m.healthy]
    if not down:
        return []
    majority = ev.snapshot.etcd_majority
    healthy = len(members) - len(down)
    details = [_member_detail(ev, m.name, m.error) for m in down]
    starts = [cmd for _, cmd in details if cmd]
    evidence = "; ".join(d for d, _ in details)
    if not ev.snapshot.etcd_quorum:
        leader = ev.snapshot.leader
        return [Finding(
            f"etcd quorum lost: {healthy}/{len(members)} members healthy (a majority is {majority}); "
            + ("no leader can be elected" if leader is None else f"{leader.name} will lose its leader key"),
            evidence,
            " ; ".join(starts) + (" (a member without quorum reports itself unhealthy until they are back)"
                                  if len(starts) < len(down) else "") if starts else
            f"restore the etcd members above: check port {ev.spec.ports.etcd_peer} between the PostgreSQL nodes "
            "and their etcd logs",
            code="etcd.quorum")]
    return [Finding(
        f"etcd member(s) down: {', '.join(m.name for m in down)} (quorum kept: one more loss stops failover)",
        evidence,
        " ; ".join(starts) if starts else
        f"see the member's etcd log; check port {ev.spec.ports.etcd_peer} between the PostgreSQL nodes",
        code="etcd.member_down")]


def no_leader(ev: Evidence) -> list[Finding]:
    """etcd is fine yet no member holds the leader key (quorum loss is reported by etcd_quorum)."""
    snap = ev.snapshot
    if snap.leader is not None or not snap.etcd_quorum:
        return []
    parts = [f"{m.name} {m.role}/{m.state}" for m in snap.members] or [f"no REST API answers ({snap.patroni_error})"]
    fixes = []
    for f in ev.pg_facts:
        state = f.service("patroni")
        if state is not None and not state.running:
            parts.append(f"{f.node.name}: Patroni is {state.detail}")
            fixes.append(ev.start(f.node, "patroni"))
        else:
            line = last_line(f.log("patroni"), "error", "fatal", "failed")
            if line:
                parts.append(f"{f.node.name}: {line}")
    return [Finding("no leader elected (etcd is healthy)", "; ".join(parts),
                    " ; ".join(fixes) if fixes else
                    f"read the Patroni logs above; if the cluster is paused: `{pgha_command('resume')}`",
                    code="patroni.no_leader")]


def etcd_state_new(ev: Evidence) -> list[Finding]:
    """``ETCD_INITIAL_CLUSTER_STATE=new`` on a member of a running cluster: once its data directory is
    gone (a rebuilt node), it would bootstrap a new one-member cluster instead of rejoining."""
    out = []
    healthy = {m.name for m in ev.snapshot.etcd if m.healthy}
    for f in ev.pg_facts:
        env = f.etcd_env or {}
        if env.get("ETCD_INITIAL_CLUSTER_STATE") != "new" or not (f.etcd_has_data or f.node.member_name in healthy):
            continue
        out.append(Finding(
            f"etcd on {f.node.name} would re-form the cluster on restart: initial-cluster-state is still 'new'",
            f"ETCD_INITIAL_CLUSTER_STATE=new in {f.etcd_env_path}, but the cluster already exists "
            f"(the member has data{' and is healthy' if f.node.member_name in healthy else ''})",
            f"on {f.node.name}: sed -i 's/^ETCD_INITIAL_CLUSTER_STATE=.*/ETCD_INITIAL_CLUSTER_STATE=existing/' "
            f"{f.etcd_env_path} ; then {ev.restart(f.node, 'etcd')} (one member at a time)",
            Severity.WARNING, f.node.name, "etcd.state_new"))
    return out


def etcd_leader_with_patroni_leader(ev: Evidence) -> list[Finding]:
    """etcd's leader on the Patroni leader's node: a crash of that node costs one more ttl of write outage,
    because the new etcd leader gives the dead leader's lease its full ttl again (pgha.etcd_leader)."""
    snap = ev.snapshot
    etcd_leader = next((m for m in snap.etcd if m.is_leader), None)
    if snap.leader is None or etcd_leader is None:
        return []
    node = ev.spec.node(snap.leader.name)
    if etcd_leader.name != node.member_name:
        return []
    return [Finding(
        f"etcd's leader and Patroni's leader share {node.name}: a crash of that node adds up to one ttl "
        "to the write outage",
        f"etcd leader {etcd_leader.name}, Patroni leader {snap.leader.name}; a new etcd leader renews every "
        "lease to its full ttl (etcd issues 9395, 13294)",
        pgha_command("etcd", "move-leader"), Severity.WARNING, node.name, "etcd.leader_with_patroni_leader")]


DIAGNOSES = (etcd_quorum, no_leader, etcd_state_new, etcd_leader_with_patroni_leader)
