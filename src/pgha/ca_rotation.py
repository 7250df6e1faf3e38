"""The files of a CA rotation in the PKI directory, phase by phase, and the phase recorded between runs.

``ca.crt`` is both the cluster CA and what everything trusts (nodes, pgha's probes, ``pgha dsn``'s root
file): during a rotation it is a bundle whose *first* certificate is the CA that signs (``ca.key`` is its
key), so every reader of "the cluster CA" (:func:`pgha.pki.load_cert`) keeps working unchanged::

    (none)         ca.crt = [old]        ca.key = old
    trust-both     ca.crt = [old, new]   ca.key = old   ca.next.{crt,key} = new   leaves from old
    reissue        ca.crt = [new, old]   ca.key = new   ca.old.{crt,key}  = old   leaves from new
    drop-old       ca.crt = [new]        ca.key = new   ca.old.{crt,key} kept until the rotation ends

Each step is a rename of whole files (readers see the old content or the new, never half), and
``ca-rotation.json`` records the phase reached, so an interrupted rotation resumes where it stopped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pgha.errors import UsageError, pgha_command
from pgha.layout import StateLayout
from pgha.pki import CERT_MODE, KEY_MODE, _new_ca, ca_common_name
from pgha.secrets import write_atomic
from pgha.spec import ClusterSpec

PHASES = ("trust-both", "reissue", "drop-old")
STATE_FILE = "ca-rotation.json"


def _path(state: StateLayout, name: str) -> Path:
    return state.pki / name


def phase(state: StateLayout) -> str | None:
    """The phase a CA rotation reached, None when none is under way."""
    try:
        return str(json.loads(_path(state, STATE_FILE).read_text())["phase"])
    except FileNotFoundError:
        return None


def _record(state: StateLayout, name: str | None) -> None:
    path = _path(state, STATE_FILE)
    if name is None:
        path.unlink(missing_ok=True)
        return
    write_atomic(path, (json.dumps({"phase": name, "at": datetime.now(UTC).isoformat()}) + "\n").encode(), 0o600)


def certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file (a trust bundle)."""
    return x509.load_pem_x509_certificates(pem) if pem.strip() else []


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _move(state: StateLayout, src: str, dst: str) -> None:
    if _path(state, src).exists():
        _path(state, src).replace(_path(state, dst))


def require_none(state: StateLayout) -> None:
    """Refuse what must not run in the middle of a CA rotation (a leaf rotation), with the way out."""
    current = phase(state)
    if current is not None:
        raise UsageError(f"a CA rotation is under way (phase {current}): the certificates are between two CAs",
                         hint=f"finish it first: `{pgha_command('certs', 'rotate', '--ca')}` resumes it")


def begin(spec: ClusterSpec, state: StateLayout) -> None:
    """Phase trust-both: a new CA (ca.next.*), trusted after the old one in ca.crt."""
    old = certificates(_path(state, "ca.crt").read_bytes())[0]
    if not _path(state, "ca.next.crt").exists():
        cert, key = _new_ca(ca_common_name(spec))
        write_atomic(_path(state, "ca.next.key"), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), KEY_MODE)
        write_atomic(_path(state, "ca.next.crt"), _pem(cert), CERT_MODE)
    new = certificates(_path(state, "ca.next.crt").read_bytes())[0]
    write_atomic(_path(state, "ca.crt"), _pem(old, new), CERT_MODE)
    _record(state, "trust-both")


def switch(state: StateLayout) -> None:
    """Phase reissue: the new CA signs (first in ca.crt, its key in ca.key); the old one still trusted."""
    if _path(state, "ca.next.crt").exists():  # each step below is safe to repeat after an interruption
        if not _path(state, "ca.old.crt").exists():
            write_atomic(_path(state, "ca.old.crt"), _pem(certificates(_path(state, "ca.crt").read_bytes())[0]),
                         CERT_MODE)
        old, new = _load(state, "ca.old.crt"), _load(state, "ca.next.crt")
        if not _path(state, "ca.old.key").exists():
            _move(state, "ca.key", "ca.old.key")
        write_atomic(_path(state, "ca.crt"), _pem(new, old), CERT_MODE)
        _move(state, "ca.next.key", "ca.key")
        _path(state, "ca.next.crt").unlink()
    _record(state, "reissue")


def drop_old(state: StateLayout) -> None:
    """Phase drop-old: ca.crt holds the new CA alone."""
    new = certificates(_path(state, "ca.crt").read_bytes())[0]
    write_atomic(_path(state, "ca.crt"), _pem(new), CERT_MODE)
    _record(state, "drop-old")


def finish(state: StateLayout) -> None:
    """The rotation is over: the old CA's files go, the phase record too."""
    for name in ("ca.old.crt", "ca.old.key"):
        _path(state, name).unlink(missing_ok=True)
    _record(state, None)


def old_ca(state: StateLayout) -> x509.Certificate | None:
    """The CA being replaced, while a rotation keeps it (None otherwise)."""
    current = phase(state)
    if current == "trust-both":
        return certificates(_path(state, "ca.crt").read_bytes())[0]
    return _load(state, "ca.old.crt") if _path(state, "ca.old.crt").exists() else None


def _load(state: StateLayout, name: str) -> x509.Certificate:
    return certificates(_path(state, name).read_bytes())[0]
