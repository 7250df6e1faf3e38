"""Failure drills on the real lab (after the other lab tests: drills move the leader around)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from pgha.cli import main
from pgha.lab.control import Lab
from pgha.ops import Operations
from pgha.probe import Credentials

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


def _etcd_leader_node(lab: Lab) -> tuple[str | None, str | None]:
    """(the etcd leader's member, the Patroni leader's member) right now."""
    snap = Operations(lab.spec, Credentials.of(lab.spec), lab.transport).snapshot()
    etcd = next((e.name for e in snap.etcd if e.is_leader), None)
    return etcd, lab.spec.node(snap.leader.name).member_name if snap.leader else None


def _assert_whole_node_crash_safe(r: dict[str, object]) -> None:
    assert r["lost_acked_writes"] == 0 and r["sync"] is True
    assert r["split_brain_acks"] == 0 and r["old_primary_direct_writes_after_new_leader"] == 0
    assert r["vip_on_two_hosts"] is False and r["healthy_at_end"] is True
    assert r["new_leader"] != r["old_leader"] and "etcd" in str(r["action"])


def test_node_crash_of_the_etcd_leader_too_loses_no_acknowledged_write(
        lab: Lab, lab_spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The drill moves etcd's leadership onto the Patroni leader's node first, then kills every service there.
    code, [r] = run_drill(["node-crash-etcd-leader", "--sync", "--spec", lab_spec_file], capsys)
    assert code == 0 and r["old_leader_led_etcd"] is True
    _assert_whole_node_crash_safe(r)
    # The new leader's on_role_change callback keeps etcd's leadership off its node (or etcd elected elsewhere).
    etcd, patroni = _etcd_leader_node(lab)
    assert etcd is not None and etcd != patroni


def test_node_crash_while_etcd_leads_elsewhere_loses_no_acknowledged_write(
        lab: Lab, lab_spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["etcd", "move-leader", "--force", "--spec", lab_spec_file]) == 0
    code, [r] = run_drill(["node-crash", "--sync", "--spec", lab_spec_file], capsys)
    assert code == 0 and r["old_leader_led_etcd"] is False
    _assert_whole_node_crash_safe(r)


def test_role_change_callback_refused_by_etcd_leaves_patroni_unaffected(lab: Lab) -> None:
    """The callback asks a follower to hand over leadership (its endpoints rotated): etcd answers 'not leader'.
    The switchover completes all the same, and Patroni's log says why etcd's leadership did not move."""
    spec, t = lab.spec, lab.transport
    ops = Operations(spec, Credentials.of(spec), t)
    snap = ops.snapshot()
    candidate = spec.node(snap.sync_standbys[0] if snap.sync_standbys else snap.replicas[0].name)
    plan = lab.target.plan(candidate)
    good = plan.file(plan.layout.role_change_config)
    config = json.loads(good.content)
    names = list(config["endpoints"])
    urls = [config["endpoints"][n] for n in names]
    config["endpoints"] = dict(zip(names, urls[1:] + urls[:1], strict=True))
    config["deadline"] = 0  # one try, at promotion: pgha's own move after the switchover comes later
    t.put_file(candidate, dataclasses.replace(good, content=json.dumps(config).encode()))
    try:
        ops.move_etcd_leader(to=candidate.name)
        said = ops.switchover(candidate.name)
        assert ops.snapshot().leader.name == candidate.member_name, said  # type: ignore[union-attr]
        log = ""
        for _ in range(20):
            log = t.logs(candidate, "patroni", lines=200)
            if "pgha on_role_change: FAILED" in log:
                break
            time.sleep(0.5)
        assert "pgha on_role_change: FAILED, Patroni unaffected" in log and "not leader" in log, log[-2000:]
        # pgha's switchover moved it afterwards, with the operator's credentials
        etcd, patroni = _etcd_leader_node(lab)
        assert etcd != patroni and "moved etcd's leadership" in said
    finally:
        t.put_file(candidate, good)
    ops.rejoined()
