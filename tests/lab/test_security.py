"""Issue 18, item 6 on the real lab: one TLS policy on every listener, HAProxy's stats behind a password,
Patroni's unsafe REST calls only from the operator's machine and the PostgreSQL nodes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from pgha.lab.control import Lab
from pgha.probe import Credentials
from pgha.secrets import STATS_USERNAME
from tests import tls_probe

pytestmark = pytest.mark.lab


def test_every_listener_refuses_tls12_cbc_sha1(lab: Lab) -> None:
    """2379 (etcd clients), 2380 (etcd peers), 8008 (Patroni), 5432 (PostgreSQL, after its SSLRequest),
    9187 (postgres_exporter), and on the monitor node 9090/9093 (Prometheus, Alertmanager): a TLS 1.2 client
    offering only CBC-SHA1 suites is refused, the normal client is served TLS 1.3."""
    spec, creds = lab.spec, Credentials.of(lab.spec)
    node = spec.postgres_nodes[0]
    member = lab.target.layout(node)
    ports = {  # port: (client certificate, key), whether PostgreSQL's SSLRequest comes first
        spec.ports.etcd_client: ((creds.cert, creds.key), False),
        spec.ports.etcd_peer: ((member.etcd_crt, member.etcd_key), False),  # a member's own certificate
        spec.ports.restapi: ((creds.cert, creds.key), False),
        spec.ports.postgresql: ((None, None), True),
        spec.ports.postgres_exporter: ((None, None), False),
    }
    monitor = spec.monitor_node
    assert monitor is not None
    targets = [(node, port, how) for port, how in ports.items()] + [
        (monitor, port, ((None, None), False)) for port in (spec.ports.prometheus, spec.ports.alertmanager)]
    seen = {}
    for target, port, ((cert, key), postgres) in targets:
        weak = tls_probe.handshake(str(target.address), port, tls_probe.context(creds.ca, cert, key, weak=True),
                                   postgres=postgres)
        normal = tls_probe.handshake(str(target.address), port, tls_probe.context(creds.ca, cert, key),
                                     postgres=postgres)
        seen[port] = (weak.split(":")[0], normal.split(" ")[0])
    assert seen == {port: ("refused", "TLSv1.3") for _, port, _ in targets}


def test_haproxy_stats_need_the_password_and_hide_the_version(lab: Lab) -> None:
    spec, secrets = lab.spec, Credentials.of(lab.spec).secrets
    url = f"http://{spec.haproxy_nodes[0].address}:{spec.ports.haproxy_monitor}/stats"
    assert httpx.get(url, timeout=5).status_code == 401
    assert httpx.get(url, timeout=5, auth=(STATS_USERNAME, "wrong")).status_code == 401
    page = httpx.get(url, timeout=5, auth=(STATS_USERNAME, secrets.haproxy_stats_password))
    assert page.status_code == 200 and "Statistics Report" in page.text
    assert "version" not in page.text.lower()
    # keepalived's check still reaches the health URI over the node's loopback, without a password.
    res = lab.transport.run(spec.haproxy_nodes[0], ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                                    f"http://127.0.0.1:{spec.ports.haproxy_monitor}/healthz"])
    assert res.stdout == "200"


def unsafe_call_from(lab: Lab, node_name: str | None, tmp_path: Path) -> str:
    """POST /reload to a Patroni, with pgha's client certificate and the REST password (in a curl config file,
    not on a command line), from a node's namespace or (None) from this machine: the HTTP status."""
    spec, creds = lab.spec, Credentials.of(lab.spec)
    target = spec.postgres_nodes[1]
    config = tmp_path / f"curl-{node_name}.conf"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f'user = "{creds.secrets.restapi_username}:{creds.secrets.restapi_password}"\n')
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-K", str(config), "--cacert", creds.ca,
            "--cert", creds.cert, "--key", creds.key, "-X", "POST",
            f"https://{target.address}:{spec.ports.restapi}/reload"]
    if node_name is None:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    return lab.transport.run(spec.node(node_name), argv, timeout=30).stdout


def test_patroni_unsafe_calls_only_from_the_allowlist(lab: Lab, tmp_path: Path) -> None:
    """The same credentials: refused from an HAProxy node (403), accepted from this machine and a member."""
    spec = lab.spec
    assert unsafe_call_from(lab, spec.haproxy_nodes[0].name, tmp_path) == "403"
    assert unsafe_call_from(lab, None, tmp_path) in ("200", "202")
    assert unsafe_call_from(lab, spec.postgres_nodes[0].name, tmp_path) in ("200", "202")
