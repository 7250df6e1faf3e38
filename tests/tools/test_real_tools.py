"""Every rendered config accepted by the real tool: `haproxy -c`, `keepalived -t`,
`patroni --validate-config`, and etcd started from the rendered environment file.

Everything runs on loopback, without namespaces: a spec with two haproxy nodes (127.0.0.200-201), one postgres
node (127.0.0.203), the VIP 127.0.0.210/24, and free high ports. Files are written under a root-owned
0755 directory in /var/lib (keepalived_script must be able to reach the check script; pytest's tmp_path
is 0700), removed at the end. Needs root, as in CI.
"""

from __future__ import annotations

import base64
import ctypes
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pgha import spec as spec_mod
from pgha.layout import StateLayout
from pgha.pki import cert_paths, ensure_pki
from pgha.plan import CertFiles, NodePlan, build
from pgha.render.etcd import parse_env
from pgha.secrets import ensure_secrets
from pgha.spec import ClusterSpec, parse
from tests import tls_probe

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the real tools as root, as CI does")

PORT_KEYS = ("etcd_client", "etcd_peer", "postgresql", "postgresql_replicas", "restapi", "haproxy_monitor")


def require(binary: str) -> str:
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{binary} is not installed (scripts/bootstrap.sh installs it)")
    return binary


