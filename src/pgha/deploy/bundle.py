"""`pgha bundle build`: everything the servers install, fetched on the operator's machine, so that
servers without internet access can be deployed (``deploy.packages: bundle``).

The bundle directory holds:

    debs/        the .debs of every role's packages with all their dependencies (resolved against an
                 empty system, so it installs on a minimal server)
    wheels/      Patroni and its dependencies as wheels (sdists built into wheels here)
    <role>.tar   what one role's servers get (postgres, haproxy, backup), streamed over SSH: its own .debs
                 with a flat-repository ``Packages`` index (read by the server's apt through a file:
                 source), the wheels for the postgres role with ``wheels/requirements.txt`` (each wheel
                 pinned by version and SHA-256, for ``pip install --require-hashes``), and MANIFEST
                 (``sha256sum`` format: every file of the tar) / MANIFEST.id (the sha256 of MANIFEST:
                 a server holding the same id needs nothing shipped)
    <role>.manifest, <role>.id   the manifest and its id recorded at build, outside the tar

The manifest is checked on this machine before shipping (:meth:`Bundle.verified_tar`: every member of
the tar against the manifest recorded at build) and on each server before anything is installed
(``sha256sum -c``); apt reads the bundle's flat repository as trusted only after that check.

It is built for the release of the operator's machine (its apt lists and its Python): build it on a
machine of the servers' Debian release (``--distro`` is checked, not cross-resolved).

With ``deploy.postgresql.source: pgdg`` the PostgreSQL packages come from the PGDG repository: apt runs
with a private state under ``apt/`` (this machine's sources and lists, plus PGDG's source signed by the
spec's keyring; only PGDG's lists are fetched), so this machine's own apt configuration is never touched.
With ``deploy.etcd.source: tarball`` no etcd package is bundled (the tarball is shipped by `pgha deploy`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgha.deploy.packages import all_packages, packages_for
from pgha.errors import MissingPrerequisite, PghaError, UsageError, pgha_command
from pgha.plan import read_pgdg_key
from pgha.render import apt
from pgha.spec import ClusterSpec, Role

ROLES = tuple(r.value for r in Role)


def roles_of(spec: ClusterSpec) -> tuple[str, ...]:
    """The roles the spec's nodes have, in ROLES order."""
    return tuple(r for r in ROLES if any(n.role.value == r for n in spec.nodes))


@dataclass(frozen=True)
class Bundle:
    dir: Path

    def tar(self, role: str) -> Path:
        return self.dir / f"{role}.tar"

    def manifest_id(self, role: str) -> str:
        return (self.dir / f"{role}.id").read_text().strip()

    def exists(self, spec: ClusterSpec) -> bool:
        """Built for every role the spec's nodes have (a role without nodes gets no tar)."""
        return all(self.tar(r).exists() and (self.dir / f"{r}.id").exists() and (self.dir / f"{r}.manifest").exists()
                   for r in roles_of(spec))

    def verified_tar(self, role: str) -> bytes:
        """The role's tar, after every member was checked against the manifest recorded at build."""
        data = self.tar(role).read_bytes()
        ident, recorded = self.manifest_id(role), (self.dir / f"{role}.manifest").read_bytes()
        altered = f"{self.tar(role)}: {{}}: the bundle was altered after it was built; nothing was shipped"
        if hashlib.sha256(recorded).hexdigest() != ident:
            raise _altered(altered.format(f"{role}.manifest does not hash to {role}.id"))
        want = {name: digest for digest, name in (line.split("  ", 1) for line in recorded.decode().splitlines())}
        seen: set[str] = set()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                name = member.name
                if not member.isfile() or name.startswith("/") or ".." in name.split("/"):
                    raise _altered(altered.format(f"{name} is not a plain file inside the bundle"))
                f = tar.extractfile(member)
                content = f.read() if f else b""
                if name == "MANIFEST":
                    ok = content == recorded
                elif name == "MANIFEST.id":
                    ok = content.decode().strip() == ident
                else:
                    ok = want.get(name) == hashlib.sha256(content).hexdigest()
                if not ok:
                    raise _altered(altered.format(f"{name} does not match the manifest recorded at build"))
                seen.add(name)
        missing = sorted(set(want) - seen)
        if missing:
            raise _altered(altered.format(f"{missing[0]} is missing"))
        return data

    def built_for(self, spec: ClusterSpec) -> bool:
        """Whether the bundle was built for what the spec installs: PostgreSQL from where the spec says and
        each role's packages as the spec's nodes need them today (``sources.json``; a bundle recorded
        without its packages predates that record: stale)."""
        path = self.dir / "sources.json"
        have = json.loads(path.read_text()) if path.exists() else {"postgresql": "distribution"}
        return bool(have == bundle_sources(spec))


