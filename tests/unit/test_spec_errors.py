"""Every spec error names the file, the field and the problem; the CLI exits 2 without a traceback."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha import spec as spec_mod
from pgha.cli import main
from pgha.errors import SpecError

BASE = spec_mod.default_data(lab=True)


def with_changes(fn: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    fn(data)
    return data


CASES = [
    ("unknown top-level key", lambda d: d.update(colour="blue"),
     "cluster.yml: colour: unknown key (not part of the spec; see `pgha spec schema`)"),
    ("unknown nested key", lambda d: d["vip"].update(iface="eth0"),
     "cluster.yml: vip.iface: unknown key (not part of the spec; see `pgha spec schema`)"),
    ("wrong type", lambda d: d["dcs"].update({"ttl": "soon"}) if "dcs" in d else d.update(dcs={"ttl": "soon"}),
     "cluster.yml: dcs.ttl: Input should be a valid integer, unable to parse string as an integer (got 'soon')"),
    ("bad address", lambda d: d["nodes"][0].update(address="10.203.0.300"),
     "cluster.yml: nodes[0].address: Input is not a valid IPv4 address (got '10.203.0.300')"),
    ("duplicate name", lambda d: d["nodes"][1].update(name="haproxy-01"),
     "cluster.yml: nodes[1].name: haproxy-01 is used twice (also nodes[0])"),
    ("duplicate address", lambda d: d["nodes"][4].update(address="10.203.0.203"),
     "cluster.yml: nodes[4].address: 10.203.0.203 is used twice (also nodes[3])"),
    ("duplicate member", lambda d: d["nodes"][5].update(member="postgresql-01"),
     "cluster.yml: nodes[5].member: postgresql-01 is used twice (also nodes[3])"),
    ("even etcd members", lambda d: d["nodes"].pop(),
     "cluster.yml: nodes: 2 postgres nodes: etcd runs on each and needs an odd number (1, 3, 5) to keep a quorum"),
    ("zero etcd members", lambda d: d.update(nodes=d["nodes"][:3]),
     "cluster.yml: nodes: 0 postgres nodes: etcd runs on each and needs an odd number (1, 3, 5) to keep a quorum"),
    ("no haproxy", lambda d: d.update(nodes=d["nodes"][3:]),
     "cluster.yml: nodes: no haproxy node: at least one is needed to route clients to the primary"),
    ("vip outside subnet", lambda d: d["vip"].update(address="10.9.0.210"),
     "cluster.yml: vip.address: 10.9.0.210/24 is not in the nodes' subnet (nodes[0] is 10.203.0.200) "
     "(and 1 more problem(s))"),
    ("node outside subnet", lambda d: d["nodes"][2].update(address="10.9.0.202"),
     "cluster.yml: nodes[2].address: 10.9.0.202 is not in the VIP's subnet 10.203.0.0/24"),
    ("vip equals node", lambda d: d["vip"].update(address="10.203.0.201"),
     "cluster.yml: vip.address: 10.203.0.201 is also the address of nodes[1]"),
    ("duplicate priority", lambda d: d["nodes"][2].update(priority=90),
     "cluster.yml: nodes[2].priority: priority 90 is used twice (also nodes[1]); "
     "VRRP needs one clear preferred holder"),
    ("ttl below floor", lambda d: d.update(dcs={"ttl": 15, "loop_wait": 1, "retry_timeout": 3}),
     "cluster.yml: dcs.ttl: 15 is below Patroni's floor of 20 (Patroni would silently use 20)"),
    ("timing rule", lambda d: d.update(dcs={"ttl": 25}),
     "cluster.yml: dcs: loop_wait + 2*retry_timeout = 30 exceeds ttl 25: a healthy leader could lose its lease"),
    ("strict without sync", lambda d: d.update(dcs={"synchronous_mode_strict": True}),
     "cluster.yml: dcs.synchronous_mode_strict: needs synchronous_mode: true"),
    ("bad role", lambda d: d["nodes"][0].update(role="pgbouncer"),
     "cluster.yml: nodes[0].role: Input should be 'postgres' or 'haproxy' (got 'pgbouncer')"),
]


@pytest.mark.parametrize("title,change,message", CASES, ids=[c[0] for c in CASES])
def test_spec_error_message(title: str, change: Any, message: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_mod.parse(with_changes(change), "cluster.yml")
    assert str(info.value) == message


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.yml"
    path.write_text(text)
    return path


def test_cli_exit_code_2_and_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, yaml.safe_dump(with_changes(lambda d: d["nodes"][4].update(address="10.203.0.203"))))
    assert main(["spec", "check", "--spec", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: nodes[4].address: 10.203.0.203 is used twice (also nodes[3])" in " ".join(err.split())
    assert "Traceback" not in err


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "cluster:\n  name: x\nnodes: [\n  - a: 1\n")
    with pytest.raises(SpecError, match=r"invalid YAML at line 4"):
        spec_mod.load(path)


def test_missing_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file") as info:
        spec_mod.load(tmp_path / "absent.yml")
    assert "pgha init" in (info.value.hint or "")
    with pytest.raises(SpecError, match="expected a mapping at the top level, got list"):
        spec_mod.load(write(tmp_path, "- 1\n- 2\n"))


def test_defaults_parse_and_profiles() -> None:
    seed = spec_mod.parse(spec_mod.default_data())
    assert str(seed.vip.address) == "192.168.0.210" and seed.vip.interface == "enp0s3"
    assert [n.name for n in seed.postgres_nodes] == ["postgres-01", "postgres-02", "postgres-03"]
    assert (seed.dcs.ttl, seed.dcs.loop_wait, seed.dcs.retry_timeout) == (30, 10, 10)
    assert (seed.keepalived.interval, seed.keepalived.fall, seed.keepalived.rise) == (2, 3, 2)
    lab = spec_mod.parse(spec_mod.default_data(lab=True))
    assert [str(n.address) for n in lab.nodes][-1] == "10.203.0.205" and str(lab.vip.address) == "10.203.0.210"
    fast = spec_mod.parse(spec_mod.default_data(lab=True, profile=spec_mod.Profile.FAST))
    assert (fast.dcs.ttl, fast.dcs.loop_wait, fast.dcs.retry_timeout, fast.keepalived.interval) == (20, 2, 4, 1)
    data = spec_mod.default_data(lab=True, profile=spec_mod.Profile.FAST)
    data["dcs"] = {"ttl": 24}
    assert spec_mod.parse(data).dcs.ttl == 24  # explicit values win over the profile


def test_init_then_check_and_no_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spec_mod, "STATE_ROOT", tmp_path / "state")
    path = tmp_path / "lab.yml"
    assert main(["init", "--lab", "-o", str(path)]) == 0
    assert main(["spec", "check", "--spec", str(path)]) == 0
    assert main(["init", "--lab", "-o", str(path)]) == 2
    secrets = tmp_path / "state" / "postgresql-cluster" / "secrets.yml"
    assert secrets.stat().st_mode & 0o777 == 0o600


def test_schema_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["spec", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "nodes" in schema["properties"]