def run(*argv: str) -> tuple[int, str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def free_ports(n: int) -> list[int]:
    """n distinct ports free on every address (the configs listen on 0.0.0.0)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("0.0.0.0", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_dirs(path: Path, mode: int = 0o755) -> None:
    """Create path and its missing parents with an explicit mode (the umask may be 077)."""
    for p in reversed([p for p in (path, *path.parents) if not p.exists()]):
        p.mkdir()
        p.chmod(mode)


def loopback_spec(work: Path, interface: str = "lo") -> ClusterSpec:
    return parse({
        "cluster": {"name": "tools", "state_dir": str(work / "state")},
        # Two HAProxy nodes: keepalived's VRRP goes unicast to the other (unicast_peer is checked too).
        "nodes": [{"name": "haproxy-01", "role": "haproxy", "address": "127.0.0.200"},
                  {"name": "haproxy-02", "role": "haproxy", "address": "127.0.0.201"},
                  {"name": "postgres-01", "role": "postgres", "address": "127.0.0.203"}],
        "vip": {"address": "127.0.0.210", "prefix": 24, "interface": interface},
        "ports": dict(zip(PORT_KEYS, free_ports(len(PORT_KEYS)), strict=True)),
    }, "(loopback test spec)")


def deploy(spec: ClusterSpec, work: Path) -> dict[str, NodePlan]:
    """A real PKI and secrets, then each node's directories and files under work/root/<node> (owners ignored)."""
    state = StateLayout(spec.state_dir)
    ensure_pki(spec, state)
    secrets = ensure_secrets(state)
    plans = {}
    for node in spec.nodes:
        plan = build(spec, node, CertFiles.load(state, spec, node), secrets, root=str(work / "root" / node.name))
        for d in plan.dirs:
            make_dirs(Path(d.path))
            os.chmod(d.path, d.mode)
        for f in plan.files:
            make_dirs(Path(f.path).parent)
            Path(f.path).write_bytes(f.content)
            os.chmod(f.path, f.mode)
        plans[node.name] = plan
    return plans


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgha-test-", dir="/var/lib"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def work(base: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own directory (and so its own root prefix and PKI); the state root for its spec."""
    path = Path(tempfile.mkdtemp(dir=base))
    path.chmod(0o755)
    monkeypatch.setattr(spec_mod, "STATE_ROOT", path)
    return path


# -- HAProxy -----------------------------------------------------------------------------------------


def test_haproxy_accepts_the_rendered_config(work: Path) -> None:
    plan = deploy(loopback_spec(work), work)["haproxy-01"]
    haproxy = require(plan.service("haproxy").argv[0])
    assert Path(plan.layout.haproxy_ca).is_file() and Path(plan.layout.run_dir).is_dir()
    # -dW: any warning fails the check too.
    code, output = run(haproxy, "-dW", "-c", "-f", plan.layout.haproxy_cfg)
    assert code == 0, output
    assert "Configuration file is valid" in output


# -- keepalived --------------------------------------------------------------------------------------


def vrrp_interface() -> str:
    """keepalived -t wants the VRRP interface to exist and not be loopback."""
    names = [name for _, name in socket.if_nameindex() if name != "lo"]
    if not names:
        pytest.skip("no network interface but lo: keepalived's config test needs one")
    return "eth0" if "eth0" in names else names[0]


def ensure_script_user() -> None:
    """The user keepalived runs the check script as (pgha creates it the same way on a node)."""
    try:
        pwd.getpwnam("keepalived_script")
    except KeyError:
        subprocess.run(["useradd", "--system", "--shell", "/bin/false", "keepalived_script"], check=True)


def keepalived_config_test(keepalived: str, conf: str) -> tuple[int, str]:
    # keepalived 2.2.7 (Debian 12) kills itself with SIGTERM in the middle of `-t` once a script runs as
    # script_user (acassen/keepalived#2587 and #2617, fixed in 2.2.8): it thinks its parent died because
    # getppid() != main_pid, which is still 0 in a config test. In a new PID namespace getppid() is 0, so
    # the whole config is checked. --log-console shows the script checks' findings.
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is needed to work around keepalived 2.2.7's config-test bug")
    return run(unshare, "--pid", "--fork", "--kill-child", keepalived, "--config-test", "--log-console",
               "-f", conf)


@pytest.fixture
def haproxy_node(work: Path) -> NodePlan:
    ensure_script_user()
    return deploy(loopback_spec(work, vrrp_interface()), work)["haproxy-01"]


def test_keepalived_accepts_the_rendered_config(haproxy_node: NodePlan) -> None:
    keepalived = require(haproxy_node.service("keepalived").argv[0])
    code, output = keepalived_config_test(keepalived, haproxy_node.layout.keepalived_conf)
    assert (code, output) == (0, "")


def test_keepalived_config_test_catches_a_missing_check_script(haproxy_node: NodePlan) -> None:
    """The check above can fail: without the script keepalived disables the track script and says so."""
    keepalived = require(haproxy_node.service("keepalived").argv[0])
    os.unlink(haproxy_node.layout.keepalived_check)
    code, output = keepalived_config_test(keepalived, haproxy_node.layout.keepalived_conf)
    assert code != 0
    assert "check_haproxy" in output


# -- etcd, then Patroni against it -------------------------------------------------------------------


@dataclass(frozen=True)
class RunningEtcd:
    spec: ClusterSpec
    plan: NodePlan
    url: str
    client: ssl.SSLContext
    log: Path


def _die_with_parent() -> None:
    """In the child: get SIGTERM if pytest dies, so a crashed run leaves no etcd behind."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def tls_context(plan: NodePlan, *, client_cert: bool, name: str = "client") -> ssl.SSLContext:
    """The CA, and a certificate from pgha's PKI (default: the operator's) unless ``client_cert`` is false."""
    ctx = ssl.create_default_context(cafile=plan.layout.ca_crt)  # also checks the certificate names the IP
    if client_cert:
        crt, key = cert_paths(StateLayout(plan.layout.spec.state_dir), name)
        ctx.load_cert_chain(crt, key)
    return ctx


@pytest.fixture
def etcd(work: Path) -> Iterator[RunningEtcd]:
    """A one-member etcd cluster started as its service would be: the rendered argv, env file and directory."""
    spec = loopback_spec(work)
    plan = deploy(spec, work)["postgres-01"]
    service = plan.service("etcd")
    require(service.argv[0])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **parse_env(Path(plan.layout.etcd_env).read_text())}
    url = env["ETCD_ADVERTISE_CLIENT_URLS"]
    assert url == f"https://127.0.0.203:{spec.ports.etcd_client}"
    log = work / "etcd.log"
    client = tls_context(plan, client_cert=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(service.argv, env=env, cwd=service.working_dir, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        try:
            deadline = time.monotonic() + 20
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"etcd exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{url}/health", verify=client, timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"etcd not healthy after 20 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            yield RunningEtcd(spec, plan, url, client, log)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_etcd_serves_clients_with_a_certificate(etcd: RunningEtcd) -> None:
    health = httpx.get(f"{etcd.url}/health", verify=etcd.client, timeout=5)
    assert health.json() == {"health": "true"}
    with httpx.Client(verify=etcd.client, timeout=5) as client:
        client.post(f"{etcd.url}/v3/kv/put", json={"key": b64("/pgha/test"), "value": b64("ok")}).raise_for_status()
        found = client.post(f"{etcd.url}/v3/kv/range", json={"key": b64("/pgha/test")}).json()
    assert base64.b64decode(found["kvs"][0]["value"]) == b"ok"


def test_etcd_refuses_clients_without_a_certificate(etcd: RunningEtcd) -> None:
    no_cert = tls_context(etcd.plan, client_cert=False)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{etcd.url}/health", verify=no_cert, timeout=5)
    deadline = time.monotonic() + 5  # etcd logs the refusal right after the handshake fails
    while "client didn't provide a certificate" not in etcd.log.read_text():
        assert time.monotonic() < deadline, etcd.log.read_text()[-3000:]
        time.sleep(0.05)


def test_etcd_speaks_the_cipher_policy_only(etcd: RunningEtcd) -> None:
    """TLS 1.2 with CBC and SHA-1 is refused (issue 18); TLS 1.3 and TLS 1.2 ECDHE-AEAD are served."""
    ca = etcd.plan.layout.ca_crt
    crt, key = (str(p) for p in cert_paths(StateLayout(etcd.spec.state_dir), "client"))
    port = etcd.spec.ports.etcd_client
    weak = tls_probe.handshake("127.0.0.203", port, tls_probe.context(ca, crt, key, weak=True))
    assert weak.startswith("refused"), weak
    assert tls_probe.handshake("127.0.0.203", port, tls_probe.context(ca, crt, key)).startswith("TLSv1.3")
    tls12 = tls_probe.context(ca, crt, key)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert tls_probe.handshake("127.0.0.203", port, tls12) == "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256"


def test_etcd_knows_every_rendered_variable(etcd: RunningEtcd) -> None:
    log = etcd.log.read_text()
    assert "unrecognized environment variable" not in log
    assert "shadowed by corresponding flag" not in log


def test_patroni_validates_the_rendered_config(etcd: RunningEtcd) -> None:
    """--validate-config also connects to each etcd3 host: it passes only with the rendered etcd running."""
    patroni = require(f"{etcd.spec.paths.patroni_venv}/bin/patroni")
    require(f"{etcd.spec.pg_bin_dir}/postgres")
    code, output = run(patroni, "--validate-config", etcd.plan.layout.patroni_config)
    assert (code, output) == (0, "")
