"""Where PostgreSQL and etcd come from on the servers (seed sections 3 and 4), besides the distribution:

    PGDG         the PostgreSQL project's apt repository, as the seed's ``apt.postgresql.org.sh`` sets it
                 up: ``deb [signed-by=<key>] <mirror> <codename>-pgdg main``. The key is a file the
                 operator names in the spec (``deploy.postgresql.keyring``), shipped from this machine:
                 pgha never fetches a key. ``online``: the servers get the key and the source (plan files,
                 so ``--dry-run`` shows them); ``bundle``: `pgha bundle build` downloads from the
                 repository on this machine, the servers get .debs only.
    etcd tarball a release tarball on this machine (``deploy.etcd.tarball``) whose SHA-256 must match the
                 spec; streamed over SSH, checked again there, etcd/etcdctl(/etcdutl) installed into
                 ``deploy.etcd.install_dir`` (the seed's /usr/local/bin), which the etcd unit runs. The
                 installed binaries' own SHA-256 tell whether a server has them (no marker to trust).
"""

from __future__ import annotations

import hashlib
import re
import shlex
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from pgha.errors import PghaError, UsageError
from pgha.spec import ClusterSpec, Node
from pgha.transport.ssh import SshTransport

ETCD_BINARIES = ("etcd", "etcdctl", "etcdutl")
"""What a release tarball holds; etcdutl exists from 3.5 on."""


# -- etcd from a release tarball ---------------------------------------------------------------------------
@dataclass(frozen=True)
class EtcdTarball:
    """A release tarball read and checked on this machine."""

    path: Path
    data: bytes
    sha256: str
    version: str
    """From its directory name (``etcd-v3.6.10-linux-amd64`` → v3.6.10); ``unknown`` otherwise."""
    members: tuple[tuple[str, str], ...]
    """(binary, member name in the tarball) for each of :data:`ETCD_BINARIES` it holds."""
    digests: tuple[tuple[str, str], ...]
    """(binary, SHA-256 of the binary itself): what an installed copy must hash to."""


@lru_cache(maxsize=4)
def _read_tarball(path: str, expected: str) -> EtcdTarball:
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"deploy.etcd.tarball: cannot read {p}: {exc.strerror}",
                         hint="download the release tarball (and its SHA256SUMS) on this machine") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected.lower():
        raise PghaError(f"deploy.etcd.tarball: {p.name} has SHA-256 {digest}, the spec says {expected.lower()}",
                        hint="a damaged or different file: compare with the release's SHA256SUMS; "
                             "nothing was shipped")
    members, digests = [], []
    try:
        with tarfile.open(fileobj=BytesIO(data), mode="r:*") as tar:
            for m in tar.getmembers():
                name = Path(m.name).name
                if m.isfile() and name in ETCD_BINARIES and m.name.count("/") <= 1:
                    f = tar.extractfile(m)
                    assert f is not None
                    members.append((name, m.name))
                    digests.append((name, hashlib.sha256(f.read()).hexdigest()))
    except tarfile.TarError as exc:
        raise PghaError(f"deploy.etcd.tarball: {p.name} is not a tar archive: {exc}") from None
    found = {b for b, _ in members}
    if not {"etcd", "etcdctl"} <= found:
        raise PghaError(f"deploy.etcd.tarball: {p.name} holds no etcd and etcdctl "
                        "(expected etcd-vX.Y.Z-linux-amd64/etcd and etcdctl)")
    top = members[0][1].split("/")[0] if "/" in members[0][1] else ""
    version = re.match(r"etcd-(v\d+\.\d+\.\d+[^/]*?)-linux", top)
    return EtcdTarball(p, data, digest, version.group(1) if version else "unknown", tuple(sorted(members)),
                       tuple(sorted(digests)))


def etcd_tarball(spec: ClusterSpec) -> EtcdTarball | None:
    """The spec's etcd release tarball, checked against its SHA-256 (read once per run); None: distribution."""
    d = spec.deploy
    if d is None or d.etcd.source != "tarball":
        return None
    assert d.etcd.tarball and d.etcd.sha256
    return _read_tarball(d.etcd.tarball, d.etcd.sha256)


def etcd_facts_script(spec: ClusterSpec) -> str:
    """Prints ``etcd-bin <sha256> <binary>`` for each installed binary of ``install_dir``."""
    assert spec.deploy is not None
    d = shlex.quote(spec.deploy.etcd.install_dir.rstrip("/"))
    return (f"for b in {' '.join(ETCD_BINARIES)}; do test -f {d}/$b && "
            f"echo etcd-bin $(sha256sum < {d}/$b | cut -d' ' -f1) $b; done; true\n")


def etcd_installed(tb: EtcdTarball, facts_output: str) -> bool:
    """Whether the output of :func:`etcd_facts_script` shows this tarball's very binaries."""
    have = {w[2]: w[1] for line in facts_output.splitlines() if (w := line.split())[:1] == ["etcd-bin"] and len(w) == 3}
    return all(have.get(b) == h for b, h in tb.digests)


def install_etcd(t: SshTransport, node: Node, tb: EtcdTarball) -> None:
    """Stream the tarball over SSH, check its SHA-256 there, install the binaries (root, 0755)."""
    spec = t.spec
    assert spec.deploy is not None
    dest = shlex.quote(spec.deploy.etcd.install_dir.rstrip("/"))
    names = " ".join(shlex.quote(m) for _, m in tb.members)
    installs = "\n".join(f"install -m 0755 -o root -g root \"$tmp\"/{shlex.quote(m)} {dest}/{b}.pgha-new && "
                         f"mv -f {dest}/{b}.pgha-new {dest}/{b}" for b, m in tb.members)
    script = (f"set -e\ntmp=$(mktemp -d)\ntrap 'rm -rf \"$tmp\"' EXIT\ncat > \"$tmp/etcd.tar\"\n"
              f"echo '{tb.sha256}  '\"$tmp/etcd.tar\" | sha256sum -c --quiet -\n"
              f"tar -xf \"$tmp/etcd.tar\" -C \"$tmp\" {names}\nmkdir -p {dest}\n{installs}\n"
              f"{dest}/etcd --version | head -1\n")
    res = t.shell(node, script, timeout=300, stdin=tb.data)
    if not res.ok:
        raise PghaError(f"{node.name}: installing etcd {tb.version} from {tb.path.name} failed",
                        details=(res.stdout[-1000:] + res.stderr[-1500:]).strip())
