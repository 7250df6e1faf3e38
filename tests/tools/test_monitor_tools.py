"""The monitor node's rendered configs accepted by the real tools (promtool, amtool, the blackbox exporter),
and its whole pipeline run for real on loopback, as user prometheus: Prometheus (HTTPS) scrapes, evaluates
pgha's rules and sends to Alertmanager (HTTPS), which posts to the local webhook recorder. With no cluster
behind the targets, the "down" alerts must arrive there as firing, and Prometheus' and Alertmanager's own
targets must be up over TLS verified against the cluster CA.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pgha.layout import StateLayout
from pgha.monitoring import USER
from pgha.pki import ensure_pki
from pgha.plan import CertFiles, NodePlan, build
from pgha.render.monitor import WEBHOOK_PORT
from pgha.secrets import ensure_secrets
from pgha.spec import ClusterSpec, parse
from tests.tools.test_real_tools import base, free_ports, make_dirs, require, run, work  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the real tools as root, as CI does")

PORTS = ("etcd_client", "etcd_peer", "postgresql", "postgresql_replicas", "restapi", "haproxy_monitor",
         "postgres_exporter", "prometheus", "alertmanager")


def monitor_spec(root: Path) -> ClusterSpec:
    return parse({
        "cluster": {"name": "tools", "state_dir": str(root / "state")},
        "nodes": [{"name": "haproxy-01", "role": "haproxy", "address": "127.0.0.200"},
                  {"name": "postgres-01", "role": "postgres", "address": "127.0.0.203"},
                  {"name": "monitor-01", "role": "monitor", "address": "127.0.0.207"}],
        "vip": {"address": "127.0.0.210", "prefix": 24, "interface": "lo"},
        "ports": dict(zip(PORTS, free_ports(len(PORTS)), strict=True)),
        "monitoring": {"scrape_interval_s": 1, "evaluation_interval_s": 1},
    }, "(loopback monitor spec)")


def _id(name: str, db: str) -> int:
    return pwd.getpwnam(name).pw_uid if db == "user" else grp.getgrnam(name).gr_gid


@pytest.fixture
def monitor(work: Path) -> NodePlan:  # noqa: F811 (the fixture imported above)
    try:
        pwd.getpwnam(USER)
    except KeyError:
        pytest.skip(f"no user {USER} (scripts/bootstrap.sh installs Debian's prometheus package)")
    spec = monitor_spec(work)
    state = StateLayout(spec.state_dir)
    ensure_pki(spec, state)
    node = spec.node("monitor-01")
    plan = build(spec, node, CertFiles.load(state, spec, node), ensure_secrets(state),
                 root=str(work / "root" / node.name))
    for d in plan.dirs:
        make_dirs(Path(d.path))
        os.chown(d.path, _id(d.owner, "user"), _id(d.group, "group"))
        os.chmod(d.path, d.mode)
    for f in plan.files:
        make_dirs(Path(f.path).parent)
        Path(f.path).write_bytes(f.content)
        os.chown(f.path, _id(f.owner, "user"), _id(f.group, "group"))
        os.chmod(f.path, f.mode)
    return plan


def test_the_real_tools_accept_the_monitor_configs(monitor: NodePlan) -> None:
    lay = monitor.layout
    promtool, amtool = require("/usr/bin/promtool"), require("/usr/bin/amtool")
    for argv in ([promtool, "check", "config", lay.prometheus_yml], [promtool, "check", "web-config", lay.web_config],
                 [amtool, "check-config", lay.alertmanager_yml],
                 [require(monitor.service("prometheus-blackbox-exporter").argv[0]), f"--config.file={lay.blackbox_yml}",
                  "--config.check"]):
        code, output = run(*argv)
        assert code == 0, f"{argv}: {output}"


@pytest.fixture
def running(monitor: NodePlan) -> Iterator[NodePlan]:
    setpriv = shutil.which("setpriv") or pytest.skip("setpriv (util-linux) is needed")
    procs = []
    try:
        for service in monitor.services:
            require(service.argv[0])
            log = open(Path(monitor.layout.prometheus_data) / f"{service.name}.log", "w")  # noqa: SIM115
            procs.append(subprocess.Popen([setpriv, f"--reuid={service.user}", f"--regid={service.group}",
                                           "--init-groups", *service.argv], stdout=log, stderr=log))
        yield monitor
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_alerts_travel_over_tls_to_the_webhook(running: NodePlan) -> None:
    lay, spec = running.layout, running.layout.spec
    me = spec.node("monitor-01")
    ca = lay.monitor_ca
    deadline = time.monotonic() + 40
    got: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{WEBHOOK_PORT}/", timeout=2) as r:
                got = json.load(r)
        except OSError:
            got = []
        firing = {a["labels"]["alertname"] for doc in got for a in doc["alerts"]  # type: ignore[attr-defined]
                  if a["status"] == "firing"}
        if {"PatroniDown", "EtcdMemberDown", "VipNotAnswering"} <= firing:
            break
        time.sleep(1)
    else:
        logs = {p.name: p.read_text()[-800:] for p in Path(lay.prometheus_data).glob("*.log")}
        pytest.fail(f"the down alerts did not reach the webhook in 40 s; it got {got}; logs: {logs}")
    # The records are Alertmanager's webhook documents, with pgha's labels.
    alert = next(a for doc in got for a in doc["alerts"] if a["labels"]["alertname"] == "PatroniDown")  # type: ignore[attr-defined]
    assert alert["labels"]["problem"] == "service.patroni_down" and alert["labels"]["instance"] == "postgres-01"
    tls = ssl.create_default_context(cafile=ca)
    targets = httpx.get(f"https://{me.address}:{spec.ports.prometheus}/api/v1/targets", verify=tls).json()
    health = {t["labels"]["job"]: t["health"] for t in targets["data"]["activeTargets"]
              if t["labels"]["job"] in ("prometheus", "alertmanager")}
    assert health == {"prometheus": "up", "alertmanager": "up"}
    with pytest.raises(httpx.ConnectError):  # HTTPS only, and only with the cluster CA
        httpx.get(f"https://{me.address}:{spec.ports.prometheus}/-/ready", verify=True)
