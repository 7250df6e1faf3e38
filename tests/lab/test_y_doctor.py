"""pgha doctor on the real lab: each test injects one real fault, asserts doctor names it with the right
fix, then restores the cluster (and waits until doctor finds nothing again, so later tests start healthy)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from pgha import pki
from pgha.cli import main
from pgha.doctor import Finding, diagnose
from pgha.lab.control import Lab
from pgha.lab.freeze import frozen
from pgha.layout import NodeLayout
from pgha.ops import Operations
from pgha.plan import FileEntry
from pgha.probe import Credentials
from pgha.probe import pg as pg_probe
from pgha.probe.cluster import Prober
from pgha.spec import Node
from tests.lab.roles import roles

pytestmark = pytest.mark.lab


def findings(lab: Lab) -> list[Finding]:
    return list(diagnose(lab.target, Credentials.of(lab.spec)).findings)


def wait_for(lab: Lab, what: str, check: Callable[[list[Finding]], bool], timeout: float = 60) -> list[Finding]:
    deadline = time.monotonic() + timeout
    while True:
        found = findings(lab)
        if check(found):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached after {timeout} s; doctor says:\n"
                        + "\n".join(f"- {f.code}: {f.problem} | {f.evidence} | {f.fix}" for f in found))
        time.sleep(1)


def with_code(code: str) -> Callable[[list[Finding]], bool]:
    return lambda found: any(f.code == code for f in found)


def the(found: list[Finding], code: str) -> Finding:
    return next(f for f in found if f.code == code)


@contextmanager
def restored(lab: Lab, timeout: float = 120) -> Iterator[None]:
    """Whatever the test did, the cluster must be healthy again afterwards (doctor finds nothing)."""
    try:
        yield
    finally:
        def healthy(found: list[Finding]) -> bool:
            # etcd members restarted by a test may elect the Patroni leader's node: apply doctor's own fix
            if [f.code for f in found] == ["etcd.leader_with_patroni_leader"]:
                Operations(lab.spec, Credentials.of(lab.spec), lab.transport).move_etcd_leader()
                return False
            return not found
        wait_for(lab, "healthy again", healthy, timeout)


def layout(lab: Lab, node: Node) -> NodeLayout:
    return lab.target.layout(node)


def test_healthy_cluster_reports_nothing(lab: Lab, lab_spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    wait_for(lab, "a healthy cluster", lambda found: not found, 60)
    assert main(["doctor", "--spec", lab_spec_file, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["healthy"] is True and data["findings"] == [] and data["notes"] == []


def test_etcd_leader_on_the_patroni_leaders_node_is_reported_and_fixed(lab: Lab, lab_spec_file: str) -> None:
    leader, _ = roles(lab)
    ops = Operations(lab.spec, Credentials.of(lab.spec), lab.transport)
    ops.move_etcd_leader(to=leader.name)
    found = wait_for(lab, "the shared node reported", with_code("etcd.leader_with_patroni_leader"), 30)
    f = the(found, "etcd.leader_with_patroni_leader")
    assert f.node == leader.name and f.severity.value == "warning" and "one ttl" in f.problem
    assert f.fix.startswith("pgha etcd move-leader")
    assert main(["etcd", "move-leader", "--force", "--spec", lab_spec_file]) == 0  # the fix, as printed + --force
    wait_for(lab, "healthy after the fix", lambda found: not found, 30)


def test_etcd_quorum_lost(lab: Lab, lab_spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, (a, b) = roles(lab)
    with restored(lab):
        try:
            lab.stop(a.name, "etcd")
            lab.stop(b.name, "etcd")
            found = wait_for(lab, "quorum loss named", with_code("etcd.quorum"), 30)
            f = the(found, "etcd.quorum")
            assert f.problem.startswith("etcd quorum lost")  # the survivor too reports itself unhealthy
            assert a.member_name in f.evidence and b.member_name in f.evidence and "stopped" in f.evidence
            assert f"pgha lab start {a.name} etcd" in f.fix and f"pgha lab start {b.name} etcd" in f.fix
            # the CLI: exit 3, the finding in the JSON
            assert main(["doctor", "--spec", lab_spec_file, "--format", "json"]) == 3
            codes = [x["code"] for x in json.loads(capsys.readouterr().out)["findings"]]
            assert "etcd.quorum" in codes
        finally:
            lab.start(a.name, "etcd")
            lab.start(b.name, "etcd")


def test_patroni_etcd_key_unreadable_by_postgres(lab: Lab) -> None:
    _, (replica, _) = roles(lab)
    key = layout(lab, replica).patroni_key
    with restored(lab):
        try:
            assert lab.transport.run(replica, ["chown", "etcd:etcd", key]).ok
            found = wait_for(lab, "unreadable key named", with_code("tls.unreadable"), 10)
            f = the(found, "tls.unreadable")
            assert key in f.problem and "Patroni cannot reach etcd" in f.problem
            assert f"chown postgres:postgres {key} && chmod 0600 {key}" in f.fix
        finally:
            lab.transport.run(replica, ["chown", "postgres:postgres", key])


def test_pg_hba_without_replication_entry(lab: Lab) -> None:
    leader, (replica, _) = roles(lab)
    hba = f"{layout(lab, leader).pg_data}/pg_hba.conf"
    original = lab.transport.read_file(leader, hba)
    assert original is not None
    creds = Credentials.of(lab.spec)
    host, port = str(leader.address), lab.spec.ports.postgresql

    def reconnect_replica() -> None:
        pg_probe.query(host, port, creds, "select pg_reload_conf()", superuser=True)
        pg_probe.query(host, port, creds, "select pg_terminate_backend(pid) from pg_stat_replication "
                                          "where host(client_addr) = %s", (str(replica.address),), superuser=True)

    with restored(lab):
        try:
            broken = b"\n".join(line for line in original.splitlines()
                                if not (b"replication" in line and str(replica.address).encode() in line))
            with open(hba, "wb") as fh:  # the file Patroni rendered, edited by hand
                fh.write(broken + b"\n")
            reconnect_replica()
            found = wait_for(lab, "replica not streaming named", with_code("replication.not_streaming"), 40)
            f = the(found, "replication.not_streaming")
            assert replica.member_name in f.problem
            assert f"no replication entry for {replica.address}" in f.evidence
            assert f"pgha restart {leader.name}" in f.fix and "pg_reload_conf" in f.fix
        finally:
            with open(hba, "wb") as fh:
                fh.write(original)
            pg_probe.query(host, port, creds, "select pg_reload_conf()", superuser=True)


def test_etcd_initial_cluster_state_new(lab: Lab) -> None:
    _, (node, _) = roles(lab)
    env = layout(lab, node).etcd_env
    original = lab.transport.read_file(node, env)
    assert original is not None and b"ETCD_INITIAL_CLUSTER_STATE=existing\n" in original
    with restored(lab):
        try:
            with open(env, "wb") as fh:
                fh.write(original.replace(b"STATE=existing\n", b"STATE=new\n"))
            f = the(wait_for(lab, "state new named", with_code("etcd.state_new"), 10), "etcd.state_new")
            assert node.name in f.problem and env in f.evidence
            assert "ETCD_INITIAL_CLUSTER_STATE=existing/" in f.fix and f"pgha lab stop {node.name} etcd" in f.fix
        finally:
            with open(env, "wb") as fh:
                fh.write(original)


def test_second_postmaster_started_by_hand(lab: Lab) -> None:
    _, (node, _) = roles(lab)
    pg_bin = lab.spec.pg_bin_dir
    # Where the distribution's own cluster would live, under the node's root.
    data = layout(lab, node).at(f"/var/lib/postgresql/{lab.spec.postgresql.version}/main")
    sock = layout(lab, node).at("/var/lib/postgresql/sock-hand")
    run = lab.transport.run
    with restored(lab):
        try:
            assert run(node, ["mkdir", "-p", data, sock], user="postgres").ok
            init = run(node, [f"{pg_bin}/initdb", "-D", data, "-A", "peer", "--no-sync"], user="postgres")
            assert init.ok, init.stderr
            start = run(node, [f"{pg_bin}/pg_ctl", "-D", data, "-o", f"-p 5439 -k {sock} -c listen_addresses=''",
                               "-l", f"{data}/hand.log", "-w", "start"], user="postgres")
            assert start.ok, start.stderr
            f = the(wait_for(lab, "outside postmaster named", with_code("postgres.outside_patroni"), 10),
                    "postgres.outside_patroni")
            assert node.name in f.problem and data in f.evidence and "5439" in f.evidence
            assert "systemctl disable --now postgresql" in f.fix  # it is where the distribution's cluster lives
        finally:
            run(node, [f"{pg_bin}/pg_ctl", "-D", data, "-m", "immediate", "stop"], user="postgres")
            lab.transport.remove_tree(node, layout(lab, node).at(f"/var/lib/postgresql/{lab.spec.postgresql.version}"))
            lab.transport.remove_tree(node, sock)


def test_superuser_password_changed_in_database(lab: Lab) -> None:
    leader, _ = roles(lab)
    creds = Credentials.of(lab.spec)
    lay = layout(lab, leader)

    def set_password(value: str) -> None:
        res = lab.transport.run(leader, ["psql", "-h", lay.pg_socket_dir, "-p", str(lab.spec.ports.postgresql),
                                         "-U", "postgres", "-d", "postgres", "-c",
                                         f"ALTER ROLE postgres PASSWORD '{value}'"], user="postgres")
        assert res.ok, res.stderr

    with restored(lab):
        try:
            set_password("not-the-configured-one")
            f = the(wait_for(lab, "password mismatch named", with_code("postgres.password_db"), 20),
                    "postgres.password_db")
            assert "password authentication failed" in f.evidence
            assert "\\password postgres" in f.fix and lay.patroni_config in f.fix
        finally:
            set_password(creds.secrets.superuser_password)


def test_keepalived_sigkill_and_a_stale_vip(lab: Lab) -> None:
    snap = Prober(lab.spec, Credentials.of(lab.spec), lab.transport).snapshot()
    assert snap.vip_holders and len(snap.vip_holders) == 1
    holder = lab.spec.node(snap.vip_holders[0])
    vip = f"{lab.spec.vip.address}/{lab.spec.vip.prefix}"
    with restored(lab):
        try:
            # SIGKILL, and no restart (a unit that gave up): the VIP moves, this node cannot take it back.
            lab.transport.kill(holder, "keepalived", "KILL", hold=True)
            f = the(wait_for(lab, "dead keepalived named", with_code("service.keepalived_down"), 20),
                    "service.keepalived_down")
            assert holder.name in f.problem and f.fix == f"pgha lab start {holder.name} keepalived"
        finally:
            lab.start(holder.name, "keepalived")
    holders = Prober(lab.spec, Credentials.of(lab.spec), lab.transport).snapshot().vip_holders or ()
    stale = next(n for n in lab.spec.haproxy_nodes if n.name not in holders)
    with restored(lab):
        try:
            # The address a keepalived killed by SIGKILL leaves behind (without pgha's stop-post release):
            # a dead keepalived on a node that still carries the VIP, while the MASTER carries it too.
            lab.transport.kill(stale, "keepalived", "KILL", hold=True)
            time.sleep(1.5)  # let pgha's own stop-post release run first: the stale address comes after it
            assert lab.transport.run(stale, ["ip", "address", "add", vip, "dev", lab.spec.vip.interface]).ok
            f = the(wait_for(lab, "two holders named", with_code("vip.split"), 15), "vip.split")
            assert stale.name in f.problem and "held by 2 hosts" in f.problem
            assert f"pgha lab stop {stale.name} keepalived && pgha lab start {stale.name} keepalived" in f.fix
        finally:
            lab.start(stale.name, "keepalived")  # the fix doctor names: the restarted keepalived releases it
            deadline = time.monotonic() + 10
            while lab.transport.holds_address(stale, str(lab.spec.vip.address), lab.spec.vip.interface):
                if time.monotonic() > deadline:
                    lab.transport.run(stale, ["ip", "address", "del", vip, "dev", lab.spec.vip.interface])
                    pytest.fail("restarting keepalived did not release the stale VIP")
                time.sleep(0.2)


def test_postgresql_left_without_patroni(lab: Lab) -> None:
    _, (node, _) = roles(lab)
    with restored(lab):
        try:
            lab.transport.kill(node, "patroni", "KILL", hold=True)  # its postmaster keeps running
            f = the(wait_for(lab, "orphan postmaster named", with_code("postgres.no_patroni"), 20),
                    "postgres.no_patroni")
            assert node.name in f.problem and f.fix.startswith(f"pgha lab start {node.name} patroni")
        finally:
            lab.start(node.name, "patroni")


def test_haproxy_checking_with_the_wrong_ca_routes_nowhere(lab: Lab) -> None:
    snap = Prober(lab.spec, Credentials.of(lab.spec), lab.transport).snapshot()
    node = next(n for n in lab.spec.haproxy_nodes if n.name not in (snap.vip_holders or ()))
    ca = layout(lab, node).haproxy_ca
    original = lab.transport.read_file(node, ca)
    assert original is not None
    leader, _ = roles(lab)
    # Any certificate that is not the cluster CA: here the leader's own server certificate.
    wrong = lab.transport.read_file(leader, layout(lab, leader).server_crt)
    assert wrong is not None and wrong != original
    with restored(lab):
        try:
            lab.transport.put_file(node, FileEntry(ca, wrong))
            lab.stop(node.name, "haproxy")
            lab.start(node.name, "haproxy")
            # Right after its restart HAProxy still counts servers UP until their checks fail (fall x inter).
            nowhere = f"HAProxy on {node.name} routes primary traffic to no server"

            def routes_nowhere(fs: list[Finding]) -> bool:
                return any(f.code == "haproxy.no_server" and f.problem.startswith(nowhere) for f in fs)

            found = wait_for(lab, "routing nowhere named", routes_nowhere, 45)
            f = next(f for f in found if f.code == "haproxy.no_server" and f.problem.startswith(nowhere))
            assert "is not the cluster CA" in f.evidence and ca in f.fix
        finally:
            lab.transport.put_file(node, FileEntry(ca, original))
            lab.stop(node.name, "haproxy")
            lab.start(node.name, "haproxy")


def test_member_stuck_in_start_failed(lab: Lab) -> None:
    _, (node, _) = roles(lab)
    config = layout(lab, node).patroni_config
    original = lab.transport.read_file(node, config)
    assert original is not None and b"shared_buffers" in original
    with restored(lab, 180):
        try:
            # A value PostgreSQL refuses at start, as a hand edit gone wrong would be.
            broken = original.replace(b"shared_buffers: 256MB", b"shared_buffers: 99999TB")
            assert broken != original
            lab.transport.put_file(node, FileEntry(config, broken, "postgres", "postgres", 0o600))
            lab.stop(node.name, "patroni")
            lab.start(node.name, "patroni")
            f = the(wait_for(lab, "start failed named", with_code("patroni.start_failed"), 90),
                    "patroni.start_failed")
            assert node.member_name in f.problem and "FATAL" in f.evidence  # PostgreSQL's own words
            assert f"pgha restart {node.name}" in f.fix and f"pgha reinit {node.name}" in f.fix
        finally:
            lab.transport.put_file(node, FileEntry(config, original, "postgres", "postgres", 0o600))
            lab.stop(node.name, "patroni")
            lab.start(node.name, "patroni")


def test_ports_blocked_between_two_nodes(lab: Lab) -> None:
    # A firewall between haproxy-02 and postgres-03 (a route that refuses that destination): HAProxy
    # can no longer check or reach that PostgreSQL node, while every other node can.
    src, dst = lab.spec.node("haproxy-02"), lab.spec.node("postgres-03")
    block = ["ip", "route", "add", "prohibit", f"{dst.address}/32"]
    with restored(lab):
        try:
            assert lab.transport.run(src, block).ok
            blocked = f"port {lab.spec.ports.restapi} ("  # Patroni's REST API, which HAProxy checks

            def named(fs: list[Finding]) -> bool:
                return any(f.code == "net.port" and f.problem.startswith(blocked) and dst.name in f.problem
                           and src.name in f.problem for f in fs)

            found = wait_for(lab, "blocked port named", named, 20)
            f = next(f for f in found if f.code == "net.port" and f.problem.startswith(blocked))
            assert "reachable from" in f.evidence
            assert f.fix.startswith(f"allow TCP {lab.spec.ports.restapi} from {src.name} to {dst.name}")
        finally:
            lab.transport.run(src, ["ip", "route", "del", "prohibit", f"{dst.address}/32"])


def test_patroni_cannot_reach_etcd_with_another_ca(lab: Lab) -> None:
    # A CA from another PKI on one node (a re-issued CA copied to one server only): Patroni's TLS
    # handshake with etcd fails there, while the rest of the cluster is fine.
    _, (replica, _) = roles(lab)
    ca_path = layout(lab, replica).ca_crt
    original = lab.transport.read_file(replica, ca_path)
    assert original is not None
    other_ca, _ = pki._new_ca("not-the-cluster-ca")
    with restored(lab, 120):
        try:
            with open(ca_path, "wb") as fh:  # keeps the file's owner and mode
                fh.write(other_ca.public_bytes(Encoding.PEM))
            lab.stop(replica.name, "patroni")
            lab.start(replica.name, "patroni")
            f = the(wait_for(lab, "Patroni cut off from etcd named", with_code("patroni.no_dcs"), 90),
                    "patroni.no_dcs")
            assert replica.name in f.problem and "cannot reach etcd" in f.problem
            assert f"etcd3.cacert {ca_path} is not the cluster CA (CA mismatch)" in f.fix
            assert "etcd" in f.evidence.lower()  # Patroni's own log line, or its REST API silent
        finally:
            with open(ca_path, "wb") as fh:
                fh.write(original)
            lab.stop(replica.name, "patroni")
            lab.start(replica.name, "patroni")


def test_no_leader_while_etcd_is_healthy(lab: Lab) -> None:
    # Patroni stopped everywhere (a rolling change gone wrong): etcd keeps its quorum, nobody leads.
    leader, replicas = roles(lab)
    order = [*replicas, leader]  # the leader last, so that no replica takes over meanwhile
    with restored(lab, 120):
        try:
            for n in order:
                lab.stop(n.name, "patroni")
            found = wait_for(lab, "no leader named", with_code("patroni.no_leader"), 30)
            f = the(found, "patroni.no_leader")
            assert f.problem == "no leader elected (etcd is healthy)"
            assert not any(x.code.startswith("etcd.") for x in found)
            for n in order:
                assert f"{n.name}: Patroni is stopped" in f.evidence and f"pgha lab start {n.name} patroni" in f.fix
        finally:
            for n in order:
                lab.start(n.name, "patroni")


def test_a_certificate_reissued_by_hand(lab: Lab) -> None:
    # A server certificate re-issued by hand (cluster CA, but 10 days, only 127.0.0.1 as SAN) and its
    # key left readable by all: doctor reads the files the services will load at their next restart.
    _, (node, _) = roles(lab)
    lay = layout(lab, node)
    crt_path, key_path = lay.server_crt, lay.server_key
    original_crt, original_key = lab.transport.read_file(node, crt_path), lab.transport.read_file(node, key_path)
    assert original_crt is not None and original_key is not None
    ca_crt, ca_key_path = pki.cert_paths(lab.state, pki.CA_NAME)
    ca, ca_key, problems = pki._load_pair(ca_crt, ca_key_path)
    assert ca is not None and ca_key is not None and not problems
    leaf = pki.ExpectedCert("by-hand", node.name, ("IP:127.0.0.1",), ("serverAuth",))
    cert, key = pki._issue_leaf(leaf, ca, ca_key, days=10)  # type: ignore[arg-type]
    with restored(lab):
        try:
            with open(crt_path, "wb") as fh:
                fh.write(cert.public_bytes(Encoding.PEM))
            with open(key_path, "wb") as fh:
                fh.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
            os.chmod(key_path, 0o644)
            found = wait_for(lab, "certificate problems named",
                             lambda fs: {"tls.expiry", "tls.sans", "files.mode"} <= {f.code for f in fs}, 15)
            expiring = the(found, "tls.expiry")
            assert crt_path in expiring.problem and node.name in expiring.problem and "days)" in expiring.evidence
            sans = the(found, "tls.sans")
            assert crt_path in sans.problem
            assert f"IP:{node.address}" in sans.evidence and f"IP:{lab.spec.vip.address}" in sans.evidence
            mode = next(f for f in found if f.code == "files.mode" and key_path in f.problem)
            assert "0644" in mode.evidence and f"chmod 0600 {key_path}" in mode.fix
            assert "pgha certs" in expiring.fix and "pgha certs" in sans.fix
        finally:
            with open(crt_path, "wb") as fh:
                fh.write(original_crt)
            with open(key_path, "wb") as fh:
                fh.write(original_key)
            os.chmod(key_path, 0o600)


def test_one_etcd_member_down(lab: Lab) -> None:
    _, (node, _) = roles(lab)
    with restored(lab):
        try:
            lab.stop(node.name, "etcd")
            found = wait_for(lab, "member down named", with_code("etcd.member_down"), 30)
            f = the(found, "etcd.member_down")
            assert node.member_name in f.problem and "quorum kept" in f.problem
            assert f.fix == f"pgha lab start {node.name} etcd"
            assert not any(x.code in ("etcd.quorum", "patroni.no_leader") for x in found)
        finally:
            lab.start(node.name, "etcd")


def test_vip_not_answering_when_keepalived_is_down_everywhere(lab: Lab) -> None:
    nodes = lab.spec.haproxy_nodes
    with restored(lab):
        try:
            for n in nodes:
                lab.stop(n.name, "keepalived")  # each stop releases the VIP (pgha's stop-post)
            f = the(wait_for(lab, "VIP down named", with_code("vip.down"), 20), "vip.down")
            assert str(lab.spec.vip.address) in f.problem and "held by nobody" in f.evidence
            assert "keepalived running on no node" in f.evidence
            for n in nodes:
                assert f"pgha lab start {n.name} keepalived" in f.fix
        finally:
            for n in nodes:
                lab.start(n.name, "keepalived")


def test_a_hung_node_does_not_hang_status_verify_or_doctor(lab: Lab, lab_spec_file: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A replica frozen (SIGSTOP of Patroni and the postmaster's tree): its ports still accept TCP, nothing
    answers. Each command answers within 3 s all the same and names the node."""
    _, (_, node) = roles(lab)
    before = Prober(lab.spec, Credentials.of(lab.spec), lab.transport).snapshot()
    # In synchronous mode with this node the synchronous standby, no commit returns while it is frozen.
    holds_commits = bool(before.config and before.config.synchronous_mode) and node.member_name in before.sync_standbys
    took: dict[str, float] = {}
    out: dict[str, tuple[int, dict]] = {}  # type: ignore[type-arg]
    with restored(lab), frozen(lab, node.name):
        time.sleep(0.5)
        for command in ("status", "verify", "doctor"):
            t0 = time.monotonic()
            code = main([command, "--spec", lab_spec_file, "--format", "json"])
            took[command] = time.monotonic() - t0
            out[command] = code, json.loads(capsys.readouterr().out)
    assert all(t < 3.0 for t in took.values()), took
    code, status = out["status"]
    assert code == 0 and [u["node"] for u in status["unanswered"]] == [node.name]
    assert "Patroni REST API" in status["unanswered"][0]["what"]
    code, report = out["verify"]
    failed = {c["name"]: c["seen"] for c in report["checks"] if not c["passed"]}
    assert code == 3 and f"{node.name}: Patroni REST API" in failed["2. Patroni members"]
    read_back = failed["6. row written via VIP is read on each replica"]
    assert (read_back.startswith("the write through the VIP: no answer within") if holds_commits else
            f"{node.name}: no answer within" in read_back), read_back
    code, diagnosis = out["doctor"]
    assert code == 3 and [(f["code"], f["node"]) for f in diagnosis["findings"]] == [("node.hangs", node.name)]
