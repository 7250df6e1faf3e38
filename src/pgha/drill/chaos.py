"""`pgha drill chaos`: a seeded schedule of faults under continuous writes, then the checker's verdict.

Writers through the VIP and one direct writer per PostgreSQL node (:mod:`pgha.drill.prober`) run the
whole time; each fault (:mod:`pgha.drill.schedule`) is injected through the drills' own
:class:`~pgha.drill.scenarios.DrillContext`, held, restored, and the whole cluster must be back within
a bound before the next. Whatever ends the run — time, Ctrl-C, an error — every held-down service is
started, every cut-off node healed and every frozen process continued before the history is checked
(:mod:`pgha.drill.history`) and the report written.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pgha.drill import history as hist
from pgha.drill.prober import DIRECT_TABLE, TABLE, Attempt, Writer
from pgha.drill.runner import DrillRunner, Sampler
from pgha.drill.scenarios import SCENARIOS, DrillContext
from pgha.drill.schedule import Step
from pgha.errors import PghaError, UsageError, pgha_command
from pgha.probe import pg as pg_probe
from pgha.probe.snapshot import ClusterSnapshot
from pgha.spec import Node
from pgha.transport.base import Transport

VIP_WRITERS = 2
CHECKPOINT_S = 300.0
"""Lost-write and split-brain checks between faults, at least this far apart."""


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Ctrl-C ignored for the block: a second one must not cut a restore short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def heal_bound(ttl: float) -> float:
    """How long the whole cluster may take to come back after a fault is restored."""
    return max(120.0, 6 * ttl)


@dataclass
class ChaosResult:
    run: str
    seed: int
    faults: tuple[str, ...]
    sync: bool
    overlap: bool
    profile: str
    ttl: int
    duration_s: float | None
    """None: a replay, every step run whatever the time."""
    started: float = 0.0
    ended: float = 0.0
    executed: list[Step] = field(default_factory=list)
    history: hist.History = field(default_factory=hist.History)
    verdict: hist.Verdict = field(default_factory=hist.Verdict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    writers: dict[str, dict[str, int]] = field(default_factory=dict)
    interrupted: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return self.verdict.safe and self.error is None

    def leader_changes(self) -> list[tuple[float, str]]:
        out: list[tuple[float, str]] = []
        for s in self.history.samples:
            if s.leader and (not out or out[-1][1] != s.leader):
                out.append((s.at, s.leader))
        return out[1:]

    def vip_moves(self) -> list[tuple[float, str]]:
        out: list[tuple[float, str]] = []
        for s in self.history.samples:
            if s.holders and (not out or out[-1][1] != ",".join(s.holders)):
                out.append((s.at, ",".join(s.holders)))
        return out[1:]

    def as_dict(self) -> dict[str, Any]:
        t0 = self.started
        return {"run": self.run, "seed": self.seed, "faults": list(self.faults), "sync": self.sync,
                "overlap": self.overlap, "profile": self.profile, "ttl": self.ttl,
                "duration_s": round(self.ended - self.started, 1), "requested_duration_s": self.duration_s,
                "interrupted": self.interrupted, "error": self.error, "safe": self.safe,
                "verdict": self.verdict.as_dict(t0),
                "fault_log": [{"kind": f.kind, "node": f.node, "at_s": round(f.start - t0, 2),
                               "restored_after_s": round(f.restored - f.start, 2),
                               "healed_after_s": round(f.healed - f.start, 2) if f.healed else None,
                               "action": f.action, "error": f.error, "interrupted": f.interrupted}
                              for f in self.history.faults],
                "leader_changes": [{"at_s": round(t - t0, 2), "leader": n} for t, n in self.leader_changes()],
                "vip_moves": [{"at_s": round(t - t0, 2), "holders": h} for t, h in self.vip_moves()],
                "checkpoints": self.checkpoints, "writers": self.writers, "notes": self.notes,
                "schedule": [s.as_dict() for s in self.executed]}


def _name(w: Writer) -> str:
    """A writer's name in the history: vip1, vip2, multihost (rows of the run ``RUN-NAME``), direct:NODE."""
    return f"direct:{w.node}" if w.node else w.run.rsplit("-", 1)[1]


