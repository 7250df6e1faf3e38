"""Rendering: golden files for the default lab spec, and the seed's owners, modes and security fixes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pgha import spec as spec_mod
from pgha.plan import CertFiles, NodePlan, build
from pgha.secrets import Secrets

GOLDEN = Path(__file__).parent / "golden"
SPEC = spec_mod.parse(spec_mod.default_data(lab=True))
SECRETS = Secrets(superuser_password="SuperSecret1", replication_password="ReplSecret1",
                  restapi_password="RestSecret1", vrrp_password="Vrrp1234")
CERTS = CertFiles(ca_crt=b"CA\n", etcd_crt=b"ETCD CRT\n", etcd_key=b"ETCD KEY\n", server_crt=b"SRV CRT\n",
                  server_key=b"SRV KEY\n", client_crt=b"CLI CRT\n", client_key=b"CLI KEY\n")
TEXT_FILES = ("etcd.env", "config.yml", "haproxy.cfg", "keepalived.conf", "check_haproxy.sh", "etcd.service",
              "patroni.service")


def plans() -> list[NodePlan]:
    return [build(SPEC, n, CERTS, SECRETS) for n in SPEC.nodes]


def test_golden_files() -> None:
    update = os.environ.get("PGHA_UPDATE_GOLDEN") == "1"
    compared = 0
    for plan in plans():
        for f in plan.files:
            if Path(f.path).name not in TEXT_FILES:
                continue
            golden = GOLDEN / plan.node.name / f.path.lstrip("/")
            if update:
                golden.parent.mkdir(parents=True, exist_ok=True)
                golden.write_bytes(f.content)
            assert golden.read_bytes() == f.content, f"{golden} differs (PGHA_UPDATE_GOLDEN=1 to regenerate)"
            compared += 1
    assert compared == 3 * 4 + 3 * 3  # postgres: env, config, 2 units; haproxy: cfg, conf, script


def test_owners_modes_and_acls_are_the_seeds() -> None:
    pg1 = plans()[3]
    meta = {f.path: (f.owner, f.group, f.mode, f.acl) for f in pg1.files}
    assert meta["/etc/etcd/certs/etcd-node1.key"] == ("etcd", "etcd", 0o600, ("u:postgres:r",))
    assert meta["/etc/etcd/certs/server.key"][:3] == ("postgres", "postgres", 0o600)
    assert meta["/etc/etcd/certs/server.pem"][:3] == ("postgres", "postgres", 0o600)
    assert meta["/etc/patroni/config.yml"][:3] == ("postgres", "postgres", 0o600)
    certs_dir = next(d for d in pg1.dirs if d.path == "/etc/etcd/certs")
    assert (certs_dir.owner, certs_dir.mode, certs_dir.acl) == ("etcd", 0o700, ("u:postgres:rx",))
    ha1 = plans()[0]
    script = ha1.file("/etc/keepalived/check_haproxy.sh")
    assert script.owner == "root" and script.mode & 0o022 == 0  # only root may write it


def test_patroni_config_fixes_the_seeds_traps() -> None:
    cfg = yaml.safe_load(plans()[3].file("/etc/patroni/config.yml").content)
    hba = cfg["postgresql"]["pg_hba"]
    assert hba[0] == "local all postgres peer"
    assert hba[-1] == "hostnossl all all 0.0.0.0/0 reject"
    assert all(r.startswith("hostssl") and r.endswith("scram-sha-256") for r in hba[1:-1])
    assert cfg["ctl"]["insecure"] is False and cfg["ctl"]["cacert"].endswith("ca.crt")
    assert cfg["restapi"]["authentication"] == {"username": "patroni", "password": "RestSecret1"}
    assert cfg["etcd3"]["protocol"] == "https" and {"cacert", "cert", "key"} <= set(cfg["etcd3"])
    assert "data-checksums" in cfg["bootstrap"]["initdb"]
    assert cfg["bootstrap"]["dcs"]["postgresql"]["use_pg_rewind"] is True
    assert cfg["bootstrap"]["dcs"]["postgresql"]["parameters"]["wal_log_hints"] == "on"
    assert cfg["postgresql"]["authentication"]["superuser"]["password"] == "SuperSecret1"
    assert "strongpassword" not in plans()[3].file("/etc/patroni/config.yml").content.decode()


@pytest.mark.parametrize("state", ["new", "existing"])
def test_etcd_env_cluster_state(state: str) -> None:
    from pgha.render.etcd import parse_env

    plan = build(SPEC, SPEC.nodes[4], CERTS, SECRETS, etcd_state=state)  # type: ignore[arg-type]
    env = parse_env(plan.file("/etc/etcd/etcd.env").content.decode())
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == state
    assert env["ETCD_NAME"] == "postgresql-02"
    assert env["ETCD_INITIAL_CLUSTER"] == ",".join(
        f"postgresql-0{i}=https://10.203.0.20{i + 2}:2380" for i in (1, 2, 3))
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"


def test_keepalived_priorities_and_haproxy_checks() -> None:
    confs = [p.file("/etc/keepalived/keepalived.conf").content.decode() for p in plans()[:3]]
    for conf, (state, prio) in zip(confs, [("MASTER", 100), ("BACKUP", 90), ("BACKUP", 80)], strict=True):
        assert f"state {state}" in conf and f"priority {prio}" in conf
        assert "virtual_router_id 51" in conf and "auth_pass Vrrp1234" in conf
    cfg = plans()[0].file("/etc/haproxy/haproxy.cfg").content.decode()
    assert cfg.count("check-ssl verify required ca-file") == 6  # 3 servers x (primary, replicas)
    assert "on-marked-down shutdown-sessions" in cfg and " verify none\n" not in cfg
