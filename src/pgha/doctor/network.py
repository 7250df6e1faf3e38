"""Between the nodes: clock skew beyond 1 s, and the seed's ports not reachable where they must be."""

from __future__ import annotations

from collections import defaultdict

from pgha.doctor.model import Evidence, Finding, NodeFacts, PortFact
from pgha.doctor.postgres import hangs, postmasters

MAX_SKEW = 1.0


def clock_skew(ev: Evidence) -> list[Finding]:
    clocks = [(f.node.name, f.clock_offset, f.clock_uncertainty) for f in ev.nodes if f.clock_offset is not None]
    if len(clocks) < 2:
        return []
    early = min(clocks, key=lambda c: c[1] or 0.0)
    late = max(clocks, key=lambda c: c[1] or 0.0)
    skew = (late[1] or 0.0) - (early[1] or 0.0)
    if skew - late[2] - early[2] <= MAX_SKEW:
        return []
    offsets = ", ".join(f"{n} {o:+.2f} s" for n, o, _ in clocks if o is not None)
    return [Finding(f"clock skew of {skew:.1f} s between {late[0]} and {early[0]} (beyond {MAX_SKEW:g} s)",
                    f"offsets from this machine's clock: {offsets}",
                    "synchronise every node with NTP (the seed's section 2: `timedatectl set-ntp true`, "
                    "chrony or systemd-timesyncd), then check `timedatectl` says 'System clock synchronized: yes'",
                    code="net.clock_skew")]


def _serving(f: NodeFacts | None, service: str) -> bool:
    """Whether the target should be listening on that port right now."""
    if f is None:
        return False
    if service.startswith("etcd"):
        s = f.service("etcd")
    elif service == "PostgreSQL":
        return bool(postmasters(f.processes))
    else:
        s = f.service("patroni")
    return s is not None and s.running


def ports(ev: Evidence) -> list[Finding]:
    """A port is judged blocked on a path when the service listens (reachable from elsewhere, or running)
    but this source cannot connect: a dead service is reported by the service diagnoses instead."""
    by_target: dict[tuple[str, int], list[PortFact]] = defaultdict(list)
    for f in ev.nodes:
        for p in f.ports:
            by_target[(p.target, p.port)].append(p)
    for p in ev.operator_ports:
        by_target[(p.target, p.port)].append(p)
    out = []
    for (target, port), facts in sorted(by_target.items()):
        failed = [p for p in facts if not p.ok and p.source != "(this machine)"]
        if not failed:
            continue
        reachable_elsewhere = any(p.ok for p in facts)
        target_facts = ev.facts(target)
        if not reachable_elsewhere and (not _serving(target_facts, failed[0].service)
                                        or (target_facts is not None and hangs(target_facts))):
            continue  # a dead or hung service is reported as such
        sources = ", ".join(p.source for p in failed)
        out.append(Finding(
            f"port {port} ({failed[0].service}) on {target} is not reachable from {sources}",
            "; ".join(f"{p.source} -> {p.address}:{p.port}: {p.error}" for p in failed)
            + ("; reachable from " + ", ".join(p.source for p in facts if p.ok) if reachable_elsewhere else
               "; the service runs there"),
            f"allow TCP {port} from {sources} to {target} ({failed[0].address}) in the firewalls between them"
            if reachable_elsewhere else
            f"the service on {target} does not listen on {failed[0].address}:{port}: check its listen address",
            node=target, code="net.port"))
    return out


DIAGNOSES = (clock_skew, ports)