def _altered(message: str) -> PghaError:
    return PghaError(message, hint=f"rebuild it from trusted sources: {pgha_command('bundle', 'build', '--force')}")


def bundle_sources(spec: ClusterSpec) -> dict[str, Any]:
    """What a bundle is built from, as recorded in ``sources.json``: where its PostgreSQL packages come
    from, and the packages of each role the spec's nodes have (a role's list grows with pgha: pgBackRest,
    exporters — a bundle built before lacks them)."""
    assert spec.deploy is not None
    pg = spec.deploy.postgresql
    where = {"postgresql": "pgdg", "mirror": pg.mirror} if pg.source == "pgdg" else {"postgresql": "distribution"}
    packages = {r: sorted(packages_for(spec, next(n for n in spec.nodes if n.role.value == r)))
                for r in roles_of(spec)}
    return {**where, "packages": packages}


def host_codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    return "unknown"


def _run(argv: list[str], what: str, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise PghaError(f"bundle: {what} failed (exit {proc.returncode})",
                        details=(proc.stdout[-2000:] + proc.stderr[-2000:]).strip())
    return proc


HOST_LISTS = Path("/var/lib/apt/lists")
HOST_SOURCE_PARTS = Path("/etc/apt/sources.list.d")


def pgdg_apt_options(spec: ClusterSpec, work: Path, codename: str) -> list[str]:
    """apt options that add PGDG to this machine's sources, in a private state under ``work``
    (this machine's lists linked in, PGDG's fetched); [] without ``source: pgdg``."""
    assert spec.deploy is not None
    if spec.deploy.postgresql.source != "pgdg":
        return []
    shutil.rmtree(work, ignore_errors=True)
    lists, parts, only = work / "lists", work / "sources.list.d", work / "pgdg.d"
    for d in (lists / "partial", parts, only):
        d.mkdir(parents=True)
    for f in HOST_LISTS.iterdir() if HOST_LISTS.is_dir() else []:
        if f.is_file() and f.name != "lock":
            (lists / f.name).symlink_to(f)
    for f in HOST_SOURCE_PARTS.iterdir() if HOST_SOURCE_PARTS.is_dir() else []:
        (parts / f.name).symlink_to(f)
    key = read_pgdg_key(spec)
    assert key is not None
    keyring = work / Path(apt.keyring_path(key)).name
    keyring.write_bytes(key)
    line = apt.pgdg_line(spec.deploy.postgresql.mirror, codename, str(keyring))
    for d in (parts, only):
        (d / "pgha-pgdg.list").write_text(line)
    (work / "empty.list").write_text("")
    # No package cache files: they would land in this machine's /var/cache/apt.
    common = ["-o", f"Dir::State::Lists={lists}", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]
    _run(["apt-get", "-q", "update", *common, "-o", f"Dir::Etc::SourceList={work / 'empty.list'}",
          "-o", f"Dir::Etc::SourceParts={only}", "-o", "APT::Get::List-Cleanup=0", "-o", "Debug::NoLocking=1"],
         f"apt-get update of the PGDG repository {spec.deploy.postgresql.mirror}")
    return [*common, "-o", f"Dir::Etc::SourceParts={parts}"]


def _download_debs(packages: tuple[str, ...], dest: Path, apt_options: list[str]) -> None:
    """The packages and their whole dependency closure, as if nothing were installed."""
    with tempfile.TemporaryDirectory(prefix="pgha-bundle-") as tmp:
        status = Path(tmp) / "status"
        status.write_text("")
        (dest / "partial").mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "-q", "-y", "--no-install-recommends", "--download-only", *apt_options,
              "-o", f"Dir::State::status={status}", "-o", f"Dir::Cache::archives={dest}",
              "-o", "Debug::NoLocking=1", "-o", "APT::Get::AllowUnauthenticated=false",
              "install", *packages], "apt-get --download-only (run `apt-get update` first?)")
        shutil.rmtree(dest / "partial", ignore_errors=True)
        (dest / "lock").unlink(missing_ok=True)


def _closure(packages: tuple[str, ...], apt_options: list[str]) -> set[str]:
    """The file names of the .debs apt would install on an empty system for these packages."""
    with tempfile.TemporaryDirectory(prefix="pgha-bundle-") as tmp:
        status = Path(tmp) / "status"
        status.write_text("")
        (Path(tmp) / "archives" / "partial").mkdir(parents=True)
        # An empty archive cache too: apt leaves out what it finds already downloaded.
        out = _run(["apt-get", "-qq", "--print-uris", "--no-install-recommends", *apt_options,
                    "-o", f"Dir::State::status={status}",
                    "-o", f"Dir::Cache::archives={tmp}/archives", "-o", "Debug::NoLocking=1", "install", *packages],
                   "apt-get --print-uris").stdout
    return {line.split()[1] for line in out.splitlines() if line.startswith("'")}


