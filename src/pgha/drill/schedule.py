"""The chaos schedule: which faults, in which order, held how long — the same for the same seed.

Pure. Hold times and quiet pauses are drawn as fractions of the cluster's live ttl (the time Patroni
needs to notice a dead leader), so one seed means the same experiment on a fast or a slow cluster.
A step names a *role* (the leader, a replica, any PostgreSQL node, the VIP holder) and a pick number;
the runner resolves them against the live cluster when the step starts.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from typing import Any

from pgha.errors import UsageError


@dataclass(frozen=True)
class FaultKind:
    name: str
    description: str
    role: str
    """Whom it hits: leader, replica, postgres (any PostgreSQL node), vip-holder."""
    hold: tuple[float, float]
    """Bounds of the hold, in ttl."""
    etcd_members: int = 0
    """etcd members it takes away (overlaps that add up to a majority lose quorum)."""


KINDS: dict[str, FaultKind] = {k.name: k for k in [
    FaultKind("power-cut", "every service of a node SIGKILLed and held down, etcd included", "postgres",
              (0.5, 2.0), 1),
    FaultKind("freeze", "Patroni and every PostgreSQL process of a node stopped (SIGSTOP), then continued",
              "postgres", (0.5, 2.0)),
    FaultKind("partition", "a node cut off the network, then healed", "postgres", (0.5, 2.0), 1),
    FaultKind("patroni-crash", "only Patroni SIGKILLed and held down (PostgreSQL keeps running)", "postgres",
              (0.5, 2.0)),
    FaultKind("etcd-member-loss", "one etcd member SIGKILLed and held down", "postgres", (0.25, 1.5), 1),
    FaultKind("etcd-quorum-loss", "two etcd members of three SIGKILLed and held down", "leader", (0.25, 1.25), 2),
    FaultKind("haproxy-kill", "HAProxy SIGKILLed on the VIP holder, held down", "vip-holder", (0.1, 0.75)),
    FaultKind("keepalived-kill", "keepalived SIGKILLed on the VIP holder, held down", "vip-holder", (0.1, 0.75)),
    FaultKind("switchover", "a planned switchover to a replica", "replica", (0.0, 0.0)),
    FaultKind("failover", "a manual failover to a replica", "replica", (0.0, 0.0)),
]}
PAUSE = (0.05, 0.5)
"""Quiet time before each fault, in ttl, once the cluster is whole again."""
OVERLAP_SHARE = 0.3
"""With --overlap, the share of steps that get a second fault during their hold."""


@dataclass(frozen=True)
class Step:
    kind: str
    role: str
    pick: int
    """Chooses among the nodes that fill the role when the step starts (index modulo their number)."""
    hold_s: float
    pause_s: float
    also: Step | None = None
    """A second fault started ``also_after_s`` into this one's hold, restored with it."""
    also_after_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        also = d.get("also")
        return cls(d["kind"], d["role"], int(d["pick"]), float(d["hold_s"]), float(d["pause_s"]),
                   cls.from_dict(also) if also else None, float(d.get("also_after_s", 0.0)))

    def describe(self) -> str:
        text = f"{self.kind} ({self.role} #{self.pick}, hold {self.hold_s:.1f} s)"
        if self.also:
            text += f" + {self.also.kind} after {self.also_after_s:.1f} s"
        return text


def parse_faults(text: str | None) -> tuple[str, ...]:
    """A comma-separated list of fault names (None or "all": every kind)."""
    if text is None or text.strip() == "all":
        return tuple(KINDS)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in KINDS]
    if unknown or not names:
        raise UsageError(f"unknown fault{'s' if len(unknown) > 1 else ''} {', '.join(unknown) or repr(text)} "
                         f"(known: {', '.join(KINDS)})", hint="--faults takes a comma-separated list")
    return tuple(dict.fromkeys(names))


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1h30m`` → seconds (more than 0)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smh]?)", text.strip().lower())
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smh]?)", "", text.strip().lower()).strip():
        raise UsageError(f"duration {text!r} is not understood", hint="write e.g. 90s, 30m or 1h")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"duration {text!r} is zero", hint="a chaos run needs time: e.g. --duration 30m")
    return seconds


def breaks_quorum(a: str, b: str, etcd_members: int = 3) -> bool:
    """Whether two faults at once can take a majority of etcd members away."""
    return KINDS[a].etcd_members + KINDS[b].etcd_members >= etcd_members // 2 + 1


def overlap_pairs(faults: tuple[str, ...], overlap: bool, allow_quorum_loss: bool) -> list[tuple[str, str]]:
    """The (first, second) faults that may overlap; refused when --overlap leaves none."""
    pairs = [(a, b) for a in faults for b in faults
             if KINDS[a].hold[1] > 0 and (allow_quorum_loss or not breaks_quorum(a, b))]
    if overlap and not pairs:
        raise UsageError(f"--overlap with {', '.join(faults)}: every two of these at once take a majority of "
                         "etcd members away (quorum lost by design) or cannot overlap (instant faults)",
                         hint="add --allow-quorum-loss to run them anyway, or other faults to --faults")
    return pairs


def _step(rng: random.Random, kind: str, ttl: float) -> Step:
    k = KINDS[kind]
    lo, hi = k.hold
    role = k.role
    if role == "postgres":  # leaders are the interesting victims; replicas too, less often
        role = "leader" if rng.random() < 0.6 else "replica"
    return Step(kind, role, rng.randrange(100), round(rng.uniform(lo, hi) * ttl, 1),
                round(rng.uniform(*PAUSE) * ttl, 1))


def plan(seed: int, duration: float, faults: tuple[str, ...], ttl: float, overlap: bool = False,
         allow_quorum_loss: bool = False) -> list[Step]:
    """Enough steps for ``duration`` seconds (the runner stops when time is up): same arguments, same steps."""
    pairs = overlap_pairs(faults, overlap, allow_quorum_loss)
    rng = random.Random(seed)
    steps: list[Step] = []
    budget = 0.0
    while budget < duration and len(steps) < 10_000:
        first = _step(rng, rng.choice(faults), ttl)
        if overlap and rng.random() < OVERLAP_SHARE:
            options = [b for a, b in pairs if a == first.kind]
            if options:
                second = _step(rng, rng.choice(options), ttl)
                first = Step(first.kind, first.role, first.pick, first.hold_s, first.pause_s, second,
                             round(rng.uniform(0, first.hold_s), 1))
        steps.append(first)
        # At least its pause and its hold: a plan never runs out before the time does (a 10-minute soak
        # budgeted one ttl to heal each fault and ran out of faults after 429 s).
        budget += first.pause_s + first.hold_s + 1
    return steps
