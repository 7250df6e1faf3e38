"""The chaos checker: an append-only history of acknowledged writes and faults, and the verdict on it.

Pure (no I/O): the runner appends what it saw, the checks read it. An acknowledgement says *which*
PostgreSQL acknowledged the write: its address (``inet_server_addr()``), its start time
(``pg_postmaster_start_time()``) and the timeline it wrote on. One server on one timeline since one
start is a primary *epoch*; epochs must not overlap in time (two primaries = split brain), no epoch may
acknowledge once a later timeline has acknowledged (a superseded primary), and every acknowledged
write must be on the final primary.

A commit happened somewhere between the client's send (``started``) and its acknowledgement
(``acked``). The checks only report what is certain within those windows: an epoch is surely
primary from its first acknowledgement to the start of its last write.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Ack:
    """One acknowledged write: ``writer`` wrote ``value`` (unique per writer), sent at ``started``,
    acknowledged at ``acked``, by ``server`` started at ``server_start`` on ``timeline``."""

    writer: str
    value: int
    started: float
    acked: float
    server: str
    server_start: str
    timeline: int
    via_vip: bool = True


@dataclass(frozen=True)
class FaultWindow:
    """A fault as it happened: injected at ``start``, restored at ``restored``, the whole cluster back at
    ``healed`` (None: not healed)."""

    kind: str
    node: str | None
    start: float
    restored: float
    healed: float | None
    action: str = ""
    error: str | None = None
    interrupted: bool = False
    """Cut short by Ctrl-C: restored, but the run did not wait for the cluster to heal."""


@dataclass(frozen=True)
class VipSample:
    at: float
    holders: tuple[str, ...]
    leader: str | None = None


@dataclass
class History:
    """Append-only: acknowledgements, faults and samples of who leads and who holds the VIP."""

    acks: list[Ack] = field(default_factory=list)
    faults: list[FaultWindow] = field(default_factory=list)
    samples: list[VipSample] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"acks": [asdict(a) for a in self.acks], "faults": [asdict(f) for f in self.faults],
                "samples": [asdict(s) for s in self.samples]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls([Ack(**a) for a in data.get("acks", [])], [FaultWindow(**f) for f in data.get("faults", [])],
                   [VipSample(s["at"], tuple(s["holders"]), s.get("leader")) for s in data.get("samples", [])])


@dataclass(frozen=True)
class Epoch:
    """One server acknowledging writes on one timeline since one start."""

    server: str
    server_start: str
    timeline: int
    first_acked: float
    last_started: float
    acks: int

    @property
    def label(self) -> str:
        return f"{self.server} (timeline {self.timeline})"


@dataclass(frozen=True)
class Overlap:
    """Two epochs surely primary at once, from ``start`` to ``end``."""

    a: Epoch
    b: Epoch
    start: float
    end: float

    def describe(self, t0: float = 0.0) -> str:
        return (f"{self.a.label} and {self.b.label} both acknowledged writes from +{self.start - t0:.2f} s "
                f"to +{self.end - t0:.2f} s")


@dataclass(frozen=True)
class Outage:
    kind: str
    median_s: float | None
    worst_s: float | None
    faults: int


@dataclass
class Verdict:
    lost: list[Ack] = field(default_factory=list)
    split_brain: list[Overlap] = field(default_factory=list)
    stale: list[Ack] = field(default_factory=list)
    vip_on_two: list[VipSample] = field(default_factory=list)
    unhealed: list[FaultWindow] = field(default_factory=list)
    availability: float | None = None
    outages: list[Outage] = field(default_factory=list)
    mttr_s: float | None = None
    acks: int = 0
    checked_lost: bool = True

    @property
    def safe(self) -> bool:
        return not (self.lost or self.split_brain or self.stale or self.vip_on_two or self.unhealed)

    def problems(self, t0: float = 0.0) -> list[str]:
        """One sentence per broken property."""
        out = []
        if self.lost:
            shown = ", ".join(f"{a.writer}#{a.value} (acked by {a.server} at +{a.acked - t0:.2f} s)"
                              for a in self.lost[:5])
            out.append(f"{len(self.lost)} acknowledged write(s) missing on the final primary: {shown}"
                       + (" ..." if len(self.lost) > 5 else ""))
        out += [f"split brain: {o.describe(t0)}" for o in self.split_brain]
        if self.stale:
            a = self.stale[0]
            out.append(f"{len(self.stale)} write(s) acknowledged on a superseded timeline, first: {a.writer}#{a.value} "
                       f"by {a.server} on timeline {a.timeline} at +{a.acked - t0:.2f} s")
        if self.vip_on_two:
            s = self.vip_on_two[0]
            out.append(f"the VIP was on two hosts {len(self.vip_on_two)} time(s), first at +{s.at - t0:.2f} s: "
                       f"{', '.join(s.holders)}")
        out += [f"{f.kind} on {f.node or '-'} at +{f.start - t0:.1f} s: the cluster did not heal"
                + (f" ({f.error})" if f.error else "") for f in self.unhealed]
        return out

    def as_dict(self, t0: float = 0.0) -> dict[str, Any]:
        return {"safe": self.safe, "acks": self.acks, "lost": len(self.lost), "checked_lost": self.checked_lost,
                "lost_writes": [asdict(a) for a in self.lost[:100]],
                "split_brain": [{"a": o.a.label, "b": o.b.label, "from_s": round(o.start - t0, 3),
                                 "to_s": round(o.end - t0, 3)} for o in self.split_brain],
                "stale_timeline_acks": [asdict(a) for a in self.stale[:100]],
                "vip_on_two_hosts": [asdict(s) for s in self.vip_on_two[:100]],
                "unhealed": [asdict(f) for f in self.unhealed],
                "availability": self.availability, "mttr_s": self.mttr_s,
                "outage_per_fault": {o.kind: {"median_s": o.median_s, "worst_s": o.worst_s, "faults": o.faults}
                                     for o in self.outages},
                "problems": self.problems(t0)}


# -- the checks ---------------------------------------------------------------------------------------
def lost_writes(acks: Iterable[Ack], present: dict[str, set[int]]) -> list[Ack]:
    """Acknowledged writes not on the final primary (``present``: the values found there, per writer)."""
    return [a for a in acks if a.value not in present.get(a.writer, set())]


def epochs(acks: Iterable[Ack]) -> list[Epoch]:
    groups: dict[tuple[str, str, int], list[Ack]] = {}
    for a in acks:
        groups.setdefault((a.server, a.server_start, a.timeline), []).append(a)
    out = [Epoch(s, st, tl, min(a.acked for a in g), max(a.started for a in g), len(g))
           for (s, st, tl), g in groups.items()]
    return sorted(out, key=lambda e: e.first_acked)


def split_brain(acks: Iterable[Ack]) -> list[Overlap]:
    """Pairs of epochs of *different servers* surely acknowledging writes at the same time."""
    eps = epochs(acks)
    out = []
    for i, a in enumerate(eps):
        for b in eps[i + 1:]:
            if a.server == b.server:
                continue  # a restart of one server is not two primaries
            start, end = max(a.first_acked, b.first_acked), min(a.last_started, b.last_started)
            if start < end:
                out.append(Overlap(a, b, start, end))
    return out


def stale_timeline(acks: Sequence[Ack]) -> list[Ack]:
    """Writes sent after a later timeline had already acknowledged a write, yet acknowledged on an older one."""
    newest: list[tuple[float, int]] = []  # (acked, highest timeline acknowledged so far)
    top = -1
    for a in sorted(acks, key=lambda a: a.acked):
        if a.timeline > top:
            top = a.timeline
            newest.append((a.acked, top))
    out = []
    for a in acks:
        seen = max((tl for t, tl in newest if t < a.started), default=-1)
        if a.timeline < seen:
            out.append(a)
    return out


def vip_on_two_hosts(samples: Iterable[VipSample]) -> list[VipSample]:
    return [s for s in samples if len(s.holders) > 1]


def availability(acked_at: Iterable[float], start: float, end: float) -> float | None:
    """The share of whole seconds from ``start`` to ``end`` with at least one acknowledgement."""
    seconds = int(end - start)
    if seconds <= 0:
        return None
    hit = {int(t - start) for t in acked_at if start <= t < start + seconds}
    return round(len(hit) / seconds, 4)


def outage(acked_at: Sequence[float], fault: FaultWindow) -> float:
    """The longest gap between acknowledgements from the last one before the fault until it healed (or the
    last acknowledgement): what a client of the VIP saw of this fault."""
    end = fault.healed if fault.healed is not None else max([fault.restored, *acked_at])
    before = [t for t in acked_at if t <= fault.start]
    points = sorted({max(before) if before else fault.start, *(t for t in acked_at if fault.start < t <= end)})
    if points[-1] < end:
        points.append(end)  # nothing acknowledged until the end: the gap runs to it
    return round(max((b - a for a, b in zip(points, points[1:], strict=False)), default=0.0), 3)


def outages(acked_at: Sequence[float], faults: Iterable[FaultWindow]) -> list[Outage]:
    per: dict[str, list[float]] = {}
    for f in faults:
        per.setdefault(f.kind, []).append(outage(acked_at, f))
    return [Outage(k, round(statistics.median(v), 3), max(v), len(v)) for k, v in sorted(per.items())]


def mttr(faults: Iterable[FaultWindow]) -> float | None:
    """Mean time from a fault's injection until the whole cluster was back."""
    times = [f.healed - f.start for f in faults if f.healed is not None]
    return round(statistics.mean(times), 3) if times else None


def check(history: History, present: dict[str, set[int]] | None, start: float, end: float) -> Verdict:
    """Every check on a history; ``present`` None when the final primary could not be read."""
    acks = history.acks
    vip_acked = sorted(a.acked for a in acks if a.via_vip)
    return Verdict(lost=lost_writes(acks, present) if present is not None else [],
                   split_brain=split_brain(acks), stale=stale_timeline(acks),
                   vip_on_two=vip_on_two_hosts(history.samples),
                   unhealed=[f for f in history.faults if f.healed is None and not f.interrupted],
                   availability=availability(vip_acked, start, end), outages=outages(vip_acked, history.faults),
                   mttr_s=mttr(history.faults), acks=len(acks), checked_lost=present is not None)