def packages_index(debs: Path, names: set[str], prefix: str = "./") -> str:
    """A repository's ``Packages`` (what dpkg-scanpackages writes), with dpkg-deb only; ``prefix``: the
    .debs' directory relative to the repository's root (a flat repository: ``./``)."""
    paragraphs = []
    for name in sorted(names):
        deb = debs / name
        control = _run(["dpkg-deb", "-f", str(deb)], f"reading {deb.name}").stdout.rstrip("\n")
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        paragraphs.append(f"{control}\nFilename: {prefix}{deb.name}\nSize: {deb.stat().st_size}\nSHA256: {digest}\n")
    return "\n".join(paragraphs)


def _wheels(requirement: str, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--use-pep517", "--disable-pip-version-check", "-w", str(dest),
          requirement], f"pip wheel {requirement}")


def wheel_requirements(wheels: Path, requirement: str) -> str:
    """``requirements.txt`` for ``pip install --require-hashes``: every wheel pinned by version and SHA-256
    (the requirement's extras kept on its own project, so pip resolves the same set offline)."""
    head = re.match(r"[A-Za-z0-9_.-]+(\[[^\]]*\])?", requirement)
    project, extras = (_canonical(head.group(0).split("[")[0]), head.group(1) or "") if head else ("", "")
    lines = []
    for whl in sorted(wheels.glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        digest = hashlib.sha256(whl.read_bytes()).hexdigest()
        lines.append(f"{name}{extras if _canonical(name) == project else ''}=={version} --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _role_tar(root: Path, role: str, debs: set[str], wheels_requirement: str | None) -> None:
    """One role's tar: its .debs and index, the wheels (pinned by hash) if it runs Patroni, a manifest and
    its id; the manifest and id are also recorded next to the tar (checked before shipping)."""
    files: dict[str, Path] = {f"debs/{n}": root / "debs" / n for n in debs}
    generated = {"debs/Packages": packages_index(root / "debs", debs).encode()}
    if wheels_requirement is not None:
        files.update({f"wheels/{p.name}": p for p in (root / "wheels").glob("*.whl")})
        generated["wheels/requirements.txt"] = wheel_requirements(root / "wheels", wheels_requirement).encode()
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {name}" for name, p in sorted(files.items())]
    lines += [f"{hashlib.sha256(data).hexdigest()}  {name}" for name, data in generated.items()]
    manifest = ("\n".join(lines) + "\n").encode()
    ident = hashlib.sha256(manifest).hexdigest()
    tmp = root / f"{role}.tar.tmp"
    with tarfile.open(tmp, "w") as tar:
        for name, p in sorted(files.items()):
            tar.add(p, arcname=name)
        for name, data in (*generated.items(), ("MANIFEST", manifest), ("MANIFEST.id", ident.encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, root / f"{role}.tar")
    (root / f"{role}.manifest").write_bytes(manifest)
    (root / f"{role}.id").write_text(ident + "\n")


def build(spec: ClusterSpec, distro: str | None = None, *, force: bool = False) -> Bundle:
    """Download the .debs (with dependencies) and Patroni's wheels into the spec's bundle directory."""
    if spec.deploy is None:
        raise UsageError("the spec has no `deploy:` section (a cluster of servers)",
                         hint="add `deploy: {packages: bundle}` to the spec")
    here = host_codename()
    if distro and distro != here:
        raise UsageError(f"--distro {distro}: this machine runs {here}; the bundle is resolved with its apt",
                         hint=f"build it on a {distro} machine (or container) and copy the directory")
    for tool in ("apt-get", "dpkg-deb", "tar"):
        if shutil.which(tool) is None:
            raise MissingPrerequisite(f"`pgha bundle build` needs {tool} (a Debian/Ubuntu machine)")
    bundle = Bundle(spec.bundle_dir)
    if bundle.exists(spec) and bundle.built_for(spec) and not force:
        return bundle
    bundle.dir.mkdir(parents=True, exist_ok=True)
    for sub in ("debs", "wheels"):
        shutil.rmtree(bundle.dir / sub, ignore_errors=True)
    apt_options = pgdg_apt_options(spec, bundle.dir / "apt", here)
    _download_debs(all_packages(spec), bundle.dir / "debs", apt_options)
    _wheels(spec.deploy.patroni, bundle.dir / "wheels")
    for role in roles_of(spec):
        names = _closure(packages_for(spec, next(n for n in spec.nodes if n.role.value == role)), apt_options)
        missing = sorted(n for n in names if not (bundle.dir / "debs" / n).exists())
        if missing:
            raise PghaError(f"bundle: apt resolved {', '.join(missing[:5])} but did not download it")
        _role_tar(bundle.dir, role, names, spec.deploy.patroni if role == "postgres" else None)
    (bundle.dir / "sources.json").write_text(json.dumps(bundle_sources(spec)) + "\n")
    return bundle
