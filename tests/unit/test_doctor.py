"""doctor's diagnoses as pure functions: hand-written evidence in, findings (problem, evidence, fix) out."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from pgha import spec as spec_mod
from pgha.doctor import DIAGNOSES, dcs, network, postgres, proxy, run_diagnoses, tls
from pgha.doctor.model import CertFact, Evidence, FileFact, Finding, NodeFacts, PgFact, PortFact, Severity
from pgha.probe.etcd import EtcdMember
from pgha.probe.haproxy import BackendServer, HaproxyView
from pgha.probe.patroni import PatroniMember
from pgha.probe.snapshot import ClusterSnapshot
from pgha.transport.base import FileStat, ProcessInfo, ServiceState

SPEC = spec_mod.parse(spec_mod.default_data(lab=True, name="unit", subnet="10.9.0.0/24"))
NOW = datetime(2030, 1, 1, tzinfo=UTC)
PG = SPEC.postgres_nodes
HA = SPEC.haproxy_nodes
DATA = "/var/lib/postgresql/data"
HBA = "\n".join(["local all postgres peer"] + [f"hostssl replication replicator {n.address}/32 scram-sha-256"
                                               for n in PG])


def member(i: int, role: str = "replica", state: str = "streaming") -> PatroniMember:
    return PatroniMember(PG[i].member_name, PG[i].name, str(PG[i].address), role, state, 1, 0.0, {})


def snapshot(**kw: Any) -> ClusterSnapshot:
    base: dict[str, Any] = dict(
        taken_at=0.0,
        # etcd's leader off the Patroni leader's node, as pgha keeps it
        etcd=tuple(EtcdMember(n.member_name, f"https://{n.address}:2379", True, i == 1) for i, n in enumerate(PG)),
        members=(member(0, "leader", "running"), member(1), member(2)),
        paused=False, patroni_error=None,
        haproxy=tuple(HaproxyView(n.name, True, tuple(
            BackendServer("postgres_primary", m.member_name, "UP" if i == 0 else "DOWN") for i, m in enumerate(PG)))
            for n in HA),
        vip_address=str(SPEC.vip.address), vip_holders=(HA[0].name,), config=SPEC.dcs)
    base.update(kw)
    return ClusterSnapshot(**base)


def running(node: str, *services: str, down: str = "") -> tuple[ServiceState, ...]:
    return tuple(ServiceState(node, s, s != down, None if s == down else 1, "stopped" if s == down else "running")
                 for s in services)


def postmaster(data: str = DATA, pid: int = 100, port: str = "5432") -> ProcessInfo:
    return ProcessInfo(pid, 1, "postgres", ("/usr/lib/postgresql/15/bin/postgres", "-D", data, f"--port={port}"))


def pg_facts(i: int, **kw: Any) -> NodeFacts:
    node = PG[i]
    base: dict[str, Any] = dict(
        services=running(node.name, "etcd", "patroni"), processes=(postmaster(),),
        etcd_env={"ETCD_INITIAL_CLUSTER_STATE": "existing"}, etcd_env_path="/etc/etcd/etcd.env", etcd_has_data=True,
        patroni_config={"etcd3": {"cacert": "/c/ca.crt", "cert": "/c/e.crt", "key": "/c/e.key"},
                        "postgresql": {"authentication": {"superuser": {"password": "pw"}},
                                       "pg_hba": HBA.splitlines()}},
        patroni_config_path="/etc/patroni/config.yml", pg_data=DATA, pg_hba=HBA,
        pg=PgFact(True, in_recovery=i != 0, data_checksums=True, wal_log_hints=True),
        clock_offset=0.0)
    base.update(kw)
    return NodeFacts(node, **base)


def ha_facts(i: int, **kw: Any) -> NodeFacts:
    return NodeFacts(HA[i], **{"services": running(HA[i].name, "haproxy", "keepalived"), "clock_offset": 0.0, **kw})


def evidence(*, snap: ClusterSnapshot | None = None, pg: dict[int, dict[str, Any]] | None = None,
             ha: dict[int, dict[str, Any]] | None = None, **kw: Any) -> Evidence:
    pg, ha = pg or {}, ha or {}
    nodes = tuple(ha_facts(i, **ha.get(i, {})) for i in range(3)) + tuple(pg_facts(i, **pg.get(i, {}))
                                                                         for i in range(3))
    return Evidence(SPEC, snap or snapshot(), nodes, "pw", NOW,
                    command=lambda n, s, a: f"pgha lab {a} {n} {s}", **kw)


def codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]


# -- the whole set -------------------------------------------------------------------------------


def test_healthy_evidence_gives_no_finding() -> None:
    found, notes = run_diagnoses(evidence())
    assert found == [] and notes == []


def test_a_crashing_diagnosis_is_a_note_not_a_crash() -> None:
    def broken(ev: Evidence) -> list[Finding]:
        raise RuntimeError("boom")

    found, notes = run_diagnoses(evidence(), (broken, *DIAGNOSES))
    assert found == [] and notes == ["diagnosis broken could not run: RuntimeError: boom"]


# -- etcd ---------------------------------------------------------------------------------------


def test_quorum_lost_names_the_stopped_members_and_their_start_commands() -> None:
    etcd = (EtcdMember(PG[0].member_name, "", False, error="unhealthy"),
            EtcdMember(PG[1].member_name, "", False, error="ConnectError"),
            EtcdMember(PG[2].member_name, "", False, error="ConnectError"))
    ev = evidence(snap=snapshot(etcd=etcd, members=()),
                  pg={1: {"services": running(PG[1].name, "etcd", "patroni", down="etcd")},
                      2: {"services": running(PG[2].name, "etcd", "patroni", down="etcd")}})
    [f] = dcs.etcd_quorum(ev)
    assert f.code == "etcd.quorum" and "0/3 members healthy" in f.problem and "no leader can be elected" in f.problem
    assert "postgresql-02 (postgres-02): etcd is stopped" in f.evidence
    assert f.fix.startswith("pgha lab start postgres-02 etcd ; pgha lab start postgres-03 etcd")
    assert dcs.no_leader(ev) == []  # quorum loss explains it


def test_one_member_down_keeps_quorum_but_is_reported() -> None:
    etcd = snapshot().etcd[:2] + (EtcdMember(PG[2].member_name, "", False, error="ConnectError"),)
    ev = evidence(snap=snapshot(etcd=etcd), pg={2: {"services": running(PG[2].name, "etcd", "patroni", down="etcd")}})
    [f] = dcs.etcd_quorum(ev)
    assert f.code == "etcd.member_down" and f.fix == "pgha lab start postgres-03 etcd"


def test_no_leader_with_healthy_etcd_points_at_patroni() -> None:
    ev = evidence(snap=snapshot(members=(member(1, "replica", "running"),)),
                  pg={0: {"services": running(PG[0].name, "etcd", "patroni", down="patroni"), "processes": ()}})
    [f] = dcs.no_leader(ev)
    assert f.code == "patroni.no_leader" and "pgha lab start postgres-01 patroni" in f.fix


def test_initial_cluster_state_new_on_a_running_cluster() -> None:
    ev = evidence(pg={1: {"etcd_env": {"ETCD_INITIAL_CLUSTER_STATE": "new"}}})
    [f] = dcs.etcd_state_new(ev)
    assert f.severity is Severity.WARNING and f.node == "postgres-02"
    assert "ETCD_INITIAL_CLUSTER_STATE=existing/" in f.fix and "pgha lab restart postgres-02 etcd" in f.fix


def test_initial_cluster_state_new_while_forming_is_fine() -> None:
    etcd = tuple(dataclasses.replace(m, healthy=False) for m in snapshot().etcd)
    ev = evidence(snap=snapshot(etcd=etcd), pg={i: {"etcd_env": {"ETCD_INITIAL_CLUSTER_STATE": "new"},
                                                    "etcd_has_data": False} for i in range(3)})
    assert dcs.etcd_state_new(ev) == []


def test_etcd_leader_on_the_patroni_leaders_node_is_a_warning_with_the_move() -> None:
    etcd = tuple(dataclasses.replace(m, is_leader=i == 0) for i, m in enumerate(snapshot().etcd))
    [f] = dcs.etcd_leader_with_patroni_leader(evidence(snap=snapshot(etcd=etcd)))
    assert f.severity is Severity.WARNING and f.node == "postgres-01" and f.fix == "pgha etcd move-leader"
    assert f.code == "etcd.leader_with_patroni_leader" and "one ttl" in f.problem
    assert dcs.etcd_leader_with_patroni_leader(evidence()) == []  # etcd leads elsewhere: nothing


# -- Patroni / PostgreSQL ------------------------------------------------------------------------------


def test_patroni_without_dcs_names_the_unreadable_key() -> None:
    key = FileFact("/c/e.key", "etcd", "etcd", 0o600, FileStat("/c/e.key", "etcd", "etcd", 0o600), acl=True,
                   postgres_needs_read=True, postgres_can_read=False)
    ev = evidence(pg={1: {"patroni_api": {"dcs_last_seen": 1}, "files": (key,),
                          "logs": {"patroni": "ERROR: Failed to get list of machines from https://x:2379/v3: "
                                              "PermissionError"}}})
    [f] = postgres.patroni_dcs(ev)
    assert f.code == "patroni.no_dcs" and "postgres cannot read etcd3.key /c/e.key" in f.fix
    [u] = tls.unreadable(ev)
    assert "Patroni cannot reach etcd" in u.problem and u.fix == \
        "on postgres-02: setfacl -m u:postgres:r /c/e.key (and u:postgres:rx on its directory)"


def test_start_failed_shows_the_postgresql_error() -> None:
    log = "2030-01-01 INFO: starting\n2030-01-01 UTC [12] FATAL:  private key file \"server.key\" has group or " \
          "world access\n2030-01-01 INFO: waiting"
    ev = evidence(snap=snapshot(members=(member(0, "leader", "running"), member(1), member(2, state="start failed"))),
                  pg={2: {"logs": {"patroni": log}}})
    [f] = postgres.start_failed(ev)
    assert "private key file" in f.evidence and "pgha reinit postgres-03" in f.fix


def test_replica_not_streaming_because_of_pg_hba() -> None:
    hba = "\n".join(line for line in HBA.splitlines() if str(PG[2].address) not in line)
    ev = evidence(snap=snapshot(members=(member(0, "leader", "running"), member(1), member(2, state="running"))),
                  pg={0: {"pg_hba": hba},
                      2: {"logs": {"patroni": 'FATAL:  no pg_hba.conf entry for replication connection from host '
                                              f'"{PG[2].address}", user "replicator", SSL encryption'}}})
    [f] = postgres.replica_not_streaming(ev)
    assert f"no replication entry for {PG[2].address}" in f.evidence and "no pg_hba.conf entry" in f.evidence
    assert "pgha restart postgres-01" in f.fix  # config.yml has the rule: the file was edited by hand


def test_replica_not_streaming_because_config_lacks_the_rule() -> None:
    hba = [r for r in HBA.splitlines() if str(PG[1].address) not in r]
    ev = evidence(snap=snapshot(members=(member(0, "leader", "running"), member(1, state="running"), member(2))),
                  pg={0: {"pg_hba": "\n".join(hba), "patroni_config": {"postgresql": {"pg_hba": hba}}}})
    [f] = postgres.replica_not_streaming(ev)
    assert f"add `hostssl replication replicator {PG[1].address}/32 scram-sha-256`" in f.fix and "pgha reload" in f.fix


def test_hba_rule_matching() -> None:
    assert postgres._hba_allows_replication("hostssl replication replicator 10.9.0.0/24 scram-sha-256", "10.9.0.204")
    assert postgres._hba_allows_replication("host replication all 0.0.0.0/0 md5", "10.9.0.204")
    assert not postgres._hba_allows_replication("hostssl all all 0.0.0.0/0 scram-sha-256", "10.9.0.204")
    assert not postgres._hba_allows_replication("# hostssl replication replicator 10.9.0.204/32 x", "10.9.0.204")


def test_rewind_failed_and_not_possible() -> None:
    ev = evidence(snap=snapshot(members=(member(1, "leader", "running"), member(0, state="stopped"), member(2))),
                  pg={0: {"logs": {"patroni": "pg_rewind: fatal: target server needs to use either data checksums "
                                              'or "wal_log_hints = on"'},
                          "pg": PgFact(True, data_checksums=False, wal_log_hints=False)}})
    found = postgres.rewind(ev)
    assert codes(found) == ["rewind.failed", "rewind.not_possible"]
    assert found[0].fix.startswith("`pgha reinit postgres-01`")
    assert "wal_log_hints=on" in found[1].fix


def test_postmaster_outside_patroni() -> None:
    debian = "/var/lib/postgresql/15/main"
    ev = evidence(pg={1: {"processes": (postmaster(), postmaster(debian, 200, "5433"))}})
    [f] = postgres.outside_patroni(ev)
    assert f.code == "postgres.outside_patroni" and "pid 200" in f.evidence and "port 5433" in f.evidence
    assert "systemctl disable --now postgresql" in f.fix


def test_postgresql_left_running_by_a_dead_patroni() -> None:
    ev = evidence(pg={2: {"services": running(PG[2].name, "etcd", "patroni", down="patroni")}})
    [f] = postgres.outside_patroni(ev)
    assert f.code == "postgres.no_patroni" and f.fix.startswith("pgha lab start postgres-03 patroni")
    assert proxy.services_down(ev) == []  # one finding for one fault


def test_postmasters_parsing() -> None:
    procs = (ProcessInfo(1, 0, "postgres", ("postgres: unit: checkpointer",)),
             ProcessInfo(2, 0, "postgres", ("/usr/bin/postgres", "-D/d/", "-p", "5439")),
             ProcessInfo(3, 0, "root", ("/usr/bin/etcd",)))
    assert [(p.pid, d, port) for p, d, port in postgres.postmasters(procs)] == [(2, "/d", "5439")]


def test_superuser_password_changed_in_the_database() -> None:
    err = 'OperationalError: connection failed: FATAL:  password authentication failed for user "postgres"'
    ev = evidence(pg={i: {"pg": PgFact(False, err)} for i in range(3)})
    [f] = postgres.superuser_password(ev)
    assert f.code == "postgres.password_db" and f.node == "postgres-01"
    assert "\\password postgres" in f.fix and "/etc/patroni/config.yml" in f.fix
    assert "pw" not in f.fix.split("PASSWORD")[1][:6]  # the password itself is never printed


def test_superuser_password_config_drift() -> None:
    config = {"postgresql": {"authentication": {"superuser": {"password": "other"}}, "pg_hba": HBA.splitlines()}}
    [f] = postgres.superuser_password(evidence(pg={1: {"patroni_config": config}}))
    assert f.code == "postgres.password_config" and f.severity is Severity.WARNING


# -- clients -------------------------------------------------------------------------------------


def test_vip_down_because_keepalived_is_dead_everywhere() -> None:
    ev = evidence(snap=snapshot(vip_holders=(), vip_error="ConnectionRefusedError"),
                  ha={i: {"services": running(HA[i].name, "haproxy", "keepalived", down="keepalived")}
                      for i in range(3)})
    found = proxy.vip(ev)
    assert codes(found) == ["vip.down"]
    assert found[0].fix == " ; ".join(f"pgha lab start {n.name} keepalived" for n in HA)
    assert codes(proxy.services_down(ev)) == ["service.keepalived_down"] * 3


def test_vip_on_two_hosts_restart_the_stale_keepalived() -> None:
    ev = evidence(snap=snapshot(vip_holders=(HA[0].name, HA[1].name)),
                  ha={0: {"logs": {"keepalived": "VRRP_Instance(VI_1) Entering MASTER STATE"}},
                      1: {"services": running(HA[1].name, "haproxy", "keepalived", down="keepalived"),
                          "logs": {"keepalived": "Entering MASTER STATE\nEntering BACKUP STATE"}}})
    [f] = proxy.vip(ev)
    assert f.code == "vip.split" and "haproxy-01, haproxy-02" in f.problem
    assert f.fix.startswith("pgha lab restart haproxy-02 keepalived")


def test_vip_on_two_masters_means_vrrp_is_blocked() -> None:
    log = {"logs": {"keepalived": "Entering MASTER STATE"}}
    ev = evidence(snap=snapshot(vip_holders=(HA[0].name, HA[1].name)), ha={0: log, 1: log})
    [f] = proxy.vip(ev)
    assert "protocol 112" in f.fix


def test_haproxy_routing_to_none_because_the_rest_api_is_blocked() -> None:
    views = list(snapshot().haproxy)
    views[2] = HaproxyView(HA[2].name, True, tuple(BackendServer("postgres_primary", n.member_name, "DOWN")
                                                    for n in PG))
    port = PortFact(HA[2].name, PG[0].name, str(PG[0].address), 8008, "Patroni REST API", False, "no answer")
    ev = evidence(snap=snapshot(haproxy=tuple(views)), ha={2: {"ports": (port,)}})
    [f] = proxy.haproxy_routing(ev)
    assert "routes primary traffic to no server" in f.problem and "open TCP 8008" in f.fix


def test_haproxy_check_failing_with_a_foreign_ca() -> None:
    views = list(snapshot().haproxy)
    views[1] = HaproxyView(HA[1].name, True, tuple(BackendServer("postgres_primary", n.member_name, "DOWN")
                                                    for n in PG))
    ca = CertFact("/etc/haproxy/ca.crt", "haproxy-ca", NOW + timedelta(days=3000), (), None, False)
    ev = evidence(snap=snapshot(haproxy=tuple(views)), ha={1: {"certs": (ca,)}})
    [f] = proxy.haproxy_routing(ev)
    assert "not the cluster CA" in f.evidence and "pgha lab restart haproxy-02 haproxy" in f.fix
    assert codes(tls.chain(ev)) == ["tls.ca_mismatch"]


# -- TLS and files -------------------------------------------------------------------------------


def test_certificate_expiry_and_missing_sans() -> None:
    soon = CertFact("/c/server.crt", "server", NOW + timedelta(days=10), (f"IP:{PG[0].address}",), True)
    ev = evidence(pg={0: {"certs": (soon,)}})
    [e] = tls.expiry(ev)
    assert e.severity is Severity.WARNING and "(10 days)" in e.evidence and "pgha certs" in e.fix
    [s] = tls.sans(ev)
    assert "missing IP:127.0.0.1, IP:10.9.0.210" in s.evidence


def test_key_mode_and_owner() -> None:
    loose = FileFact("/c/server.key", "postgres", "postgres", 0o600, FileStat("/c/server.key", "postgres",
                                                                               "postgres", 0o644))
    acl_ok = FileFact("/c/e.key", "etcd", "etcd", 0o600, FileStat("/c/e.key", "etcd", "etcd", 0o640), acl=True)
    cert_ok = FileFact("/c/ca.crt", "etcd", "etcd", 0o644, FileStat("/c/ca.crt", "etcd", "etcd", 0o644))
    owned = FileFact("/c/client.key", "postgres", "postgres", 0o600, FileStat("/c/client.key", "root", "root",
                                                                               0o600))
    [a, b] = tls.ownership(evidence(pg={0: {"files": (loose, acl_ok, cert_ok, owned)}}))
    assert "0644, expected postgres:postgres 0600" in a.evidence
    assert a.fix == "on postgres-01: chown postgres:postgres /c/server.key && chmod 0600 /c/server.key"
    assert "root:root" in b.evidence


# -- network -------------------------------------------------------------------------------------


def test_clock_skew_beyond_one_second() -> None:
    assert network.clock_skew(evidence(pg={1: {"clock_offset": 0.8}})) == []
    [f] = network.clock_skew(evidence(pg={1: {"clock_offset": 2.5}}))
    assert "postgres-02" in f.problem and "NTP" in f.fix


def test_blocked_port_versus_dead_service() -> None:
    blocked = PortFact(PG[0].name, PG[2].name, str(PG[2].address), 2380, "etcd peer", False, "no answer within 2 s")
    fine = PortFact(PG[1].name, PG[2].name, str(PG[2].address), 2380, "etcd peer", True)
    [f] = network.ports(evidence(pg={0: {"ports": (blocked,)}, 1: {"ports": (fine,)}}))
    assert f.problem == "port 2380 (etcd peer) on postgres-03 is not reachable from postgres-01"
    assert "allow TCP 2380 from postgres-01 to postgres-03" in f.fix
    # etcd stopped there: nobody reaches it, the etcd diagnoses say so, not the network one
    dead = dataclasses.replace(fine, ok=False, error="Connection refused")
    ev = evidence(pg={0: {"ports": (blocked,)}, 1: {"ports": (dead,)},
                      2: {"services": running(PG[2].name, "etcd", "patroni", down="etcd")}})
    assert network.ports(ev) == []


def test_printed_healthy_is_one_sentence_and_problems_a_table(capsys: Any) -> None:
    from pgha.cli.doctor_cmds import print_diagnosis
    from pgha.doctor import DoctorReport

    print_diagnosis(DoctorReport((), 0.42), "pretty")
    assert capsys.readouterr().out == "pgha doctor: nothing wrong found (0.4 s)\n"
    found = Finding("etcd has no quorum", "1/3 members healthy", "pgha lab start postgres-02 etcd", node="postgres-02")
    print_diagnosis(DoctorReport((found,), 0.42), "pretty")
    out = capsys.readouterr().out
    assert out.startswith("pgha doctor (0.4 s): 1 problem(s)") and "etcd has no quorum" in out
    print_diagnosis(DoctorReport((), 0.42), "json")  # scripts get the same schema either way
    assert '"healthy": true' in capsys.readouterr().out
