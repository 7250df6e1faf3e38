"""The switchover timeline from the old and new leader's own log lines (captured from a seed-profile lab
switchover): each phase found at its offset from the fault, in time order, with pgha's own marks."""

from __future__ import annotations

import calendar
import time

from pgha import spec as spec_mod
from pgha.drill import timeline

SPEC = spec_mod.parse(spec_mod.default_data(lab=True))
OLD, NEW = SPEC.node("postgres-01"), SPEC.node("postgres-02")
OLD_LOG = "\n".join([
    '2026-11-30 13:40:44,596 INFO: received switchover request with leader=postgresql-01 candidate=postgresql-02',
    '2026-11-30 13:40:44,866 INFO: Demoting self (graceful)',
    '2026-11-30 13:40:44.938 UTC [12582] LOG:  checkpoint starting: immediate force wait',
    '2026-11-30 13:40:45.038 UTC [12523] LOG:  database system is shut down',
    '2026-11-30 13:40:47,210 INFO: Leader key released',
    '2026-11-30 13:40:47,308 INFO: Lock owner: postgresql-02; I am postgresql-01',
    '2026-11-30 13:40:48,312 INFO: Lock owner: postgresql-02; I am postgresql-01',
    '2026-11-30 13:40:48,541 INFO: Lock owner: postgresql-02; I am postgresql-01',
    '2026-11-30 13:40:49,075 INFO: Lock owner: postgresql-02; I am postgresql-01',
    '2026-11-30 13:40:50.324 UTC [22314] LOG:  database system is ready to accept read-only connections',
    '2026-11-30 13:40:50.356 UTC [22321] LOG:  started streaming WAL from primary at 0/4000000 on timeline 9',
])
NEW_LOG = "\n".join([
    '2026-11-30 13:40:47,199 INFO: no action. I am (postgresql-02), a secondary, and following a leader',
    '2026-11-30 13:40:47,308 INFO: Cleaning up failover key after acquiring leader lock...',
    '2026-11-30 13:40:47.435 UTC [13795] LOG:  received promote request',
    '2026-11-30 13:40:47,433 INFO: promoted self to leader by acquiring session lock',
    '2026-11-30 13:40:47.514 UTC [13795] LOG:  archive recovery complete',
    '2026-11-30 13:40:47.531 UTC [13750] LOG:  database system is ready to accept connections',
    '2026-11-30 13:40:48,642 INFO: no action. I am (postgresql-02), the leader with the lock',
    '2026-11-30 13:40:49,130 INFO: no action. I am (postgresql-02), the leader with the lock',
])
FAULT = calendar.timegm(time.strptime("2026-11-30 13:40:44", "%Y-%m-%d %H:%M:%S")) + 0.5


def test_each_phase_at_its_offset_from_the_fault_in_time_order() -> None:
    logs = {OLD: OLD_LOG, NEW: NEW_LOG}
    phases = timeline.switchover(logs.__getitem__, OLD, NEW, FAULT,
                                 {"pgha: every HAProxy routes to the new leader": FAULT + 3.2, "unseen": None})
    assert [(p.name, round(p.at, 3)) for p in phases] == [
        ("request received by Patroni", 0.096),
        ("demote started", 0.366),
        ("CHECKPOINT", 0.438),
        ("old primary shut down", 0.538),
        ("leader key released", 2.71),
        ("leader key taken by the candidate", 2.808),
        ("promote requested", 2.935),
        ("end of recovery", 3.014),
        ("new primary accepts writes", 3.031),
        ("pgha: every HAProxy routes to the new leader", 3.2),
        ("old leader streams again", 5.856),
    ]
    assert timeline.render(phases[:2]) == ["+  0.10 s  (+ 0.10)  request received by Patroni",
                                           "+  0.37 s  (+ 0.27)  demote started"]


def test_lines_before_the_fault_and_unknown_wording_are_left_out() -> None:
    phases = timeline.switchover(lambda n: OLD_LOG if n == OLD else "garbage without a time", OLD, NEW,
                                 FAULT + 10, {})
    assert [p.name for p in phases] == []
