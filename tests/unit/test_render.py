"""Rendering: golden files for the default lab spec, the seed's owners/modes/ACLs, the security fixes, and
`pgha init` + `pgha certs` + `pgha render` end to end.

Regenerate the golden files after an intended change, then review the diff:

    PGHA_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render.py
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha import spec as spec_mod
from pgha.cli import main
from pgha.lab.target import LabTarget
from pgha.layout import StateLayout, etcd_cert_name
from pgha.pki import cert_paths, combined_pem, ensure_pki
from pgha.plan import CertFiles, FileEntry, NodePlan, build
from pgha.render.etcd import parse_env
from pgha.secrets import Secrets, ensure_secrets, load_secrets
from pgha.spec import ClusterSpec, Node, default_data, parse
from pgha.target import ServerTarget

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("PGHA_UPDATE_GOLDEN") == "1"

# Fixed credentials (the golden files hold them; tests/unit/test_rendering.py shares the same files).
SECRETS = Secrets(superuser_password="SuperSecret1", replication_password="ReplSecret1",
                  restapi_password="RestSecret1", vrrp_password="Vrrp1234", etcd_root_password="EtcdRoot1",
                  etcd_patroni_password="EtcdPatroni1", etcd_probe_password="EtcdProbe1", app_password="AppSecret1",
                  rewind_password="RewindSecret1", haproxy_stats_password="StatsSecret1",
                  monitor_password="MonitorSecret1", backup_cipher_pass="BackupCipher1")

POSTGRES_CONFIGS = ("etc/etcd/etcd.env", "etc/patroni/config.yml", "etc/patroni/pgha-role-change.json",
                    "etc/systemd/system/etcd.service", "etc/systemd/system/patroni.service",
                    "etc/prometheus/web.yml", "etc/prometheus/postgres_exporter.env",
                    "etc/prometheus/postgres_exporter.pass", "etc/systemd/system/postgres_exporter.service",
                    "etc/pgbackrest/pgbackrest.conf", "etc/systemd/system/pgbackrest.service")
MONITOR_CONFIGS = ("etc/prometheus/prometheus.yml", "etc/prometheus/pgha-rules.yml", "etc/prometheus/alertmanager.yml",
                   "etc/prometheus/blackbox.yml", "etc/prometheus/web.yml",
                   *(f"etc/systemd/system/{s}.service" for s in ("pgha-webhook", "prometheus-alertmanager",
                                                                  "prometheus-blackbox-exporter", "prometheus")))
HAPROXY_CONFIGS = ("etc/haproxy/haproxy.cfg", "etc/keepalived/keepalived.conf", "etc/keepalived/check_haproxy.sh",
                   "etc/systemd/system/keepalived.service.d/pgha.conf")
BACKUP_CONFIGS = ("etc/pgbackrest/pgbackrest.conf", "etc/systemd/system/pgbackrest.service")
NODES = [f"haproxy-0{i}" for i in (1, 2, 3)] + [f"postgres-0{i}" for i in (1, 2, 3)] + ["backup-01", "monitor-01"]
GOLDEN_CASES = [(n, p) for n in NODES for p in {"postgres": POSTGRES_CONFIGS, "haproxy": HAPROXY_CONFIGS,
                                                 "backup": BACKUP_CONFIGS,
                                                 "monitor": MONITOR_CONFIGS}[n.split("-")[0]]]


def fake_certs(spec: ClusterSpec, node: Node) -> CertFiles:
    """Recognisable bytes per file and node, so a test can tell which one landed where."""
    if not node.is_postgres:
        return CertFiles(ca_crt=b"CA PEM\n")
    etcd = etcd_cert_name(spec, node).upper()
    return CertFiles(ca_crt=b"CA PEM\n", etcd_crt=f"{etcd} CRT\n".encode(), etcd_key=f"{etcd} KEY\n".encode(),
                     server_crt=f"SERVER {node.name} CRT\n".encode(), server_key=f"SERVER {node.name} KEY\n".encode(),
                     patroni_crt=b"PATRONI CRT\n", patroni_key=b"PATRONI KEY\n")


def render(spec: ClusterSpec, node_name: str, **kwargs: Any) -> NodePlan:
    node = spec.node(node_name)
    return build(spec, node, fake_certs(spec, node), kwargs.pop("secrets", SECRETS), **kwargs)


@pytest.fixture(scope="module")
def spec() -> ClusterSpec:
    return parse(default_data(lab=True))


@pytest.fixture(scope="module")
def plans(spec: ClusterSpec) -> dict[str, NodePlan]:
    return {n.name: render(spec, n.name) for n in spec.nodes}


def text(plan: NodePlan, path: str) -> str:
    return plan.file(path).content.decode()


def patroni_config(plan: NodePlan) -> dict[str, Any]:
    return yaml.safe_load(plan.file(plan.layout.patroni_config).content)


# -- golden files ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("node_name", "path"), GOLDEN_CASES, ids=[f"{n}:{p}" for n, p in GOLDEN_CASES])
def test_matches_golden_file(plans: dict[str, NodePlan], node_name: str, path: str) -> None:
    rendered = plans[node_name].file(f"/{path}").content.decode()
    golden = GOLDEN / node_name / path
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered)
        pytest.skip(f"rewrote {golden.relative_to(GOLDEN.parent)}")
    assert golden.exists(), f"no golden file {golden}: run PGHA_UPDATE_GOLDEN=1 pytest {__file__}"
    assert rendered == golden.read_text(), f"{node_name}:/{path} differs from its golden file " \
                                           "(PGHA_UPDATE_GOLDEN=1 regenerates it if the change is intended)"


def test_role_change_callback_is_pghas_etcd_leader_module(plans: dict[str, NodePlan]) -> None:
    from pgha import etcd_leader

    plan = plans["postgres-02"]
    script = plan.file(plan.layout.role_change_script)
    assert script.content == Path(etcd_leader.__file__).read_bytes() and script.mode == 0o755
    callback = patroni_config(plan)["postgresql"]["callbacks"]["on_role_change"]
    assert callback.split() == ["/opt/pgha/patroni/bin/python", plan.layout.role_change_script, "--config",
                                plan.layout.role_change_config]
    config = json.loads(plan.file(plan.layout.role_change_config).content)
    etcd3 = patroni_config(plan)["etcd3"]
    assert config["member"] == "postgresql-02" and len(config["endpoints"]) == 3
    assert (config["cacert"], config["cert"], config["key"]) == (etcd3["cacert"], etcd3["cert"], etcd3["key"])


def test_golden_files_cover_every_text_config(plans: dict[str, NodePlan]) -> None:
    """A config added to a plan needs a golden file; a golden file of a dropped config goes stale."""
    text_configs = {(name, f.path.lstrip("/")) for name, plan in plans.items() for f in plan.files
                    if not f.path.startswith(("/etc/etcd/certs/", "/etc/prometheus/certs/"))
                    and f.path not in ("/etc/haproxy/ca.crt", "/etc/patroni/pgha-role-change.py",
                                       "/etc/prometheus/pgha-webhook.py")}
    assert text_configs == set(GOLDEN_CASES)
    on_disk = {(p.relative_to(GOLDEN).parts[0], str(Path(*p.relative_to(GOLDEN).parts[1:])))
               for p in GOLDEN.rglob("*") if p.is_file()}
    assert on_disk == set(GOLDEN_CASES)


# -- owners, modes, ACLs (seed section 5 step 6) ----------------------------------------------------


def meta(f: FileEntry) -> tuple[str, str, int, tuple[str, ...]]:
    return f.owner, f.group, f.mode, f.acl


PG_READ = ("u:postgres:r",)
POSTGRES_FILES = {
    "/etc/etcd/certs/ca.crt": ("etcd", "etcd", 0o644, PG_READ),
    "/etc/etcd/certs/etcd-node1.crt": ("etcd", "etcd", 0o644, ()),
    "/etc/etcd/certs/etcd-node1.key": ("etcd", "etcd", 0o600, ()),  # etcd's alone: it opens the peer port
    "/etc/etcd/certs/server.crt": ("postgres", "postgres", 0o644, ()),
    "/etc/etcd/certs/server.key": ("postgres", "postgres", 0o600, ()),
    "/etc/etcd/certs/server.pem": ("postgres", "postgres", 0o600, ()),
    "/etc/etcd/certs/patroni.crt": ("postgres", "postgres", 0o644, ()),
    "/etc/etcd/certs/patroni.key": ("postgres", "postgres", 0o600, ()),
    "/etc/etcd/etcd.env": ("root", "etcd", 0o640, ()),
    "/etc/patroni/config.yml": ("postgres", "postgres", 0o600, ()),
    "/etc/patroni/pgha-role-change.py": ("root", "postgres", 0o755, ()),
    "/etc/patroni/pgha-role-change.json": ("root", "postgres", 0o640, ()),
    "/etc/systemd/system/etcd.service": ("root", "root", 0o644, ()),
    "/etc/systemd/system/patroni.service": ("root", "root", 0o644, ()),
    # postgres_exporter runs as prometheus: copies of the node's certificate, its key prometheus' alone.
    "/etc/prometheus/certs/ca.crt": ("root", "prometheus", 0o644, ()),
    "/etc/prometheus/certs/postgres-01.crt": ("root", "prometheus", 0o644, ()),
    "/etc/prometheus/certs/postgres-01.key": ("prometheus", "prometheus", 0o600, ()),
    "/etc/prometheus/web.yml": ("root", "prometheus", 0o640, ()),
    "/etc/prometheus/postgres_exporter.env": ("root", "root", 0o600, ()),
    "/etc/prometheus/postgres_exporter.pass": ("prometheus", "prometheus", 0o600, ()),
    "/etc/systemd/system/postgres_exporter.service": ("root", "root", 0o644, ()),
    "/etc/pgbackrest/pgbackrest.conf": ("root", "postgres", 0o640, ()),
    "/etc/systemd/system/pgbackrest.service": ("root", "root", 0o644, ()),
}
HAPROXY_FILES = {
    "/etc/haproxy/ca.crt": ("root", "root", 0o644, ()),
    "/etc/haproxy/haproxy.cfg": ("root", "root", 0o600, ()),
    "/etc/keepalived/keepalived.conf": ("root", "root", 0o600, ()),  # holds the VRRP password
    "/etc/keepalived/check_haproxy.sh": ("root", "root", 0o755, ()),
    "/etc/systemd/system/keepalived.service.d/pgha.conf": ("root", "root", 0o644, ()),  # releases the VIP
}


def test_postgres_node_files_owners_modes_acls(plans: dict[str, NodePlan]) -> None:
    plan = plans["postgres-01"]
    assert {f.path: meta(f) for f in plan.files} == POSTGRES_FILES
    dirs = {d.path: (d.owner, d.group, d.mode, d.acl) for d in plan.dirs}
    # Root owns the directories of keys and configs (a service user cannot swap their files); etcd reads
    # the certificates through the group, postgres (Patroni, PostgreSQL) through an ACL.
    assert dirs["/etc/etcd/certs"] == ("root", "etcd", 0o750, ("u:postgres:rx",))
    assert dirs["/var/lib/etcd"] == ("etcd", "etcd", 0o700, ())
    assert dirs["/etc/patroni"] == ("root", "postgres", 0o750, ())
    # Every directory holding a file pgha writes is root's: no file is written where a service user writes.
    holders = {str(Path(f.path).parent) for f in plan.files}
    assert all(d.owner == "root" for d in plan.dirs if d.path in holders)
    assert plan.users == ("etcd", "postgres", "prometheus")


def test_haproxy_node_files_owners_modes(plans: dict[str, NodePlan]) -> None:
    plan = plans["haproxy-01"]
    assert {f.path: meta(f) for f in plan.files} == HAPROXY_FILES
    assert plan.users == ("haproxy", "keepalived_script")


def test_tls_files_are_the_certificates_keys_and_ca_files(plans: dict[str, NodePlan]) -> None:
    """What `pgha certs rotate` pushes: every certificate, key and CA file of the node, nothing else."""
    pg = {f.path.removeprefix("/etc/etcd/certs/") for f in plans["postgres-01"].tls_files}
    assert pg == {"ca.crt", "etcd-node1.crt", "etcd-node1.key", "server.crt", "server.key", "server.pem",
                  "patroni.crt", "patroni.key"}
    assert [f.path for f in plans["haproxy-01"].tls_files] == ["/etc/haproxy/ca.crt"]


def test_keepalived_check_script_only_root_can_change(plans: dict[str, NodePlan]) -> None:
    """keepalived's script security: the script and every directory above it writable by root only."""
    for name in ("haproxy-01", "haproxy-02", "haproxy-03"):
        plan = plans[name]
        script = plan.file(plan.layout.keepalived_check)
        assert (script.owner, script.group) == ("root", "root")
        assert script.mode & 0o022 == 0 and script.mode & 0o111 == 0o111  # not writable by others, runnable
        parent = next(d for d in plan.dirs if d.path == str(Path(script.path).parent))
        assert parent.owner == "root" and parent.mode & 0o022 == 0
        assert text(plan, script.path).startswith("#!/bin/bash\n")


