"""Day-2 operations through Patroni's REST API (TLS verified against the CA, authenticated), each
waiting for its outcome. Works through the spec's addresses only, so the lab and real servers alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg
import pydantic
import yaml

from pgha import etcd_leader, poll, routing
from pgha.errors import PghaError, UsageError, pgha_command
from pgha.probe import Credentials
from pgha.probe import pg as pg_probe
from pgha.probe.bounded import gather
from pgha.probe.cluster import Prober
from pgha.probe.patroni import PatroniApi, PatroniMember
from pgha.probe.snapshot import ClusterSnapshot
from pgha.spec import ClusterSpec, Dcs, Node
from pgha.transport.base import Transport

API_TIMEOUT = 3.0
"""Seconds for a REST call that reads (config, history, metrics); changes state their own."""


class Operations:
    """One cluster's operations; every method returns a sentence saying what happened."""

    def __init__(self, spec: ClusterSpec, creds: Credentials, transport: Transport | None = None,
                 prober: Prober | None = None, router: routing.Router | None = None) -> None:
        self.spec, self.creds, self.transport = spec, creds, transport
        self.prober = prober or Prober(spec, creds, transport)
        self.router = router
        """HAProxy's runtime API (pgha.routing); None: a switchover leaves the routing to the checks."""
        self.last_handover: routing.Handover | None = None
        """What the last routed switchover saw (the drills' timeline reads its moments)."""

    # -- helpers ------------------------------------------------------------------------------
    def snapshot(self) -> ClusterSnapshot:
        return self.prober.snapshot()

    def api(self, node: Node) -> PatroniApi:
        return self.prober.api(node, API_TIMEOUT)

    def pg_node(self, name: str) -> Node:
        """A PostgreSQL node of the spec by node or member name; UsageError for any other name."""
        node = self.spec.node(name)
        if not node.is_postgres:
            raise UsageError(f"{node.name} is not a PostgreSQL node")
        return node

    def member(self, snap: ClusterSnapshot, name: str) -> PatroniMember:
        node = self.pg_node(name)
        for m in snap.members:
            if m.name == node.member_name:
                return m
        raise UsageError(f"{node.name} ({node.member_name}) is not a member of the cluster right now",
                         hint=f"is Patroni running there? see `{pgha_command('status')}`")

    def leader_api(self, snap: ClusterSnapshot) -> tuple[PatroniMember, PatroniApi]:
        if snap.leader is None:
            raise PghaError("the cluster has no leader right now", hint=f"see `{pgha_command('status')}`")
        return snap.leader, self.api(self.spec.node(snap.leader.name))

    def any_api(self) -> PatroniApi:
        snap = self.snapshot()
        if snap.leader is not None:
            return self.api(self.spec.node(snap.leader.name))
        for m in snap.members:
            if m.is_running:
                return self.api(self.spec.node(m.name))
        raise PghaError("no Patroni REST API answers", hint=f"see `{pgha_command('status')}`")

    def wait(self, what: str, check: Callable[[ClusterSnapshot], bool], timeout: float) -> ClusterSnapshot:
        """Snapshots until ``check`` holds for one; that one. On timeout the last one is the reason."""
        last: list[ClusterSnapshot] = []

        def reached() -> tuple[bool, str]:
            last[:] = [self.snapshot()]
            return check(last[0]), last[0].describe()

        poll.until(what, reached, timeout, interval=0.5,
                   hint=f"see `{pgha_command('status')}` and `{pgha_command('logs', 'NODE', 'patroni')}`")
        return last[0]

    @staticmethod
    def _expect(code: int, body: Any, what: str, ok: tuple[int, ...] = (200,)) -> None:
        if code not in ok:
            raise PghaError(f"{what} refused by Patroni (HTTP {code}): {str(body).strip()}")

    # -- switchover / failover ------------------------------------------------------------------
    def check_candidate(self, snap: ClusterSnapshot, name: str) -> PatroniMember:
        """The guard rails: refuse with the reason instead of letting Patroni half-do it."""
        cand = self.member(snap, name)
        if cand.is_leader:
            raise UsageError(f"{cand.name} is already the leader")
        if not cand.is_running:
            raise UsageError(f"{cand.name} is not running (state {cand.state}): it cannot take over")
        if cand.tags.get("nofailover"):
            raise UsageError(f"{cand.name} is tagged nofailover: it must never be promoted")
        sync = snap.sync_standbys
        if sync and cand.name not in sync:
            raise UsageError(f"{cand.name} is not the synchronous standby ({', '.join(sync)}): in synchronous "
                             "mode only it is guaranteed to have every acknowledged write")
        max_lag = (snap.config or Dcs()).maximum_lag_on_failover  # the live value; Patroni's default unseen
        if cand.lag_mb is None or cand.lag_mb * 1048576 > max_lag:
            raise UsageError(f"{cand.name} lags {cand.lag_mb} MB, beyond maximum_lag_on_failover "
                             f"({max_lag} bytes): promoting it would lose data")
        return cand

    def switchover(self, candidate: str | None = None, at: str | None = None, timeout: float = 60) -> str:
        if candidate:
            self.pg_node(candidate)  # a wrong name is named before the cluster is asked anything
        snap = self.snapshot()
        if snap.paused:
            raise UsageError("the cluster is paused: a switchover would not be followed by Patroni's care",
                             hint=f"`{pgha_command('resume')}` first")
        leader, api = self.leader_api(snap)
        body: dict[str, Any] = {"leader": leader.name}
        if candidate:
            body["candidate"] = self.check_candidate(snap, candidate).name
        if at:
            body["scheduled_at"] = at
            status, scheduled = api.call("POST", "/switchover", body, timeout=timeout)
            self._expect(status, scheduled, "switchover", (200, 202))
            return f"switchover scheduled at {at}: {scheduled}"
        ask = partial(api.call, "POST", "/switchover", body, timeout=timeout)
        code: int | None
        notes = ""
        if self.router is None:
            code, answer = ask()
        else:
            others = {m.name: self.prober.api(self.spec.node(m.name), 0.5) for m in snap.members
                      if m.name != leader.name and (not candidate or m.name == body["candidate"])}
            with contextlib.ExitStack() as kept:
                for other in others.values():
                    kept.enter_context(other.kept_alive())
                done = self.last_handover = routing.handover(self.router, ask, partial(self.promoted, others),
                                                             timeout)
            code, answer, notes = done.code, done.answer, done.notes
        if code is None:
            raise PghaError(f"switchover: Patroni did not answer: {answer}{notes}",
                            hint=f"see `{pgha_command('status')}` and `{pgha_command('logs', leader.name, 'patroni')}`")
        self._expect(code, answer, "switchover", (200, 202))
        # Done when clients are served: the new leader runs and every HAProxy routes to it alone. The old
        # leader rejoins later than that — stock Patroni sleeps 2 s after releasing the key before it
        # starts the demoted PostgreSQL as a replica — so it is reported, not waited for.
        snap = self.wait("switchover", lambda s: s.leader is not None and s.leader.name != leader.name
                         and (not candidate or s.leader.name == body["candidate"]) and s.leader.is_running
                         and s.routes_to(s.leader.name), timeout)
        assert snap.leader is not None
        old = next((m for m in snap.members if m.name == leader.name), None)
        rejoin = f"{leader.name} streams from it" if old is not None and old.state == "streaming" else \
            f"{leader.name} rejoins as a replica (`{pgha_command('status')}` shows it streaming)"
        return (f"switchover done: {snap.leader.name} is the leader (HAProxy routes to it), {rejoin}{notes}; "
                f"{self.etcd_leader_off_quietly(snap)}")

    def rejoined(self, timeout: float = 60) -> ClusterSnapshot:
        """Until every member streams behind the leader: what a switchover does not wait for (the old
        leader rejoining), for whoever acts next on the whole cluster."""
        return self.wait("every member streaming", ClusterSnapshot.healthy, timeout)

    @staticmethod
    def promoted(members: dict[str, PatroniApi]) -> str | None:
        """The one of ``members`` (name -> its REST API) that holds the leader key with PostgreSQL out of
        recovery (Patroni's ``/primary``: 200 and role primary), or None."""
        def primary(api: PatroniApi) -> bool:
            code, body = api.get("/primary")
            return code == 200 and isinstance(body, dict) and body.get("role") in ("primary", "master")

        seen = gather({m: partial(primary, api) for m, api in members.items()}, 0.6)
        return next((m for m, ok in seen.items() if ok is True), None)

    def failover(self, candidate: str, timeout: float = 60) -> str:
        self.pg_node(candidate)
        snap = self.snapshot()
        cand = self.member(snap, candidate)
        if not cand.is_running:
            raise UsageError(f"{cand.name} is not running (state {cand.state})")
        api = self.api(self.spec.node(cand.name))
        code, answer = api.call("POST", "/failover", {"candidate": cand.name}, timeout=timeout)
        self._expect(code, answer, "failover", (200, 202))
        snap = self.wait("failover", lambda s: s.leader is not None and s.leader.name == cand.name
                         and s.routes_to(cand.name), timeout)
        return f"failover done: {cand.name} is the leader (HAProxy routes to it); {self.etcd_leader_off_quietly(snap)}"

    # -- etcd's leadership (pgha.etcd_leader says why) ----------------------------------------------
    def move_etcd_leader(self, to: str | None = None, snap: ClusterSnapshot | None = None) -> str:
        """etcd's leadership onto node ``to``, or (by default) off the Patroni leader's node."""
        target = self.pg_node(to).member_name if to is not None else None
        snap = snap or self.snapshot() if to is None else None
        return move_etcd_leader(self.spec, self.creds, snap, to=target)

    def etcd_leader_off_quietly(self, snap: ClusterSnapshot) -> str:
        """After an operation that moved Patroni's leader: the move, or why not — never a failure of it."""
        try:
            return self.move_etcd_leader(snap=snap)
        except PghaError as exc:
            return f"{exc} — run `{pgha_command('etcd', 'move-leader')}`"


    # -- pause / resume / restart / reload / reinit -------------------------------------------
    def set_pause(self, paused: bool, timeout: float = 30) -> str:
        code, answer = self.any_api().call("PATCH", "/config", {"pause": paused})
        self._expect(code, answer, "pause" if paused else "resume")
        self.wait("pause" if paused else "resume", lambda s: s.paused == paused, timeout)
        return f"cluster paused: no automatic failover until `{pgha_command('resume')}`" if paused else \
            "cluster resumed: automatic failover is on"

    def restart(self, nodes: list[str], pending_only: bool = False, timeout: float = 120) -> str:
        for name in nodes:
            self.pg_node(name)
        snap = self.snapshot()
        done = []
        for name in nodes:
            m = self.member(snap, name)
            if pending_only and not m.pending_restart:
                continue
            body = {"restart_pending": True} if pending_only else {}
            code, answer = self.api(self.spec.node(m.name)).call("POST", "/restart", body, timeout=timeout)
            self._expect(code, answer, f"restart of {m.name}")
            done.append(m.name)
        self.wait("restart", ClusterSnapshot.healthy, timeout)
        return f"restarted PostgreSQL on {', '.join(done)}" if done else "nothing to restart"

    def reload(self) -> str:
        for node in self.spec.postgres_nodes:
            code, answer = self.api(node).call("POST", "/reload")
            self._expect(code, answer, f"reload on {node.name}", (200, 202))
        return f"configuration reloaded on {len(self.spec.postgres_nodes)} nodes"

    def reinit(self, name: str, timeout: float = 180) -> str:
        self.pg_node(name)
        snap = self.snapshot()
        m = self.member(snap, name)
        if m.is_leader:
            raise UsageError(f"{m.name} is the leader: reinit rebuilds a replica from the leader")
        api = self.api(self.spec.node(m.name))
        started = self._postmaster_start(api)
        code, answer = api.call("POST", "/reinitialize", {"force": True})
        self._expect(code, answer, f"reinit of {m.name}")
        # Patroni rebuilds in the background: "healthy" only counts once a new postmaster runs there
        # (the old one still streams for a moment after the call returns).
        self.wait("reinit", lambda s: self._postmaster_start(api) not in (None, started) and s.healthy(),
                  timeout)
        return f"{m.name} rebuilt from the leader and streaming"

    @staticmethod
    def _postmaster_start(api: PatroniApi) -> str | None:
        try:
            code, body = api.get("/patroni")
        except Exception:  # the REST API may blink while PostgreSQL is rebuilt
            return None
        if code not in (200, 503) or not isinstance(body, dict) or body.get("state") != "running":
            return None  # stopping, creating a replica, starting: no postmaster to speak of
        return str(body.get("postmaster_start_time") or "") or None

    # -- DCS configuration ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        code, body = self.any_api().get("/config")
        self._expect(code, body, "reading the configuration")
        return dict(body)

    def set_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change Patroni's dynamic configuration, refused first if the result breaks the spec's rules
        for these keys (:class:`pgha.spec.Dcs`: one copy of them)."""
        merged = {**self.config(), **changes}
        try:
            problems = Dcs.live(merged).problems()
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            problems = [(".".join(str(p) for p in first["loc"]), f"{first['msg']} (got {first['input']!r})")]
        if problems:
            key, problem = problems[0]
            raise UsageError(f"{key or 'config'}: {problem}", hint=f"see `{pgha_command('config', 'show')}`")
        code, body = self.any_api().call("PATCH", "/config", changes)
        self._expect(code, body, "configuration change")
        return dict(body)

    def set_sync(self, on: bool, strict: bool = False, timeout: float = 60) -> str:
        self.set_config({"synchronous_mode": on, "synchronous_mode_strict": strict and on})

        def reached(snap: ClusterSnapshot) -> bool:
            # Both PostgreSQL (pg_stat_replication) and the DCS (/sync key, shown as the sync_standby role):
            # until the key names a standby, no replica may be promoted — a crash then leaves no leader.
            states = {r[2] for r in self.lag()}
            return ("sync" in states) == on and bool(snap.sync_standbys) == on
        self.wait("synchronous mode", reached, timeout)
        return "synchronous mode on" + (" (strict)" if strict else "") if on else "synchronous mode off"

    # -- full reset ---------------------------------------------------------------------------
    def vip_clients(self) -> list[tuple[Any, ...]]:
        """Client sessions that came in through HAProxy (their address is an HAProxy node's), on any
        PostgreSQL node: right after a switchover HAProxy may still hold sessions on the old primary."""
        proxies = [str(n.address) for n in self.spec.haproxy_nodes]
        found: list[tuple[Any, ...]] = []
        for node in self.spec.postgres_nodes:
            try:
                found += pg_probe.query(str(node.address), self.spec.ports.postgresql, self.creds,
                                        "select pid, usename, host(client_addr), application_name "
                                        "from pg_stat_activity where backend_type = 'client backend' "
                                        "and pid <> pg_backend_pid() and host(client_addr) = any(%s)", (proxies,),
                                        superuser=True)
            except psycopg.Error:
                continue  # a node that is down has no clients
        return found

    def reset(self, plans: list[Any], reporter: Any = None, force: bool = False) -> str:
        """Wipe etcd and PostgreSQL data and rebuild the cluster (seed section 18)."""
        from pgha.orchestrate import Orchestrator

        if self.transport is None:
            raise UsageError("reset needs a transport to reach the nodes (the lab, or SSH for servers)")
        if not force:
            clients = self.vip_clients()
            if clients:
                who = ", ".join(f"{u}@{a} (pid {p})" for p, u, a, _ in clients[:5])
                raise UsageError(f"{len(clients)} client(s) connected through the VIP: {who}",
                                 hint="disconnect them first, or pass --force")
        timings = Orchestrator(self.spec, self.transport, reporter, self.creds).reset(plans)
        return f"cluster rebuilt from nothing in {timings.total:.1f} s (certificates kept)"

    # -- monitoring ---------------------------------------------------------------------------
    def lag(self) -> list[tuple[Any, ...]]:
        """(client address, state, sync_state, replay lag bytes) from pg_stat_replication on the leader."""
        snap = self.snapshot()
        leader, _ = self.leader_api(snap)
        node = self.spec.node(leader.name)
        return pg_probe.query(str(node.address), self.spec.ports.postgresql, self.creds,
                              "select host(client_addr), state, sync_state, "
                              "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
                              "from pg_stat_replication order by 1", superuser=True)

    def history(self) -> list[Any]:
        code, body = self.any_api().get("/history")
        self._expect(code, body, "reading the history")
        return list(body)

    def metrics(self, name: str) -> str:
        node = self.pg_node(name)
        code, body = self.api(node).get("/metrics")
        self._expect(code, body, "reading metrics")
        return str(body)


def parse_assignments(pairs: tuple[str, ...]) -> dict[str, Any]:
    """KEY=VALUE pairs; dotted keys nest (postgresql.parameters.work_mem=8MB); values are YAML."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"'{pair}' is not KEY=VALUE")
        key, raw = pair.split("=", 1)
        value = yaml.safe_load(raw) if raw else None
        parts = key.strip().split(".")
        cursor = out
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
    return out


def move_etcd_leader(spec: ClusterSpec, creds: Credentials, snap: ClusterSnapshot | None, *,
                     to: str | None = None) -> str:
    """etcd's leadership onto member ``to``, or off the node of the Patroni leader in ``snap``."""
    try:
        if to is not None:
            return etcd_leader.move(etcd_leader.operator_gateway(spec, creds), to=to)
        if snap is None or snap.leader is None:
            return "no Patroni leader right now: etcd's leadership left where it is"
        return etcd_leader.move(etcd_leader.operator_gateway(spec, creds),
                                away_from=spec.node(snap.leader.name).member_name)
    except (etcd_leader.MoveError, OSError) as exc:
        raise PghaError(f"etcd's leadership could not be moved: {exc}",
                        hint=f"see `{pgha_command('status')}` (etcd section) and "
                             f"`{pgha_command('logs', 'NODE', 'etcd')}`") from None
