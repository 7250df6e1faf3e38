"""On the deploy tests' machines, after test_deploy.py (same cluster, file order): the seed's section 2
port check refusing a blocked pair and passing once it is open, `pgha deploy --limit` touching only its
node, the SSH transport's isolate/heal (``prohibit`` routes) cutting a node off both ways and back, and
`pgha reset` rebuilding the cluster on the servers.
Run alone, the module deploys the cluster first.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgha import spec as spec_mod
from pgha.deploy import ports
from pgha.topology import port_matrix
from pgha.transport.ssh import SshTransport
from tests.deploy.helpers import FIGURES, changed_spec, pgha
from tests.deploy.nspawn import Machines

pytestmark = pytest.mark.deploy
PATRONI_CONFIG = "/etc/patroni/config.yml"


@pytest.fixture(scope="module")
def cluster(spec_file: Path) -> Iterator[Path]:
    """The six machines' cluster, deployed and verified: after test_deploy.py the deploy changes nothing
    (alone: it deploys from nothing); then verify must pass — test_deploy.py's last drill may leave its
    old leader still rejoining for a while (a CI run failed on a verify made at once)."""
    res = pgha("deploy", "--spec", str(spec_file), "--no-verify")
    assert res.returncode == 0, res.stderr[-3000:]
    wait_verified(spec_file, 120)
    yield spec_file


def wait_verified(spec_file: Path, timeout: float) -> float:
    """Seconds until `pgha verify` passes (fails the test after ``timeout``)."""
    t0 = time.monotonic()
    while True:
        res = pgha("verify", "--spec", str(spec_file), "--format", "json")
        if res.returncode == 0:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, f"not healthy after {timeout:g} s: {res.stdout[-2000:]}"
        time.sleep(1)


def shas(machines: Machines, names: list[str], path: str = PATRONI_CONFIG) -> dict[str, str]:
    return {n: machines.ssh(n, f"sha256sum {path}").split()[0] for n in names}


def work_mem(machines: Machines, name: str) -> str:
    return machines.ssh(name, "runuser -u postgres -- psql -h /var/run/postgresql -Atc 'show work_mem'").strip()


def test_a_blocked_port_stops_the_deploy_before_anything_changes(cluster: Path, machines: Machines) -> None:
    spec = spec_mod.load(cluster)
    src, dst = spec.node("haproxy-02"), spec.node("postgres-03")
    changed = changed_spec(cluster, work_mem="6MB")
    pg = [n.name for n in spec.postgres_nodes]
    before = shas(machines, pg)
    route = f"prohibit {dst.address}/32"
    machines.ssh(src.name, f"ip route add {route}")  # a firewall between haproxy-02 and postgres-03
    try:
        t0 = time.monotonic()
        res = pgha("deploy", "--spec", str(changed), "--format", "json")
        FIGURES["deploy refused by the port check"] = time.monotonic() - t0
        assert res.returncode == 1, res.stderr[-2000:]
        said = " ".join(res.stderr.split())  # the terminal wraps long lines
        for port, what in ((spec.ports.postgresql, "PostgreSQL"), (spec.ports.restapi, "Patroni REST API")):
            assert f"haproxy-02 -> postgres-03 {dst.address}:{port} ({what}): Permission denied" in said, said
        assert "ports the cluster needs are not open (the seed's section 2): 2 blocked; nothing was installed" in said
        rule = f"ufw allow proto tcp from {src.address} to any port {spec.ports.postgresql},{spec.ports.restapi}"
        assert rule in said
        assert "not checked: VRRP" in said
        assert shas(machines, pg) == before  # refused before any file was written
        dry = pgha("deploy", "--spec", str(changed), "--dry-run", "--format", "json")
        assert dry.returncode == 1
        report = json.loads(dry.stdout)["ports"]
        assert {(b["source"], b["target"], b["port"]) for b in report["blocked"]} == {
            ("haproxy-02", "postgres-03", spec.ports.postgresql), ("haproxy-02", "postgres-03", spec.ports.restapi)}
        assert report["connects"] == 54 and not report["problems"]
        assert any("+    work_mem: 6MB" in c["diff"] for c in json.loads(dry.stdout)["changes"])
    finally:
        machines.ssh(src.name, f"ip route del {route}")
    res = pgha("deploy", "--spec", str(cluster), "--format", "json")  # open again: passes (no changes)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["ports"]["passed"] and not out["changed"]
    FIGURES["port check on a running cluster (54 connects)"] = out["ports"]["seconds"]


def test_limit_changes_only_its_node_then_a_full_deploy_converges(cluster: Path, machines: Machines) -> None:
    spec = spec_mod.load(cluster)
    pg = [n.name for n in spec.postgres_nodes]
    ha = [n.name for n in spec.haproxy_nodes]
    old = work_mem(machines, "postgres-02")
    changed = changed_spec(cluster, work_mem="12MB")
    before = shas(machines, pg)
    haproxy_before = shas(machines, ha, "/etc/haproxy/haproxy.cfg")
    pids = {n: machines.ssh(n, "systemctl show -p MainPID --value patroni etcd") for n in pg}
    since = machines.ssh("postgres-01", "date +%s").strip()
    t0 = time.monotonic()
    res = pgha("deploy", "--spec", str(changed), "--limit", "postgres-02", "--format", "json")
    FIGURES["deploy --limit one node (a reload)"] = time.monotonic() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert {c["node"] for c in out["changes"]} == {"postgres-02"}
    assert {(c["kind"], c["what"].split()[0]) for c in out["changes"]} == {("file", PATRONI_CONFIG),
                                                                           ("reload", "patroni")}
    after = shas(machines, pg)
    assert after["postgres-02"] != before["postgres-02"]
    assert {n: after[n] for n in ("postgres-01", "postgres-03")} == \
        {n: before[n] for n in ("postgres-01", "postgres-03")}
    assert shas(machines, ha, "/etc/haproxy/haproxy.cfg") == haproxy_before
    reloads = {n: machines.ssh(n, f"journalctl -u patroni.service --since @{since} --no-pager -q | grep -c Reload")
               .strip() for n in pg}
    assert reloads["postgres-01"] == reloads["postgres-03"] == "0" and reloads["postgres-02"] != "0", reloads
    assert {n: machines.ssh(n, "systemctl show -p MainPID --value patroni etcd") for n in pg} == pids
    deadline = time.monotonic() + 20
    while work_mem(machines, "postgres-02") != "12MB" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert work_mem(machines, "postgres-02") == "12MB"
    assert work_mem(machines, "postgres-01") == work_mem(machines, "postgres-03") == old
    # Without --limit the other two follow; postgres-02 has nothing left to do.
    res = pgha("deploy", "--spec", str(changed), "--format", "json")
    assert res.returncode == 0, res.stderr[-3000:]
    assert {c["node"] for c in json.loads(res.stdout)["changes"]} == {"postgres-01", "postgres-03"}
    assert all("work_mem: 12MB" in machines.ssh(n, f"cat {PATRONI_CONFIG}") for n in pg)
    deadline = time.monotonic() + 20
    while {work_mem(machines, n) for n in pg} != {"12MB"} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert {work_mem(machines, n) for n in pg} == {"12MB"}
    res = pgha("deploy", "--spec", str(cluster), "--format", "json")  # back to the original spec
    assert res.returncode == 0, res.stderr[-3000:]


def test_isolate_cuts_a_node_off_both_ways_and_heal_brings_it_back(cluster: Path) -> None:
    spec = spec_mod.load(cluster)
    leader = json.loads(pgha("status", "--spec", str(cluster), "--format", "json").stdout)["leader"]
    node = next(n for n in spec.postgres_nodes if leader not in (n.name, n.member_name))  # a replica
    # Every pair of the seed's table that starts or ends on the node, except this machine's own.
    expected = {(s.name, t.name, p) for s in spec.nodes for t, p, _ in port_matrix(spec, s) if node in (s, t)}
    with SshTransport(spec) as t:
        t0 = time.monotonic()
        t.isolate(node)
        FIGURES["isolate (prohibit routes)"] = time.monotonic() - t0
        try:
            assert t.is_isolated(node)
            report = ports.check(spec, t, (node,))
            assert {(f.source, f.target, f.port) for f in report.blocked} == expected
            assert all(f.ok for f in report.facts if f.source == "(this machine)")  # its SSH link stays up
        finally:
            t0 = time.monotonic()
            t.heal(node)
            FIGURES["heal"] = time.monotonic() - t0
        assert not t.is_isolated(node)
        assert ports.check(spec, t, (node,)).passed
    FIGURES["heal -> pgha verify passes"] = wait_verified(cluster, 120)


def test_reset_rebuilds_the_cluster_on_the_servers(cluster: Path, machines: Machines) -> None:
    """`pgha reset` (the seed's section 18) through SSH + systemd: a new database cluster (another system
    identifier, the old data gone), certificates kept, verified; then the seed's patronictl works as typed."""
    spec = spec_mod.load(cluster)
    pg = [n.name for n in spec.postgres_nodes]
    psql = "runuser -u postgres -- psql -h /var/run/postgresql -Atc"
    ident = f"{psql} 'select system_identifier from pg_control_system()'"
    before = {machines.ssh(n, ident).strip() for n in pg}
    assert len(before) == 1  # one cluster: the replicas are copies of the primary
    certs = shas(machines, pg, "/etc/etcd/certs/server.key")
    t0 = time.monotonic()
    res = pgha("reset", "--spec", str(cluster), "--force")
    FIGURES["reset on the servers (rebuilt and verified)"] = time.monotonic() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    assert "cluster rebuilt from nothing" in res.stderr  # and verify passed: exit 0, not 3
    after = {machines.ssh(n, ident).strip() for n in pg}
    assert len(after) == 1 and after != before
    assert shas(machines, pg, "/etc/etcd/certs/server.key") == certs
    listing = machines.ssh("postgres-02", "patronictl -c /etc/patroni/config.yml list")
    assert listing.count("| Leader") == 1 and listing.count("streaming") == 2, listing
    FIGURES["reset -> pgha verify passes"] = wait_verified(cluster, 60)


@pytest.mark.skipif(not os.environ.get("PGHA_DEPLOY_DRILLS"), reason="~55 s: set PGHA_DEPLOY_DRILLS=1")
def test_drill_primary_partition_on_servers(cluster: Path) -> None:
    res = pgha("drill", "primary-partition", "--spec", str(cluster), "--format", "json")
    assert res.returncode == 0, res.stderr[-3000:]
    [run] = json.loads(res.stdout)
    FIGURES["primary-partition drill: write outage"] = run["write_outage_s"] or -1
    FIGURES["primary-partition drill: healthy again"] = run["healthy_after_s"] or -1
    assert run["safe"] and run["new_leader"] != run["old_leader"] and run["healthy_at_end"], run["notes"]