def test_each_postgres_node_gets_its_own_certificates(plans: dict[str, NodePlan]) -> None:
    for i in (1, 2, 3):
        plan = plans[f"postgres-0{i}"]
        assert plan.file(f"/etc/etcd/certs/etcd-node{i}.key").content == f"ETCD-NODE{i} KEY\n".encode()
        assert plan.file("/etc/etcd/certs/server.key").content == f"SERVER postgres-0{i} KEY\n".encode()
        assert plan.file("/etc/etcd/certs/server.pem").content == combined_pem(
            f"SERVER postgres-0{i} CRT\n".encode(), f"SERVER postgres-0{i} KEY\n".encode())
        assert not [f for f in plan.files if re.search(rf"etcd-node(?!{i})\d", f.path)]


def test_the_operators_and_the_probes_credentials_never_reach_a_node(spec: ClusterSpec, tmp_path: Path) -> None:
    """pgha's own certificate is etcd's root: it stays on the operator's machine with the probes' one and
    both passwords; a node gets Patroni's certificate and password only (issue 18: the operator's
    certificate on every node let postgres rewrite the cluster's config in etcd)."""
    state = StateLayout(tmp_path / "state")
    ensure_pki(spec, state)
    secrets = ensure_secrets(state)
    home = [p.read_bytes() for stem in ("client", "probe") for p in cert_paths(state, stem)]
    home += [secrets.etcd_root_password.encode(), secrets.etcd_probe_password.encode()]
    patroni_key = cert_paths(state, "patroni")[1].read_bytes()
    for node in spec.nodes:
        plan = build(spec, node, CertFiles.load(state, spec, node), secrets)
        assert not [f.path for f in plan.files for secret in home if secret in f.content], node.name
        assert [f.path for f in plan.files if f.content == patroni_key] == (
            ["/etc/etcd/certs/patroni.key"] if node.is_postgres else [])


