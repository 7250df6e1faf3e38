"""Node roles: the backup role (pgBackRest's repository host) next to postgres and haproxy, and every
place that decides by role: services, ports, certificates, plans, status."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509

from pgha import pki
from pgha.cli.ops_cmds import _status_pretty, status_data
from pgha.errors import SpecError
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
        "haproxy-01": ("haproxy", "keepalived"), "postgres-01": ("etcd", "patroni", "postgres_exporter"),
        "backup-01": (), "monitor-01": ("pgha-webhook", "prometheus-alertmanager", "prometheus-blackbox-exporter",
                                        "prometheus")}


def test_one_backup_node_at_most() -> None:
    data = default_data(lab=True)
    data["nodes"].append({"name": "backup-02", "role": "backup", "address": "10.203.0.208"})
    with pytest.raises(SpecError) as exc:
        parse(data)
    assert str(exc.value.message).startswith("cluster.yml: nodes[8].role: a second backup node (also nodes[6])")


def test_one_monitor_node_at_most() -> None:
    data = default_data(lab=True)
    data["nodes"].append({"name": "monitor-02", "role": "monitor", "address": "10.203.0.208"})
    with pytest.raises(SpecError) as exc:
        parse(data)
    assert str(exc.value.message).startswith("cluster.yml: nodes[8].role: a second monitor node (also nodes[7])")


def test_the_backup_node_is_in_no_port_path_of_the_others() -> None:
    spec = parse(default_data(lab=True))
    backup = spec.node("backup-01")
    assert all(t != backup for n in (None, *spec.nodes) for t, _, _ in port_matrix(spec, n))
    assert port_matrix(spec, backup) == []


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
    assert plan.users == ("postgres",) and plan.services == ()
    assert {(f.path, f.owner, f.mode) for f in plan.files} == {
        ("/etc/etcd/certs/ca.crt", "root", 0o644), ("/etc/etcd/certs/server.crt", "root", 0o644),
        ("/etc/etcd/certs/server.key", "postgres", 0o600)}


def test_status_says_when_there_are_no_backups() -> None:
    spec = parse(without_backup())
    assert spec.backup_node is None
    assert status_data(spec, snapshot(spec))["backup"] is None
    group = _status_pretty(spec, snapshot(spec))
    assert "Backups: [yellow]none[/] (the spec has no backup node)" in group.renderables
    with_backup = parse(default_data(lab=True))
    assert status_data(with_backup, snapshot(with_backup))["backup"] == {"node": "backup-01"}
