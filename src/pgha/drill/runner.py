"""Run one drill: load, fault, recovery, restore, read-back — and measure what a client saw."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgha import poll, routing
from pgha.drill import timeline
from pgha.drill.prober import DIRECT_TABLE, TABLE, Attempt, Writer, create_tables
from pgha.drill.scenarios import SCENARIOS, DrillContext, Scenario
from pgha.errors import PghaError, UsageError, pgha_command
from pgha.ops import Operations
from pgha.probe import Credentials
from pgha.probe import pg as pg_probe
from pgha.probe.snapshot import ClusterSnapshot
from pgha.spec import Dcs
from pgha.target import Target


@dataclass(frozen=True)
class Sample:
    at: float
    leader: str | None
    vip_holders: tuple[str, ...]


@dataclass
class DrillResult:
    """Every figure of one drill; times are seconds relative to the fault."""

    scenario: str
    run: str
    sync: bool
    profile: str
    action: str
    via: str = "vip"
    """The client's way to the primary: ``vip`` (HAProxy) or ``multi-host`` (libpq, no proxy)."""
    t_fault: float = 0.0
    old_leader: str | None = None
    old_leader_led_etcd: bool | None = None
    """Whether etcd's leader was on the old leader's node just before the fault."""
    new_leader: str | None = None
    write_outage_s: float | None = None
    new_leader_after_s: float | None = None
    writes_recovered_after_s: float | None = None
    restored_after_s: float | None = None
    healthy_after_s: float | None = None
    acked_writes: int = 0
    failed_attempts: int = 0
    lost_acked_writes: int = 0
    lost_lsn_bytes: int = 0
    replica_only_rows: int = 0
    split_brain_acks: int = 0
    old_primary_direct_writes_after_new_leader: int = 0
    vip_moves: int = 0
    vip_on_two_hosts: bool = False
    healthy_at_end: bool = False
    timeline: list[tuple[str, float]] = field(default_factory=list)
    """A switchover's phases (pgha.drill.timeline): (what, seconds since the fault), in time order."""
    notes: list[str] = field(default_factory=list)
    vip_attempts: list[Attempt] = field(default_factory=list, repr=False)
    samples: list[Sample] = field(default_factory=list, repr=False)

    @property
    def safe(self) -> bool:
        """No acknowledged write lost (when sync), never two primaries acknowledging writes (through the VIP or
        directly), never the VIP twice, healthy at the end."""
        return ((not self.sync or self.lost_acked_writes == 0) and self.split_brain_acks == 0
                and self.old_primary_direct_writes_after_new_leader == 0
                and not self.vip_on_two_hosts and self.healthy_at_end)

    def as_dict(self) -> dict[str, Any]:
        keys = [k for k in self.__dataclass_fields__ if k not in ("vip_attempts", "samples")]
        out = {k: getattr(self, k) for k in keys}
        out["safe"] = self.safe
        return out


def client_outage(acked_at: list[float], t_fault: float) -> float | None:
    """The longest gap between two acknowledged commits, from the last one before the fault on (or from
    the fault itself when none came before it); None when nothing was acknowledged after the fault."""
    before = [t for t in acked_at if t <= t_fault]
    start = max(before) if before else t_fault
    window = sorted({start, *(t for t in acked_at if t >= start)})
    if len(window) < 2 or window[-1] <= t_fault:
        return None
    return round(max(b - a for a, b in zip(window, window[1:], strict=False)), 3)


