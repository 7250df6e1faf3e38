"""Switchover guard rails decided from a snapshot: no network needed."""

from __future__ import annotations

import pytest

from pgha import spec as spec_mod
from pgha.errors import UsageError
from pgha.ops import Operations, parse_assignments
from pgha.probe.patroni import PatroniMember
from pgha.snapshot import ClusterSnapshot

SPEC = spec_mod.parse(spec_mod.default_data(lab=True))


def member(name: str, role: str = "replica", state: str = "streaming", lag_mb: float | None = 0.0,
           **tags: bool) -> PatroniMember:
    return PatroniMember(name, None, "", role, state, 1, lag_mb, dict(tags))


def snap(*members: PatroniMember) -> ClusterSnapshot:
    return ClusterSnapshot(0.0, (), members, False, None, (), "10.203.0.210", None)


OPS = Operations(SPEC, None)  # type: ignore[arg-type]  # guard rails read only the snapshot


@pytest.mark.parametrize(("candidate", "message"), [
    (member("postgresql-02", state="stopped"), "postgresql-02 is not running (state stopped)"),
    (member("postgresql-02", nofailover=True), "postgresql-02 is tagged nofailover"),
    (member("postgresql-02", lag_mb=5.0), "postgresql-02 lags 5.0 MB, beyond maximum_lag_on_failover (1048576"),
    (member("postgresql-02", lag_mb=None), "postgresql-02 lags None MB"),
    (member("postgresql-02", role="leader", state="running"), "postgresql-02 is already the leader"),
])
def test_switchover_candidate_refusals(candidate: PatroniMember, message: str) -> None:
    with pytest.raises(UsageError) as info:
        OPS.check_candidate(snap(member("postgresql-01", "leader", "running", None), candidate), "postgres-02")
    assert message in info.value.message


def test_a_healthy_candidate_passes() -> None:
    cand = OPS.check_candidate(snap(member("postgresql-01", "leader", "running", None), member("postgresql-02")),
                               "postgresql-02")
    assert cand.name == "postgresql-02"


def test_parse_assignments_nests_and_types() -> None:
    assert parse_assignments(("ttl=20", "postgresql.parameters.work_mem=8MB", "synchronous_mode=true")) == {
        "ttl": 20, "postgresql": {"parameters": {"work_mem": "8MB"}}, "synchronous_mode": True}
    with pytest.raises(UsageError, match="'ttl' is not KEY=VALUE"):
        parse_assignments(("ttl",))
