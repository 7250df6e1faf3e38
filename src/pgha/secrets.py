"""The cluster's generated credentials, kept in ``state.secrets`` (YAML, mode 0600).

:func:`ensure_secrets` generates each value once and keeps it forever: re-running pgha must never
rotate a password behind a running cluster's back. The module also holds the two small file helpers
that :mod:`pgha.pki` shares (private directories, atomic writes), since both modules write files that
must never be seen half-written or readable by others.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pgha.errors import MissingPrerequisite, PghaError, pgha_command
from pgha.layout import StateLayout

PASSWORD_LENGTH = 24
CIPHER_PASS_LENGTH = 64
VRRP_PASS_LENGTH = 8
"""keepalived silently truncates auth_pass to 8 characters, so a longer one only pretends."""
RESTAPI_USERNAME = "patroni"
STATS_USERNAME = "pgha"
"""HAProxy's stats page (pgha's probes read it) asks for this user and ``haproxy_stats_password``."""

# Letters and digits only: nothing to quote or escape in libpq DSNs, .pgpass, YAML or shell lines.
_SAFE = re.compile(r"[A-Za-z0-9]+")
_FIX = "fix the file or restore it from a backup (new passwords would have to be deployed to every node)"
_HEADER = b"# pgha generated credentials: keep this file private (mode 0600); never rotated by pgha.\n"


def make_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0700; existing directories are left alone."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        p.mkdir(mode=0o700, exist_ok=True)
        os.chmod(p, 0o700)  # mkdir's mode is filtered through the umask


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    Readers see the old file or the new one, never half of one. The temporary file is created 0600 and
    only then given ``mode``, so a private key is never readable by others, not even briefly.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def random_token(length: int) -> str:
    """``length`` random letters and digits (``token_urlsafe`` with its '-' and '_' dropped)."""
    out = ""
    while len(out) < length:
        # Dropping two of 64 symbols leaves the remaining 62 equally likely.
        out += secrets.token_urlsafe(length).replace("-", "").replace("_", "")
    return out[:length]


@dataclass(frozen=True)
class Secrets:
    """The cluster's credentials. ``repr`` shows no password, so logging a Secrets is harmless."""

    superuser_password: str = field(repr=False)
    replication_password: str = field(repr=False)
    restapi_password: str = field(repr=False)
    vrrp_password: str = field(repr=False)
    restapi_username: str = RESTAPI_USERNAME
    # etcd users (pgha.etcd_auth): its JSON gateway knows a client only by a password login.
    etcd_root_password: str = field(default="", repr=False)
    etcd_patroni_password: str = field(default="", repr=False)
    etcd_probe_password: str = field(default="", repr=False)
    # PostgreSQL roles besides Patroni's superuser and replicator (pgha.roles).
    app_password: str = field(default="", repr=False)
    rewind_password: str = field(default="", repr=False)
    haproxy_stats_password: str = field(repr=False, default="")
    monitor_password: str = field(repr=False, default="")
    """postgres_exporter's PostgreSQL role (pgha_monitor, a member of pg_monitor)."""
    backup_cipher_pass: str = field(repr=False, default="")
    """pgBackRest's repository encryption passphrase (aes-256-cbc): without it no backup can be read."""


_GENERATORS: dict[str, Callable[[], str]] = {
    "superuser_password": lambda: random_token(PASSWORD_LENGTH),
    "replication_password": lambda: random_token(PASSWORD_LENGTH),
    "restapi_username": lambda: RESTAPI_USERNAME,
    "restapi_password": lambda: random_token(PASSWORD_LENGTH),
    "vrrp_password": lambda: random_token(VRRP_PASS_LENGTH),
    "etcd_root_password": lambda: random_token(PASSWORD_LENGTH),
    "etcd_patroni_password": lambda: random_token(PASSWORD_LENGTH),
    "etcd_probe_password": lambda: random_token(PASSWORD_LENGTH),
    "app_password": lambda: random_token(PASSWORD_LENGTH),
    "rewind_password": lambda: random_token(PASSWORD_LENGTH),
    "haproxy_stats_password": lambda: random_token(PASSWORD_LENGTH),
    "monitor_password": lambda: random_token(PASSWORD_LENGTH),
    "backup_cipher_pass": lambda: random_token(CIPHER_PASS_LENGTH),
}


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PghaError(f"cannot read {path}: {exc.strerror}",
                        hint="run pgha as the user that owns the state directory") from None
    except yaml.YAMLError as exc:
        raise PghaError(f"{path}: invalid YAML: {exc}", hint=_FIX) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PghaError(f"{path}: expected a mapping of names to values", hint=_FIX)
    return data


def _validated(data: dict[str, Any], path: Path) -> Secrets:
    for key in _GENERATORS:
        value = data.get(key)
        problem = None
        if not isinstance(value, str):
            problem = f"{key} must be a string (got {type(value).__name__})"
        elif not _SAFE.fullmatch(value):
            problem = f"{key} may hold letters and digits only"
        elif key == "vrrp_password" and len(value) > VRRP_PASS_LENGTH:
            problem = f"{key} is longer than {VRRP_PASS_LENGTH} characters (keepalived would truncate it)"
        if problem:
            raise PghaError(f"{path}: {problem}",
                            hint=f"fix the value, or delete the key and run `{pgha_command('certs')}` to generate "
                                 "a new one (a new password must then be deployed to every node)")
    return Secrets(**{key: data[key] for key in _GENERATORS})


def ensure_passfile(state: StateLayout, users: dict[str, str]) -> Path:
    """libpq's password file (``passfile=``) for the given user -> password, owner-only (0600).

    A DSN that names it carries no password: nothing secret reaches a command line or a terminal.
    """
    path = state.passfile
    data = "".join(f"*:*:*:{user}:{password}\n" for user, password in users.items()).encode()
    if not path.exists() or path.read_bytes() != data or path.stat().st_mode & 0o077:
        make_private_dir(path.parent)
        write_atomic(path, data, 0o600)
    return path


def load_secrets(state: StateLayout) -> Secrets:
    """Read the stored credentials; :class:`PghaError` if there are none yet or they are invalid."""
    path = state.secrets
    if not path.exists():
        raise MissingPrerequisite(f"no generated secrets at {path}",
                                  hint=f"run `{pgha_command('certs')}` to generate them")
    return _validated(_read(path), path)


def ensure_secrets(state: StateLayout) -> Secrets:
    """Return the stored credentials, generating (and storing) whichever are missing.

    Existing values are never changed; the file is rewritten only when a value was added.
    """
    path = state.secrets
    data = _read(path) if path.exists() else {}
    added = {key: generate() for key, generate in _GENERATORS.items() if key not in data}
    data = {**data, **added}
    result = _validated(data, path)  # before writing: never store a file load_secrets would reject
    if added:
        make_private_dir(path.parent)
        write_atomic(path, _HEADER + yaml.safe_dump(data, sort_keys=False).encode(), 0o600)
    elif path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # someone loosened it; passwords stay owner-only
    return result