class Sampler:
    """Polls who leads and who holds the VIP, every 0.25 s, in the background."""

    def __init__(self, ops: Operations) -> None:
        self.ops, self.samples = ops, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                snap = self.ops.snapshot()
                holders = snap.vip_holders or ()
                self.samples.append(Sample(time.time(), snap.leader.name if snap.leader else None, holders))
            except Exception:  # a probe failing mid-fault is data, not an error
                self.samples.append(Sample(time.time(), None, ()))
            self._stop.wait(0.25)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class DrillRunner:
    def __init__(self, target: Target, creds: Credentials, say: Any = lambda msg: None,
                 ops: Operations | None = None) -> None:
        self.target, self.creds, self.say = target, creds, say
        self.spec, self.transport = target.spec, target.transport
        self.ops = ops or Operations(self.spec, creds, self.transport, router=routing.for_target(target))
        self.live = Dcs()
        """The cluster's live DCS configuration, read before the fault."""

    def wait(self, what: str, check: Callable[[], bool], timeout: float) -> float:
        """Poll until ``check`` holds; the time it did."""
        poll.until(f"drill: {what}", lambda: (check(), "not yet"), timeout, interval=0.2,
                   hint=f"see `{pgha_command('status')}`")
        return time.time()

    def wait_whole(self, what: str, timeout: float) -> float:
        """Until a snapshot shows the whole cluster (:attr:`ClusterSnapshot.whole`); the time it did."""
        def whole() -> tuple[bool, str]:
            snap = self.ops.snapshot()
            return snap.whole, snap.describe()

        poll.until(f"drill: {what}", whole, timeout, interval=0.2, hint=f"see `{pgha_command('status')}`")
        return time.time()

    def prepare(self, sync: bool) -> ClusterSnapshot:
        self.say("waiting for a whole cluster")
        self.wait_whole("a healthy cluster before the drill", 120)
        snap = self.ops.snapshot()
        if snap.config is None or snap.config.synchronous_mode != sync:
            self.say(f"synchronous mode {'on' if sync else 'off'}")
            self.ops.set_sync(sync)
            self.wait_whole("a whole cluster in the new mode", 60)
        create_tables(str(self.spec.vip.address), self.spec.ports.postgresql, self.creds)
        snap = self.ops.snapshot()
        self.live = snap.config or self.live
        return snap

    def run(self, scenario: Scenario, sync: bool = False, via: str = "vip") -> DrillResult:
        """One drill; the client writes through ``via``: the VIP (HAProxy), or ``multi-host`` (a libpq
        multi-host string over the PostgreSQL nodes with target_session_attrs=read-write, no proxy)."""
        snap = self.prepare(sync)
        assert snap.leader is not None
        leader = self.spec.node(snap.leader.name)
        replica = self.spec.node(snap.replicas[0].name)
        holder = self.spec.node(snap.vip_holders[0]) if snap.vip_holders else None
        ctx = DrillContext(self.target, self.ops, leader, replica, holder, [])
        result = DrillResult(scenario.name, uuid.uuid4().hex[:10], sync, self.spec.profile.value, "",
                             old_leader=leader.member_name, via=via)
        if scenario.setup is not None:
            self.say(scenario.setup(ctx))
        etcd_leader = next((e.name for e in self.ops.snapshot().etcd if e.is_leader), None)
        result.old_leader_led_etcd = etcd_leader == leader.member_name if etcd_leader else None
        port = self.spec.ports.postgresql
        conninfo = pg_probe.dsn(*pg_probe.endpoint(self.spec, multi_host=True), self.creds, connect_timeout=2) \
            if via == "multi-host" else None
        vip_writer = Writer(str(self.spec.vip.address), port, self.creds, result.run, dsn=conninfo)
        direct = [Writer(str(n.address), port, self.creds, result.run, interval=0.2, node=n.name)
                  for n in self.spec.postgres_nodes]
        sampler = Sampler(self.ops)
        for w in (vip_writer, *direct):
            w.start()
        sampler.start()
        try:
            # A steady stream of acknowledged writes before the fault, or the outage has no start.
            self.wait("writes acknowledged through the VIP before the fault",
                      lambda: len(vip_writer.acked) >= 20 and all(a.ok for a in vip_writer.attempts[-10:]), 60)
            result.t_fault = time.time()
            self.say(f"fault: {scenario.description}")
            result.action = scenario.inject(ctx)
            self._recover(scenario, ctx, result, vip_writer)
            time.sleep(1.0)
        finally:
            for w in (vip_writer, *direct):
                w.stop()
            sampler.stop()
            if ctx.faulted:  # a failure mid-drill must not leave a node down
                ctx.restore()
        result.vip_attempts, result.samples = vip_writer.attempts, sampler.samples
        self._measure(result, vip_writer, direct)
        if scenario.name == "etcd-quorum-loss":
            self._explain_quorum_loss(result)
        if scenario.name == "switchover":
            self._switchover_timeline(result)
        return result

    def _switchover_timeline(self, r: DrillResult) -> None:
        if r.old_leader is None or r.new_leader is None:
            return
        new = self.spec.node(r.new_leader)
        first = next((a.ended for a in r.vip_attempts if a.ok and a.started > r.t_fault
                      and a.server == str(new.address)), None)
        done = self.ops.last_handover
        marks: dict[str, float | None] = {
            "pgha: switchover called": r.t_fault, "pgha: every HAProxy holds": done.held_at if done else None,
            "pgha: every HAProxy routes to the new leader": done.routed_at if done else None,
            "first acknowledged write through the VIP": first}
        phases = timeline.switchover(lambda n: self.transport.logs(n, "patroni", lines=2000),
                                     self.spec.node(r.old_leader), new, r.t_fault, marks)
        r.timeline = [(p.name, round(p.at, 3)) for p in phases]

    def _explain_quorum_loss(self, r: DrillResult) -> None:
        """Say what happened to writes without a DCS quorum, and why."""
        failsafe = self.live.failsafe_mode
        end = r.t_fault + (r.restored_after_s or 0)
        fails = [a for a in r.vip_attempts if not a.ok and r.t_fault < a.started < end]
        if fails:
            r.notes.append(f"writes failed from +{fails[0].started - r.t_fault:.1f} s until quorum returned "
                           f"(+{r.restored_after_s} s): the leader could not renew its key in etcd, so Patroni "
                           f"demoted it (failsafe_mode {'on, but not every member answered' if failsafe else 'off'})"
                           " — no primary rather than a possible second one")
        else:
            r.notes.append("writes went on without an etcd quorum: "
                           + ("failsafe_mode on — the leader kept its role because every member confirmed it "
                              "over the REST API" if failsafe else "the fault was shorter than the leader key's ttl"))

    def _stuck(self, vip: Writer) -> str:
        """What a stuck drill looks like: the client's last error, the leader, HAProxy, the VIP."""
        last = vip.attempts[-1] if vip.attempts else None
        try:
            state = self.ops.snapshot().describe()
        except Exception as exc:  # the picture is best effort
            state = f"(no snapshot: {exc})"
        return f"last client attempt: {last.error if last and not last.ok else 'ok'}\n{state}"

    def _recover(self, scenario: Scenario, ctx: DrillContext, result: DrillResult, vip: Writer) -> None:
        t0 = result.t_fault
        if scenario.hold_past_ttl is not None:
            time.sleep(self.live.ttl + scenario.hold_past_ttl)
        else:
            def recovered() -> bool:
                acked_after = any(a.ok and a.started > t0 for a in list(vip.attempts))
                if not scenario.expects_failover:
                    return acked_after
                snap = self.ops.snapshot()
                return acked_after and snap.leader is not None and snap.leader.name != result.old_leader
            try:
                t = self.wait("writes through the VIP after the fault", recovered, 120)
            except PghaError as exc:
                raise PghaError(str(exc), hint=f"see `{pgha_command('status')}` and `{pgha_command('logs', 'NODE')}`",
                                details=self._stuck(vip)) from None
            result.writes_recovered_after_s = round(t - t0, 3)
            time.sleep(scenario.hold)
        self.say("restoring the faulted node")
        ctx.restore()
        restored = result.restored_after_s = round(time.time() - t0, 3)
        if scenario.hold_past_ttl is not None:
            t = self.wait("writes through the VIP after restore",
                          lambda: any(a.ok and a.started > t0 + restored for a in list(vip.attempts)),
                          120)
            result.writes_recovered_after_s = round(t - t0, 3)
        self.say("waiting for full health (old primary streaming, etcd whole, one VIP holder)")
        t = self.wait_whole("full health after the drill", 180)
        result.healthy_after_s = round(t - t0, 3)
        result.healthy_at_end = True

    def _measure(self, r: DrillResult, vip: Writer, direct: list[Writer]) -> None:
        final = self.ops.snapshot()
        measure(r, vip.attempts, {w.node or "?": w.acked for w in direct}, final.leader.name if final.leader else None,
                self.spec.node(r.old_leader).name if r.old_leader else None)
        self._read_back(r, vip.acked, final)

    def _read_back(self, r: DrillResult, acked: list[Attempt], snap: ClusterSnapshot) -> None:
        if snap.leader is None:
            r.notes.append("no leader at the end: lost writes not counted")
            return
        port = self.spec.ports.postgresql
        primary = self.spec.node(snap.leader.name)
        rows = pg_probe.query(str(primary.address), port, self.creds,
                              f"select seq from {TABLE} where run = %s", (r.run,))
        history = self.ops.history()
        count_lost(r, acked, {row[0] for row in rows}, int(history[-1][1]) if history else 0)
        time.sleep(1.0)  # let replicas replay the last rows
        for m in snap.replicas:
            node = self.spec.node(m.name)
            try:
                rep = pg_probe.query(str(node.address), port, self.creds,
                                     f"select seq from {TABLE} where run = %s", (r.run,))
            except Exception as exc:
                r.notes.append(f"could not read back from {node.name}: {exc}")
                continue
            r.replica_only_rows += len({row[0] for row in rep} - {row[0] for row in rows})
        pg_probe.query(str(primary.address), port, self.creds,
                       f"delete from {DIRECT_TABLE} where run = %s", (r.run,))


