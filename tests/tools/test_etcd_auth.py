"""etcd authorization against a real etcd started from the rendered environment (one member on loopback):
pgha's ensure step, what each certificate and user may do afterwards, and the peer port's CN check."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess

import pytest

from pgha import etcd_auth
from pgha.layout import StateLayout
from pgha.pki import cert_paths
from pgha.probe import Credentials
from pgha.probe import etcd as etcd_probe
from pgha.probe.etcd import Gateway, GatewayError, b64
from tests.tools.test_real_tools import RunningEtcd, base, etcd, require, run, tls_context, work  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the real tools as root, as CI does")


def etcdctl(e: RunningEtcd, cert: str, *args: str, user: str | None = None) -> tuple[int, str]:
    """etcdctl over gRPC. ``cert``: a file stem in pgha's PKI, or a node's copy (``.../etcd-node1``);
    ``user``: log in as that etcd user with its password from secrets.yml."""
    binary = shutil.which("etcdctl")
    if binary is None:
        pytest.skip("etcdctl is not installed (etcd-client)")
    crt, key = (f"{cert}.crt", f"{cert}.key") if "/" in cert else cert_paths(StateLayout(e.spec.state_dir), cert)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if user:  # in the environment, never in argv
        s = Credentials.of(e.spec).secrets
        password = {"root": s.etcd_root_password, "patroni": s.etcd_patroni_password,
                    "pgha-probe": s.etcd_probe_password}[user]
        env["ETCDCTL_USER"] = f"{user}:{password}"
    p = subprocess.run([binary, f"--endpoints={e.url}", f"--cacert={e.plan.layout.ca_crt}", f"--cert={crt}",
                        f"--key={key}", "--dial-timeout=3s", "--command-timeout=5s", *args],
                       capture_output=True, text=True, timeout=60, env=env)
    return p.returncode, (p.stdout + p.stderr).strip()


def refused(result: tuple[int, str], why: str = "permission denied") -> bool:
    code, out = result
    return code != 0 and why in out


@pytest.fixture
def authed(etcd: RunningEtcd) -> RunningEtcd:  # noqa: F811 - the imported fixture
    assert "auth enabled" in etcd_auth.ensure(etcd.spec, Credentials.of(etcd.spec))
    return etcd


def test_ensure_enables_auth_once(authed: RunningEtcd) -> None:
    assert etcd_auth.ensure(authed.spec, Credentials.of(authed.spec)) == []  # a second run changes nothing
    code, out = etcdctl(authed, "client", "user", "list", user="root")
    assert (code, out.split()) == (0, ["patroni", "pgha-probe", "root"])
    code, out = etcdctl(authed, "client", "role", "get", "patroni", user="root")
    assert code == 0 and "[/service/tools/, /service/tools0)" in out, out


def test_ensure_sets_a_changed_password_back(authed: RunningEtcd) -> None:
    creds = Credentials.of(authed.spec)
    with Gateway(authed.url, creds.tls()) as gw:
        gw.token = gw.login("root", creds.secrets.etcd_root_password)
        gw.call("auth/user/changepw", {"name": "patroni", "password": "somethingelse"})
    assert etcd_auth.ensure(authed.spec, creds) == ["user patroni: password set from secrets.yml"]


def test_probe_reads_but_cannot_write_or_delete(authed: RunningEtcd) -> None:
    assert etcdctl(authed, "patroni", "put", "/service/tools/leader", "postgresql-01", user="patroni") == (0, "OK")
    code, out = etcdctl(authed, "probe", "get", "/service/tools/leader", user="pgha-probe")
    assert (code, out) == (0, "/service/tools/leader\npostgresql-01")
    for args in (("put", "/service/tools/leader", "forged"), ("del", "/service/tools/leader"),
                 ("put", "/service/tools/config", "{}"), ("del", "--prefix", "/service/")):
        assert refused(etcdctl(authed, "probe", *args, user="pgha-probe")), args
    # the same through the JSON gateway, as pgha's probes speak it
    ok, seen = etcd_probe.read_only_enforced(authed.spec, Credentials.of(authed.spec))
    assert ok, seen
    assert etcdctl(authed, "client", "get", "/service/tools/leader", "--print-value-only", user="root") == \
        (0, "postgresql-01")


def test_patroni_writes_its_prefix_only(authed: RunningEtcd) -> None:
    assert etcdctl(authed, "patroni", "put", "/service/tools/config", "{}", user="patroni") == (0, "OK")
    for key in ("/service/other/config", "/service/tools", "/elsewhere", "/service/toolsX/leader"):
        assert refused(etcdctl(authed, "patroni", "put", key, "x", user="patroni")), key
    assert refused(etcdctl(authed, "patroni", "user", "list", user="patroni"))
    assert refused(etcdctl(authed, "patroni", "auth", "disable", user="patroni"))


def test_certificates_alone_get_nothing(authed: RunningEtcd) -> None:
    """Without a login no certificate of the CA reads or writes keys: not the member's, not the PostgreSQL
    server's (postgres can read it), not pgha's own; the gateway refuses them too."""
    member = authed.plan.layout.etcd_crt.removesuffix(".crt")
    server = authed.plan.layout.server_crt.removesuffix(".crt")
    for cert in (member, server, "client", "patroni", "probe"):
        for args in (("put", "/service/tools/config", "{}"), ("get", "/service/tools/config")):
            assert refused(etcdctl(authed, cert, *args), "user name is empty") or \
                refused(etcdctl(authed, cert, *args)), (cert, args)
    put = {"key": b64("/service/tools/config"), "value": b64("{}")}
    with Gateway(authed.url, tls_context(authed.plan, client_cert=True)) as gw, pytest.raises(GatewayError) as info:
        gw.call("kv/put", put)
    assert "user name is empty" in info.value.message
    server_tls = ssl.create_default_context(cafile=authed.plan.layout.ca_crt)
    server_tls.load_cert_chain(authed.plan.layout.server_crt, authed.plan.layout.server_key)
    with Gateway(authed.url, server_tls) as gw, pytest.raises(GatewayError) as info:
        gw.call("kv/put", put)
    assert "CommonName of client" in info.value.message  # etcd's answer to any certificate with a CN


def test_seed_etcdctl_health_and_status_with_the_nodes_certificate(authed: RunningEtcd) -> None:
    """The seed's section 12 commands with the node's own certificate: health counts etcd's 'permission
    denied' as healthy, status needs no user. pgha's probes (the probe certificate) agree."""
    member = authed.plan.layout.etcd_crt.removesuffix(".crt")
    code, out = etcdctl(authed, member, "endpoint", "health")
    assert code == 0 and "is healthy" in out, out
    code, out = etcdctl(authed, member, "endpoint", "status", "-w", "table")
    assert code == 0 and authed.url in out, out
    m = etcd_probe.member(authed.spec, authed.spec.postgres_nodes[0], Credentials.of(authed.spec))
    assert m.healthy and m.is_leader, m


def _peer_get(e: RunningEtcd, ctx: ssl.SSLContext, source: str = "127.0.0.1") -> str:
    """GET /members on the peer port from ``source``. etcd checks the client certificate's CN after the
    handshake, so a refusal shows on the first read."""
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.203", e.spec.ports.etcd_peer), timeout=5,
                                  source_address=(source, 0)) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.203") as tls:
        tls.sendall(b"GET /members HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return tls.recv(200).decode(errors="replace")


def test_peer_port_takes_the_members_certificate_only(etcd: RunningEtcd) -> None:  # noqa: F811
    member = ssl.create_default_context(cafile=etcd.plan.layout.ca_crt)
    member.load_cert_chain(etcd.plan.layout.etcd_crt, etcd.plan.layout.etcd_key)
    assert _peer_get(etcd, member).startswith("HTTP/1.1 200")  # 127.0.0.1 is one of its SANs
    # etcd also checks a peer certificate's IP SANs against the address it connects from
    assert _peer_get(etcd, member, source="127.0.0.9") == ""
    server = ssl.create_default_context(cafile=etcd.plan.layout.ca_crt)
    server.load_cert_chain(etcd.plan.layout.server_crt, etcd.plan.layout.server_key)
    for ctx in (server, *(tls_context(etcd.plan, client_cert=True, name=n) for n in ("client", "patroni", "probe"))):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _peer_get(etcd, ctx)


def test_patroni_validates_its_config_with_auth_on(authed: RunningEtcd) -> None:
    patroni = require(f"{authed.spec.paths.patroni_venv}/bin/patroni")
    require(f"{authed.spec.pg_bin_dir}/postgres")
    assert run(patroni, "--validate-config", authed.plan.layout.patroni_config) == (0, "")
