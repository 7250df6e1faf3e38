"""etcd authorization on the running lab (issue 18: with pgha's client certificate, which every PostgreSQL
node held readable by postgres, /service/<cluster>/config was rewritten and every node applied it).

Each attack is replayed with what it would have: as `postgres` on a node (the files postgres can read,
Patroni's password from its config), or from the operator's machine with the read-only probe identity.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from pgha import etcd_auth
from pgha.lab.control import Lab
from pgha.layout import NodeLayout, StateLayout
from pgha.pki import cert_paths
from pgha.probe import Credentials
from pgha.probe.cluster import Prober
from pgha.probe.etcd import prefix
from pgha.spec import Node

pytestmark = pytest.mark.lab


def layout(lab: Lab, name: str) -> NodeLayout:
    return lab.target.layout(lab.spec.node(name))


def endpoints(lab: Lab) -> str:
    return ",".join(f"https://{n.address}:{lab.spec.ports.etcd_client}" for n in lab.spec.postgres_nodes)


def etcdctl(lab: Lab, cert: str, key: str, *args: str, on: str | None = None, as_user: str | None = None,
            login: str = "") -> tuple[int, str]:
    """etcdctl on this machine (the operator's) or ``on`` a node, as root or ``as_user``; ``login`` is
    user:password, passed in the environment (ETCDCTL_USER), never in argv."""
    prefix_argv: list[str] = []
    if on is not None:
        prefix_argv = ["ip", "netns", "exec", lab.transport.netns(lab.spec.node(on))]
        if as_user:
            prefix_argv += ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--init-groups", "--"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **({"ETCDCTL_USER": login} if login else {})}
    ca = layout(lab, on).ca_crt if on else str(lab.state.pki / "ca.crt")
    p = subprocess.run([*prefix_argv, "etcdctl", f"--endpoints={endpoints(lab)}", f"--cacert={ca}",
                        f"--cert={cert}", f"--key={key}",
                        "--dial-timeout=3s", "--command-timeout=5s", *args],
                       capture_output=True, text=True, timeout=30, env=env)
    return p.returncode, (p.stdout + p.stderr).strip()


def pki(lab: Lab, stem: str) -> tuple[str, str]:
    crt, key = cert_paths(StateLayout(lab.spec.state_dir), stem)
    return str(crt), str(key)


def refused(code: int, out: str) -> bool:
    return code != 0 and ("permission denied" in out or "user name is empty" in out)


@pytest.fixture(autouse=True)
def _etcdctl() -> None:
    if shutil.which("etcdctl") is None:
        pytest.skip("etcdctl is not installed (etcd-client)")


def test_auth_is_in_place_and_ensure_changes_nothing(lab: Lab) -> None:
    assert etcd_auth.ensure(lab.spec, Credentials.of(lab.spec)) == []
    secrets = Credentials.of(lab.spec).secrets
    code, out = etcdctl(lab, *pki(lab, "client"), "user", "list", login=f"root:{secrets.etcd_root_password}")
    assert (code, out.split()) == (0, ["patroni", "pgha-probe", "root"])


def test_no_node_holds_the_operators_or_the_probes_credentials(lab: Lab) -> None:
    state = StateLayout(lab.spec.state_dir)
    secrets = Credentials.of(lab.spec).secrets
    home = {f"{stem} {p.suffix}": p.read_bytes() for stem in ("client", "probe") for p in cert_paths(state, stem)}
    home |= {"root password": secrets.etcd_root_password.encode(),
             "probe password": secrets.etcd_probe_password.encode()}
    for node in lab.spec.nodes:
        root = state.node_root(node)
        etcd_data = layout(lab, node.name).etcd_data
        # etcd 3.4 writes a new user's password to its raft log in clear (3.5 hashes it first): the WAL
        # holds them, readable by etcd alone (checked below), who holds the data anyway.
        for path in (p for p in root.rglob("*") if p.is_file() and not str(p).startswith(etcd_data)):
            data = path.read_bytes()
            assert not [what for what, secret in home.items() if secret in data], path
    lay = layout(lab, "postgres-02")
    node = lab.spec.node("postgres-02")
    assert not lab.transport.readable_by(node, lay.etcd_key, "postgres")  # the member's key opens the peer port
    assert not lab.transport.readable_by(node, f"{lay.etcd_data}/member/wal", "postgres")
    assert lab.transport.readable_by(node, lay.patroni_key, "postgres")


def test_postgres_on_a_node_cannot_rewrite_the_cluster(lab: Lab) -> None:
    """The finding's attack, replayed as postgres on a replica: the config key and the leader key stay
    out of reach with the node's server certificate; Patroni's own identity stays within its prefix."""
    name = "postgres-02"
    lay = layout(lab, name)
    key = prefix(lab.spec)
    for args in (("put", f"{key}config", '{"ttl": 5}'), ("del", f"{key}leader"), ("get", f"{key}config")):
        assert refused(*etcdctl(lab, lay.server_crt, lay.server_key, *args, on=name, as_user="postgres")), args
        # Patroni's certificate without its password
        assert refused(*etcdctl(lab, lay.patroni_crt, lay.patroni_key, *args, on=name, as_user="postgres")), args
    patroni = f"patroni:{Credentials.of(lab.spec).secrets.etcd_patroni_password}"  # in config.yml, 0600 postgres
    for args in (("put", "/service/another-cluster/config", "{}"), ("put", "/elsewhere", "x"),
                 ("del", "--prefix", "/"), ("user", "list"), ("auth", "disable"),
                 ("role", "grant-permission", "patroni", "readwrite", "/", "--prefix")):
        got = etcdctl(lab, lay.patroni_crt, lay.patroni_key, *args, on=name, as_user="postgres", login=patroni)
        assert refused(*got), (args, got)
    code, out = etcdctl(lab, lay.etcd_crt, lay.etcd_key, "get", f"{key}leader", on=name, as_user="postgres")
    assert code != 0 and "permission denied" in out.lower(), out  # postgres cannot even open the member's key


def test_the_probe_identity_reads_but_cannot_write_or_delete(lab: Lab) -> None:
    key = prefix(lab.spec)
    probe = f"pgha-probe:{Credentials.of(lab.spec).secrets.etcd_probe_password}"
    code, out = etcdctl(lab, *pki(lab, "probe"), "get", f"{key}leader", "--print-value-only", login=probe)
    assert code == 0 and out == Prober(lab.spec, Credentials.of(lab.spec)).snapshot().leader.name  # type: ignore[union-attr]
    for args in (("put", f"{key}config", '{"ttl": 5}'), ("del", f"{key}leader"), ("del", "--prefix", "/service/")):
        assert refused(*etcdctl(lab, *pki(lab, "probe"), *args, login=probe)), args
        assert refused(*etcdctl(lab, *pki(lab, "probe"), *args)), args  # the certificate alone


def test_seed_etcdctl_health_and_status_with_the_nodes_certificate(lab: Lab) -> None:
    """The seed's section 12 commands, run on a node as root with that node's etcd certificate."""
    lay = layout(lab, "postgres-01")
    code, out = etcdctl(lab, lay.etcd_crt, lay.etcd_key, "endpoint", "health", on="postgres-01")
    assert code == 0 and out.count("is healthy") == 3, out
    code, out = etcdctl(lab, lay.etcd_crt, lay.etcd_key, "endpoint", "status", "-w", "table", on="postgres-01")
    assert code == 0 and out.count("https://") == 3, out


def _peer_get(lab: Lab, source: str, target: Node, stem: str) -> str:
    """GET /members on ``target``'s peer port from ``source``'s namespace with a certificate of pgha's PKI:
    the HTTP status, or curl's error. etcd also checks a peer certificate's IP SANs against the address
    it connects from, so a member's certificate is tried from its own node."""
    crt, key = pki(lab, stem)
    p = subprocess.run(["ip", "netns", "exec", lab.transport.netns(lab.spec.node(source)), "curl", "-sS",
                        # etcd offers h2 by ALPN on the peer port but serves its peer API over HTTP/1.1 only
                        "--http1.1", "--max-time", "5",
                        "--cacert", str(lab.state.pki / "ca.crt"), "--cert", crt, "--key", key,
                        "-o", "/dev/null", "-w", "%{http_code}",
                        f"https://{target.address}:{lab.spec.ports.etcd_peer}/members"],
                       capture_output=True, text=True, timeout=30)
    return p.stdout.strip() if p.returncode == 0 else f"curl {p.returncode}: {p.stderr.strip()}"


def test_peer_port_refuses_every_certificate_but_the_members(lab: Lab) -> None:
    target = lab.spec.node("postgres-01")
    assert _peer_get(lab, "postgres-02", target, "etcd-node2") == "200"
    for stem in ("client", "patroni", "probe", "server-postgres-02"):  # the server's SANs name postgres-02
        assert _peer_get(lab, "postgres-02", target, stem).startswith("curl "), stem
