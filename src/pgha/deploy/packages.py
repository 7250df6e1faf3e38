"""What each server needs installed (seed sections 3, 4, 5 step 6, 7), how to tell it is there, and
how to install it: from the server's own apt and PyPI (``online``) or from the offline bundle shipped
over SSH (``bundle``, for air-gapped servers; see :mod:`pgha.deploy.bundle`).

The distribution's daemons never start on their own during the install (a ``policy-rc.d`` that
refuses them, as Debian's tools honour): a default etcd, PostgreSQL cluster or HAProxy would hold
the ports pgha's units need. No ``main`` PostgreSQL cluster is created (``createcluster.conf``) and
the distribution's ``postgresql`` unit is disabled: Patroni manages PostgreSQL (seed section 3 step 2).

PostgreSQL from PGDG and etcd from a release tarball (``deploy.postgresql``/``deploy.etcd``): see
:mod:`pgha.deploy.sources`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from pgha.deploy import sources
from pgha.errors import PghaError, pgha_command
from pgha.files import FileEntry
from pgha.spec import ClusterSpec, Node
from pgha.transport.ssh import SshTransport

REMOTE_BUNDLE = "/var/cache/pgha/bundle"
"""Where the bundle lands on a server (a flat apt repository + wheels/)."""


def packages_for(spec: ClusterSpec, node: Node) -> tuple[str, ...]:
    """The Debian packages of one server's role (PostgreSQL's from PGDG or the distribution alike; etcd's
    only when it does not come from a release tarball)."""
    common = ("acl", "procps", "tzdata", "iproute2")
    if node.is_postgres:
        v = spec.postgresql.version
        tarball = spec.deploy is not None and spec.deploy.etcd.source == "tarball"
        etcd = () if tarball else ("etcd-server", "etcd-client")
        backup = ("pgbackrest",) if spec.backup_node is not None else ()
        return (f"postgresql-{v}", f"postgresql-client-{v}", *etcd, "python3-venv",
                "prometheus-postgres-exporter", *backup, *common)
    if node.is_backup:  # pgBackRest needs PostgreSQL's client library and brings the postgres user
        return ("pgbackrest", *common)
    if node.is_monitor:
        return ("prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter", "python3", *common)
    return ("haproxy", "keepalived", *common)


def all_packages(spec: ClusterSpec) -> tuple[str, ...]:
    return tuple(sorted({p for n in spec.nodes for p in packages_for(spec, n)}))


@dataclass(frozen=True)
class PackageFacts:
    node: str
    missing: tuple[str, ...]
    patroni_ok: bool
    """Patroni importable by ``postgres`` from the virtualenv (always True on HAProxy nodes)."""
    codename: str = ""
    """The server's release (VERSION_CODENAME), for the PGDG source."""
    etcd_ok: bool = True
    """The release tarball's etcd binaries are installed (always True without one, or on HAProxy nodes)."""

    @property
    def complete(self) -> bool:
        return not self.missing and self.patroni_ok and self.etcd_ok


def facts(t: SshTransport, node: Node) -> PackageFacts:
    """Which packages are missing, and whether Patroni's virtualenv works for ``postgres`` (one command)."""
    pkgs = packages_for(t.spec, node)
    venv = shlex.quote(t.spec.paths.patroni_venv)
    script = ("for p in " + " ".join(pkgs) + "; do dpkg-query -W -f='${Status}\\n' $p 2>/dev/null | "
              "grep -q 'install ok installed' || echo missing $p; done\n")
    if node.is_postgres:
        script += (f"id -u postgres >/dev/null 2>&1 && runuser -u postgres -- {venv}/bin/python -c "
                   "'import patroni, psycopg, etcd' 2>/dev/null && echo patroni-ok\n")
    script += ". /etc/os-release 2>/dev/null; echo codename ${VERSION_CODENAME:-unknown}\n"
    tarball = sources.etcd_tarball(t.spec) if node.is_postgres else None
    if tarball:
        script += sources.etcd_facts_script(t.spec)
    res = t.shell(node, script, timeout=60)
    missing = tuple(line.split()[1] for line in res.stdout.splitlines() if line.startswith("missing "))
    codename = next((line.split()[1] for line in res.stdout.splitlines() if line.startswith("codename ")), "")
    return PackageFacts(node.name, missing, not node.is_postgres or "patroni-ok" in res.stdout, codename,
                        tarball is None or sources.etcd_installed(tarball, res.stdout))


_NO_DAEMONS = "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d"
_PG_NO_MAIN = ("mkdir -p /etc/postgresql-common && "
               "(grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf || "
               "echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf)")
_APT = "DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends"


def _bundle_apt_options() -> str:
    return (f"-o Dir::Etc::SourceList={REMOTE_BUNDLE}/pgha-bundle.list -o Dir::Etc::SourceParts=/nonexistent "
            "-o APT::Get::List-Cleanup=0")


def _check_manifest(directory: str) -> str:
    """Shell: every file of the bundle in ``directory`` against its MANIFEST (fails on any mismatch)."""
    return f"(cd {directory} && sha256sum --quiet --strict -c MANIFEST)"


