"""`pgha drill chaos` on the real lab: a fixed-seed short soak (CI, marker `chaos`), Ctrl-C mid-fault, and
the long soak (marker `soak`, deselected by default: `pytest -m soak tests/lab/test_yc_chaos.py`).

Runs after the drills and doctor's tests (they move the leader around) and before the teardown; each
test leaves the lab whole.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgha.cli import main
from pgha.drill.schedule import Step, plan
from pgha.lab.control import Lab
from pgha.ops import Operations
from pgha.probe import Credentials

pytestmark = pytest.mark.lab

SEED = 18
FAULTS = "haproxy-kill,switchover,freeze,patroni-crash"
DURATION = 150


def chaos(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = main(["drill", "chaos", *args, "--format", "json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def assert_safe(r: dict, min_faults: int) -> None:  # type: ignore[type-arg]
    v = r["verdict"]
    assert v["problems"] == [] and r["error"] is None, (v["problems"], r["error"])
    assert v["checked_lost"] is True and v["lost"] == 0
    assert v["split_brain"] == [] and v["stale_timeline_acks"] == [] and v["vip_on_two_hosts"] == []
    assert v["unhealed"] == [] and r["safe"] is True
    log = r["fault_log"]
    assert len(log) >= min_faults and all(f["healed_after_s"] is not None for f in log), log
    # The writers ran all along: through the VIP and directly to each node (a node acknowledges direct
    # writes only while it is the primary).
    writers = r["writers"]
    direct = [w for name, w in writers.items() if name.startswith("direct:")]
    assert writers["vip1"]["acked"] > 500 and writers["vip2"]["acked"] > 500, writers
    assert len(direct) == 3 and all(w["acked"] + w["failed"] > 100 for w in direct), writers
    assert 0.3 < v["availability"] <= 1.0


def whole(lab: Lab) -> bool:
    return Operations(lab.spec, Credentials.of(lab.spec), lab.transport).snapshot().whole


@pytest.mark.chaos
def test_fixed_seed_short_soak_loses_nothing_and_heals(lab: Lab, lab_spec_file: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, r = chaos(["--duration", f"{DURATION}s", "--seed", str(SEED), "--faults", FAULTS, "--sync",
                     "--report", str(tmp_path), "--spec", lab_spec_file], capsys)
    assert code == 0, r.get("verdict")
    assert_safe(r, min_faults=3)
    assert len({f["kind"] for f in r["fault_log"]}) >= 2, r["fault_log"]  # type: ignore[union-attr]
    # Switchovers moved the primary: more than one node acknowledged direct writes.
    assert sum(1 for name, w in r["writers"].items() if name.startswith("direct:") and w["acked"]) >= 2  # type: ignore[union-attr]
    # The same seed gives the same schedule: what ran is the plan's beginning.
    ran = [Step.from_dict(s) for s in r["schedule"]]  # type: ignore[union-attr]
    assert ran == plan(SEED, DURATION, tuple(FAULTS.split(",")), int(r["ttl"]))[:len(ran)]  # type: ignore[call-overload]
    assert (tmp_path / "timeline.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "report.json").read_text())["run"] == r["run"]
    assert sum(1 for _ in (tmp_path / "history.jsonl").open()) > 1000
    assert whole(lab)


@pytest.mark.chaos
def test_ctrl_c_mid_freeze_continues_every_process_and_writes_the_report(lab: Lab, lab_spec_file: str,
                                                                         tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; from pgha.cli import main; sys.exit(main(sys.argv[1:]))",
           "drill", "chaos", "--duration", "10m", "--seed", "1", "--faults", "freeze", "--spec", lab_spec_file,
           "--report", str(tmp_path)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    seen = []
    deadline = time.time() + 120
    for line in proc.stderr:  # the run says when the fault is in
        seen.append(line)
        if "fault freeze on" in line or time.time() > deadline:
            break
    found = re.search(r"fault freeze on (\S+):", "".join(seen))
    assert found, "".join(seen)
    node = lab.spec.node(found.group(1))
    patroni = lab.transport.service_state(node, "patroni").pid
    stopped = [Path(f"/proc/{pid}") for pid in (patroni, lab.postmaster_pid(node)) if pid]
    assert len(stopped) == 2 and all(_state(p) == "T" for p in stopped), "the freeze stopped nothing"
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=300)[1]
    assert proc.returncode == 130, "".join(seen) + rest
    assert "interrupted" in rest and "every fault restored" in rest
    assert not [p for p in stopped if _state(p) == "T"], "a frozen process was left stopped"
    r = json.loads((tmp_path / "report.json").read_text())
    assert r["interrupted"] is True and [f["kind"] for f in r["fault_log"]] == ["freeze"]
    assert r["verdict"]["lost"] == 0 and r["verdict"]["split_brain"] == []
    deadline = time.time() + 180
    while not whole(lab) and time.time() < deadline:
        time.sleep(2)
    assert whole(lab)


def _state(proc: Path) -> str | None:
    try:
        return (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


@pytest.mark.soak
def test_long_soak_all_faults_sync(lab: Lab, lab_spec_file: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's goal: 30 minutes (PGHA_SOAK_DURATION), every fault kind, sync on."""
    duration = os.environ.get("PGHA_SOAK_DURATION", "30m")
    report = os.environ.get("PGHA_SOAK_REPORT", str(tmp_path))
    code, r = chaos(["--duration", duration, "--seed", os.environ.get("PGHA_SOAK_SEED", "2026"), "--sync",
                     "--report", report, "--spec", lab_spec_file], capsys)
    assert code == 0, r.get("verdict")
    assert_safe(r, min_faults=5)
    assert whole(lab)
