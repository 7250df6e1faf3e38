"""`pgha deploy` on six real Debian 12 machines (systemd-nspawn): from nothing, again (no changes),
a dry run of a changed spec, a reload-only apply, the day-2 commands, faults through systemd and a
drill whose fault is a power cut of the leader's machine. The tests run in file order, on one cluster.
"""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path

import pytest

from pgha import spec as spec_mod
from pgha.deploy.bundle import build as build_bundle
from pgha.drill.runner import DrillRunner
from pgha.ops import Operations
from pgha.probe import Credentials
from pgha.target import ServerTarget
from pgha.transport.ssh import SshError, SshTransport
from tests.deploy.helpers import FIGURES, assert_deploy_changes_nothing, changed_spec, pgha
from tests.deploy.nspawn import SUBNET, Machines
from tests.deploy.power import PowerTransport, power_cut

pytestmark = pytest.mark.deploy


def test_bundle_build(spec_file: Path) -> None:
    t0 = time.monotonic()
    res = pgha("bundle", "build", "--spec", str(spec_file))
    assert res.returncode == 0, res.stderr
    FIGURES["bundle build (cached after the first)"] = time.monotonic() - t0
    bundle = build_bundle(spec_mod.load(spec_file))
    with tarfile.open(bundle.tar("postgres")) as tar:
        names = tar.getnames()
    assert "debs/Packages" in names and any(n.startswith("wheels/patroni-") for n in names)
    assert {"MANIFEST", "MANIFEST.id", "wheels/requirements.txt"} <= set(names)
    assert bundle.verified_tar("postgres")  # the manifest recorded at build matches the tar
    assert any(n.startswith("debs/postgresql-15_") for n in names)
    with tarfile.open(bundle.tar("haproxy")) as tar:
        names = tar.getnames()
    assert any(n.startswith("debs/haproxy_") for n in names) and not any("postgresql" in n for n in names)


def test_unknown_host_key_is_refused(spec_file: Path, tmp_path: Path) -> None:
    """A server whose key is neither pinned nor in known_hosts is never accepted."""
    data = spec_mod.default_data(subnet=f"{SUBNET}.0/24", name="pgha-deploy-ci")
    data["deploy"] = {"ssh": {"known_hosts": str(tmp_path / "empty_known_hosts"),
                              "key_file": spec_mod.load(spec_file).deploy.ssh.key_file}}  # type: ignore[union-attr]
    (tmp_path / "empty_known_hosts").write_text("")
    spec = spec_mod.parse(data)
    with SshTransport(spec) as t, pytest.raises(SshError, match="host key not trusted"):
        t.run(spec.node("postgres-01"), ["true"])


