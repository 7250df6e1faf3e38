"""`pgha restart --rolling`: PostgreSQL restarted on every node with the primary's role kept available.

The order autobase and CloudNativePG use: the replicas first, one at a time, each streaming again (and, in
synchronous mode, a synchronous standby named) before the next; then a switchover to a replica — the one
switchover operation, :meth:`pgha.ops.Operations.switchover` — and last the old primary, now a replica.
Through Patroni's REST API only, so the lab and servers alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pgha import poll
from pgha.errors import UsageError, pgha_command
from pgha.ops import Operations
from pgha.probe.patroni import PatroniMember
from pgha.probe.snapshot import ClusterSnapshot

RESTART_TIMEOUT = 120.0
WHOLE_WAIT = 15.0
"""Seconds to see the cluster whole before refusing to start."""


def _whole(snap: ClusterSnapshot) -> bool:
    return snap.whole


def _candidate(snap: ClusterSnapshot) -> str:
    """Who takes over: the synchronous standby in synchronous mode (the only one Patroni promotes), else
    the replica with the least lag."""
    if snap.sync_standbys:
        return snap.sync_standbys[0]
    return min(snap.replicas, key=lambda m: (m.lag_mb if m.lag_mb is not None else float("inf"), m.name)).name


def rolling_restart(ops: Operations, pending_only: bool = False, say: Callable[[str], None] = lambda _: None,
                    timeout: float = RESTART_TIMEOUT) -> str:
    """Restart PostgreSQL on every member (``pending_only``: those with a pending restart), replicas first,
    the primary after a switchover; a sentence saying what was done."""
    try:  # one snapshot can miss a busy node's answer: a few seconds to see the cluster whole
        snap = ops.wait("a whole cluster", _whole, WHOLE_WAIT)
    except poll.TimedOut as exc:
        raise UsageError(f"the cluster is not whole: {exc.reason}",
                         hint=f"a rolling restart takes one member out at a time: heal it first "
                              f"(`{pgha_command('doctor')}`)") from None
    if snap.paused:
        raise UsageError("the cluster is paused: the switchover of a rolling restart needs Patroni's care",
                         hint=f"`{pgha_command('resume')}` first")
    assert snap.leader is not None

    def wanted(m: PatroniMember) -> bool:
        return m.pending_restart or not pending_only

    t0 = time.monotonic()
    done: list[str] = []
    # The synchronous standby last of the replicas: the others are streaming again by then, so the leader
    # has one to name synchronous instead.
    for m in sorted(snap.replicas, key=lambda m: (m.name in snap.sync_standbys, m.name)):
        if wanted(m):
            say(f"restarting {m.name} (replica)")
            _restart(ops, m.name, timeout)
            done.append(m.name)
    old = snap.leader
    switched = ""
    if wanted(old):
        cand = _candidate(ops.snapshot())
        say(f"switchover from {old.name} to {cand}")
        switched = ops.switchover(cand, timeout=timeout)
        say(f"restarting {old.name} (the old primary, now a replica)")
        _restart(ops, old.name, timeout)
        done.append(old.name)
    if not done:
        return "nothing to restart: no member has a pending restart"
    leader = ops.snapshot().leader
    return (f"rolling restart of {', '.join(done)} done in {time.monotonic() - t0:.1f} s; "
            f"leader {leader.name if leader else '?'}" + (f" ({switched})" if switched else ""))


def _restart(ops: Operations, name: str, timeout: float) -> None:
    """One member restarted through Patroni, then the whole cluster back (it streams again) before anything
    else is touched. Meanwhile the HA loops are woken every second: when the synchronous standby stops,
    the leader's commits wait until its next cycle names another one, up to loop_wait later otherwise."""
    stop = threading.Event()

    def wake() -> None:
        while not stop.wait(1.0):
            ops.prober.wake_up()

    waker = threading.Thread(target=wake, name="rolling-wake", daemon=True)
    waker.start()
    try:
        ops.restart([name], timeout=timeout)
        ops.wait(f"{name} streaming again after its restart", _whole, timeout)
    finally:
        stop.set()
        waker.join(5)
