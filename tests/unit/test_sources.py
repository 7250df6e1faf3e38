"""Where PostgreSQL and etcd come from (deploy.postgresql / deploy.etcd): spec rules, the PGDG source
files, the release tarball's checks — the parts that need no server."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from pgha import spec as spec_mod
from pgha.deploy import sources
from pgha.deploy.bundle import Bundle, bundle_sources
from pgha.deploy.packages import packages_for
from pgha.deploy.run import reactions
from pgha.errors import PghaError, SpecError
from pgha.files import FileEntry
from pgha.layout import NodeLayout
from pgha.plan import CertFiles, NodePlan, build, read_pgdg_key
from pgha.render import apt
from pgha.secrets import Secrets

KEY = (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBE6XR8IBEACVdDKT2HEH1IyHzXkb4nIWAY7echjRxo7MTcj4vbXAyBKOfjja\n"
       b"-----END PGP PUBLIC KEY BLOCK-----\n")


def servers(**deploy: object) -> dict[str, object]:
    data = spec_mod.default_data(subnet="10.20.0.0/24")
    data["deploy"] = {"packages": "online", **deploy}
    return data


def apt_sources(spec: spec_mod.ClusterSpec, node: spec_mod.Node) -> tuple[FileEntry, ...]:
    """The apt files of the node's plan on a server (key and source of PGDG, or none)."""
    secrets = Secrets(superuser_password="s1", replication_password="s2", restapi_password="s3", vrrp_password="s4")
    return build(spec, node, CertFiles(ca_crt=b"CA\n"), secrets, whole_host=True,
                 pgdg_key=read_pgdg_key(spec)).apt_sources


def release_tarball(tmp_path: Path, version: str = "v3.6.10") -> tuple[Path, str]:
    top = f"etcd-{version}-linux-amd64"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in (("etcd", b"#!/bin/sh\necho etcd\n"), ("etcdctl", b"#!/bin/sh\necho ctl\n"),
                           ("README.md", b"readme")):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode = len(body), 0o755
            tar.addfile(info, io.BytesIO(body))
    path = tmp_path / f"{top}.tar.gz"
    path.write_bytes(buf.getvalue())
    return path, hashlib.sha256(buf.getvalue()).hexdigest()


def test_defaults_are_the_distribution() -> None:
    spec = spec_mod.parse(servers())
    assert spec.deploy is not None
    assert (spec.deploy.postgresql.source, spec.deploy.etcd.source) == ("distribution", "distribution")
    assert spec.etcd_bin == "/usr/bin/etcd"
    assert "etcd-server" in packages_for(spec, spec.postgres_nodes[0])
    assert apt_sources(spec, spec.postgres_nodes[0]) == ()


def test_spec_rules() -> None:
    with pytest.raises(SpecError, match=r"deploy.postgresql.keyring: required with source pgdg"):
        spec_mod.parse(servers(postgresql={"source": "pgdg"}))
    with pytest.raises(SpecError, match=r"deploy.postgresql.mirror: 'apt.example' is not an http"):
        spec_mod.parse(servers(postgresql={"source": "pgdg", "keyring": "/k.asc", "mirror": "apt.example"}))
    with pytest.raises(SpecError, match=r"deploy.etcd.sha256: required with source tarball"):
        spec_mod.parse(servers(etcd={"source": "tarball", "tarball": "/t.tar.gz"}))
    with pytest.raises(SpecError, match=r"deploy.etcd.sha256: String should match"):
        spec_mod.parse(servers(etcd={"source": "tarball", "tarball": "/t.tar.gz", "sha256": "abc"}))
    data = servers(etcd={"source": "tarball", "tarball": "/t.tar.gz", "sha256": "a" * 64})
    data["paths"] = {"etcd_bin": "/usr/bin/etcd"}
    with pytest.raises(SpecError, match=r"paths.etcd_bin: /usr/bin/etcd: with deploy.etcd.source tarball"):
        spec_mod.parse(data)