def test_deploy_from_nothing(spec_file: Path, machines: Machines) -> None:
    t0 = time.monotonic()
    res = pgha("deploy", "--spec", str(spec_file), "--format", "json")
    FIGURES["deploy from nothing"] = time.monotonic() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["changed"] and out["verify"]["passed"], out["verify"]
    # The seed's section 2 first: on fresh servers every port got a temporary listener (then killed).
    assert out["ports"]["passed"] and sum(map(len, out["ports"]["listened"].values())) == 3 * 4 + 3, out["ports"]
    FIGURES["port check on fresh servers (15 temporary listeners)"] = out["ports"]["seconds"]
    # The seed's owners, modes and ACLs (section 5 step 6), the timezone (section 2), no main cluster.
    listing = machines.ssh("postgres-01", "stat -c '%U %G %a %n' /etc/etcd/certs /etc/etcd/certs/*; "
                                          "getfacl -cp /etc/etcd/certs/ca.crt; readlink /etc/localtime; "
                                          "ls /etc/postgresql; systemctl is-enabled postgresql etcd patroni")
    # root owns it (no service user can swap a file in it, issue 18); etcd reads it, postgres through the ACL
    assert "root etcd 750 /etc/etcd/certs" in listing
    assert "postgres postgres 600 /etc/etcd/certs/server.key" in listing
    assert "user:postgres:r--" in listing
    # etcd authorization: Patroni's own certificate; the member's key is etcd's alone; pgha's stays home
    assert "postgres postgres 600 /etc/etcd/certs/patroni.key" in listing
    assert "etcd etcd 600 /etc/etcd/certs/etcd-node1.key" in listing and "client.key" not in listing
    # etcdctl prints endpoint health on stderr
    seed = machines.ssh("postgres-01", "cd /etc/etcd/certs && etcdctl --endpoints=https://127.0.0.1:2379 "
                                       "--cacert=ca.crt --cert=etcd-node1.crt --key=etcd-node1.key "
                                       "endpoint health 2>&1; "
                                       "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=ca.crt "
                                       "--cert=etcd-node1.crt --key=etcd-node1.key put /service/x y 2>&1 || true")
    assert "is healthy" in seed and "permission denied" in seed, seed
    assert "Europe/Madrid" in listing
    assert "disabled\nenabled\nenabled" in listing
    runs = machines.ssh("postgres-01", "runuser -u postgres -- /opt/pgha/patroni/bin/patroni --version")
    assert "patroni 4.1" in runs
    # The seed's own command, as typed (sections 12-20): patronictl is on PATH.
    listing = machines.ssh("postgres-03", "patronictl -c /etc/patroni/config.yml list")
    assert listing.count("| Leader") == 1 and listing.count("streaming") == 2, listing


def test_second_deploy_reports_no_changes(spec_file: Path) -> None:
    assert_deploy_changes_nothing(spec_file, "deploy again (no changes)")