def _ack(writer: str, a: Attempt, via_vip: bool) -> hist.Ack:
    return hist.Ack(writer, a.seq, a.started, a.ended, a.server or "?", a.server_start or "?",
                    a.timeline if a.timeline is not None else -1, via_vip)


class ChaosRunner:
    """One chaos run against a target (the lab or servers)."""

    def __init__(self, drill: DrillRunner) -> None:
        self.drill, self.ops, self.spec, self.say = drill, drill.ops, drill.spec, drill.say
        self.transport: Transport = drill.transport
        self.ctx: DrillContext | None = None
        self._t0 = 0.0

    # -- before ------------------------------------------------------------------------------------
    def injectable(self, faults: tuple[str, ...], explicit: bool) -> tuple[str, ...]:
        """The faults this target can inject: asked for one it cannot (``explicit``) → refused; else left out."""
        cannot = {"freeze": type(self.transport).freeze is Transport.freeze,
                  "partition": type(self.transport).isolate is Transport.isolate}
        missing = [f for f in faults if cannot.get(f)]
        if missing and explicit:
            raise UsageError(f"this target ({type(self.transport).__name__}) cannot inject {', '.join(missing)}",
                             hint="leave it out of --faults")
        return tuple(f for f in faults if f not in missing)

    def live_ttl(self) -> int:
        """The cluster's ttl as the DCS holds it (the spec's when the DCS does not answer)."""
        snap = self.ops.snapshot()
        return snap.config.ttl if snap.config is not None else self.spec.dcs.ttl

    def preflight(self) -> ClusterSnapshot:
        """Refuse a cluster that is not whole, saying what is wrong."""
        snap = self.ops.snapshot()
        deadline = time.time() + 10  # a probe can miss once; a sick cluster stays sick
        while not snap.whole and time.time() < deadline:
            time.sleep(1)
            snap = self.ops.snapshot()
        if not snap.whole:
            raise PghaError("the cluster is not healthy: chaos starts only on a whole cluster",
                            details=snap.describe(), hint=f"see `{pgha_command('doctor')}`")
        return snap

    # -- during ------------------------------------------------------------------------------------
    def _resolve(self, step: Step, snap: ClusterSnapshot) -> Node:
        if step.role == "vip-holder":
            if not snap.vip_holders:
                raise PghaError("no HAProxy node holds the VIP", hint=f"see `{pgha_command('status')}`")
            return self.spec.node(sorted(snap.vip_holders)[step.pick % len(snap.vip_holders)])
        if snap.leader is None:
            raise PghaError("no leader", details=snap.describe())
        if step.role == "leader":
            return self.spec.node(snap.leader.name)
        pool = sorted(snap.sync_standbys) if self.drill.live.synchronous_mode and snap.sync_standbys else \
            sorted(m.name for m in snap.replicas)
        return self.spec.node(pool[step.pick % len(pool)])

    def _inject(self, step: Step, ctx: DrillContext) -> tuple[Node, str]:
        snap = self.ops.snapshot()
        deadline = time.time() + 10
        # The VIP holders can be unknown for a moment after a heal (seen in a soak: a haproxy-kill refused);
        # the fault waits for them instead.
        while step.role == "vip-holder" and not snap.vip_holders and time.time() < deadline:
            time.sleep(0.5)
            snap = self.ops.snapshot()
        node = self._resolve(step, snap)
        ctx.leader = self.spec.node(snap.leader.name) if snap.leader else node
        kind = step.kind
        if kind == "power-cut":
            return node, ctx.crash_node(node)
        if kind == "freeze":
            return node, ctx.freeze(node)
        if kind == "partition":
            return node, ctx.isolate(node)
        if kind == "patroni-crash":
            return node, ctx.down(node, "patroni")
        if kind == "etcd-member-loss":
            return node, ctx.down(node, "etcd")
        if kind == "etcd-quorum-loss":
            return node, SCENARIOS["etcd-quorum-loss"].inject(ctx)
        if kind in ("haproxy-kill", "keepalived-kill"):
            return node, ctx.down(node, kind.removesuffix("-kill"))
        if kind == "switchover":
            return node, self.ops.switchover(node.name)
        if kind == "failover":
            return node, self.ops.failover(node.name)
        raise UsageError(f"unknown fault {kind}")

    def _fault(self, step: Step, ctx: DrillContext, h: hist.History) -> None:
        """Inject, hold, restore, wait for the whole cluster; the fault goes into the history however it ends
        (Ctrl-C included: restored, marked interrupted, not waited for)."""
        start = time.time()
        node: Node | None = None
        errors: list[str] = []
        actions: list[str] = []
        restored: float | None = None

        def record(healed: float | None, interrupted: bool = False) -> None:
            h.faults.append(hist.FaultWindow(step.kind if step.also is None else f"{step.kind}+{step.also.kind}",
                                             node.name if node else None, start, restored or time.time(), healed,
                                             "; ".join(actions), "; ".join(errors) or None, interrupted))

        try:
            try:
                node, action = self._inject(step, ctx)
                actions.append(action)
                self.say(f"+{start - self._t0:.0f}s fault {step.kind} on {node.name}: {action}")
                if step.also is not None:
                    time.sleep(step.also_after_s)
                    also_node, action = self._inject(step.also, ctx)
                    actions.append(action)
                    self.say(f"+{time.time() - self._t0:.0f}s fault {step.also.kind} on {also_node.name}: {action}")
                time.sleep(max(0.0, start + step.hold_s - time.time()))
            except PghaError as exc:  # a refused switchover is part of the run, not its end
                errors.append(str(exc))
            finally:
                with uninterrupted():
                    ctx.restore()
            restored = time.time()
            self.say(f"+{restored - self._t0:.0f}s restored; waiting for the whole cluster")
            try:
                healed = self.drill.wait_whole(f"the whole cluster back after {step.kind}",
                                               heal_bound(self.drill.live.ttl))
            except PghaError as exc:
                errors.append(str(exc))
                record(None)
                raise PghaError(f"the cluster did not heal within {heal_bound(self.drill.live.ttl):.0f} s after "
                                f"{step.kind}", details=self.ops.snapshot().describe(),
                                hint=f"see `{pgha_command('doctor')}`") from None
        except KeyboardInterrupt:
            errors.append("interrupted")
            record(None, interrupted=True)
            raise
        self.say(f"+{healed - self._t0:.0f}s whole again, {healed - start:.1f} s after the fault")
        record(healed)

    # -- the run ------------------------------------------------------------------------------------
    def run(self, steps: list[Step], duration: float | None, seed: int, faults: tuple[str, ...], sync: bool,
            overlap: bool) -> ChaosResult:
        """Run ``steps`` until ``duration`` seconds are up, or all of them (None)."""
        self.preflight()
        snap = self.drill.prepare(sync)
        assert snap.leader is not None
        live = self.drill.live
        r = ChaosResult(uuid.uuid4().hex[:10], seed, faults, sync, overlap, self.spec.profile.value, live.ttl,
                        duration)
        port = self.spec.ports.postgresql
        vip = [Writer(str(self.spec.vip.address), port, self.drill.creds, f"{r.run}-vip{i + 1}")
               for i in range(VIP_WRITERS)]
        # A client that needs no proxy: libpq's multi-host string finds the primary itself.
        multi = pg_probe.dsn(*pg_probe.endpoint(self.spec, multi_host=True), self.drill.creds, connect_timeout=2)
        direct = [Writer("", port, self.drill.creds, f"{r.run}-multihost", dsn=multi)]
        direct += [Writer(str(n.address), port, self.drill.creds, r.run, interval=0.2, node=n.name)
                   for n in self.spec.postgres_nodes]
        sampler = Sampler(self.ops)
        ctx = self.ctx = DrillContext(self.drill.target, self.ops, self.spec.node(snap.leader.name),
                                      self.spec.node(snap.leader.name), None, [])
        for w in (*vip, *direct):
            w.start()
        sampler.start()
        r.started = self._t0 = time.time()
        end = r.started + duration if duration is not None else float("inf")
        last_check = r.started
        try:
            self.drill.wait("writes acknowledged through the VIP", lambda: len(vip[0].acked) >= 20, 60)
            for step in steps:
                if time.time() + step.pause_s + step.hold_s > end:
                    break
                time.sleep(step.pause_s)
                self._fault(step, ctx, r.history)
                r.executed.append(step)
                if time.time() - last_check >= CHECKPOINT_S:
                    last_check = time.time()
                    self._checkpoint(r, vip, direct)
            if duration is not None:
                time.sleep(max(0.0, end - time.time()))
        except KeyboardInterrupt:
            r.interrupted = True
            r.notes.append("interrupted (Ctrl-C): everything restored, the report covers the run so far")
        except PghaError as exc:
            r.error = str(exc) + (f"\n{exc.details}" if exc.details else "")
        except Exception as exc:  # anything else still ends in a restored cluster and a report
            r.error = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                with uninterrupted():
                    ctx.restore()
            finally:
                for w in (*vip, *direct):
                    w.stop()
                sampler.stop()
        r.ended = time.time()
        self._collect(r, vip, direct, sampler)
        self._final(r)
        return r

    def _collect(self, r: ChaosResult, vip: list[Writer], direct: list[Writer], sampler: Sampler) -> None:
        acks = [_ack(_name(w), a, True) for w in vip for a in w.acked]
        acks += [_ack(_name(w), a, False) for w in direct for a in w.acked]
        r.history.acks.extend(sorted(acks, key=lambda a: a.acked))
        r.history.samples.extend(hist.VipSample(s.at, s.vip_holders, s.leader) for s in sampler.samples)
        r.writers = {_name(w): {"acked": len(w.acked), "failed": len(w.attempts) - len(w.acked)}
                     for w in (*vip, *direct)}

    def _present(self, r: ChaosResult) -> dict[str, set[int]] | None:
        """What the final primary holds, per writer; None (and a note) when there is no primary to read."""
        try:
            self.drill.wait("a leader to read the writes back from", lambda: self.ops.snapshot().leader is not None,
                            heal_bound(self.drill.live.ttl))
            snap = self.ops.snapshot()
            assert snap.leader is not None
            primary = self.spec.node(snap.leader.name)
            port, creds = self.spec.ports.postgresql, self.drill.creds
            present: dict[str, set[int]] = {}
            for row in pg_probe.query(str(primary.address), port, creds,
                                      f"select run, seq from {TABLE} where run like %s", (f"{r.run}-%",)):
                present.setdefault(row[0].rsplit("-", 1)[1], set()).add(row[1])
            for row in pg_probe.query(str(primary.address), port, creds,
                                      f"select node, seq from {DIRECT_TABLE} where run = %s", (r.run,)):
                present.setdefault(f"direct:{row[0]}", set()).add(row[1])
            return present
        except Exception as exc:  # the verdict says the lost writes were not counted
            r.notes.append(f"could not read the writes back from a primary: {exc}")
            return None

    def _checkpoint(self, r: ChaosResult, vip: list[Writer], direct: list[Writer]) -> None:
        """The safety checks on what was acknowledged so far (a later loss shows at the end)."""
        probe = ChaosResult(r.run, r.seed, r.faults, r.sync, r.overlap, r.profile, r.ttl, r.duration_s)
        cut = time.time() - 1.0  # let the last commits replicate
        acks = [_ack(_name(w), a, True) for w in vip for a in list(w.acked) if a.ended < cut]
        acks += [_ack(_name(w), a, False) for w in direct for a in list(w.acked) if a.ended < cut]
        present = self._present(probe)
        v = hist.check(hist.History(acks), present, r.started, cut)
        r.checkpoints.append({"at_s": round(cut - r.started, 1), "acks": v.acks, "lost": len(v.lost),
                              "split_brain": len(v.split_brain), "stale": len(v.stale),
                              "availability": v.availability})
        self.say(f"checkpoint +{cut - r.started:.0f}s: {v.acks} acks, {len(v.lost)} lost, "
                 f"{len(v.split_brain)} split-brain intervals, availability {v.availability}")

    def _final(self, r: ChaosResult) -> None:
        present = self._present(r)
        r.verdict = hist.check(r.history, present, r.started, r.ended)
        if present is not None:
            try:
                snap = self.ops.snapshot()
                if snap.leader is not None:
                    primary = self.spec.node(snap.leader.name)
                    port, creds = self.spec.ports.postgresql, self.drill.creds
                    pg_probe.query(str(primary.address), port, creds, f"delete from {TABLE} where run like %s",
                                   (f"{r.run}-%",))
                    pg_probe.query(str(primary.address), port, creds, f"delete from {DIRECT_TABLE} where run = %s",
                                   (r.run,))
            except Exception as exc:  # the report matters more than the clean-up
                r.notes.append(f"the run's rows were not deleted: {exc}")