# -- Patroni's config.yml ----------------------------------------------------------------------------


@pytest.mark.parametrize("node_name", ["postgres-01", "postgres-02", "postgres-03"])
def test_patroni_pg_hba_is_tls_and_scram_only(plans: dict[str, NodePlan], node_name: str) -> None:
    hba = patroni_config(plans[node_name])["postgresql"]["pg_hba"]
    special = {"local all postgres peer", "hostnossl all all 0.0.0.0/0 reject",
               "host all postgres,rewind,pgha_monitor 0.0.0.0/0 reject"}
    assert special <= set(hba)
    others = [rule for rule in hba if rule not in special]
    assert others and all(r.split()[0] == "hostssl" and r.split()[-1] == "scram-sha-256" for r in others), others
    replication = {r.split()[3] for r in others if r.split()[1] == "replication"}
    assert replication == {"127.0.0.1/32", "10.203.0.203/32", "10.203.0.204/32", "10.203.0.205/32"}


def hba_method(hba: list[str], database: str, user: str, address: str) -> str | None:
    """PostgreSQL's first-match rule over TCP with TLS: the method of the first line that matches, if any."""
    import ipaddress

    for line in hba:
        kind, dbs, users, net, method = line.split()[:5] if not line.startswith("local") else [""] * 5
        if kind not in ("host", "hostssl"):
            continue
        db_ok = dbs == "all" and database != "replication" or database in dbs.split(",")
        if db_ok and (users == "all" or user in users.split(",")) and \
                ipaddress.ip_address(address) in ipaddress.ip_network(net):
            return method
    return None


