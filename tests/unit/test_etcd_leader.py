"""pgha.etcd_leader against a fake etcd gateway: which member is asked what, and what a refusal does."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from pgha import etcd_leader, pki
from pgha.etcd_leader import Gateway, MoveError

IDS = {"pg1": "11", "pg2": "22", "pg3": "33"}


class FakeEtcd(Gateway):
    """Answers like etcd 3.4's gateway; ``refuse`` makes transfer-leadership fail as etcd does."""

    def __init__(self, leader: str, down: tuple[str, ...] = (), refuse: str | None = None) -> None:
        super().__init__({n: f"https://{n}:2379" for n in IDS}, ssl.create_default_context())
        object.__setattr__(self, "state", {"leader": leader, "down": down, "refuse": refuse, "calls": []})

    def post(self, member: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        st = self.state  # type: ignore[attr-defined]
        st["calls"].append((member, path, body))
        if member in st["down"]:
            raise MoveError(f"https://{member}:2379{path}: ConnectionRefusedError")
        if path == "/v3/maintenance/status":
            return {"header": {"member_id": IDS[member]}, "leader": IDS[st["leader"]]}
        if path == "/v3/cluster/member/list":
            return {"members": [{"ID": i, "name": n} for n, i in IDS.items()]}
        assert path == "/v3/maintenance/transfer-leadership"
        if member != st["leader"]:
            raise MoveError("etcdserver: not leader")
        if st["refuse"]:
            raise MoveError(st["refuse"])
        st["leader"] = next(n for n, i in IDS.items() if i == body["targetID"])
        return {}


def test_moves_off_the_named_member_to_one_that_answers() -> None:
    gw = FakeEtcd("pg1", down=("pg2",))
    assert etcd_leader.move(gw, away_from="pg1") == "moved etcd's leadership from pg1 to pg3"
    assert gw.state["leader"] == "pg3"  # type: ignore[attr-defined]


def test_nothing_to_move_when_etcd_leads_elsewhere() -> None:
    gw = FakeEtcd("pg2")
    assert "nothing to move" in etcd_leader.move(gw, away_from="pg1")
    assert not any(p.endswith("transfer-leadership") for _, p, _ in gw.state["calls"])  # type: ignore[attr-defined]


def test_move_onto_a_named_member() -> None:
    gw = FakeEtcd("pg2")
    assert etcd_leader.move(gw, to="pg1") == "moved etcd's leadership from pg2 to pg1"
    with pytest.raises(MoveError, match="not an etcd member"):
        etcd_leader.move(gw, to="pg9")


def test_a_refusal_is_an_error_that_says_where_leadership_stays() -> None:
    gw = FakeEtcd("pg1", refuse="etcdserver: permission denied")
    with pytest.raises(MoveError, match="stays on pg1: etcdserver: permission denied"):
        etcd_leader.move(gw, away_from="pg1")


def test_callback_returns_at_once_for_patroni_and_logs_a_failure(tmp_path: Path) -> None:
    """Patroni's side: exit 0 at once whatever etcd does; the detached child logs the failure."""
    ca, _ = pki._new_ca("test CA")
    (tmp_path / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    config = tmp_path / "cb.json"
    config.write_text(json.dumps({"member": "pg1", "endpoints": {"pg1": "https://127.0.0.1:9"},
                                  "cacert": str(tmp_path / "ca.crt"), "deadline": 0}))
    script = etcd_leader.__file__
    # A replica: nothing to do, nothing started.
    done = subprocess.run([sys.executable, script, "--config", str(config), "on_role_change", "replica", "c"],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 0 and done.stderr == ""
    # The child's work, in the foreground here: etcd cannot be asked — logged, exit 0 all the same.
    done = subprocess.run([sys.executable, script, "--config", str(config), "--now", "on_role_change", "primary", "c"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert "pgha on_role_change: FAILED, Patroni unaffected" in done.stderr and "127.0.0.1:9" in done.stderr
    # A broken config is a logged failure too, never a non-zero exit.
    done = subprocess.run([sys.executable, script, "--config", str(tmp_path / "missing.json"), "--now",
                           "on_role_change", "primary", "c"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0 and "FAILED, Patroni unaffected: FileNotFoundError" in done.stderr
