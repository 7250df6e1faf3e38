"""The drill's client-observed outage, computed from acknowledgement times."""

from __future__ import annotations

from pgha.drill.runner import client_outage


def test_outage_spans_the_fault() -> None:
    acks = [0.0, 0.05, 0.1, 4.2, 4.25]  # fault at 0.12: last ack before it 0.1, first after 4.2
    assert client_outage(acks, 0.12) == 4.1


def test_no_ack_before_the_fault_counts_from_the_fault() -> None:
    # Writes were failing already when the fault came: the outage is not the gap between later acks.
    assert client_outage([5.0, 5.05, 5.1], 1.0) == 4.0


def test_nothing_acknowledged_after_the_fault() -> None:
    assert client_outage([0.0, 0.05], 1.0) is None
    assert client_outage([], 1.0) is None


def test_the_longest_gap_wins_even_after_recovery() -> None:
    assert client_outage([0.0, 1.5, 1.55, 9.0, 9.05], 1.0) == 7.45