def test_pg_hba_superuser_and_rewind_only_from_their_addresses(spec: ClusterSpec) -> None:
    """The superuser from the PostgreSQL nodes and the admin addresses (default: the lab's machine), the
    rewind role from the nodes, both rejected elsewhere (the HAProxy nodes: the VIP's clients); the
    application role from anywhere."""
    hba = patroni_config(render(spec, "postgres-02"))["postgresql"]["pg_hba"]
    nodes, proxies, host = ("10.203.0.203", "10.203.0.205"), ("10.203.0.200", "10.203.0.9"), "10.203.0.1"
    for address in (*nodes, host, "127.0.0.1"):
        assert hba_method(hba, "postgres", "postgres", address) == "scram-sha-256", address
    for address in proxies:
        assert hba_method(hba, "postgres", "postgres", address) == "reject", address
        assert hba_method(hba, "app", "app", address) == "scram-sha-256", address
    assert hba_method(hba, "postgres", "rewind", nodes[1]) == "scram-sha-256"
    assert hba_method(hba, "postgres", "rewind", host) == "reject"
    assert hba_method(hba, "app", "rewind", nodes[1]) == "reject"
    data = default_data(lab=True)
    data["postgresql"] = {"admin_addresses": ["192.0.2.0/28"]}
    hba = patroni_config(render(parse(data), "postgres-02"))["postgresql"]["pg_hba"]
    assert hba_method(hba, "postgres", "postgres", "192.0.2.7") == "scram-sha-256"
    assert hba_method(hba, "postgres", "postgres", host) == "reject"


