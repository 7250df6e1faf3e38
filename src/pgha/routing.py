"""Where HAProxy sends the primary's clients during a planned switchover, told through its runtime API.

HAProxy's health checks notice a switchover only at their next check, and the first checks after it
can disagree with the truth: the demoted primary restarts as a read-only standby and stays UP until
``fall`` checks failed (seconds with the seed's ``inter 3s fall 3``), and the candidate answers 200 on
``/primary`` as soon as it holds the leader key, a moment before PostgreSQL has left recovery. A client
routed in either window gets SQLSTATE 25006. pgha owns the switchover, so it tells every HAProxy itself:

1. **hold**: every server of the primary backend drained (no new connection; sessions in flight go on
   until Patroni shuts the old primary down) — as Patroni is asked, seconds before anyone else can hold
   the leader key or the old primary restarts read-only;
2. **route**: once the new leader's Patroni says it holds the leader key *and* PostgreSQL is out of
   recovery (``GET /primary``: 200 with role primary), it is forced UP and made ready, every other server
   forced DOWN (``on-marked-down shutdown-sessions`` closes what was left on them) and made ready;
   the checks go on as before, and would mark a wrongly routed server down at their pace;
3. **release** (every exit path where no new leader was routed): every server made ready again, its
   health left to the checks — the routing of before the switchover.

The runtime API is HAProxy's admin socket (a unix socket, mode 0600, root's: rendered haproxy.cfg),
reached on each HAProxy node through the Transport (:meth:`~pgha.transport.base.Transport.unix_socket`) — no TCP
listener.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from pgha.layout import NodeLayout
from pgha.probe.bounded import NoAnswer, gather
from pgha.probe.haproxy import PRIMARY_BACKEND, REPLICA_BACKEND
from pgha.spec import ClusterSpec, Node
from pgha.transport.base import Transport

if TYPE_CHECKING:
    from pgha.target import Target

RUNTIME_TIMEOUT = 3.0
"""Seconds for one HAProxy's commands (a command through SSH included)."""


class Router:
    """Every HAProxy node's runtime API, for the primary backend's servers (Patroni member names)."""

    def __init__(self, spec: ClusterSpec, transport: Transport, root_of: Callable[[Node], str]) -> None:
        self.spec, self.transport, self.root_of = spec, transport, root_of

    def socket(self, node: Node) -> str:
        return NodeLayout(self.spec, node, self.root_of(node)).haproxy_socket

    def _one(self, node: Node, line: str) -> str:
        # HAProxy answers every command of the line (non-interactive mode), then closes; `set server`
        # answers nothing when it did what it was told.
        answer = self.transport.unix_socket(node, self.socket(node), line, RUNTIME_TIMEOUT).strip()
        if answer:
            raise RuntimeError(answer.splitlines()[0])
        return answer

    def send(self, commands: list[str]) -> dict[str, str]:
        """The commands on every HAProxy node at once; the nodes that failed, with why."""
        line = "; ".join(commands)
        done = gather({n.name: partial(self._one, n, line) for n in self.spec.haproxy_nodes}, RUNTIME_TIMEOUT + 1)
        return {name: str(r) for name, r in done.items() if isinstance(r, NoAnswer)}

    @property
    def servers(self) -> list[str]:
        return [n.member_name for n in self.spec.postgres_nodes]

    def hold(self) -> dict[str, str]:
        """No new connection to any server of the primary backend (sessions in flight go on)."""
        return self.send([f"set server {PRIMARY_BACKEND}/{s} state drain" for s in self.servers])

    def route(self, leader: str) -> dict[str, str]:
        """New connections of the primary backend to ``leader`` only, at once; the replicas' backend
        stops offering it."""
        others = [s for s in self.servers if s != leader]
        return self.send([f"set server {PRIMARY_BACKEND}/{leader} health up",
                          f"set server {PRIMARY_BACKEND}/{leader} state ready",
                          *(f"set server {PRIMARY_BACKEND}/{s} health down" for s in others),
                          *(f"set server {PRIMARY_BACKEND}/{s} state ready" for s in others),
                          f"set server {REPLICA_BACKEND}/{leader} health down"])

    def release(self) -> dict[str, str]:
        """Every server of the primary backend ready again, its health the checks' (as before :meth:`hold`)."""
        return self.send([f"set server {PRIMARY_BACKEND}/{s} state ready" for s in self.servers])


def for_target(target: Target) -> Router:
    """The router of the target's HAProxy nodes (their admin sockets under the target's roots)."""
    return Router(target.spec, target.transport, target.root)


def failed(what: str, errors: dict[str, str]) -> str:
    """A clause naming the HAProxy nodes a step could not tell, or ''."""
    if not errors:
        return ""
    return f"; {what} not told to " + ", ".join(f"{n} ({why})" for n, why in sorted(errors.items())) + \
        " (its health checks route there)"


@dataclass(frozen=True)
class Handover:
    """What a routed switchover saw: Patroni's answer, the new leader HAProxy was told of (and when),
    and the HAProxy nodes that could not be told."""

    code: int | None
    answer: Any
    leader: str | None
    held_at: float
    routed_at: float | None
    notes: str


PROMOTED_INTERVAL = 0.05
"""Seconds between two looks for the promoted leader: HAProxy hears of it within this much."""


def handover(router: Router, ask: Callable[[], tuple[int, Any]], promoted: Callable[[], str | None],
             timeout: float) -> Handover:
    """``ask`` Patroni (in the background: its answer comes up to a second after the leader key moved) and
    hold every HAProxy meanwhile, route to the member ``promoted`` names as soon as it names one, release
    on any other way out — Patroni's refusal, a timeout, an exception, an interrupt.

    The hold goes out with the request, not before it: Patroni takes ~0.3 s to start demoting and seconds
    more before anyone else holds the key or the old primary restarts read-only, so the hold is in place
    long before either, and the old primary's last writes are not cut short by it."""
    answer: list[tuple[int, Any] | BaseException] = []

    def call() -> None:
        try:
            answer.append(ask())
        except Exception as exc:  # noqa: BLE001 - Patroni's own outcome is still looked for
            answer.append(exc)

    asking = threading.Thread(target=call, name="switchover-request", daemon=True)
    leader = routed_at = None
    deadline = time.monotonic() + timeout
    notes, held_at = "", time.time()
    try:
        asking.start()
        notes = failed("hold", router.hold())
        held_at = time.time()
        while time.monotonic() < deadline:
            leader = promoted()
            if leader is not None:
                notes += failed("routing", router.route(leader))
                routed_at = time.time()
                break
            if answer and not isinstance(answer[0], BaseException) and answer[0][0] not in (200, 202):
                break  # Patroni refused: nothing will be promoted
            time.sleep(PROMOTED_INTERVAL)
        asking.join(max(0.0, deadline - time.monotonic()))
    finally:
        if routed_at is None:
            notes += failed("release", router.release())
    if not answer:
        return Handover(None, f"no answer within {timeout:g} s", leader, held_at, routed_at, notes)
    if isinstance(answer[0], BaseException):
        return Handover(None, f"{type(answer[0]).__name__}: {answer[0]}", leader, held_at, routed_at, notes)
    return Handover(answer[0][0], answer[0][1], leader, held_at, routed_at, notes)
