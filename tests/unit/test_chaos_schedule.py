"""The chaos schedule: same seed, same steps; holds from the ttl; bad input refused clearly."""

from __future__ import annotations

import pytest

from pgha.drill import schedule
from pgha.drill.schedule import KINDS, Step, plan
from pgha.errors import UsageError


def test_same_seed_same_schedule_other_seed_other() -> None:
    a = plan(7, 1800, tuple(KINDS), 20)
    assert a == plan(7, 1800, tuple(KINDS), 20)
    assert a != plan(8, 1800, tuple(KINDS), 20)
    assert {s.kind for s in a} == set(KINDS)  # 30 minutes draw every kind
    assert all(s.also is None for s in a)  # one fault at a time unless --overlap


def test_holds_and_pauses_scale_with_the_live_ttl() -> None:
    fast, slow = plan(3, 600, tuple(KINDS), 20), plan(3, 6000, tuple(KINDS), 40)
    assert [s.kind for s in fast] == [s.kind for s in slow[:len(fast)]]
    for f, s in zip(fast, slow, strict=False):
        lo, hi = KINDS[f.kind].hold
        assert lo * 20 - 0.05 <= f.hold_s <= hi * 20 + 0.05
        assert s.hold_s == pytest.approx(2 * f.hold_s, abs=0.11)
        assert s.pause_s == pytest.approx(2 * f.pause_s, abs=0.11)
    assert all(s.hold_s == 0 for s in fast if s.kind in ("switchover", "failover"))


def test_the_schedule_never_runs_out_before_the_duration() -> None:
    # Regression (10-minute soak, seed 129, ttl 20): faults healed faster than one ttl and the plan ran out
    # after 429 s. Steps are planned as if each took only its pause and hold.
    steps = plan(129, 600, tuple(KINDS), 20)
    assert sum(s.pause_s + s.hold_s + 1 for s in steps) >= 600
    assert len(steps) > 15  # that soak ran 15
    assert plan(129, 600, tuple(KINDS), 20)[:15] == steps[:15]


def test_faults_list_and_unknown_names() -> None:
    assert schedule.parse_faults("freeze, switchover,freeze") == ("freeze", "switchover")
    assert schedule.parse_faults(None) == tuple(KINDS)
    with pytest.raises(UsageError, match="unknown fault power-outage .*known: power-cut"):
        schedule.parse_faults("power-outage,freeze")
    with pytest.raises(UsageError):
        schedule.parse_faults(" , ")
    assert {s.kind for s in plan(5, 900, ("freeze", "switchover"), 20)} == {"freeze", "switchover"}


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400),
                                                ("2.5m", 150)])
def test_durations(text: str, seconds: float) -> None:
    assert schedule.parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "why"), [("0", "is zero"), ("0m", "is zero"), ("soon", "not understood"),
                                           ("5x", "not understood"), ("", "not understood"),
                                           ("-5m", "not understood")])
def test_bad_durations(text: str, why: str) -> None:
    with pytest.raises(UsageError, match=why):
        schedule.parse_duration(text)


def test_overlap_pairs_second_faults_and_never_breaks_quorum_by_default() -> None:
    steps = plan(11, 3600, tuple(KINDS), 20, overlap=True)
    pairs = [(s.kind, s.also.kind) for s in steps if s.also]
    assert pairs and len(pairs) < len(steps)
    assert all(not schedule.breaks_quorum(a, b) for a, b in pairs)
    assert all(s.also_after_s <= s.hold_s for s in steps if s.also)
    assert all(KINDS[s.kind].hold[1] > 0 for s in steps if s.also)  # an instant fault has no hold to overlap
    with_loss = plan(11, 3600, tuple(KINDS), 20, overlap=True, allow_quorum_loss=True)
    assert any(schedule.breaks_quorum(s.kind, s.also.kind) for s in with_loss if s.also)


def test_overlap_where_every_pair_breaks_quorum_is_refused() -> None:
    faults = ("power-cut", "etcd-quorum-loss")
    with pytest.raises(UsageError, match="quorum lost by design") as exc:
        plan(1, 600, faults, 20, overlap=True)
    assert "--allow-quorum-loss" in (exc.value.hint or "")
    assert plan(1, 600, faults, 20, overlap=True, allow_quorum_loss=True)
    assert plan(1, 600, faults, 20)  # one at a time: each is allowed


def test_steps_round_trip_for_replay() -> None:
    steps = plan(11, 3600, tuple(KINDS), 20, overlap=True)
    assert [Step.from_dict(s.as_dict()) for s in steps] == steps