@pytest.mark.parametrize("node_name", ["postgres-01", "postgres-02", "postgres-03"])
def test_patroni_config_security_settings(plans: dict[str, NodePlan], node_name: str) -> None:
    plan = plans[node_name]
    cfg = patroni_config(plan)
    i = node_name[-1]
    assert cfg["ctl"].get("insecure") is not True
    assert cfg["ctl"]["cacert"] == "/etc/etcd/certs/ca.crt"
    assert cfg["restapi"]["authentication"] == {"username": "patroni", "password": "RestSecret1"}
    assert cfg["restapi"]["certfile"] == "/etc/etcd/certs/server.pem"
    assert cfg["etcd3"] == {  # Patroni's own etcd user and certificate, the same on every node
        "hosts": ["10.203.0.203:2379", "10.203.0.204:2379", "10.203.0.205:2379"], "protocol": "https",
        "cacert": "/etc/etcd/certs/ca.crt", "cert": "/etc/etcd/certs/patroni.crt",
        "key": "/etc/etcd/certs/patroni.key", "username": "patroni", "password": "EtcdPatroni1"}
    assert (cfg["ctl"]["certfile"], cfg["ctl"]["keyfile"]) == ("/etc/etcd/certs/patroni.crt",
                                                               "/etc/etcd/certs/patroni.key")
    assert "data-checksums" in cfg["bootstrap"]["initdb"]
    dcs = cfg["bootstrap"]["dcs"]
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["parameters"]["wal_log_hints"] == "on"
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (30, 10, 10)
    assert (cfg["name"], cfg["postgresql"]["connect_address"]) == (f"postgresql-0{i}", f"10.203.0.20{int(i) + 2}:5432")
    params = cfg["postgresql"]["parameters"]
    assert (params["ssl"], params["password_encryption"]) == ("on", "scram-sha-256")
    for role in ("superuser", "replication", "rewind"):
        assert cfg["postgresql"]["authentication"][role]["sslmode"] == "verify-full"
    # pg_rewind connects with a role of its own, not as the superuser.
    assert cfg["postgresql"]["authentication"]["rewind"]["username"] == "rewind"
    assert cfg["postgresql"]["authentication"]["rewind"]["password"] == "RewindSecret1"


def test_patroni_can_read_every_file_its_config_names(plans: dict[str, NodePlan]) -> None:
    """Patroni and PostgreSQL run as postgres: each certificate/key path must be a planned file it can read."""
    plan = plans["postgres-02"]
    cfg = patroni_config(plan)
    named = [cfg["etcd3"][k] for k in ("cacert", "cert", "key")]
    named += [cfg["ctl"][k] for k in ("cacert", "certfile", "keyfile")]
    named += [cfg["restapi"][k] for k in ("certfile", "cafile")]
    named += [cfg["postgresql"]["parameters"][k] for k in ("ssl_cert_file", "ssl_key_file", "ssl_ca_file")]
    for path in named:
        f = plan.file(path)
        assert f.owner == "postgres" or f.mode & 0o004 or "u:postgres:r" in f.acl, path


def test_root_prefix_moves_every_path(spec: ClusterSpec) -> None:
    root = "/srv/lab/postgres-01"
    plan = render(spec, "postgres-01", root=root)
    assert all(f.path.startswith(root + "/") for f in plan.files)
    assert all(d.path.startswith(root + "/") for d in plan.dirs)
    cfg = patroni_config(plan)
    assert cfg["etcd3"]["key"] == f"{root}/etc/etcd/certs/patroni.key"
    assert cfg["postgresql"]["data_dir"] == f"{root}/var/lib/postgresql/data"
    assert cfg["postgresql"]["bin_dir"] == "/usr/lib/postgresql/15/bin"  # binaries are the machine's own
    env = parse_env(text(plan, f"{root}/etc/etcd/etcd.env"))
    assert env["ETCD_DATA_DIR"] == f"{root}/var/lib/etcd"
    assert env["ETCD_TRUSTED_CA_FILE"] == f"{root}/etc/etcd/certs/ca.crt"


