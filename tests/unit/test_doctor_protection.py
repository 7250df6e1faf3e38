"""Doctor's "silently unprotected" states and the one list of problems doctor and the alert rules share."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from pgha import doctor as doctor_pkg
from pgha import spec as spec_mod
from pgha.doctor import protection, run_diagnoses
from pgha.doctor.model import PgFact, Severity, SlotFact
from pgha.problems import BY_CODE, PROBLEMS
from tests.unit.test_doctor import HA, SPEC, evidence, member, snapshot


def test_paused_is_a_warning_with_resume() -> None:
    [f] = protection.paused(evidence(snap=snapshot(paused=True)))
    assert f.code == "patroni.paused" and f.severity is Severity.WARNING and "resume" in f.fix


def test_pending_restart_names_the_members() -> None:
    members = (member(0, "leader", "running"), dataclasses.replace(member(1), pending_restart=True), member(2))
    [f] = protection.pending_restart(evidence(snap=snapshot(members=members)))
    assert "postgresql-02" in f.problem and "--pending" in f.fix


def test_every_replica_nofailover_leaves_no_candidate() -> None:
    members = (member(0, "leader", "running"), *(dataclasses.replace(member(i), tags={"nofailover": True})
                                                 for i in (1, 2)))
    [f] = protection.failover_candidates(evidence(snap=snapshot(members=members)))
    assert f.code == "patroni.no_failover_candidate" and "tagged nofailover" in f.evidence
    assert "postgresql-02, postgresql-03" in f.fix


def test_one_replica_nofailover_is_fine_and_lag_past_the_limit_is_said() -> None:
    limit_mb = SPEC.dcs.maximum_lag_on_failover / 1048576
    members = (member(0, "leader", "running"), dataclasses.replace(member(1), tags={"nofailover": True}),
               dataclasses.replace(member(2), lag_mb=limit_mb * 2))
    found = protection.failover_candidates(evidence(snap=snapshot(members=members)))
    assert [f.code for f in found] == ["patroni.no_failover_candidate"]  # the only candidate lags
    members = (member(0, "leader", "running"), member(1), dataclasses.replace(member(2), lag_mb=limit_mb * 2))
    [f] = protection.failover_candidates(evidence(snap=snapshot(members=members)))
    assert f.code == "replication.lag" and f.node == "postgres-03"


def test_sync_mode_without_an_able_standby() -> None:
    sync = SPEC.dcs.model_copy(update={"synchronous_mode": True})
    [f] = protection.sync_standby(evidence(snap=snapshot(config=sync)))
    assert f.code == "replication.sync_no_standby" and "no member is sync_standby" in f.evidence
    members = (member(0, "leader", "running"), member(1, "sync_standby"), member(2))
    assert protection.sync_standby(evidence(snap=snapshot(config=sync, members=members))) == []
    members = (member(0, "leader", "running"),
               dataclasses.replace(member(1, "sync_standby"), tags={"nofailover": True}), member(2))
    [f] = protection.sync_standby(evidence(snap=snapshot(config=sync, members=members)))
    assert "tagged nofailover" in f.evidence


def test_two_primaries_and_the_one_to_rebuild() -> None:
    ev = evidence(pg={2: {"pg": PgFact(True, in_recovery=False)}})
    [f] = protection.many_primaries(ev)
    assert f.code == "patroni.many_primaries" and "reinit postgres-03" in f.fix and "postgres-01" in f.problem


def test_inactive_slot_retaining_wal_with_its_size() -> None:
    slots = (SlotFact("postgresql_02", True, 0), SlotFact("postgresql_03", False, 64 * 1048576),
             SlotFact("old_member", False, 1048576))
    ev = evidence(pg={0: {"pg": PgFact(True, in_recovery=False, slots=slots)}})
    found = protection.absent_slots(ev)
    assert [f.problem.split(" on ")[0] for f in found] == ["replication slot postgresql_03",
                                                           "replication slot old_member"]
    assert "64.0 MB" in found[0].problem and "pg_drop_replication_slot('old_member')" in found[1].fix


def test_watchdog_off_only_on_servers() -> None:
    off = {i: {"patroni_config": {"watchdog": {"mode": "off"}}} for i in range(3)}
    assert protection.watchdog(evidence(pg=off)) == []  # the lab never has one
    data = spec_mod.default_data(name="unit", subnet="10.9.0.0/24")
    data["deploy"] = {}
    servers = spec_mod.parse(data)
    ev = dataclasses.replace(evidence(pg=off), spec=servers)
    assert [f.code for f in protection.watchdog(ev)] == ["node.watchdog_off"] * 3


def test_healthy_evidence_is_still_quiet() -> None:
    assert run_diagnoses(evidence()) == ([], [])


def test_every_doctor_code_is_a_problem_and_every_doctor_problem_is_diagnosed() -> None:
    """The list is shared for real: doctor writes no code the list lacks, and the list claims no problem
    doctor never reports."""
    sources = "\n".join(p.read_text() for p in Path(doctor_pkg.__file__).parent.glob("*.py"))
    written = set(re.findall(r'Severity\.\w+, [^,]+, "([a-z]+\.[a-z_]+)"\)', sources))
    written |= set(re.findall(r'(?:code=|else )"([a-z]+\.[a-z_]+)"', sources))
    written |= {c for c in BY_CODE if c.startswith("service.")}  # built from the service name
    assert written - set(BY_CODE) == set()
    claimed = {p.code for p in PROBLEMS if p.doctor and not p.code.startswith("service.")}
    assert claimed - written == set(), "listed for doctor, never reported by it"
    assert len(BY_CODE) == len(PROBLEMS), "a code listed twice"


def test_haproxy_to_no_server_has_its_own_code() -> None:
    from pgha.doctor import proxy
    from pgha.probe.haproxy import BackendServer, HaproxyView
    views = list(snapshot().haproxy)
    views[1] = HaproxyView(HA[1].name, True, (BackendServer("postgres_primary", "postgresql-01", "DOWN"),))
    [f] = proxy.haproxy_routing(evidence(snap=snapshot(haproxy=tuple(views))))
    assert f.code == "haproxy.no_server"
