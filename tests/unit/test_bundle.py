"""The offline bundle is verified (issue 18, item 7): a manifest recorded at build, checked here before
shipping and on the server (``sha256sum -c``, the real shell script run locally) before apt trusts it."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from pgha import spec as spec_mod
from pgha.deploy import bundle as bundle_mod
from pgha.deploy import packages
from pgha.errors import PghaError
from pgha.transport.base import CommandResult

REQ = "patroni[etcd3,psycopg3]>=4.1,<4.2"


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bundle_mod.Bundle:
    """A postgres role tar built from two fake .debs and two fake wheels (the index needs no dpkg-deb)."""
    monkeypatch.setattr(bundle_mod, "packages_index", lambda debs, names: "Package: fake\n")
    root = tmp_path / "bundle"
    (root / "debs").mkdir(parents=True)
    (root / "wheels").mkdir()
    for name in ("postgresql-15_15.8-0+deb12u1_amd64.deb", "acl_2.3.1-3_amd64.deb"):
        (root / "debs" / name).write_bytes(name.encode() * 10)
    for name in ("patroni-4.1.5-py3-none-any.whl", "PyYAML-6.0.2-cp311-cp311-manylinux_2_17_x86_64.whl"):
        (root / "wheels" / name).write_bytes(name.encode() * 10)
    bundle_mod._role_tar(root, "postgres", {"postgresql-15_15.8-0+deb12u1_amd64.deb", "acl_2.3.1-3_amd64.deb"}, REQ)
    return bundle_mod.Bundle(root)


def rewrite(b: bundle_mod.Bundle, change: dict[str, bytes]) -> None:
    """Replace (or add) members of the postgres tar, as someone with write access to the bundle could."""
    with tarfile.open(b.tar("postgres")) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    members.update(change)
    with tarfile.open(b.tar("postgres"), "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_the_manifest_is_recorded_at_build(built: bundle_mod.Bundle) -> None:
    recorded = (built.dir / "postgres.manifest").read_text()
    with tarfile.open(built.tar("postgres")) as tar:
        names = tar.getnames()
        inside = tar.extractfile("MANIFEST").read().decode()  # type: ignore[union-attr]
        reqs = tar.extractfile("wheels/requirements.txt").read().decode()  # type: ignore[union-attr]
    assert inside == recorded and hashlib.sha256(recorded.encode()).hexdigest() == built.manifest_id("postgres")
    listed = {line.split("  ", 1)[1] for line in recorded.splitlines()}
    assert listed == set(names) - {"MANIFEST", "MANIFEST.id"}
    wheel = built.dir / "wheels/patroni-4.1.5-py3-none-any.whl"
    assert f"patroni[etcd3,psycopg3]==4.1.5 --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}" in reqs
    assert "PyYAML==6.0.2 --hash=sha256:" in reqs
    assert built.verified_tar("postgres") == built.tar("postgres").read_bytes()


def test_a_tampered_deb_is_refused_before_shipping(built: bundle_mod.Bundle) -> None:
    rewrite(built, {"debs/acl_2.3.1-3_amd64.deb": b"evil"})
    with pytest.raises(PghaError, match=r"postgres.tar: debs/acl_2.3.1-3_amd64.deb does not match the manifest "
                                        r"recorded at build: the bundle was altered after it was built; nothing was"):
        built.verified_tar("postgres")


def test_a_tampered_manifest_is_refused(built: bundle_mod.Bundle) -> None:
    """Rewriting the tar's own MANIFEST to match the altered file does not help: the recorded one differs."""
    evil = b"evil"
    with tarfile.open(built.tar("postgres")) as tar:
        manifest = tar.extractfile("MANIFEST").read().decode()  # type: ignore[union-attr]
    old = next(line for line in manifest.splitlines() if line.endswith("acl_2.3.1-3_amd64.deb"))
    new = f"{hashlib.sha256(evil).hexdigest()}  debs/acl_2.3.1-3_amd64.deb"
    rewrite(built, {"debs/acl_2.3.1-3_amd64.deb": evil, "MANIFEST": manifest.replace(old, new).encode()})
    with pytest.raises(PghaError, match=r"does not match the manifest recorded at build"):
        built.verified_tar("postgres")


@pytest.mark.parametrize("name", ["../etc/cron.d/x", "/etc/cron.d/x", "debs/extra.deb"])
def test_a_member_outside_the_manifest_is_refused(built: bundle_mod.Bundle, name: str) -> None:
    rewrite(built, {name: b"x"})
    with pytest.raises(PghaError, match="the bundle was altered"):
        built.verified_tar("postgres")


