"""The pure parts of `pgha deploy`: spec additions, the files helper, diffs, reactions to changes."""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from pgha import spec as spec_mod
from pgha.deploy.run import file_diff, reactions
from pgha.errors import SpecError
from pgha.layout import NodeLayout
from pgha.plan import NodePlan
from pgha.transport import files_helper
from pgha.transport.ssh import FileChange, SshError, known_hosts_for

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIKn3JkEL1umBy/N4t5UFe856fyQ+rjWwAicKfzVAuV4"


def servers(**deploy: object) -> dict[str, object]:
    data = spec_mod.default_data(subnet="10.20.0.0/24")
    data["deploy"] = {"packages": "bundle", "ssh": {"user": "admin", "key_file": "~/.ssh/id_pgha"}, **deploy}
    return data


def test_ssh_settings_merge_node_over_deploy() -> None:
    data = servers()
    data["nodes"][0]["ssh"] = {"port": 2222, "host_key": KEY}  # type: ignore[index]
    spec = spec_mod.parse(data)
    first, second = spec.nodes[0], spec.nodes[1]
    t = spec.ssh_of(first)
    assert (t.host, t.user, t.port, t.key_file, t.host_key) == (str(first.address), "admin", 2222,
                                                                "~/.ssh/id_pgha", KEY)
    assert spec.ssh_of(second).port == 22 and spec.ssh_of(second).host_key is None


def test_spec_errors_for_deploy_settings() -> None:
    data = servers(timezone="Europe Madrid")
    with pytest.raises(SpecError, match=r"deploy.timezone: 'Europe Madrid' is not a time zone"):
        spec_mod.parse(data)
    data = servers(packages="usb-stick")
    with pytest.raises(SpecError, match=r"deploy.packages: .*'online' or 'bundle'"):
        spec_mod.parse(data)
    data = servers()
    data["nodes"][0]["ssh"] = {"host_key": "not a key"}  # type: ignore[index]
    with pytest.raises(SpecError, match=r"nodes\[0\].ssh.host_key"):
        spec_mod.parse(data)
    lab = spec_mod.default_data(lab=True)
    lab["nodes"][0]["ssh"] = {"port": 2222}  # type: ignore[index]
    with pytest.raises(SpecError, match=r"nodes\[0\].ssh: SSH settings need a `deploy:` section"):
        spec_mod.parse(lab)


def test_host_key_is_pinned_or_known_never_accepted_blindly(tmp_path: Path) -> None:
    data = servers()
    data["nodes"][0]["ssh"] = {"host_key": KEY}  # type: ignore[index]
    data["deploy"]["ssh"]["known_hosts"] = str(tmp_path / "missing")  # type: ignore[index]
    spec = spec_mod.parse(data)
    pinned = known_hosts_for(spec.ssh_of(spec.nodes[0]))
    assert isinstance(pinned, tuple) and len(pinned[0]) == 1
    with pytest.raises(SshError, match="no host key pinned"):
        known_hosts_for(spec.ssh_of(spec.nodes[1]))