def test_dry_run_shows_the_diff_and_changes_nothing(spec_file: Path, machines: Machines) -> None:
    changed = changed_spec(spec_file, work_mem="8MB")
    before = machines.ssh("postgres-02", "sha256sum /etc/patroni/config.yml")
    res = pgha("deploy", "--spec", str(changed), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "+    work_mem: 8MB" in res.stdout
    assert "reload" in res.stdout and "patroni" in res.stdout
    assert "password: ***" in res.stdout or "password" not in res.stdout.replace("password_encryption", "")
    assert machines.ssh("postgres-02", "sha256sum /etc/patroni/config.yml") == before
    limited = pgha("deploy", "--spec", str(changed), "--dry-run", "--limit", "postgres-02", "--format", "json")
    assert {c["node"] for c in json.loads(limited.stdout)["changes"]} == {"postgres-02"}


def test_changed_config_reloads_only_patroni(spec_file: Path, machines: Machines) -> None:
    changed = changed_spec(spec_file, work_mem="8MB")
    pids = machines.ssh("postgres-02", "systemctl show -p MainPID --value patroni etcd")
    res = pgha("deploy", "--spec", str(changed), "--format", "json")
    assert res.returncode == 0, res.stderr[-3000:]
    kinds = {(c["kind"], c["node"]) for c in json.loads(res.stdout)["changes"]}
    assert ("reload", "postgres-02") in kinds and not any(k == "restart" for k, _ in kinds)
    assert machines.ssh("postgres-02", "systemctl show -p MainPID --value patroni etcd") == pids
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        shown = machines.ssh("postgres-02", "runuser -u postgres -- psql -h /var/run/postgresql -Atc 'show work_mem'")
        if shown.strip() == "8MB":
            break
        time.sleep(0.5)
    assert shown.strip() == "8MB"
    # Back to the original spec for the next tests (another reload).
    assert pgha("deploy", "--spec", str(spec_file), "--no-verify").returncode == 0


def test_status_verify_and_switchover(spec_file: Path) -> None:
    status = json.loads(pgha("status", "--spec", str(spec_file), "--format", "json").stdout)
    assert status["leader"] and status["vip"]["holders"] and len(status["vip"]["holders"]) == 1
    old = status["leader"]
    res = pgha("switchover", "--spec", str(spec_file), "--force")
    assert res.returncode == 0, res.stderr[-2000:]
    new = json.loads(pgha("status", "--spec", str(spec_file), "--format", "json").stdout)["leader"]
    assert new and new != old
    # The switchover returns once HAProxy routes to the new leader; the old one rejoins after it.
    Operations(spec_mod.load(spec_file), Credentials.of(spec_mod.load(spec_file))).rejoined()
    res = pgha("verify", "--spec", str(spec_file), "--format", "json")
    assert res.returncode == 0, res.stdout[-2000:]
    # The new leader's Patroni, read from its journal over SSH: the switchover is in it.
    logs = pgha("logs", "--spec", str(spec_file), new, "patroni", "-n", "200")
    assert logs.returncode == 0 and logs.stdout.startswith("==> "), logs.stderr[-500:]
    assert "promoted self to leader" in logs.stdout or "the leader with the lock" in logs.stdout, logs.stdout[-2000:]


def test_kill_hold_keeps_a_service_down(spec_file: Path) -> None:
    """`systemctl kill` + stop: Restart=always must not bring HAProxy back until started."""
    spec = spec_mod.load(spec_file)
    node = spec.node("haproxy-03")
    with SshTransport(spec) as t:
        healthy = pgha("doctor", "--spec", str(spec_file), "--format", "json")
        # these machines share one kernel: no watchdog by design, which doctor warns about on each node
        codes = sorted((f["code"], f["node"]) for f in json.loads(healthy.stdout)["findings"])
        assert codes == [("node.watchdog_off", n.name) for n in spec.postgres_nodes], healthy.stdout[-2000:]
        t.kill(node, "haproxy", "KILL", hold=True)
        time.sleep(2.5)  # RestartSec=1: a restart would have happened by now
        assert not t.service_state(node, "haproxy").running
        # pgha doctor over SSH names it, with the systemctl command that fixes it.
        found = pgha("doctor", "--spec", str(spec_file), "--format", "json")
        assert found.returncode == 3, found.stdout[-2000:] + found.stderr[-500:]
        down = [f for f in json.loads(found.stdout)["findings"] if f["code"] == "service.haproxy_down"]
        assert down and "haproxy-03" in down[0]["problem"], found.stdout[-2000:]
        assert down[0]["fix"].endswith("systemctl start haproxy") and str(node.address) in down[0]["fix"]
        t.start(node, "haproxy")
        deadline = time.monotonic() + 10
        while not t.service_state(node, "haproxy").running and time.monotonic() < deadline:
            time.sleep(0.2)
        assert t.service_state(node, "haproxy").running
        t.kill(node, "haproxy", "KILL")  # no hold: systemd restarts it
        time.sleep(2.5)
        assert t.service_state(node, "haproxy").running


@pytest.mark.parametrize("led_etcd", [True, False], ids=["etcd-leader", "not-etcd-leader"])
def test_drill_primary_power_cut_loses_no_acknowledged_write(spec_file: Path, machines: Machines,
                                                              led_etcd: bool) -> None:
    spec = spec_mod.load(spec_file)
    creds = Credentials.of(spec)
    with PowerTransport(spec, machines) as t:
        ops = Operations(spec, creds, t)
        ops.set_sync(True, False)  # returns once the DCS names a sync standby: a replica may take over
        result = DrillRunner(ServerTarget(spec, t), creds).run(power_cut(machines, led_etcd), sync=True)
    case = "etcd leader" if led_etcd else "not etcd leader"
    FIGURES[f"power-cut drill ({spec.profile.value}, {case}): write outage"] = result.write_outage_s or -1
    FIGURES[f"power-cut drill ({case}): healthy again (old leader rejoined)"] = result.healthy_after_s or -1
    assert result.old_leader_led_etcd is led_etcd
    assert result.lost_acked_writes == 0, result.as_dict()
    assert result.split_brain_acks == 0 and not result.vip_on_two_hosts
    assert result.new_leader and result.new_leader != result.old_leader
    assert result.healthy_at_end, result.notes