# -- etcd's environment file -------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["new", "existing"])
def test_etcd_env_initial_cluster_state(spec: ClusterSpec, state: str) -> None:
    plan = render(spec, "postgres-03", etcd_state=state)
    env = parse_env(text(plan, "/etc/etcd/etcd.env"))
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == state
    assert env["ETCD_NAME"] == "postgresql-03"
    assert env["ETCD_INITIAL_CLUSTER"] == ("postgresql-01=https://10.203.0.203:2380,"
                                           "postgresql-02=https://10.203.0.204:2380,"
                                           "postgresql-03=https://10.203.0.205:2380")
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "https://10.203.0.205:2379"
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    for key in ("ETCD_TRUSTED_CA_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE", "ETCD_PEER_TRUSTED_CA_FILE",
                "ETCD_PEER_CERT_FILE", "ETCD_PEER_KEY_FILE"):
        plan.file(env[key])  # every TLS path is a file the plan installs
    assert env["ETCD_KEY_FILE"] == "/etc/etcd/certs/etcd-node3.key"
    # one CA signs every certificate: the peer port takes the members' CN only (pki.ETCD_PEER_CN)
    assert env["ETCD_PEER_CERT_ALLOWED_CN"] == "etcd-peer"


def test_etcd_unit_reads_the_env_file(plans: dict[str, NodePlan]) -> None:
    unit = text(plans["postgres-01"], "/etc/systemd/system/etcd.service")
    assert "EnvironmentFile=/etc/etcd/etcd.env\n" in unit and "User=etcd\n" in unit and "Type=notify\n" in unit


# -- keepalived and HAProxy -------------------------------------------------------------------------


def vrrp(conf: str, key: str) -> str:
    match = re.search(rf"^\s+{key} (\S+)$", conf, re.MULTILINE)
    assert match, f"no {key} in keepalived.conf"
    return match.group(1)


def test_keepalived_master_and_backups(plans: dict[str, NodePlan]) -> None:
    expected = {"haproxy-01": ("MASTER", "100"), "haproxy-02": ("BACKUP", "90"), "haproxy-03": ("BACKUP", "80")}
    for name, (state, priority) in expected.items():
        conf = text(plans[name], "/etc/keepalived/keepalived.conf")
        assert (vrrp(conf, "state"), vrrp(conf, "priority")) == (state, priority), name
        assert vrrp(conf, "virtual_router_id") == "51"
        assert vrrp(conf, "auth_pass") == "Vrrp1234"
        assert "nopreempt" not in conf
        assert "10.203.0.210/24 dev eth0" in conf
        assert f'script "{plans[name].layout.keepalived_check}"' in conf


def test_one_tls_policy_and_the_rest_allowlist() -> None:
    """Issue 18: the same TLS 1.2 suites (ECDHE + AEAD) everywhere; unsafe REST calls from the admin
    networks and the PostgreSQL nodes only."""
    data = default_data(lab=True)
    data["postgresql"]["admin_addresses"] = ["192.0.2.10", "198.51.100.0/24"]
    spec = parse(data)
    cfg = patroni_config(render(spec, "postgres-01"))
    assert cfg["restapi"]["allowlist"] == ["192.0.2.10/32", "198.51.100.0/24", "10.203.0.203/32", "10.203.0.204/32",
                                           "10.203.0.205/32"]
    suites = cfg["restapi"]["ciphers"].split(":")
    assert suites and all(s.startswith("ECDHE-") and ("GCM" in s or "CHACHA20" in s) for s in suites)
    params = cfg["postgresql"]["parameters"]
    assert (params["ssl_ciphers"], params["ssl_min_protocol_version"]) == (cfg["restapi"]["ciphers"], "TLSv1.2")
    haproxy = text(render(spec, "haproxy-01"), "/etc/haproxy/haproxy.cfg")
    assert f"ssl-default-server-ciphers {cfg['restapi']['ciphers']}\n" in haproxy
    env = text(render(spec, "postgres-01"), "/etc/etcd/etcd.env")
    go = env.split("ETCD_CIPHER_SUITES=")[1].split()[0].split(",")
    assert [g.replace("TLS_", "").replace("_WITH_", "-").replace("_", "-") for g in go] == [
        s.replace("AES128", "AES-128").replace("AES256", "AES-256") for s in suites]


def test_keepalived_auth_pass_is_8_characters(spec: ClusterSpec) -> None:
    """keepalived silently truncates a longer auth_pass: pgha writes what keepalived really uses."""
    long = Secrets(superuser_password="a", replication_password="b", restapi_password="c",
                         vrrp_password="ABCDEFGHIJKL")
    conf = text(render(spec, "haproxy-02", secrets=long), "/etc/keepalived/keepalived.conf")
    assert vrrp(conf, "auth_pass") == "ABCDEFGH"


def test_keepalived_nopreempt_starts_every_node_as_backup() -> None:
    data = default_data(lab=True)
    data["vip"]["nopreempt"] = True
    spec = parse(data)
    for name in ("haproxy-01", "haproxy-02", "haproxy-03"):
        conf = text(render(spec, name), "/etc/keepalived/keepalived.conf")
        assert vrrp(conf, "state") == "BACKUP" and "\n    nopreempt\n" in conf