def run_helper(entries: list[dict[str, object]], check: bool) -> list[dict[str, object]]:
    payload = json.dumps({"check": check, "entries": entries})
    proc = subprocess.run([sys.executable, "-c", files_helper.source()], input=payload, capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_files_helper_checks_then_applies_then_finds_nothing(tmp_path: Path) -> None:
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    d, f = tmp_path / "conf", tmp_path / "conf" / "app.cfg"
    entries: list[dict[str, object]] = [
        {"kind": "dir", "path": str(d), "owner": me, "group": group, "mode": 0o750, "acl": []},
        {"kind": "file", "path": str(f), "owner": me, "group": group, "mode": 0o640, "acl": [],
         "content": base64.b64encode(b"a = 1\n").decode()},
    ]
    assert [r["changes"] for r in run_helper(entries, check=True)] == [["created"], ["created"]]
    assert not d.exists()  # check mode changes nothing
    run_helper(entries, check=False)
    assert f.read_bytes() == b"a = 1\n" and (f.stat().st_mode & 0o777) == 0o640
    assert run_helper(entries, check=False) == []
    entries[1]["content"] = base64.b64encode(b"a = 2\n").decode()
    f.chmod(0o644)
    (change,) = run_helper(entries, check=True)
    assert change["changes"] == ["content", "mode"]
    assert base64.b64decode(str(change["old"])) == b"a = 1\n"


def test_files_helper_makes_a_link_and_repoints_it(tmp_path: Path) -> None:
    link = tmp_path / "bin" / "patronictl"
    entry: dict[str, object] = {"kind": "link", "path": str(link), "target": "/opt/a/patronictl"}
    assert run_helper([entry], check=True) == [{"path": str(link), "changes": ["created"], "old": None}]
    assert not link.is_symlink()
    run_helper([entry], check=False)
    assert os.readlink(link) == "/opt/a/patronictl" and run_helper([entry], check=False) == []
    entry["target"] = "/opt/b/patronictl"
    assert run_helper([entry], check=False)[0]["changes"] == ["target"]
    assert os.readlink(link) == "/opt/b/patronictl"


def test_diff_masks_passwords_and_hides_keys() -> None:
    old = b"postgresql:\n  password: hunter2\n  work_mem: 4MB\n"
    new = b"postgresql:\n  password: hunter3\n  work_mem: 8MB\n"
    text = file_diff(FileChange("pg1", "/etc/patroni/config.yml", ("content",), old), new)
    assert "+  work_mem: 8MB" in text and "hunter" not in text
    only_password = file_diff(FileChange("pg1", "/etc/patroni/config.yml", ("content",), old),
                              old.replace(b"hunter2", b"hunter9"))
    assert "only a password differs" in only_password
    assert "not shown" in file_diff(FileChange("pg1", "/etc/etcd/certs/server.key", ("content",), b"x"), b"y")


def _plan(spec: spec_mod.ClusterSpec, name: str) -> NodePlan:
    node = spec.node(name)
    return NodePlan(node, NodeLayout(spec, node), (), (), ())


def test_reactions_reload_or_restart_only_what_must() -> None:
    spec = spec_mod.parse(servers())
    pg = _plan(spec, "postgres-01")
    assert reactions(pg.node, pg, ["/etc/patroni/config.yml"]) == [("reload", "patroni", "/etc/patroni/config.yml")]
    assert [a[:2] for a in reactions(pg.node, pg, ["/etc/etcd/etcd.env"])] == [("restart", "etcd")]
    assert [a[:2] for a in reactions(pg.node, pg, ["/etc/systemd/system/patroni.service"])] == [
        ("daemon-reload", ""), ("restart", "patroni")]
    ha = _plan(spec, "haproxy-01")
    assert [a[:2] for a in reactions(ha.node, ha, ["/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf"])] \
        == [("reload", "haproxy"), ("reload", "keepalived")]
    assert reactions(ha.node, ha, ["/etc/tmpfiles.d/pgha.conf"]) == []
    # Monitoring's small daemons are restarted by a change of their files or unit.
    assert [a[:2] for a in reactions(pg.node, pg, ["/etc/prometheus/postgres_exporter.env"])] == [
        ("restart", "postgres_exporter")]
    mon = _plan(spec, "monitor-01")
    assert [a[:2] for a in reactions(mon.node, mon, ["/etc/prometheus/pgha-rules.yml"])] == [
        ("restart", s) for s in ("pgha-webhook", "prometheus-alertmanager", "prometheus-blackbox-exporter",
                                 "prometheus")]
    assert [a[:2] for a in reactions(mon.node, mon, ["/etc/systemd/system/prometheus.service"])] == [
        ("daemon-reload", ""), ("restart", "prometheus")]


def test_commands_run_as_root_directly_or_through_sudo() -> None:
    from pgha.transport.ssh import SshTransport

    root = spec_mod.parse({**servers(), "deploy": {"ssh": {"user": "root"}}})
    sudo = spec_mod.parse(servers())  # deploy.ssh.user: admin
    node = root.node("postgres-01")
    assert SshTransport(root)._as_root(node, ["systemctl", "stop", "patroni"]) == "systemctl stop patroni"
    assert SshTransport(root)._as_root(node, ["test", "-r", "/a b"], user="postgres") == \
        "runuser -u postgres -- test -r '/a b'"
    assert SshTransport(sudo)._as_root(node, ["systemctl", "stop", "patroni"]) == "sudo -n -- systemctl stop patroni"
    assert SshTransport(sudo)._as_root(node, ["id"], user="postgres") == "sudo -n -u postgres -- id"
