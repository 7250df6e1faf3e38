"""States that silently remove protection while every service looks green: failover paused, no replica
able to take over (tags, lag), synchronous mode with no standby, two primaries, a pending restart left in
place, slots of absent members retaining WAL, the watchdog off on servers."""

from __future__ import annotations

from pgha.doctor.model import Evidence, Finding, Severity
from pgha.errors import pgha_command
from pgha.probe.patroni import PatroniMember


def paused(ev: Evidence) -> list[Finding]:
    if not ev.snapshot.paused:
        return []
    return [Finding("automatic failover is paused (maintenance mode is on): a failed leader is not replaced",
                    "Patroni's cluster view says pause: true", f"`{pgha_command('resume')}`", Severity.WARNING,
                    code="patroni.paused")]


def pending_restart(ev: Evidence) -> list[Finding]:
    waiting = [m.name for m in ev.snapshot.members if m.pending_restart]
    if not waiting:
        return []
    return [Finding(f"{', '.join(waiting)} run(s) with settings that apply only after a restart",
                    "pending_restart: true in Patroni's member list (a changed parameter of context postmaster)",
                    f"`{pgha_command('restart', '--rolling', '--pending')}` (replicas, a switchover, the old primary)",
                    Severity.WARNING, code="patroni.pending_restart")]


def _lag_limit(ev: Evidence) -> int:
    return (ev.snapshot.config or ev.spec.dcs).maximum_lag_on_failover


def _over_limit(ev: Evidence, m: PatroniMember) -> bool:
    return m.lag_mb is not None and m.lag_mb * 1048576 > _lag_limit(ev)


def _why_not_candidate(ev: Evidence, m: PatroniMember) -> str | None:
    if m.tags.get("nofailover"):
        return f"{m.name} is tagged nofailover"
    if m.state != "streaming":
        return f"{m.name} is {m.state}"
    if _over_limit(ev, m):
        return f"{m.name} lags {m.lag_mb} MB (maximum_lag_on_failover {_lag_limit(ev)} bytes)"
    return None


def failover_candidates(ev: Evidence) -> list[Finding]:
    """Every replica unable to take over (nofailover, not streaming, or lagging past the limit); replicas
    lagging past the limit one by one; every replica tagged noloadbalance (the read-only port has none)."""
    snap = ev.snapshot
    if snap.leader is None or not snap.replicas:
        return []
    out = []
    reasons = [r for m in snap.replicas if (r := _why_not_candidate(ev, m))]
    if len(reasons) == len(snap.replicas):
        tagged = [m for m in snap.replicas if m.tags.get("nofailover")]
        fix = (f"remove tags.nofailover from {', '.join(m.name for m in tagged)} in the spec and deploy it "
               f"(`{pgha_command('render')}`), then `{pgha_command('reload')}`" if tagged else
               "bring the replicas back to streaming (see the replication findings)")
        out.append(Finding(f"no replica can take over if the leader {snap.leader.name} fails",
                           "; ".join(reasons), fix, code="patroni.no_failover_candidate"))
    for m in snap.replicas:
        if _over_limit(ev, m) and len(reasons) < len(snap.replicas):
            out.append(Finding(f"replica {m.name} lags past maximum_lag_on_failover: Patroni will not promote it",
                               f"lag {m.lag_mb} MB, limit {_lag_limit(ev)} bytes", "look at the replica's disk "
                               "and network, or at a long write burst on the leader; it catches up by itself "
                               "once the cause is gone", Severity.WARNING, m.node, "replication.lag"))
    if all(m.tags.get("noloadbalance") for m in snap.replicas):
        out.append(Finding("every replica is tagged noloadbalance: the read-only port routes to no server",
                           ", ".join(f"{m.name} noloadbalance" for m in snap.replicas),
                           "remove tags.noloadbalance from one replica in the spec and deploy it",
                           Severity.WARNING, code="replication.no_loadbalance"))
    return out


def sync_standby(ev: Evidence) -> list[Finding]:
    """Synchronous mode on, and no synchronous standby Patroni could promote: a failover loses writes or
    cannot happen at all (Patroni promotes only a synchronous standby)."""
    snap = ev.snapshot
    if snap.config is None or not snap.config.synchronous_mode or snap.leader is None:
        return []
    sync = [m for m in snap.replicas if m.role == "sync_standby"]
    able = [m for m in sync if not m.tags.get("nofailover")]
    if able:
        return []
    seen = ("sync standby " + ", ".join(f"{m.name} tagged nofailover" for m in sync) if sync else
            "no member is sync_standby; " + (snap.describe_members() or "no replica"))
    return [Finding("synchronous mode is on but no synchronous standby can take over", seen,
                    "bring a replica without nofailover/nosync to streaming (see the replication findings); "
                    f"or, knowingly, `{pgha_command('config', 'set', 'synchronous_mode=false')}`",
                    code="replication.sync_no_standby")]


def many_primaries(ev: Evidence) -> list[Finding]:
    primaries = [f for f in ev.pg_facts if f.pg and f.pg.reachable and f.pg.in_recovery is False]
    if len(primaries) < 2:
        return []
    leader = ev.snapshot.leader
    others = [f for f in primaries if leader is None or f.node.member_name != leader.name]
    names = ", ".join(f.node.name for f in primaries)
    return [Finding(f"{len(primaries)} PostgreSQL servers run as primaries: {names}",
                    f"pg_is_in_recovery() = false on each; the leader key is "
                    f"{leader.name if leader else 'held by nobody'}",
                    " ; ".join(f"`{pgha_command('reinit', f.node.name)}` (rebuilds it as a replica of the leader; "
                               "save what only it has first)" for f in others) or
                    "decide which one keeps its writes, then reinit the other",
                    code="patroni.many_primaries")]


def absent_slots(ev: Evidence) -> list[Finding]:
    """Inactive replication slots on the primary retain WAL until the disk fills (Patroni keeps an absent
    member's slot for member_slots_ttl)."""
    out = []
    for f in ev.pg_facts:
        for slot in f.pg.slots if f.pg else ():
            if slot.active or slot.retained_bytes <= 0:
                continue
            member = next((n.member_name for n in ev.spec.postgres_nodes
                           if n.member_name.replace("-", "_").lower() == slot.name), None)
            out.append(Finding(
                f"replication slot {slot.name} on {f.node.name} is inactive and retains "
                f"{slot.retained_bytes / 1048576:.1f} MB of WAL",
                f"pg_replication_slots: {slot.name} active=false; "
                + (f"its member {member} is not streaming" if member else "no member of the spec uses it"),
                (f"bring {member} back (see the replication findings)" if member else
                 f"on {f.node.name}: SELECT pg_drop_replication_slot('{slot.name}')"),
                Severity.WARNING, f.node.name, "replication.absent_slot"))
    return out


def watchdog(ev: Evidence) -> list[Finding]:
    """On servers (the lab never has one), Patroni with watchdog mode off: a primary whose Patroni died
    keeps taking writes after another member is promoted."""
    if ev.spec.deploy is None:
        return []
    off = [f for f in ev.pg_facts if ((f.patroni_config or {}).get("watchdog") or {}).get("mode") == "off"]
    return [Finding(f"the watchdog is off on {f.node.name}: nothing fences its primary if Patroni dies",
                    f"watchdog.mode: off in {f.patroni_config_path}",
                    "set watchdog.mode: automatic (or required) in the spec and deploy again",
                    Severity.WARNING, f.node.name, "node.watchdog_off") for f in off]


DIAGNOSES = (many_primaries, paused, failover_candidates, sync_standby, pending_restart, absent_slots, watchdog)
