"""The chaos checker on recorded histories: each broken property detected, a clean history passes."""

from __future__ import annotations

from pgha.drill import history as h

A, B = "10.203.25.11", "10.203.25.12"
START_A, START_B = "2026-11-30T13:00:00.1+00", "2026-11-30T13:00:00.2+00"


def acks(writer: str, server: str, start: str, timeline: int, times: range | list[float],
         first_value: int = 1, via_vip: bool = True) -> list[h.Ack]:
    """One write every listed time, acknowledged 10 ms after it was sent."""
    return [h.Ack(writer, first_value + i, t, t + 0.01, server, start, timeline, via_vip)
            for i, t in enumerate(times)]


def failover_history() -> h.History:
    """A clean failover: A on timeline 1 until 10 s, 5 s without a primary, B on timeline 2 from 15 s."""
    hist = h.History()
    hist.acks += acks("vip1", A, START_A, 1, [t * 0.5 for t in range(20)])
    hist.acks += acks("vip1", B, START_B, 2, [15 + t * 0.5 for t in range(10)], first_value=21)
    hist.acks += acks("direct:postgres-01", A, START_A, 1, [t * 1.0 for t in range(10)], via_vip=False)
    hist.faults.append(h.FaultWindow("power-cut", "postgres-01", 10.0, 20.0, 25.0))
    hist.samples += [h.VipSample(t, ("haproxy-01",), "postgres-01" if t < 12 else "postgres-02")
                     for t in range(0, 20)]
    return hist


def present_all(hist: h.History) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for a in hist.acks:
        out.setdefault(a.writer, set()).add(a.value)
    return out


def test_a_clean_history_reports_nothing() -> None:
    hist = failover_history()
    v = h.check(hist, present_all(hist), 0.0, 20.0)
    assert v.safe and v.problems() == []
    assert not (v.lost or v.split_brain or v.stale or v.vip_on_two or v.unhealed)
    # Seconds 0..9 and 15..19 had acks: 15 of 20.
    assert v.availability == 0.75
    [out] = v.outages
    assert out.kind == "power-cut" and out.faults == 1 and out.worst_s == 5.5  # 9.51 -> 15.01
    assert v.mttr_s == 15.0


def test_a_lost_write_is_listed() -> None:
    hist = failover_history()
    present = present_all(hist)
    present["vip1"] -= {20}  # A's last acknowledged write never reached B
    v = h.check(hist, present, 0.0, 20.0)
    assert [(a.writer, a.value, a.server) for a in v.lost] == [("vip1", 20, A)]
    assert not v.safe and "1 acknowledged write(s) missing" in v.problems()[0] and "vip1#20" in v.problems()[0]


def test_a_split_brain_interval_is_shown() -> None:
    hist = failover_history()
    # The old primary went on acknowledging direct writes until 18 s, while B acknowledged from 15 s.
    hist.acks += acks("direct:postgres-01", A, START_A, 1, [16.0, 17.0, 18.0], first_value=11, via_vip=False)
    v = h.check(hist, present_all(hist), 0.0, 20.0)
    [o] = v.split_brain
    assert {o.a.server, o.b.server} == {A, B}
    assert (o.start, o.end) == (15.01, 18.0)
    assert "both acknowledged writes from +15.01 s to +18.00 s" in v.problems()[0]
    # The same acks sent after timeline 2 was acknowledged: also on a superseded timeline.
    assert [a.value for a in v.stale] == [11, 12, 13]


def test_a_stale_timeline_ack_is_detected_without_overlap() -> None:
    # B, promoted to timeline 2, acknowledged one write (15.00-15.01 s) and crashed. A write sent to A at
    # 15.5 s was acknowledged on timeline 1: A had not heard of the promotion. One write of B's proves no
    # interval in which both were surely primary, but timeline 1 was already superseded.
    hist = h.History(acks("vip1", A, START_A, 1, [t * 0.5 for t in range(20)])
                     + [h.Ack("vip1", 21, 15.0, 15.01, B, START_B, 2)])
    late = h.Ack("direct:postgres-01", 1, 15.5, 15.52, A, START_A, 1, False)
    hist.acks.append(late)
    v = h.check(hist, present_all(hist), 0.0, 16.0)
    assert v.stale == [late]
    assert not v.split_brain
    assert "1 write(s) acknowledged on a superseded timeline" in v.problems()[0]


def test_one_server_restarted_is_not_split_brain() -> None:
    hist = h.History(acks("vip1", A, START_A, 1, [0.0, 1.0, 2.0]) + acks("vip1", A, "later", 1, [1.5, 3.0], 10))
    assert h.split_brain(hist.acks) == []


def test_vip_on_two_hosts_and_an_unhealed_fault() -> None:
    hist = failover_history()
    hist.samples.append(h.VipSample(21.0, ("haproxy-01", "haproxy-02")))
    hist.faults.append(h.FaultWindow("keepalived-kill", "haproxy-01", 20.0, 21.0, None, error="timed out"))
    v = h.check(hist, present_all(hist), 0.0, 20.0)
    assert [s.holders for s in v.vip_on_two] == [("haproxy-01", "haproxy-02")]
    assert [f.kind for f in v.unhealed] == ["keepalived-kill"]
    assert len(v.problems()) == 2


def test_unread_primary_counts_nothing_lost_but_says_so() -> None:
    v = h.check(failover_history(), None, 0.0, 20.0)
    assert v.lost == [] and v.checked_lost is False and v.as_dict()["checked_lost"] is False


def test_history_round_trips_through_json() -> None:
    hist = failover_history()
    again = h.History.from_dict(hist.as_dict())
    assert again == hist


def test_a_fault_cut_short_by_ctrl_c_is_not_unhealed() -> None:
    hist = failover_history()
    hist.faults.append(h.FaultWindow("freeze", "postgres-02", 18.0, 19.0, None, error="interrupted",
                                     interrupted=True))
    v = h.check(hist, present_all(hist), 0.0, 20.0)
    assert v.safe and v.unhealed == []
    assert {o.kind: o.faults for o in v.outages} == {"power-cut": 1, "freeze": 1}
