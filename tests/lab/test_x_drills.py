"""Failure drills on the real lab (after the other lab tests: drills move the leader around)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgha.cli import main
from pgha.lab.control import Lab

pytestmark = pytest.mark.lab


def run_drill(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, object]]]:
    code = main(["drill", *args, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_primary_crash_sync_loses_no_acknowledged_write(lab: Lab, lab_spec_file: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, runs = run_drill(["primary-crash", "--repeat", "3", "--sync", "--spec", lab_spec_file,
                            "--report", str(tmp_path)], capsys)
    assert code == 0
    assert len(runs) == 3
    leaders = set()
    for r in runs:
        assert r["lost_acked_writes"] == 0 and r["sync"] is True
        assert r["split_brain_acks"] == 0 and r["old_primary_direct_writes_after_new_leader"] == 0
        assert r["vip_on_two_hosts"] is False and r["healthy_at_end"] is True
        assert r["new_leader"] != r["old_leader"]
        assert isinstance(r["write_outage_s"], float) and r["write_outage_s"] > 1  # a real failover happened
        assert int(r["acked_writes"]) > 100  # type: ignore[call-overload]
        leaders.add(r["new_leader"])
    assert (tmp_path / "drill.json").exists()
    assert len(list(tmp_path.glob("primary-crash-*.png"))) == 3


def test_haproxy_down_moves_the_vip_once(lab: Lab, lab_spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, runs = run_drill(["haproxy-down", "--spec", lab_spec_file], capsys)
    assert code == 0
    r = runs[0]
    assert r["vip_on_two_hosts"] is False and r["healthy_at_end"] is True
    assert int(r["vip_moves"]) >= 1  # type: ignore[call-overload]
    assert r["lost_acked_writes"] == 0 and r["split_brain_acks"] == 0


def test_keepalived_sigkill_never_leaves_the_vip_on_two_hosts(lab: Lab, lab_spec_file: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Without the stop-post release, the dead keepalived's VIP stays while a backup takes it: two holders.
    code, runs = run_drill(["keepalived-down", "--spec", lab_spec_file], capsys)
    r = runs[0]
    assert r["vip_on_two_hosts"] is False, r["notes"]
    assert int(r["vip_moves"]) >= 1 and r["healthy_at_end"] is True  # type: ignore[call-overload]
    assert r["lost_acked_writes"] == 0 and code == 0


def test_etcd_quorum_loss_stops_writes_and_says_why(lab: Lab, lab_spec_file: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, runs = run_drill(["etcd-quorum-loss", "--spec", lab_spec_file], capsys)
    r = runs[0]
    assert code == 0 and r["healthy_at_end"] is True and r["split_brain_acks"] == 0
    # failsafe_mode off (the default): without quorum the leader cannot renew its key and is demoted.
    assert any("failsafe_mode off" in n and "demoted" in n for n in r["notes"]), r["notes"]  # type: ignore[attr-defined]


def test_patroni_only_crash_with_sync_leaves_no_second_writable_primary(lab: Lab, lab_spec_file: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # Async, the old primary acknowledges direct writes after the new leader is elected (measured, README);
    # synchronous mode makes such commits wait for a standby that is gone: none is acknowledged.
    code, runs = run_drill(["patroni-only-crash", "--sync", "--spec", lab_spec_file], capsys)
    r = runs[0]
    assert r["old_primary_direct_writes_after_new_leader"] == 0 and r["new_leader"] != r["old_leader"]
    assert code == 0 and r["safe"] is True and r["lost_acked_writes"] == 0
