"""`packages: online` with PostgreSQL from a PGDG repository and etcd from a release tarball, on the six
machines booted afresh (after test_deploy.py's cluster: the package fixture's machines are reset).

What is real: the servers' apt over HTTP (a mirror on this machine's bridge address, see
tests/deploy/mirror.py), a signed ``<codename>-pgdg main`` repository checked by apt against the key
the spec names, pip from the servers' own configuration, the tarball's checksum on both ends, the
binaries in /usr/local/bin, the etcd system user and unit, a second run with nothing to do.
What is a stand-in: the repository holds Debian's PostgreSQL 15, the tarball Debian's etcd 3.4 —
PostgreSQL 18 and etcd 3.6 themselves never ran here (no internet).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pgha import spec as spec_mod
from pgha.deploy.bundle import build as build_bundle
from pgha.deploy.bundle import pgdg_apt_options, wheel_requirements
from pgha.errors import PghaError
from tests.deploy.helpers import FIGURES, assert_deploy_changes_nothing, pgha
from tests.deploy.mirror import Mirror
from tests.deploy.nspawn import Machines, spec_data

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def mirror(machines: Machines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirror]:
    data = spec_data(machines)
    bundle = build_bundle(spec_mod.parse(data))  # the offline bundle's .debs and wheels (cached)
    t0 = time.monotonic()
    # Fresh machines: a clean power-off of test_deploy.py's (~30 s), then new overlays. Not a power cut of
    # all six: a killed machine's network namespace, and with it its veth, can outlive it for minutes,
    # and a new machine of the same name then cannot get its veth (no SSH).
    machines.up()
    FIGURES["sources: machines rebooted afresh"] = time.monotonic() - t0
    host = next(iter(machines.machines.values())).address.rsplit(".", 1)[0] + ".1"  # this machine, on the bridge
    m = Mirror(tmp_path_factory.mktemp("mirror"), bundle.dir, host)
    try:
        t0 = time.monotonic()
        m.build()
        m.start()
        FIGURES["sources: mirror built"] = time.monotonic() - t0
        for name in machines.machines:
            machines.ssh(name, m.machine_setup())
        yield m
    finally:
        m.stop()


@pytest.fixture(scope="module")
def online_spec(machines: Machines, mirror: Mirror, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = spec_data(machines)
    data["deploy"].update({  # type: ignore[attr-defined]
        "packages": "online",
        "postgresql": {"source": "pgdg", "keyring": str(mirror.keyring), "mirror": f"{mirror.url}/pgdg"},
        "etcd": {"source": "tarball", "tarball": str(mirror.tarball), "sha256": mirror.tarball_sha256},
    })
    path = tmp_path_factory.mktemp("online") / "cluster.yml"
    # Patroni pinned by hash (the mirror serves the bundle's wheels: its requirements file is their lock).
    lock = path.with_name("patroni.lock")
    lock.write_text(wheel_requirements(mirror.bundle / "wheels", spec_mod.Deploy().patroni))
    data["deploy"]["patroni_lock"] = str(lock)  # type: ignore[index]
    path.write_text(spec_mod.dump(data))
    return path


def test_a_wrong_tarball_checksum_ships_nothing(online_spec: Path, mirror: Mirror, machines: Machines) -> None:
    data = yaml.safe_load(online_spec.read_text())
    data["deploy"]["etcd"]["sha256"] = "0" * 64
    wrong = online_spec.with_name("cluster-wrong-sum.yml")
    wrong.write_text(spec_mod.dump(data))
    res = pgha("deploy", "--spec", str(wrong))
    said = " ".join(res.stderr.split())  # the console wraps long lines
    assert res.returncode == 1 and f"has SHA-256 {mirror.tarball_sha256}, the spec says {'0' * 64}" in said, said
    assert machines.ssh("postgres-01", "ls /usr/local/bin").strip() == ""


def test_online_deploy_from_nothing_pgdg_and_etcd_tarball(online_spec: Path, mirror: Mirror,
                                                          machines: Machines) -> None:
    t0 = time.monotonic()
    res = pgha("deploy", "--spec", str(online_spec), "--format", "json")
    FIGURES["deploy online (PGDG + etcd tarball) from nothing"] = time.monotonic() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["changed"] and out["verify"]["passed"], out["verify"]
    assert any(c["what"].startswith(f"etcd v{mirror.etcd_version} from ") for c in out["changes"])
    got = machines.ssh("postgres-02", "cat /etc/apt/sources.list.d/pgha-pgdg.list; apt-cache policy postgresql-15; "
                                      "command -v etcd etcdctl; etcd --version | head -1; "
                                      "systemctl show -p ExecStart --value etcd; getent passwd etcd; "
                                      "dpkg-query -W -f='${Status}' etcd-server 2>&1; echo")
    assert f"deb [signed-by=/etc/apt/keyrings/pgha-pgdg.asc] {mirror.url}/pgdg bookworm-pgdg main" in got
    assert f"500 {mirror.url}/pgdg bookworm-pgdg/main amd64 Packages" in got  # installed from "PGDG"
    assert "/usr/local/bin/etcd\n/usr/local/bin/etcdctl\n" in got
    assert f"etcd Version: {mirror.etcd_version}" in got
    assert "path=/usr/local/bin/etcd" in got
    assert ":/var/lib/etcd:/bin/false" in got  # the seed's useradd --system --home /var/lib/etcd --shell /bin/false
    assert "install ok installed" not in got  # no Debian etcd package
    assert machines.ssh("haproxy-01", "test -e /etc/apt/sources.list.d/pgha-pgdg.list || echo none").strip() == "none"


def test_online_second_deploy_reports_no_changes(online_spec: Path) -> None:
    assert_deploy_changes_nothing(online_spec, "deploy online again (no changes)")


def test_a_new_etcd_tarball_restarts_etcd_one_member_at_a_time(online_spec: Path, mirror: Mirror,
                                                                machines: Machines) -> None:
    newer = mirror.newer_tarball()
    data = yaml.safe_load(online_spec.read_text())
    data["deploy"]["etcd"].update(tarball=str(newer), sha256=hashlib.sha256(newer.read_bytes()).hexdigest())
    spec = online_spec.with_name("cluster-newer-etcd.yml")
    spec.write_text(spec_mod.dump(data))
    pid = machines.ssh("postgres-01", "systemctl show -p MainPID --value etcd").strip()
    t0 = time.monotonic()
    res = pgha("deploy", "--spec", str(spec), "--format", "json")
    FIGURES["deploy online: a new etcd tarball (3 rolling restarts)"] = time.monotonic() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["verify"]["passed"], out["verify"]
    restarted = {c["node"] for c in out["changes"] if c["kind"] == "restart" and c["what"].startswith("etcd")}
    assert restarted == {n for n in machines.machines if n.startswith("postgres")}, out["changes"]
    assert "etcdutl" in machines.ssh("postgres-01", "ls /usr/local/bin").split()
    assert machines.ssh("postgres-01", "systemctl show -p MainPID --value etcd").strip() not in (pid, "0")


def test_bundle_build_resolves_postgresql_from_the_pgdg_repository(online_spec: Path, mirror: Mirror,
                                                                   tmp_path: Path) -> None:
    """`pgha bundle build`'s apt step with PGDG: the repository's lists fetched into a private state and
    checked against the spec's key; this machine's own apt state untouched. (The download itself is the
    bundle's usual step with these options; not run here: it would reach this machine's Debian mirror.)"""
    spec = spec_mod.load(online_spec)
    before = sorted(p.name for p in Path("/var/lib/apt/lists").iterdir())
    opts = pgdg_apt_options(spec, tmp_path / "apt", "bookworm")
    policy = subprocess.run(["apt-cache", *opts, "policy", "postgresql-15"], capture_output=True, text=True,
                            check=True).stdout
    assert f"{mirror.url}/pgdg bookworm-pgdg/main amd64 Packages" in policy, policy
    assert sorted(p.name for p in Path("/var/lib/apt/lists").iterdir()) == before
    data = yaml.safe_load(online_spec.read_text())
    data["deploy"]["postgresql"]["keyring"] = str(mirror.other_key(tmp_path / "other.asc"))
    other = tmp_path / "cluster-other-key.yml"
    other.write_text(spec_mod.dump(data))
    with pytest.raises(PghaError, match="apt-get update of the PGDG repository") as err:
        pgdg_apt_options(spec_mod.load(other), tmp_path / "apt2", "bookworm")
    assert "NO_PUBKEY" in (err.value.details or "") or "not signed" in (err.value.details or ""), err.value.details
