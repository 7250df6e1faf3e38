"""The chaos report from a recorded run: JSON with the verdict and the schedule, the history, the PNG —
and --replay reads the schedule back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgha.drill import chaos_report
from pgha.drill import history as h
from pgha.drill.chaos import ChaosResult
from pgha.drill.schedule import plan
from pgha.errors import UsageError
from tests.unit.test_chaos_checker import failover_history, present_all


def recorded() -> ChaosResult:
    hist = failover_history()
    r = ChaosResult("run1", 7, ("power-cut", "freeze"), True, False, "fast", 20, 60.0, started=0.0, ended=20.0,
                    executed=plan(7, 60, ("power-cut", "freeze"), 20)[:1], history=hist)
    r.verdict = h.check(hist, present_all(hist), 0.0, 20.0)
    return r


def test_report_json_history_and_picture(tmp_path: Path) -> None:
    r = recorded()
    chaos_report.write(r, tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["safe"] is True and data["verdict"]["lost"] == 0 and data["seed"] == 7
    assert data["leader_changes"] == [{"at_s": 12.0, "leader": "postgres-02"}]
    assert data["fault_log"][0]["healed_after_s"] == 15.0
    lines = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert sum(1 for x in lines if x["type"] == "ack") == len(r.history.acks)
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chaos_report.summary_rows(r) == [("power-cut", 1, 5.5, 5.5, 15.0)]
    replay = chaos_report.load_replay(str(tmp_path / "report.json"))
    assert replay["steps"] == r.executed and replay["seed"] == 7 and replay["sync"] is True


def test_replay_of_something_else_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "drill.json"
    bad.write_text("[]")
    with pytest.raises(UsageError, match="not a chaos report to replay"):
        chaos_report.load_replay(str(bad))
    r = recorded()
    r.executed = []
    chaos_report.write(r, tmp_path)
    with pytest.raises(UsageError, match="injected no fault"):
        chaos_report.load_replay(str(tmp_path / "report.json"))