def test_pgdg_source_files(tmp_path: Path) -> None:
    (tmp_path / "pgdg.key").write_bytes(KEY)
    spec = spec_mod.parse(servers(postgresql={"source": "pgdg", "keyring": str(tmp_path / "pgdg.key"),
                                              "mirror": "http://mirror.internal/pgdg/"}))
    pg, ha = spec.postgres_nodes[0], spec.haproxy_nodes[0]
    key, listing = apt_sources(spec, pg)
    assert (key.path, key.content, key.mode) == ("/etc/apt/keyrings/pgha-pgdg.asc", KEY, 0o644)
    assert listing.path == "/etc/apt/sources.list.d/pgha-pgdg.list"
    assert listing.content.decode().endswith(
        "deb [signed-by=/etc/apt/keyrings/pgha-pgdg.asc] http://mirror.internal/pgdg bookworm-pgdg main\n")
    assert apt_sources(spec, ha) == ()
    assert "postgresql-15" in packages_for(spec, pg)  # the same names as from the distribution
    assert apt.keyring_path(b"\x99\x02\x0d") == "/etc/apt/keyrings/pgha-pgdg.gpg"
    (tmp_path / "pgdg.gpg").write_bytes(b"\xc6\x33\x04")
    binary = spec.model_copy(update={"deploy": spec.deploy.model_copy(  # type: ignore[union-attr]
        update={"postgresql": spec.deploy.postgresql.model_copy(  # type: ignore[union-attr]
            update={"keyring": str(tmp_path / "pgdg.gpg")})})})
    assert apt_sources(binary, pg)[0].path == "/etc/apt/keyrings/pgha-pgdg.gpg"
    bundled = spec.model_copy(update={"deploy": spec.deploy.model_copy(update={"packages": "bundle"})})  # type: ignore[union-attr]
    assert apt_sources(bundled, pg) == ()  # the bundle brings the .debs, not the source
    noble = spec.model_copy(update={"deploy": spec.deploy.model_copy(update={"release": "noble"})})  # type: ignore[union-attr]
    assert b" noble-pgdg main" in apt_sources(noble, pg)[1].content  # written for the spec's release
    (tmp_path / "pgdg.key").write_text("not a key")
    with pytest.raises(PghaError, match="is not an OpenPGP public key"):
        apt_sources(spec, pg)


def test_etcd_tarball_checked_and_detected(tmp_path: Path) -> None:
    path, digest = release_tarball(tmp_path)
    spec = spec_mod.parse(servers(etcd={"source": "tarball", "tarball": str(path), "sha256": digest.upper()}))
    pg = spec.postgres_nodes[0]
    assert spec.etcd_bin == "/usr/local/bin/etcd"
    assert not {"etcd-server", "etcd-client"} & set(packages_for(spec, pg))
    tb = sources.etcd_tarball(spec)
    assert tb is not None and tb.version == "v3.6.10"
    assert dict(tb.members) == {"etcd": "etcd-v3.6.10-linux-amd64/etcd", "etcdctl": "etcd-v3.6.10-linux-amd64/etcdctl"}
    sums = dict(tb.digests)
    assert sums["etcd"] == hashlib.sha256(b"#!/bin/sh\necho etcd\n").hexdigest()
    out = f"codename bookworm\netcd-bin {sums['etcd']} etcd\netcd-bin {sums['etcdctl']} etcdctl\n"
    assert sources.etcd_installed(tb, out)
    assert not sources.etcd_installed(tb, out.replace(sums["etcdctl"], "0" * 64))
    assert not sources.etcd_installed(tb, "codename bookworm\n")
    wrong = spec_mod.parse(servers(etcd={"source": "tarball", "tarball": str(path), "sha256": "b" * 64}))
    with pytest.raises(PghaError, match=f"has SHA-256 {digest}, the spec says b+"):
        sources.etcd_tarball(wrong)


def test_a_new_etcd_binary_restarts_etcd(tmp_path: Path) -> None:
    path, digest = release_tarball(tmp_path, "v3.6.11")
    spec = spec_mod.parse(servers(etcd={"source": "tarball", "tarball": str(path), "sha256": digest}))
    node = spec.postgres_nodes[0]
    plan = NodePlan(node, NodeLayout(spec, node), (), (), ())
    assert [(a, s) for a, s, _ in reactions(node, plan, ["/usr/local/bin/etcd"])] == [("restart", "etcd")]


def test_a_bundle_knows_where_its_postgresql_came_from(tmp_path: Path) -> None:
    (tmp_path / "pgdg.asc").write_bytes(KEY)
    dist = spec_mod.parse(servers(packages="bundle"))
    pgdg = spec_mod.parse(servers(packages="bundle",
                                  postgresql={"source": "pgdg", "keyring": str(tmp_path / "pgdg.asc")}))
    b = Bundle(tmp_path / "bundle")
    assert not b.built_for(dist) and not b.built_for(pgdg)  # no record: built before it existed, stale
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle/sources.json").write_text(json.dumps(bundle_sources(pgdg)))
    assert b.built_for(pgdg) and not b.built_for(dist)
    # a bundle built when a role needed fewer packages (pgha added one since) is stale
    older = bundle_sources(pgdg)
    older["packages"]["postgres"] = older["packages"]["postgres"][1:]
    (tmp_path / "bundle/sources.json").write_text(json.dumps(older))
    assert not b.built_for(pgdg)
