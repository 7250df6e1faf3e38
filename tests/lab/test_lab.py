"""The real lab: six namespaces, real etcd, Patroni, PostgreSQL, HAProxy, keepalived with a VRRP VIP."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest

import tests.conftest as c
from pgha.cli import main
from pgha.lab.control import Lab
from pgha.probe import Credentials, pg
from pgha.probe import cluster as cluster_probe
from pgha.probe.cluster import Prober
from pgha.verify import verify

pytestmark = pytest.mark.lab


def wait_until(predicate, timeout: float, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # not there yet
            last = exc
        time.sleep(interval)
    raise AssertionError(f"not reached in {timeout} s (last: {last!r})")


def vip_holders(lab: Lab) -> list[str]:
    return list(cluster_probe.vip_holders(lab.spec, lab.transport) or ())


def test_verify_all_pass(lab: Lab) -> None:
    report = verify(lab.spec, Credentials.of(lab.spec), lab.transport)
    failed = [(check.name, check.seen) for check in report.checks if not check.passed]
    assert failed == []
    assert len(report.checks) == 10


def test_topology_is_the_seeds(lab: Lab) -> None:
    snap = Prober(lab.spec, Credentials.of(lab.spec), lab.transport).snapshot()
    assert snap.leader is not None and snap.leader.name == "postgresql-01"
    assert sorted(m.name for m in snap.replicas) == ["postgresql-02", "postgresql-03"]
    assert all(m.healthy for m in snap.etcd) and snap.etcd_leader is not None
    assert snap.vip_holders == ("haproxy-01",)  # priority 100
    for view in snap.haproxy:
        assert view.up("postgres_primary") == ["postgresql-01"]
        assert sorted(view.up("postgres_replicas")) == ["postgresql-02", "postgresql-03"]


def test_processes_run_as_the_seeds_users(lab: Lab) -> None:
    rows = {(r.node, r.service): r for r in lab.processes()}
    def user_of(pid: int | None) -> str:
        assert pid is not None
        return subprocess.run(["ps", "-o", "user=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    assert user_of(rows[("postgres-01", "patroni")].pid) == "postgres"
    assert user_of(rows[("postgres-01", "postgres")].pid) == "postgres"
    assert user_of(rows[("postgres-02", "etcd")].pid) == "etcd"


def test_etcd_state_flipped_to_existing(lab: Lab) -> None:
    from pgha.render.etcd import parse_env

    for node in lab.spec.postgres_nodes:
        layout = lab.target.layout(node)
        env = parse_env(Path(layout.etcd_env).read_text())
        assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"


def test_write_via_vip_read_on_each_replica(lab: Lab) -> None:
    spec, creds = lab.spec, Credentials.of(lab.spec)
    vip, port = str(spec.vip.address), spec.ports.postgresql
    marker = uuid.uuid4().hex
    pg.query(vip, port, creds, "create table if not exists t_lab (v text)")
    pg.query(vip, port, creds, "insert into t_lab values (%s)", (marker,))
    for node in spec.postgres_nodes[1:]:
        wait_until(lambda n=node: pg.query(str(n.address), port, creds,
                                           "select count(*) from t_lab where v = %s", (marker,)) == [(1,)], 10)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            pg.query(str(node.address), port, creds, "insert into t_lab values ('x')")
    # The read-only port of the VIP lands on a replica.
    rows = pg.query(vip, spec.ports.postgresql_replicas, creds, "select pg_is_in_recovery()")
    assert rows == [(True,)]


def test_dsn_works_with_psql(lab: Lab, lab_spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dsn", "--vip", "--spec", lab_spec_file]) == 0
    dsn = capsys.readouterr().out.strip()
    assert "sslmode=verify-full" in dsn
    out = subprocess.run(["psql", dsn, "-Atc", "select pg_is_in_recovery()"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "f"


def test_kill_haproxy_is_restarted_by_supervision(lab: Lab) -> None:
    holder = vip_holders(lab)[0]
    node = lab.spec.node(holder)
    before = lab.transport.service_state(node, "haproxy").pid
    lab.kill(holder, "haproxy", "KILL")
    wait_until(lambda: lab.transport.service_state(node, "haproxy").pid not in (None, before), 15)
    creds = Credentials.of(lab.spec)
    wait_until(lambda: pg.query(str(lab.spec.vip.address), lab.spec.ports.postgresql, creds,
                                "select 1") == [(1,)], 15)


def test_haproxy_down_on_vip_holder_moves_the_vip(lab: Lab) -> None:
    holder = vip_holders(lab)[0]
    lab.stop(holder, "haproxy")  # held down, like a crashed HAProxy that does not come back
    try:
        new = wait_until(lambda: (h := vip_holders(lab)) and holder not in h and len(h) == 1 and h, 30)
        assert new[0] != holder
        creds = Credentials.of(lab.spec)
        rows = wait_until(lambda: pg.query(str(lab.spec.vip.address), lab.spec.ports.postgresql, creds,
                                           "select pg_is_in_recovery()"), 15)
        assert rows == [(False,)]
    finally:
        lab.start(holder, "haproxy")
    # haproxy-01 has the highest priority: it takes the VIP back once healthy again.
    wait_until(lambda: vip_holders(lab) == [holder], 40)


def test_isolate_and_heal_a_replica(lab: Lab) -> None:
    node = lab.spec.node("postgres-03")
    lab.isolate(node.name)
    try:
        assert lab.network.is_isolated(node)
        with pytest.raises(psycopg.OperationalError):
            pg.query(str(node.address), lab.spec.ports.postgresql, Credentials.of(lab.spec), "select 1",
                     connect_timeout=1)
    finally:
        lab.heal(node.name)
    assert not lab.network.is_isolated(node)
    creds = Credentials.of(lab.spec)
    wait_until(lambda: pg.query(str(node.address), lab.spec.ports.postgresql, creds, "select 1") == [(1,)], 20)
    # Leave the cluster whole for the next tests: etcd member back and the replica streaming again.
    wait_until(lambda: (s := Prober(lab.spec, creds).snapshot()) and all(m.healthy for m in s.etcd)
               and all(m.state == "streaming" for m in s.replicas) and len(s.replicas) == 2, 60)


def test_crash_is_a_power_cut_until_lab_start(lab: Lab, lab_spec_file: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`pgha lab crash NODE` on the leader's node: etcd, Patroni and the postmaster SIGKILLed and held
    down (the restart policy does not bring them back), a new leader is elected; `pgha lab start NODE`
    brings every service back and the old leader streams from the new one."""
    from pgha.ops import Operations

    creds = Credentials.of(lab.spec)
    old = lab.spec.node(Prober(lab.spec, creds).snapshot().leader.name)  # type: ignore[union-attr]
    assert main(["lab", "crash", old.name, "--spec", lab_spec_file]) == 0
    try:  # whatever fails, the node is started again: the tests that follow need it
        said = " ".join(capsys.readouterr().err.split())
        assert said.startswith(f"{old.name} crashed: SIGKILL postgres_exporter (pid ")
        assert ", patroni (pid " in said and "postmaster (pid" in said
        # The hint is a command to copy: it names the spec file this call used.
        assert "etcd (pid" in said
        assert said.endswith(f"held down until `pgha lab start {old.name} --spec {lab_spec_file}`")
        new = wait_until(lambda: (s := Prober(lab.spec, creds).snapshot()).leader and s.leader.name != old.member_name
                         and s.leader.name, lab.spec.dcs.ttl + 30)
        # Long after the kill (a ttl): nothing of the node came back by itself.
        assert [lab.transport.service_state(old, s).running for s in ("etcd", "patroni")] == [False, False]
        assert lab.postmaster_pid(old) is None
    finally:
        assert main(["lab", "start", old.name, "--spec", lab_spec_file]) == 0
    assert " ".join(capsys.readouterr().err.split()) == \
        f"started pgbackrest, etcd, patroni, postgres_exporter on {old.name}"
    snap = wait_until(lambda: (s := Prober(lab.spec, creds).snapshot()).leader and s.leader.name == new
                      and any(m.name == old.member_name and m.state == "streaming" for m in s.replicas)
                      and all(m.healthy for m in s.etcd) and s, 60)
    assert len(snap.replicas) == 2
    # Leave the seed's topology (postgresql-01 leads) for the tests that follow.
    ops = Operations(lab.spec, creds, lab.transport)
    ops.switchover("postgres-01")
    ops.rejoined()


def test_unknown_node_and_service_are_clear_errors(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    from pgha.errors import UsageError

    with pytest.raises(UsageError, match="no node named 'postgres-09'"):
        lab.kill("postgres-09", "etcd")
    with pytest.raises(UsageError, match="haproxy-01 runs no etcd"):
        lab.kill("haproxy-01", "etcd")


def test_missing_prerequisite_is_named(lab: Lab) -> None:
    from pgha import spec as spec_mod
    from pgha.errors import MissingPrerequisite

    data = spec_mod.default_data(lab=True, name=c.LAB_NAME + "-missing", subnet=c.LAB_SUBNET)
    data["paths"] = {"patroni_venv": "/nonexistent/patroni-venv"}
    broken = Lab(spec_mod.parse(data))
    with pytest.raises(MissingPrerequisite) as info:
        broken.up()
    assert "/nonexistent/patroni-venv/bin/patroni" in info.value.message
    assert "bootstrap.sh" in (info.value.hint or "")
    assert not broken.network.exists()  # refused before touching anything