def test_haproxy_checks_patroni_over_verified_tls(plans: dict[str, NodePlan]) -> None:
    plan = plans["haproxy-02"]
    cfg = text(plan, "/etc/haproxy/haproxy.cfg")
    servers = [line.split() for line in cfg.splitlines() if line.strip().startswith("server ")]
    assert len(servers) == 6  # three PostgreSQL nodes, in the primary and the replicas backend
    for server in servers:
        line = " ".join(server)
        assert "check port 8008 check-ssl verify required ca-file /etc/haproxy/ca.crt" in line, line
        assert server[1] in ("postgresql-01", "postgresql-02", "postgresql-03")
    plan.file("/etc/haproxy/ca.crt")
    default_server = next(line for line in cfg.splitlines() if line.strip().startswith("default-server"))
    assert "on-marked-down shutdown-sessions" in default_server
    assert not [line for line in cfg.splitlines() if "verify none" in line and not line.startswith("#")]
    assert "http-check send meth GET uri /primary" in cfg and "http-check send meth GET uri /replica" in cfg
    socket_dir = re.search(r"stats socket (\S+)/haproxy.sock", cfg)
    assert socket_dir and socket_dir.group(1) in {d.path for d in plan.dirs}


# -- init + certs + render, through the CLI ---------------------------------------------------------


def actions(stderr: str) -> list[tuple[str, str]]:
    plain = re.sub(r"\x1b\[[0-9;]*m", "", stderr)  # in case FORCE_COLOR is set
    return re.findall(r"^(created|kept|reissued)\s+(\S+)", plain, re.MULTILINE)


def test_init_certs_render_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(spec_mod, "STATE_ROOT", tmp_path / "state")
    assert main(["init", "-o", "cluster.yml"]) == 0
    assert main(["certs", "--spec", "cluster.yml"]) == 0
    first = actions(capsys.readouterr().err)
    assert len(first) == 24 and {a for a, _ in first} == {"created"}  # CA + 11 leaves, key and certificate each

    assert main(["render", "--spec", "cluster.yml", "--out", "out"]) == 0
    assert "postgres-01: 24 files" in capsys.readouterr().err
    out = tmp_path / "out"
    counts = {d.name: sum(1 for f in d.rglob("*") if f.is_file() and not f.is_symlink())
              for d in out.iterdir() if d.is_dir()}
    assert counts == {**{f"haproxy-0{i}": 6 for i in (1, 2, 3)}, **{f"postgres-0{i}": 24 for i in (1, 2, 3)},
                      "backup-01": 10, "monitor-01": 14}  # backup-01: a timer with its service per backup type
    manifest = (out / "MANIFEST.tsv").read_text().splitlines()
    # header, then directories, files and the patronictl link of each role
    assert len(manifest) == 1 + 3 * (3 + 6) + 3 * (12 + 24 + 1) + (6 + 10) + (6 + 14)
    timer = (out / "backup-01/etc/systemd/system/pgbackrest-diff.timer").read_text()
    assert "OnCalendar=Mon..Sat *-*-* 01:00:00\nPersistent=true" in timer
    assert ("ExecStart=/usr/bin/pgbackrest --config-path=/etc/pgbackrest --stanza=postgresql-cluster backup "
            "--type=full\n") in (out / "backup-01/etc/systemd/system/pgbackrest-full.service").read_text()
    assert "backup-01\t/etc/etcd/certs/server.key\tpostgres\tpostgres\t0600\t\tfile" in manifest
    assert "postgres-01\t/etc/etcd/certs/ca.crt\tetcd\tetcd\t0644\tu:postgres:r\tfile" in manifest
    assert "postgres-01\t/etc/etcd/certs/etcd-node1.key\tetcd\tetcd\t0600\t\tfile" in manifest
    assert "postgres-01\t/etc/etcd/certs\troot\tetcd\t0750\tu:postgres:rx\tdir" in manifest
    assert os.readlink(out / "postgres-01/usr/local/bin/patronictl") == "/opt/pgha/patroni/bin/patronictl"

    config = out / "postgres-01/etc/patroni/config.yml"
    assert config.stat().st_mode & 0o777 == 0o600
    secrets = load_secrets(StateLayout(tmp_path / "state" / "postgresql-cluster"))
    assert yaml.safe_load(config.read_text())["restapi"]["authentication"]["password"] == secrets.restapi_password
    pki = tmp_path / "state" / "postgresql-cluster" / "pki"
    assert (out / "postgres-02/etc/etcd/certs/etcd-node2.key").read_bytes() == (pki / "etcd-node2.key").read_bytes()
    assert (out / "haproxy-03/etc/haproxy/ca.crt").read_bytes() == (pki / "ca.crt").read_bytes()

    assert main(["certs", "--spec", "cluster.yml"]) == 0
    second = actions(capsys.readouterr().err)
    assert sorted(second) == sorted(("kept", name) for _, name in first)


