"""The drill runner's verdicts from recorded samples: outage, new leader, VIP moves, split brain, writes
the old primary took after the new leader, lost acknowledged writes — and safe or unsafe."""

from __future__ import annotations

from pgha.drill.prober import Attempt
from pgha.drill.runner import DrillResult, Sample, count_lost, measure

OLD, NEW = "postgresql-01", "postgresql-02"
A, B = "10.203.0.203", "10.203.0.204"


def result(sync: bool = False, samples: list[Sample] | None = None) -> DrillResult:
    r = DrillResult("primary-crash", "run1", sync, "fast", "", t_fault=10.0, old_leader=OLD, healthy_at_end=True)
    r.samples = samples if samples is not None else [
        Sample(9.0, OLD, ("haproxy-01",)), Sample(12.0, None, ("haproxy-01",)), Sample(14.5, NEW, ("haproxy-01",))]
    return r


def acks(*spec: tuple[float, str], start: int = 1) -> list[Attempt]:
    """Acknowledged writes (time, server), numbered from ``start``, their LSN growing with time."""
    return [Attempt(start + i, t, t + 0.01, True, server, int(t * 1000)) for i, (t, server) in enumerate(spec)]


def failed(*times: float) -> list[Attempt]:
    return [Attempt(100 + i, t, t + 1.0, False, error="connection refused") for i, t in enumerate(times)]


def test_a_clean_failover_is_safe_with_its_figures() -> None:
    r = result()
    attempts = acks((9.8, A), (9.9, A)) + failed(10.5, 12.0) + acks((15.0, B), (15.1, B), start=3)
    measure(r, attempts, {"postgres-01": acks((9.85, A))}, NEW, "postgres-01")
    count_lost(r, [a for a in attempts if a.ok], {1, 2, 3, 4}, 0)
    assert (r.acked_writes, r.failed_attempts) == (4, 2)
    assert r.write_outage_s == 5.1  # last ack before the fault 9.91, first after 15.01
    assert (r.new_leader, r.new_leader_after_s) == (NEW, 4.5)
    assert (r.vip_moves, r.vip_on_two_hosts, r.split_brain_acks, r.lost_acked_writes) == (0, False, 0, 0)
    assert r.safe and r.notes == []


def test_two_servers_acknowledging_in_turn_is_split_brain() -> None:
    r = result()
    measure(r, acks((9.9, A), (15.0, B), (15.1, A), (15.2, B)), {}, NEW, "postgres-01")
    assert r.split_brain_acks == 2 and not r.safe


def test_the_old_primary_taking_direct_writes_after_the_new_leader_is_unsafe() -> None:
    r = result()
    measure(r, acks((9.9, A), (15.0, B)), {"postgres-01": acks((9.0, A), (14.0, A), (14.9, A))}, NEW, "postgres-01")
    assert r.old_primary_direct_writes_after_new_leader == 1  # 14.9 > 14.5, the new leader's first sample
    assert "the old primary postgres-01 accepted 1 direct writes after postgresql-02 became leader" in r.notes[0]
    assert not r.safe


def test_the_vip_on_two_hosts_is_unsafe_and_moves_are_counted() -> None:
    r = result(samples=[Sample(9.0, OLD, ("haproxy-01",)), Sample(11.0, OLD, ("haproxy-01", "haproxy-02")),
                        Sample(12.0, OLD, ("haproxy-02",)), Sample(13.0, OLD, ())])
    measure(r, acks((9.9, A), (11.5, A)), {}, OLD, "postgres-01")
    assert r.vip_on_two_hosts and r.vip_moves == 2 and not r.safe
    assert r.new_leader == OLD and r.new_leader_after_s is None


def test_lost_acknowledged_writes_are_unsafe_only_in_synchronous_mode() -> None:
    acked = acks((9.8, A), (9.9, A), (9.95, A))
    for sync, safe in ((True, False), (False, True)):
        r = result(sync=sync)
        measure(r, acked, {}, NEW, "postgres-01")
        count_lost(r, acked, on_primary={1}, switch_lsn=9850)
        assert r.lost_acked_writes == 2 and r.lost_lsn_bytes == 9950 - 9850
        assert r.safe is safe


def test_nothing_acknowledged_after_the_fault_is_said() -> None:
    r = result()
    measure(r, acks((9.9, A)) + failed(11.0, 12.0), {}, None, "postgres-01")
    assert r.write_outage_s is None and "no write was acknowledged after the fault" in r.notes
    assert r.new_leader == NEW  # seen by the sampler, though the end had no leader


def test_not_healthy_at_the_end_is_unsafe() -> None:
    r = result()
    r.healthy_at_end = False
    assert not r.safe
