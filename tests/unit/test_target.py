"""The Target seam: `pgha render` of a servers spec writes exactly what `pgha deploy` installs, and what a
target allows (watchdog, whole-machine files) comes from the target, not from a path prefix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pgha import spec as spec_mod
from pgha.deploy.run import Deployer
from pgha.lab.target import LabTarget
from pgha.render_out import write_tree
from pgha.target import ServerTarget
from tests.unit.test_sources import KEY

Entry = tuple[str, str, str, int, str, bytes]
"""(kind, owner, group, mode, acl, content or link target)"""


def servers_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> spec_mod.ClusterSpec:
    monkeypatch.setattr(spec_mod, "STATE_ROOT", tmp_path / "state")
    (tmp_path / "pgdg.asc").write_bytes(KEY)
    data = spec_mod.default_data(subnet="10.20.0.0/24", name="render-vs-deploy")
    data["watchdog"] = {"mode": "required"}
    data["deploy"] = {"packages": "online", "postgresql": {"source": "pgdg", "keyring": str(tmp_path / "pgdg.asc")}}
    return spec_mod.parse(data, "(test)")


def rendered(out: Path) -> dict[tuple[str, str], Entry]:
    """What `pgha render` wrote: MANIFEST.tsv rows, with each file's bytes and each link's target."""
    found = {}
    for row in (out / "MANIFEST.tsv").read_text().splitlines()[1:]:
        node, path, owner, group, mode, acl, kind = row.split("\t")
        local = out / node / path.lstrip("/")
        if kind == "file":
            content = local.read_bytes()
            assert local.stat().st_mode & 0o7777 == int(mode, 8)
        elif kind == "dir":
            content = b""
            assert local.is_dir()
        else:
            kind, target = kind.split(" ", 1)
            assert os.readlink(local) == target
            content = target.encode()
        found[(node, path)] = (kind, owner, group, int(mode, 8), acl, content)
    return found


def test_render_writes_exactly_what_deploy_installs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = servers_spec(tmp_path, monkeypatch)
    target = ServerTarget(spec)
    write_tree(target, tmp_path / "out")
    deployed: dict[tuple[str, str], Entry] = {}
    for name, plan in Deployer(target).plans("new").items():  # a first deploy: etcd's cluster is new
        for d in plan.dirs:
            deployed[(name, d.path)] = ("dir", d.owner, d.group, d.mode, ",".join(d.acl), b"")
        for f in plan.files:
            deployed[(name, f.path)] = ("file", f.owner, f.group, f.mode, ",".join(f.acl), f.content)
        for link in plan.links:
            deployed[(name, link.path)] = ("link", "root", "root", 0o777, "", link.target.encode())
        assert set(plan.apt_sources) <= set(plan.files)  # installed before the packages: plan files too
    assert rendered(tmp_path / "out") == deployed
    # Including what only a whole machine gets, and the watchdog the spec asks for.
    paths = {p for n, p in deployed if n == "postgres-01"}
    assert {"/etc/tmpfiles.d/pgha.conf", "/etc/apt/sources.list.d/pgha-pgdg.list", "/etc/apt/keyrings/pgha-pgdg.asc",
            "/usr/local/bin/patronictl"} <= paths
    assert deployed[("postgres-01", "/usr/local/bin/patronictl")][5] == b"/opt/pgha/patroni/bin/patronictl"
    assert not any(p.startswith("/etc/apt/") for n, p in deployed if n == "haproxy-01")  # PGDG: PostgreSQL only
    config = yaml.safe_load(deployed[("postgres-01", "/etc/patroni/config.yml")][5])
    assert config["watchdog"]["mode"] == "required"


def test_the_lab_target_roots_every_path_and_allows_no_watchdog_nor_machine_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = servers_spec(tmp_path, monkeypatch)
    lab = LabTarget(spec)
    lab.ensure_material()
    plan = lab.plan(spec.node("postgres-01"))
    root = str(spec.state_dir / "nodes" / "postgres-01")
    assert lab.root(spec.node("postgres-01")) == root
    assert all(e.path.startswith(root + "/") for e in plan.entries)
    assert plan.links == () and plan.apt_sources == ()
    assert not any("tmpfiles" in f.path for f in plan.files)
    config = yaml.safe_load(plan.file(f"{root}/etc/patroni/config.yml").content)
    assert config["watchdog"] == {"mode": "off"}
    assert "ExecStartPre" not in plan.file(f"{root}/etc/systemd/system/patroni.service").content.decode()
    node = spec.node("haproxy-02")
    assert lab.service_command(node, "haproxy", "start") == "pgha lab start haproxy-02 haproxy"
    server = ServerTarget(spec).service_command(node, "haproxy", "start")
    assert server == f"ssh root@{node.address} systemctl start haproxy"
