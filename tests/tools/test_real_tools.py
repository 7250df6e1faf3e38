"""Every rendered config accepted by the real tool: haproxy -c, keepalived -t, patroni --validate-config,
and etcd started with the rendered environment (a one-member cluster on loopback)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pgha import spec as spec_mod
from pgha.layout import StateLayout
from pgha.pki import ensure_pki
from pgha.plan import CertFiles, NodePlan, build
from pgha.render.etcd import parse_env
from pgha.secrets import ensure_secrets
from pgha.spec import ClusterSpec

PATRONI = "/opt/pgha/patroni/bin/patroni"


def need(binary: str) -> None:
    if not shutil.which(binary) and not Path(binary).exists():
        pytest.skip(f"{binary} is not installed (scripts/bootstrap.sh installs it)")


@pytest.fixture
def root() -> Iterator[Path]:
    """A root-owned 0755 directory: keepalived refuses scripts on paths others could write (like /tmp)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (system users, keepalived's script security)")
    path = Path(tempfile.mkdtemp(prefix="pgha-tools-", dir="/var/lib"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def materialise(spec: ClusterSpec, root: Path) -> list[NodePlan]:
    """Real PKI and secrets, then every node's files written under root/nodes/<node>."""
    state = StateLayout(root / "state")
    ensure_pki(spec, state)
    secrets = ensure_secrets(state)
    plans = []
    for node in spec.nodes:
        plan = build(spec, node, CertFiles.load(state, spec, node), secrets, root=str(root / "nodes" / node.name))
        for d in plan.dirs:
            Path(d.path).mkdir(parents=True, exist_ok=True)
        for f in plan.files:
            Path(f.path).parent.mkdir(parents=True, exist_ok=True)
            Path(f.path).write_bytes(f.content)
            os.chmod(f.path, f.mode)
        plans.append(plan)
    return plans


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60)


def test_haproxy_accepts_its_config(root: Path) -> None:
    need("haproxy")
    plan = materialise(spec_mod.parse(spec_mod.default_data(lab=True)), root)[0]
    res = run("haproxy", "-c", "-f", plan.layout.haproxy_cfg)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Configuration file is valid" in res.stdout + res.stderr


def test_keepalived_accepts_its_config(root: Path) -> None:
    need("keepalived")
    subprocess.run(["useradd", "--system", "--shell", "/bin/false", "keepalived_script"], capture_output=True)
    plans = materialise(spec_mod.parse(spec_mod.default_data(lab=True)), root)
    for plan in plans[:3]:
        res = run("keepalived", "-t", "-f", plan.layout.keepalived_conf)
        # keepalived 2.2.7's config test ends itself with SIGTERM once a vrrp_script is defined (seen
        # here with a minimal config too), whether or not the config is valid: judge by what it prints.
        assert res.returncode in (0, -15), res.stdout + res.stderr
        assert "Line" not in res.stderr and "Unknown" not in res.stderr, res.stderr
    # The same check does catch a broken config (so the test can fail).
    broken = Path(plans[0].layout.keepalived_conf)
    broken.write_text(broken.read_text().replace("virtual_router_id 51", "virtual_router_idd 51"))
    res = run("keepalived", "-t", "-f", str(broken))
    assert "Unknown keyword 'virtual_router_idd'" in res.stderr


def test_patroni_validates_its_config(root: Path) -> None:
    need(PATRONI)
    spec = spec_mod.parse(spec_mod.default_data(lab=True))
    for plan in materialise(spec, root)[3:]:
        Path(plan.layout.pg_data).mkdir(parents=True, exist_ok=True)
        res = run(PATRONI, "--validate-config", plan.layout.patroni_config)
        assert res.returncode == 0, res.stdout + res.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_etcd_starts_with_the_rendered_environment(root: Path) -> None:
    need("etcd")
    data = spec_mod.default_data(subnet="127.0.0.0/24")
    data["nodes"] = [n for n in data["nodes"] if n["name"] in ("haproxy-01", "postgres-01")]
    data["ports"] = {"etcd_client": free_port(), "etcd_peer": free_port()}
    spec = spec_mod.parse(data)
    plan = materialise(spec, root)[1]
    env = {**os.environ, **parse_env(Path(plan.layout.etcd_env).read_text())}
    pki = root / "state" / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
    url = f"https://127.0.0.203:{spec.ports.etcd_client}"
    proc = subprocess.Popen([shutil.which("etcd") or "etcd"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline, health = time.monotonic() + 20, None
        while time.monotonic() < deadline and health != {"health": "true"}:
            try:
                health = httpx.get(f"{url}/health", verify=ctx, timeout=1).json()
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health == {"health": "true"}
        no_cert = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        with pytest.raises(httpx.HTTPError):
            httpx.post(f"{url}/v3/kv/range", json={"key": "Lw=="}, verify=no_cert, timeout=2)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
