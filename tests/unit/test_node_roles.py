"""Node roles: the backup role (pgBackRest's repository host) next to postgres and haproxy, and every
place that decides by role: services, ports, certificates, plans, status."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509

from pgha import pki
from pgha.backup.repo import backup_node, parse_info
from pgha.backup.restore import Target, check_range
from pgha.cli.ops_cmds import _status_pretty, status_data
from pgha.errors import PghaError, SpecError, UsageError
from pgha.layout import StateLayout
from pgha.plan import CertFiles, build
from pgha.secrets import ensure_secrets, load_secrets
from pgha.spec import Role, default_data, parse
from pgha.topology import ROLE_SERVICES, port_matrix, services_of
from tests.unit.fakes import snapshot


def without_backup() -> dict[str, Any]:
    data = default_data(lab=True)
    data["nodes"] = [n for n in data["nodes"] if n["role"] != "backup"]
    return data


def test_every_role_has_its_services() -> None:
    assert set(ROLE_SERVICES) == set(Role)
    spec = parse(default_data(lab=True))
    assert {n.name: services_of(spec, n) for n in spec.nodes if n.name.endswith("01")} == {
        "haproxy-01": ("haproxy", "keepalived"), "postgres-01": ("pgbackrest", "etcd", "patroni", "postgres_exporter"),
        "backup-01": ("pgbackrest",), "monitor-01": ("pgha-webhook", "prometheus-alertmanager",
                                                     "prometheus-blackbox-exporter", "prometheus")}
    plain = parse(without_backup())
    assert services_of(plain, plain.node("postgres-01")) == ("etcd", "patroni", "postgres_exporter")


@pytest.mark.parametrize(("role", "first"), [("backup", 6), ("monitor", 7)])
def test_one_backup_and_one_monitor_node_at_most(role: str, first: int) -> None:
    data = default_data(lab=True)
    data["nodes"].append({"name": f"{role}-02", "role": role, "address": "10.203.0.208"})
    with pytest.raises(SpecError) as exc:
        parse(data)
    assert str(exc.value.message).startswith(f"cluster.yml: nodes[8].role: a second {role} node (also nodes[{first}])")


def test_backup_and_postgres_nodes_reach_each_others_pgbackrest() -> None:
    spec = parse(default_data(lab=True))
    backup = spec.node("backup-01")
    assert {(t.name, port) for t, port, _ in port_matrix(spec, backup)} == {
        (n.name, 8432) for n in spec.postgres_nodes}
    assert {(s.name, port) for s in spec.nodes for t, port, _ in port_matrix(spec, s) if t == backup} == {
        (n.name, 8432) for n in spec.postgres_nodes}
    assert all(t != backup for t, _, _ in port_matrix(spec, None))  # pgha runs pgBackRest on the node itself
    plain = parse(without_backup())
    assert all(port != 8432 for n in plain.nodes for _, port, _ in port_matrix(plain, n))


def test_backup_node_certificate_and_plan(tmp_path: Any) -> None:
    spec = parse(default_data(lab=True))
    state = StateLayout(tmp_path / "state")
    pki.ensure_pki(spec, state)
    ensure_secrets(state)
    backup = spec.node("backup-01")
    cert = x509.load_pem_x509_certificate((state.pki / "server-backup-01.crt").read_bytes())
    assert pki.common_name(cert) == "backup-01"
    assert {"IP:10.203.0.206", "DNS:backup-01"} <= set(pki.san_strings(cert))
    assert set(pki.extended_usages(cert)) == {"serverAuth", "clientAuth"}  # also pgBackRest's client identity
    plan = build(spec, backup, CertFiles.load(state, spec, backup), load_secrets(state))
    assert plan.users == ("postgres",) and [s.name for s in plan.services] == ["pgbackrest"]
    assert plan.service("pgbackrest").user == "postgres"
    assert {(f.path, f.owner, f.mode) for f in plan.files} == {
        ("/etc/etcd/certs/ca.crt", "root", 0o644), ("/etc/etcd/certs/server.crt", "root", 0o644),
        ("/etc/etcd/certs/server.key", "postgres", 0o600),
        ("/etc/pgbackrest/pgbackrest.conf", "root", 0o640),  # the repository's passphrase: root and postgres
        ("/etc/systemd/system/pgbackrest.service", "root", 0o644)}


def test_status_says_when_there_are_no_backups() -> None:
    spec = parse(without_backup())
    assert spec.backup_node is None
    assert status_data(spec, snapshot(spec))["backup"] is None
    group = _status_pretty(spec, snapshot(spec))
    assert "Backups: [yellow]none[/] (the spec has no backup node)" in group.renderables
    with_backup = parse(default_data(lab=True))
    assert status_data(with_backup, snapshot(with_backup))["backup"] == {"node": "backup-01"}


def test_a_cluster_without_a_backup_node_takes_no_backups() -> None:
    with pytest.raises(UsageError, match="cluster postgresql-cluster has no backup node: it takes no backups"):
        backup_node(parse(without_backup()))


INFO = [{"name": "c", "status": {"message": "ok"},
         "archive": [{"min": "000000010000000000000001", "max": "000000020000000000000009"}],
         "backup": [{"label": "20261130-140416F", "type": "full", "prior": None,
                     "timestamp": {"start": 1796047456, "stop": 1796047461},
                     "archive": {"start": "00000001000000000000000A", "stop": "00000001000000000000000A"},
                     "info": {"size": 30593713, "repository": {"delta": 3793760, "size": 3793760}},
                     "lsn": {"start": "0/A000028", "stop": "0/A000100"}}]}]


def test_repository_info_and_the_restorable_range() -> None:
    info = parse_info(json.dumps(INFO), "c")
    assert (info.ok, info.wal_min, info.wal_max) == (True, "000000010000000000000001", "000000020000000000000009")
    full = info.backups[0]
    assert (full.label, full.seconds, full.size, full.repo_size) == ("20261130-140416F", 5.0, 30593713, 3793760)
    assert parse_info(json.dumps(INFO), "other").status == "missing stanza"
    now = full.stopped + timedelta(hours=1)
    check_range(Target.of((full.stopped + timedelta(minutes=1)).isoformat(), None, False), info, now)
    for when in (full.started, now + timedelta(seconds=1)):
        with pytest.raises(UsageError, match=r"is outside the restorable range .* \(end of the oldest backup, "
                                             r"20261130-140416F\) \.\. .* \(now\)"):
            check_range(Target.of(when.isoformat(), None, False), info, now)
    with pytest.raises(UsageError, match=r"--lsn 0/A000000 is before the end of the oldest backup \(0/A000100"):
        check_range(Target.of(None, "0/a000000", False), info, now)
    with pytest.raises(PghaError, match="the repository holds no backup to restore from"):
        check_range(Target.of(None, None, True), parse_info(json.dumps([{**INFO[0], "backup": []}]), "c"), now)