class LocalShell:
    """The server side of ship_bundle, run on this machine: the same shell script, as root or not."""

    def __init__(self) -> None:
        self.spec = spec_mod.parse(spec_mod.default_data())

    def read_file(self, node: object, path: str) -> bytes | None:
        p = Path(path)
        return p.read_bytes() if p.exists() else None

    def shell(self, node: object, script: str, *, timeout: float = 60, stdin: bytes | None = None) -> CommandResult:
        proc = subprocess.run(["sh", "-c", script], input=stdin, capture_output=True, timeout=timeout)
        return CommandResult(("sh",), proc.returncode, proc.stdout.decode(), proc.stderr.decode())


NODE = spec_mod.parse(spec_mod.default_data()).nodes[3]


def test_the_server_checks_the_manifest_before_apt_trusts_it(built: bundle_mod.Bundle, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    remote = tmp_path / "server/var/cache/pgha/bundle"
    monkeypatch.setattr(packages, "REMOTE_BUNDLE", str(remote))
    remote.parent.mkdir(parents=True)
    data, ident = built.tar("postgres").read_bytes(), built.manifest_id("postgres")
    assert packages.ship_bundle(LocalShell(), NODE, data, ident)  # type: ignore[arg-type]
    assert (remote / "pgha-bundle.list").read_text() == f"deb [trusted=yes] file:{remote}/debs ./\n"
    assert all(p.stat().st_uid == subprocess.os.getuid() for p in remote.rglob("*"))  # type: ignore[attr-defined]
    assert not packages.ship_bundle(LocalShell(), NODE, data, ident)  # type: ignore[arg-type]  # same id: nothing

    # Altered on the way (or a tar whose MANIFEST is not the one recorded here): refused, nothing trusted.
    rewrite(built, {"debs/acl_2.3.1-3_amd64.deb": b"evil"})
    (remote / "MANIFEST.id").unlink()
    with pytest.raises(PghaError, match="shipping the package bundle failed") as exc:
        packages.ship_bundle(LocalShell(), NODE, built.tar("postgres").read_bytes(), ident)  # type: ignore[arg-type]
    assert "acl_2.3.1-3_amd64.deb: FAILED" in (exc.value.details or "")
    rewrite(built, {"MANIFEST": b"0" * 64 + b"  debs/acl_2.3.1-3_amd64.deb\n"})
    with pytest.raises(PghaError) as exc:
        packages.ship_bundle(LocalShell(), NODE, built.tar("postgres").read_bytes(), ident)  # type: ignore[arg-type]
    assert "MANIFEST is not the one this machine shipped" in (exc.value.details or "")


class Recorder:
    """A PostgreSQL server missing only Patroni's virtualenv: records the install script and its stdin."""

    def __init__(self, spec: spec_mod.ClusterSpec) -> None:
        self.spec = spec
        self.calls: list[tuple[str, bytes | None]] = []

    def shell(self, node: object, script: str, *, timeout: float = 60, stdin: bytes | None = None) -> CommandResult:
        self.calls.append((script, stdin))
        return CommandResult(("sh",), 0, "", "")


def servers(tmp_path: Path, **deploy: object) -> spec_mod.ClusterSpec:
    data = spec_mod.default_data()
    data["deploy"] = {"packages": "online", **deploy}
    return spec_mod.parse(data)


def install_script(spec: spec_mod.ClusterSpec) -> tuple[str, bytes | None]:
    t = Recorder(spec)
    packages.install(t, NODE, packages.PackageFacts(NODE.name, (), patroni_ok=False))  # type: ignore[arg-type]
    [call] = t.calls
    return call


def test_online_patroni_pinned_by_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "patroni.lock"
    lock.write_text("patroni[etcd3,psycopg3]==4.1.5 \\\n    --hash=sha256:" + "a" * 64 + "\nydiff==1.4.2 --hash=sha256:"
                    + "b" * 64 + "\n")
    script, stdin = install_script(servers(tmp_path, patroni_lock=str(lock)))
    assert "pip install -q --disable-pip-version-check --require-hashes --only-binary=:all: -r /dev/stdin" in script
    assert stdin == lock.read_bytes()
    unpinned, _ = install_script(servers(tmp_path))  # no lock: the requirement from the index, as before
    assert "--require-hashes" not in unpinned and "'patroni[etcd3,psycopg3]>=4.1,<4.2'" in unpinned


def test_a_lock_without_hashes_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "patroni.lock"
    lock.write_text("patroni==4.1.5 --hash=sha256:" + "a" * 64 + "\nydiff==1.4.2\n")
    with pytest.raises(PghaError, match=r"pins nothing by hash \('ydiff==1.4.2' has no --hash=sha256:\)"):
        install_script(servers(tmp_path, patroni_lock=str(lock)))


def test_bundle_wheels_install_by_hash_only(tmp_path: Path) -> None:
    script, stdin = install_script(servers(tmp_path, packages="bundle"))
    assert "sha256sum --quiet --strict -c MANIFEST" in script and stdin is None
    assert (f"--no-index --find-links {packages.REMOTE_BUNDLE}/wheels --require-hashes --only-binary=:all: "
            f"-r {packages.REMOTE_BUNDLE}/wheels/requirements.txt") in script