def ship_bundle(t: SshTransport, node: Node, tar_bytes: bytes, manifest_id: str) -> bool:
    """Send the bundle (a tar stream over the SSH session) unless the server has this very one; it is
    extracted as root's own files and checked against its manifest (whose SHA-256 must be ``manifest_id``)
    before apt is told to trust it."""
    have = t.read_file(node, f"{REMOTE_BUNDLE}/MANIFEST.id")
    if have is not None and have.decode().strip() == manifest_id:
        return False
    new = f"{REMOTE_BUNDLE}.new"
    script = (f"set -e\nrm -rf {new}\nmkdir -p -m 0755 {new}\n"
              f"tar --no-same-owner --no-same-permissions -x -C {new}\n"
              f"test \"$(sha256sum < {new}/MANIFEST | cut -d' ' -f1)\" = {shlex.quote(manifest_id)} || "
              "{ echo 'MANIFEST is not the one this machine shipped' >&2; exit 1; }\n"
              f"{_check_manifest(new)}\n"
              f"rm -rf {REMOTE_BUNDLE}\nmv {new} {REMOTE_BUNDLE}\n"
              f"echo 'deb [trusted=yes] file:{REMOTE_BUNDLE}/debs ./' > {REMOTE_BUNDLE}/pgha-bundle.list\n")
    res = t.shell(node, script, timeout=600, stdin=tar_bytes)
    if not res.ok:
        raise PghaError(f"{node.name}: shipping the package bundle failed (its checksums are checked there)",
                        details=(res.stdout + res.stderr).strip()[-2000:])
    return True


def patroni_lock(spec: ClusterSpec) -> bytes | None:
    """``deploy.patroni_lock``'s content, every requirement in it pinned by hash (None without one)."""
    assert spec.deploy is not None
    path = spec.deploy.patroni_lock
    if path is None:
        return None
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise PghaError(f"deploy.patroni_lock: cannot read {path}: {exc.strerror}") from None
    unpinned = [line for line in data.decode(errors="replace").splitlines()
                if line.strip() and not line.lstrip().startswith("#") and "--hash=sha256:" not in line
                and not line.rstrip().endswith("\\")]
    if unpinned or b"--hash=sha256:" not in data:
        raise PghaError(f"deploy.patroni_lock: {path} pins nothing by hash"
                        + (f" ({unpinned[0].strip()!r} has no --hash=sha256:)" if unpinned else ""),
                        hint="every line: name==version --hash=sha256:… (pip-compile --generate-hashes writes it)")
    return data


def install(t: SshTransport, node: Node, have: PackageFacts, apt_sources: tuple[FileEntry, ...] = ()) -> None:
    """Install what ``have`` says is missing, after the plan's ``apt_sources`` (PGDG's source and key): the
    packages, the etcd tarball, Patroni's venv."""
    spec = t.spec
    assert spec.deploy is not None
    offline = spec.deploy.packages == "bundle"
    if apt_sources:
        t.sync_entries(node, apt_sources)
    if have.missing:
        pkgs = " ".join(have.missing)
        if offline:  # [trusted=yes] only for files that match the manifest, checked again now
            apt = f"{_APT} {_bundle_apt_options()}"
            update = f"{_check_manifest(REMOTE_BUNDLE)}\n{apt} update -qq"
        else:
            apt, update = _APT, f"{_APT} update -qq"
        script = (f"set -e\n{_NO_DAEMONS}\ntrap 'rm -f /usr/sbin/policy-rc.d' EXIT\n{_PG_NO_MAIN}\n"
                  f"{update}\n{apt} install {pkgs}\n")
        if node.is_postgres:
            script += "systemctl disable --quiet postgresql 2>/dev/null || true\n"
        res = t.shell(node, script, timeout=900)
        if not res.ok:
            raise PghaError(f"{node.name}: installing {pkgs} failed",
                            details=(res.stdout[-1500:] + res.stderr[-1500:]).strip(),
                            hint="online: can the server reach its apt mirror (and PGDG's)? bundle: was it "
                                 f"built for this release (`{pgha_command('bundle', 'build')}`)?")
    tarball = sources.etcd_tarball(spec) if node.is_postgres else None
    if tarball and not have.etcd_ok:
        sources.install_etcd(t, node, tarball)
    if not have.patroni_ok:
        venv = shlex.quote(spec.paths.patroni_venv)
        req = shlex.quote(spec.deploy.patroni)
        wheels = f"{REMOTE_BUNDLE}/wheels"
        pip = f"{venv}/bin/pip install -q --disable-pip-version-check"
        pinned = "--require-hashes --only-binary=:all: -r"
        lock = patroni_lock(spec)
        if offline:
            source = (f"{_check_manifest(REMOTE_BUNDLE)}\n"
                      f"{pip} --no-index --find-links {wheels} {pinned} {wheels}/requirements.txt")
        else:  # the lock, if any, arrives on stdin: nothing of it lingers on the server
            source = f"{pip} {pinned} /dev/stdin" if lock is not None else f"{pip} {req}"
        script = (f"set -e\nmkdir -p $(dirname {venv})\n/usr/bin/python3 -m venv {venv}\n{source}\n"
                  f"chmod -R a+rX {venv}\n"
                  f"runuser -u postgres -- {venv}/bin/python -c 'import patroni, psycopg, etcd'\n")
        res = t.shell(node, script, timeout=600, stdin=None if offline else lock)
        if not res.ok:
            raise PghaError(f"{node.name}: building Patroni's virtualenv in {venv} failed",
                            details=(res.stdout[-1500:] + res.stderr[-1500:]).strip())