def measure(r: DrillResult, attempts: list[Attempt], direct: dict[str, list[Attempt]], final_leader: str | None,
            old_node: str | None) -> None:
    """The figures of a drill from what was recorded: the client's attempts through the VIP, the
    acknowledged direct writes per node, the sampler's samples (``r.samples``), the leader at the end
    and the node the old leader ran on."""
    t0 = r.t_fault
    acked = [a for a in attempts if a.ok]
    r.acked_writes, r.failed_attempts = len(acked), len(attempts) - len(acked)
    # The outage a client saw: the longest gap between two acknowledgements, from the last one
    # before the fault on (injecting takes a moment; the fault bites somewhere inside it).
    r.write_outage_s = client_outage([a.ended for a in acked], t0)
    if r.write_outage_s is None:
        r.notes.append("no write was acknowledged after the fault")
    # The leader as the sampler saw it, and VIP holder changes.
    leaders = [s for s in r.samples if s.at > t0 and s.leader and s.leader != r.old_leader]
    if leaders:
        r.new_leader, r.new_leader_after_s = leaders[0].leader, round(leaders[0].at - t0, 3)
    r.new_leader = final_leader or r.new_leader
    holders = [s.vip_holders for s in r.samples if s.vip_holders]
    r.vip_moves = sum(1 for a, b in zip(holders, holders[1:], strict=False) if a != b)
    r.vip_on_two_hosts = any(len(s.vip_holders) > 1 for s in r.samples)
    # Split brain: acknowledgements from two servers interleaved (the old one after the new one).
    servers: list[str] = []
    for a in acked:
        if not servers or servers[-1] != a.server:
            servers.append(a.server or "?")
    r.split_brain_acks = sum(1 for i, s in enumerate(servers) if s in servers[:i])
    if leaders and old_node is not None:
        t_new = leaders[0].at
        r.old_primary_direct_writes_after_new_leader = sum(1 for a in direct.get(old_node, []) if a.started > t_new)
        if r.old_primary_direct_writes_after_new_leader:
            r.notes.append(f"the old primary {old_node} accepted "
                           f"{r.old_primary_direct_writes_after_new_leader} direct writes after "
                           f"{leaders[0].leader} became leader (split brain for direct clients)")


def count_lost(r: DrillResult, acked: list[Attempt], on_primary: set[int], switch_lsn: int) -> None:
    """Acknowledged writes missing on the primary at the end, and how much WAL past the timeline switch
    the last of them was."""
    lost = [a for a in acked if a.seq not in on_primary]
    r.lost_acked_writes = len(lost)
    if lost:
        r.lost_lsn_bytes = max(0, max(a.lsn or 0 for a in lost) - switch_lsn)


def scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise UsageError(f"unknown drill '{name}' (one of: {', '.join(SCENARIOS)})")
    return SCENARIOS[name]
