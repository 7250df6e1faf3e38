"""Where a switchover's time goes: the old and the new leader's own log lines (Patroni's, and PostgreSQL's,
which it writes through Patroni's output), pgha's HAProxy steps and the drill client's writes, on one clock.

Log timestamps are read as UTC (the lab's and the servers' clock; Patroni and PostgreSQL print local time).
A phase whose line is not found (a log rotated, another Patroni version's wording) is left out, not guessed.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from pgha.spec import Node

STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[.,](\d{3})")

_PHASES = (
    ("request received by Patroni", "old", r"received switchover request"),
    ("demote started", "old", r"Demoting self"),
    ("CHECKPOINT", "old", r"checkpoint starting: immediate force wait"),
    ("old primary shut down", "old", r"database system is shut down"),
    ("leader key released", "old", r"Leader key released"),
    ("leader key taken by the candidate", "new", r"acquiring (session|leader) lock"),
    ("promote requested", "new", r"received promote request"),
    ("end of recovery", "new", r"archive recovery complete"),
    ("new primary accepts writes", "new", r"database system is ready to accept connections"),
    ("old leader streams again", "old", r"started streaming WAL from primary"),
)
PHASES = tuple((name, whose, re.compile(pattern)) for name, whose, pattern in _PHASES)
"""(phase, whose log: the old or the new leader's, the line that marks it) — stock Patroni 4 and PostgreSQL."""


@dataclass(frozen=True)
class Phase:
    name: str
    at: float  # seconds since the fault


def log_times(text: str, since: float) -> list[tuple[float, str]]:
    """(epoch seconds, line) of every timestamped line at or after ``since`` (a second of slack: the log's
    clock is read to the millisecond, the fault's is the drill's)."""
    out = []
    for line in text.splitlines():
        m = STAMP.search(line)
        if m is None:
            continue
        at = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
        if at >= since - 1.0:
            out.append((at, line))
    return out


def switchover(logs: Callable[[Node], str], old: Node, new: Node, t_fault: float,
               marks: dict[str, float | None]) -> list[Phase]:
    """The phases found in the old and new leader's Patroni output after ``t_fault``, with ``marks`` (pgha's
    and the client's own moments, epoch seconds), in time order."""
    lines = {"old": log_times(logs(old), t_fault), "new": log_times(logs(new), t_fault)}
    found = [Phase(name, at - t_fault) for name, at in marks.items() if at is not None]
    for name, whose, pattern in PHASES:
        at = next((t for t, line in lines[whose] if pattern.search(line)), None)
        if at is not None:
            found.append(Phase(name, at - t_fault))
    return sorted(found, key=lambda p: p.at)


def render(phases: list[Phase]) -> list[str]:
    """One line per phase: seconds since the fault and since the phase before."""
    out, prev = [], 0.0
    for p in phases:
        out.append(f"+{p.at:6.2f} s  (+{p.at - prev:5.2f})  {p.name}")
        prev = p.at
    return out
