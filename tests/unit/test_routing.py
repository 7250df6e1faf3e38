"""The switchover's routing through HAProxy's runtime API: what each HAProxy is told and when — held as
Patroni is asked, routed to the promoted leader only, released on every other way out."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from pgha import etcd_leader, routing
from pgha import spec as spec_mod
from pgha.errors import PghaError
from pgha.lab.transport import NetnsTransport
from pgha.ops import Operations
from pgha.spec import Node
from pgha.transport.base import UNIX_CLIENT, CommandResult
from tests.unit.fakes import CREDS, FakeProber, FakeTransport, snapshot

SPEC = spec_mod.parse(spec_mod.default_data(lab=True))


class Runtime(FakeTransport):
    """Records the runtime API line each HAProxy node got; some nodes answer an error."""

    def __init__(self, failing: dict[str, CommandResult] | None = None) -> None:
        super().__init__()
        self.lines: list[tuple[str, str, str]] = []
        self.failing = failing or {}

    def run(self, node: Node, argv: list[str], *, timeout: float = 60, user: str | None = None) -> CommandResult:
        assert argv[:4] == ["/usr/bin/python3", "-I", "-S", "-c"] and argv[4] == UNIX_CLIENT
        self.lines.append((node.name, argv[5], argv[6]))
        return self.failing.get(node.name, CommandResult(tuple(argv), 0, "\n", ""))


def told(t: Runtime) -> set[str]:
    return {line for _, _, line in t.lines}


def test_hold_route_release_lines_reach_every_haproxy_at_its_admin_socket() -> None:
    t = Runtime()
    router = routing.Router(SPEC, t, lambda n: f"/lab/{n.name}")
    assert router.hold() == {}
    assert {(n, s) for n, s, _ in t.lines} == {
        (f"haproxy-0{i}", f"/lab/haproxy-0{i}/run/pgha/haproxy.sock") for i in (1, 2, 3)}
    assert told(t) == {"set server postgres_primary/postgresql-01 state drain; "
                       "set server postgres_primary/postgresql-02 state drain; "
                       "set server postgres_primary/postgresql-03 state drain"}
    t.lines.clear()
    router.route("postgresql-02")
    assert told(t) == {"set server postgres_primary/postgresql-02 health up; "
                       "set server postgres_primary/postgresql-02 state ready; "
                       "set server postgres_primary/postgresql-01 health down; "
                       "set server postgres_primary/postgresql-03 health down; "
                       "set server postgres_primary/postgresql-01 state ready; "
                       "set server postgres_primary/postgresql-03 state ready; "
                       "set server postgres_replicas/postgresql-02 health down"}
    t.lines.clear()
    router.release()
    assert told(t) == {"; ".join(f"set server postgres_primary/postgresql-0{i} state ready" for i in (1, 2, 3))}


def test_an_haproxy_that_answers_an_error_or_fails_is_named() -> None:
    t = Runtime({"haproxy-02": CommandResult((), 0, "No such server.\n", ""),
                 "haproxy-03": CommandResult((), 1, "", "Traceback...\nConnectionRefusedError: [Errno 111]")})
    errors = routing.Router(SPEC, t, lambda n: "").hold()
    assert errors == {"haproxy-02": "RuntimeError: No such server.",
                      "haproxy-03": "PghaError: haproxy-03: /run/pgha/haproxy.sock: ConnectionRefusedError: "
                                    "[Errno 111]"}
    assert routing.failed("hold", {"haproxy-02": errors["haproxy-02"]}) == (
        "; hold not told to haproxy-02 (RuntimeError: No such server.) (its health checks route there)")


def test_the_lab_speaks_to_an_admin_socket_in_process(tmp_path: Path) -> None:
    """The lab's nodes share this machine's filesystem: no namespace, no process for a unix socket."""
    path = str(tmp_path / "haproxy.sock")
    heard: list[bytes] = []
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                heard.append(conn.recv(1024))
                conn.sendall(b"No such server.\n")

        t = threading.Thread(target=answer)
        t.start()
        assert NetnsTransport(SPEC).unix_socket(SPEC.node("haproxy-01"), path, "set server x/y state drain") == \
            "No such server.\n"
        t.join()
    assert heard == [b"set server x/y state drain\n"]
    with pytest.raises(PghaError, match=r"haproxy-01: .*haproxy.sock: \[Errno 111\] Connection refused"):
        NetnsTransport(SPEC).unix_socket(SPEC.node("haproxy-01"), path, "show info")


class Steps(routing.Router):
    """A router that records its steps in a shared list (with Patroni's)."""

    def __init__(self, steps: list[str]) -> None:
        self.steps = steps

    def hold(self) -> dict[str, str]:
        self.steps.append("hold")
        return {}

    def route(self, leader: str) -> dict[str, str]:
        self.steps.append(f"route {leader}")
        return {}

    def release(self) -> dict[str, str]:
        self.steps.append("release")
        return {"haproxy-03": "down"}


def test_handover_holds_as_it_asks_and_routes_the_promoted_leader() -> None:
    steps: list[str] = []
    looks: list[str] = []

    def ask() -> tuple[int, Any]:
        steps.append("ask")
        return 200, "Successfully switched over"

    def promoted() -> str | None:  # a few looks in vain, then (once Patroni was asked) the new leader
        looks.append("look")
        return "postgresql-02" if len(looks) > 2 and "ask" in steps else None

    done = routing.handover(Steps(steps), ask, promoted, timeout=5)
    assert sorted(steps[:2]) == ["ask", "hold"] and steps[2:] == ["route postgresql-02"]
    assert (done.code, done.leader, done.notes) == (200, "postgresql-02", "")
    assert done.routed_at is not None


def test_handover_releases_when_patroni_refuses_or_nothing_is_promoted() -> None:
    steps: list[str] = []
    done = routing.handover(Steps(steps), lambda: (412, "candidate is lagging"), lambda: None, timeout=5)
    assert steps == ["hold", "release"] and (done.code, done.leader) == (412, None)
    assert done.notes == "; release not told to haproxy-03 (down) (its health checks route there)"
    steps.clear()

    def broken() -> tuple[int, Any]:
        raise ConnectionError("reset by peer")

    done = routing.handover(Steps(steps), broken, lambda: None, timeout=0.3)  # looks on until the deadline
    assert steps == ["hold", "release"] and done.code is None and "ConnectionError: reset by peer" in done.answer


def test_handover_releases_when_interrupted() -> None:
    steps: list[str] = []

    def interrupted() -> str | None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        routing.handover(Steps(steps), lambda: (200, ""), interrupted, timeout=5)
    assert steps[0] == "hold" and steps[-1] == "release"


def test_switchover_with_a_router_holds_asks_and_routes_the_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etcd_leader, "operator_gateway", lambda spec, creds: None)
    monkeypatch.setattr(etcd_leader, "move", lambda gw, away_from: "etcd left")
    steps: list[str] = []
    promoted = snapshot(SPEC, leader="postgresql-02", streaming=["postgresql-03"], routes_to="postgresql-02")
    prober = FakeProber(SPEC, [snapshot(SPEC), promoted])
    # The candidate holds the key but PostgreSQL is still in recovery until Patroni was asked: then promoted.
    prober.answers[("GET", "/primary")] = lambda body: (200, {"role": "primary" if "ask" in steps else "replica"})
    prober.answers[("POST", "/switchover")] = lambda body: steps.append("ask") or (200, "ok")
    o = Operations(SPEC, CREDS, None, prober=prober, router=Steps(steps))
    assert o.switchover("postgres-02") == (
        "switchover done: postgresql-02 is the leader (HAProxy routes to it), postgresql-01 rejoins as a replica "
        "(`pgha status` shows it streaming); etcd left")
    assert sorted(steps[:2]) == ["ask", "hold"] and steps[2:] == ["route postgresql-02"]
    assert {c[0] for c in prober.calls if c[2] == "/primary"} == {"postgres-02"}  # only the candidate is asked
