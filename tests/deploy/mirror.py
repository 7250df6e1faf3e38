"""A local apt + pip mirror for the deploy tests' machines, served over HTTP on this machine's address on
their bridge (they have no route out, and must get none).

    debian/     stand-in for the servers' own Debian mirror: a flat repository of the offline bundle's
                .debs (with their dependencies) minus PostgreSQL's version packages
    pgdg/       stand-in for apt.postgresql.org: suite ``<codename>-pgdg``, component ``main``, holding
                Debian's postgresql-15 and postgresql-client-15 (the real PGDG has 18 — never fetched
                here), ``InRelease``/``Release.gpg`` signed with a throwaway key made for the run
    wheels/     Patroni's wheels (the bundle's), for the servers' pip (``find-links``)
    keyring.asc the throwaway key's public half: the spec's ``deploy.postgresql.keyring``
    etcd-vX-linux-amd64.tar.gz  a release-layout tarball (etcd, etcdctl) of Debian's etcd 3.4 binaries

The server is a ``ThreadingHTTPServer`` thread of the test process bound to the bridge address only;
:meth:`Mirror.stop` shuts it down and ends the run's gpg-agent (``gpgconf --kill`` on its own home).
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pgha.deploy.bundle import packages_index

PGDG_PACKAGES = ("postgresql-15_", "postgresql-client-15_")
"""The .debs the fake PGDG repository holds (and the fake Debian mirror does not)."""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def _release(suite: str | None, files: dict[str, Path]) -> str:
    """A ``Release`` file: what apt checks the indexes against (SHA256 of each)."""
    head = ["Origin: pgha-test", "Label: pgha-test", f"Date: {email.utils.formatdate(usegmt=True)}"]
    if suite:
        head += [f"Suite: {suite}", f"Codename: {suite}", "Architectures: amd64", "Components: main"]
    sums = [f" {hashlib.sha256(p.read_bytes()).hexdigest()} {p.stat().st_size} {name}" for name, p in files.items()]
    return "\n".join([*head, "SHA256:", *sums]) + "\n"


class Mirror:
    """Build the repositories and the tarball under ``root``, serve them on ``host`` (see module doc)."""

    def __init__(self, root: Path, bundle_dir: Path, host: str, codename: str = "bookworm") -> None:
        self.root, self.bundle, self.host, self.codename = root, bundle_dir, host, codename
        self.gnupg = Path(tempfile.mkdtemp(prefix="pgha-gpg-"))  # short: gpg-agent's socket path
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.keyring = root / "keyring.asc"
        self.tarball = root / "missing.tar.gz"
        self.etcd_version = ""

    # -- build -------------------------------------------------------------------------------------------
    def _gpg(self, *args: str) -> None:
        subprocess.run(["gpg", "--batch", "--quiet", "--homedir", str(self.gnupg), *args], check=True,
                       capture_output=True)

    def build(self) -> None:
        debs = self.bundle / "debs"
        all_debs = sorted(p.name for p in debs.glob("*.deb"))
        pg = {n for n in all_debs if n.startswith(PGDG_PACKAGES)}
        assert len(pg) == 2, f"the bundle has no postgresql-15 .debs: {sorted(pg)}"
        self.gnupg.chmod(0o700)
        self._gpg("--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
                  "pgha test PGDG stand-in <pgdg-test@pgha.invalid>", "ed25519", "sign", "1d")
        self._gpg("--armor", "--output", str(self.keyring), "--export")

        flat = self.root / "debian"
        flat.mkdir(parents=True)
        rest = set(all_debs) - pg
        for n in rest:
            (flat / n).symlink_to(debs / n)
        (flat / "Packages").write_text(packages_index(debs, rest))
        (flat / "Release").write_text(_release(None, {"Packages": flat / "Packages"}))

        suite = f"{self.codename}-pgdg"
        repo = self.root / "pgdg"
        pool, dist = repo / "pool/main", repo / "dists" / suite
        (dist / "main/binary-amd64").mkdir(parents=True)
        pool.mkdir(parents=True)
        for n in pg:
            (pool / n).symlink_to(debs / n)
        index = dist / "main/binary-amd64/Packages"
        index.write_text(packages_index(debs, pg, prefix="pool/main/"))
        release = dist / "Release"
        release.write_text(_release(suite, {"main/binary-amd64/Packages": index}))
        self._gpg("--yes", "--clearsign", "--output", str(dist / "InRelease"), str(release))
        self._gpg("--yes", "--armor", "--detach-sign", "--output", str(dist / "Release.gpg"), str(release))

        (self.root / "wheels").symlink_to(self.bundle / "wheels")
        self._etcd_tarball(debs)

    def other_key(self, path: Path) -> Path:
        """The public half of another throwaway key (one that did not sign the repository)."""
        self._gpg("--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
                  "pgha test, not the signer <other@pgha.invalid>", "ed25519", "sign", "1d")
        self._gpg("--armor", "--output", str(path), "--export", "other@pgha.invalid")
        return path

    def _etcd_tarball(self, debs: Path) -> None:
        """etcd-v<version>-linux-amd64/{etcd,etcdctl} from Debian's etcd-server and etcd-client."""
        server = next(debs.glob("etcd-server_*.deb"))
        client = next(debs.glob("etcd-client_*.deb"))
        self.etcd_version = server.name.split("_")[1].split("-")[0].split("+")[0]
        top = f"etcd-v{self.etcd_version}-linux-amd64"
        with tempfile.TemporaryDirectory(prefix="pgha-etcd-") as tmp:
            for deb in (server, client):
                subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
            self.tarball = self.root / f"{top}.tar.gz"
            with tarfile.open(self.tarball, "w:gz") as tar:
                for b in ("etcd", "etcdctl"):
                    tar.add(Path(tmp) / "usr/bin" / b, arcname=f"{top}/{b}")

    def newer_tarball(self) -> Path:
        """Another release of the same layout: the same binaries plus ``etcdutl`` (a copy of etcdctl, as
        far as hashes go), so every server's binaries differ from it."""
        newer = self.root / "newer" / self.tarball.name
        newer.parent.mkdir()
        top = self.tarball.name.removesuffix(".tar.gz")
        with tarfile.open(self.tarball) as old, tarfile.open(newer, "w:gz") as tar:
            for m in old.getmembers():
                tar.addfile(m, old.extractfile(m))
                if m.name == f"{top}/etcdctl":
                    copy = tarfile.TarInfo(f"{top}/etcdutl")
                    copy.size, copy.mode = m.size, m.mode
                    tar.addfile(copy, old.extractfile(m))
        return newer

    @property
    def tarball_sha256(self) -> str:
        return hashlib.sha256(self.tarball.read_bytes()).hexdigest()

    # -- serve -------------------------------------------------------------------------------------------
    def start(self) -> str:
        """Serve ``root`` on the bridge address (an ephemeral port); returns the base URL."""
        self.server = ThreadingHTTPServer((self.host, 0), partial(_Quiet, directory=str(self.root)))
        self.thread = threading.Thread(target=self.server.serve_forever, name="pgha-test-mirror", daemon=True)
        self.thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{self.host}:{self.server.server_address[1]}"

    def machine_setup(self) -> str:
        """The shell commands that point a machine's own apt and pip at this mirror (its admin's part)."""
        return (f"rm -f /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources && "
                f"echo 'deb [trusted=yes] {self.url}/debian ./' > /etc/apt/sources.list && "
                f"printf '[global]\\nno-index = true\\nfind-links = {self.url}/wheels/\\n"
                f"trusted-host = {self.host}\\n' > /etc/pip.conf")

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.thread is not None:
            self.thread.join(timeout=10)
            self.thread = None
        if self.gnupg.exists():
            subprocess.run(["gpgconf", "--homedir", str(self.gnupg), "--kill", "all"], capture_output=True,
                           env={**os.environ, "GNUPGHOME": str(self.gnupg)})
            shutil.rmtree(self.gnupg, ignore_errors=True)