# -- Patroni's watchdog: on servers, never in the lab ---------------------------------------------


def test_watchdog_rendered_for_servers_and_never_for_the_lab() -> None:
    data = spec_mod.default_data()
    data["watchdog"] = {"mode": "required", "safety_margin": 7}
    spec = spec_mod.parse(data, "(test)")
    node = spec.node("postgres-01")
    assert ServerTarget.allows_watchdog and not LabTarget.allows_watchdog  # the target says, not a path prefix
    plan = build(spec, node, fake_certs(spec, node), SECRETS, watchdog=True)
    server = yaml.safe_load(next(f.content for f in plan.files if f.path == "/etc/patroni/config.yml"))
    assert server["watchdog"] == {"mode": "required", "device": "/dev/watchdog", "safety_margin": 7}
    lab = build(spec, node, fake_certs(spec, node), SECRETS, root="/var/lib/pgha/x/nodes/postgres-01", watchdog=False)
    lab_cfg = yaml.safe_load(next(f.content for f in lab.files if f.path.endswith("/etc/patroni/config.yml")))
    assert lab_cfg["watchdog"] == {"mode": "off"}
    # Before Patroni starts on a server: the module loaded, the device handed to postgres (as root).
    unit = text(plan, "/etc/systemd/system/patroni.service")
    assert "ExecStartPre=-+/usr/sbin/modprobe softdog\n" in unit
    assert "ExecStartPre=-+/usr/bin/chown postgres:postgres /dev/watchdog\n" in unit
    assert not any("ExecStartPre" in f.content.decode() for f in lab.files if f.path.endswith(".service"))
    data["watchdog"] = {"mode": "automatic", "module": None, "device": "/dev/watchdog1"}
    hw = build(spec_mod.parse(data, "(t)"), node, fake_certs(spec, node), SECRETS, watchdog=True)
    hw_unit = text(hw, "/etc/systemd/system/patroni.service")
    assert "modprobe" not in hw_unit and "chown postgres:postgres /dev/watchdog1" in hw_unit
    data["watchdog"] = {"mode": "off"}
    off = build(spec_mod.parse(data, "(t)"), node, fake_certs(spec, node), SECRETS, watchdog=True)
    assert "ExecStartPre" not in text(off, "/etc/systemd/system/patroni.service")
    assert spec_mod.parse(spec_mod.default_data(), "(t)").watchdog.mode == "automatic"
    assert spec_mod.parse(spec_mod.default_data(lab=True), "(t)").watchdog.mode == "off"


# -- `pgha render --out`: a private folder, nothing written through a link or over a file -----------


def test_render_out_is_private_refuses_a_non_empty_folder_and_never_follows_links(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(spec_mod, "STATE_ROOT", tmp_path / "state")
    assert main(["init", "-o", "cluster.yml"]) == 0
    out = tmp_path / "out"
    assert main(["render", "--spec", "cluster.yml", "--out", "out"]) == 0
    assert out.stat().st_mode & 0o777 == 0o700
    key = out / "postgres-01/etc/etcd/certs/server.key"
    assert key.stat().st_mode & 0o777 == 0o600 and (out / "MANIFEST.tsv").stat().st_mode & 0o777 == 0o600
    capsys.readouterr()
    # Again into the same folder: refused, unless --force (an earlier render's output is replaced).
    assert main(["render", "--spec", "cluster.yml", "--out", "out"]) == 2
    assert "out is not empty" in capsys.readouterr().err
    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    key.unlink()
    key.symlink_to(victim)  # planted where a key will be written
    assert main(["render", "--spec", "cluster.yml", "--out", "out", "--force"]) == 0
    assert victim.read_text() == "mine\n" and not key.is_symlink() and key.stat().st_mode & 0o777 == 0o600
    # --force never empties a folder pgha did not write, nor writes through a link to one.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep\n")
    assert main(["render", "--spec", "cluster.yml", "--out", "mine", "--force"]) == 2
    assert "not an earlier `pgha render` output" in capsys.readouterr().err
    (tmp_path / "link").symlink_to(mine)
    assert main(["render", "--spec", "cluster.yml", "--out", "link", "--force"]) == 2
    assert (mine / "notes.txt").read_text() == "keep\n" and len(list(mine.iterdir())) == 1
