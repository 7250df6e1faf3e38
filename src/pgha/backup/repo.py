"""The cluster's pgBackRest repository, driven on the backup node through the Transport.

Every command runs there as ``postgres`` with that node's pgbackrest.conf; the repository host reaches
the PostgreSQL nodes' pgBackRest servers over TLS (:mod:`pgha.render.pgbackrest`). pgBackRest's own
errors come back as :class:`~pgha.errors.PghaError` naming the node, the command and pgBackRest's line.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pgha.errors import PghaError, UsageError, pgha_command
from pgha.layout import NodeLayout
from pgha.spec import ClusterSpec, Node
from pgha.transport.base import CommandResult, Transport

BACKUP_TYPES = ("full", "diff", "incr")
_ERROR = re.compile(r"ERROR: \[(\d+)\]: (.*)")


def backup_node(spec: ClusterSpec) -> Node:
    """The backup node, or a UsageError saying the spec takes no backups."""
    node = spec.backup_node
    if node is None:
        raise UsageError(f"cluster {spec.name} has no backup node: it takes no backups",
                         hint="add a node with `role: backup` to the spec (pgha init puts backup-01 at .206)")
    return node


@dataclass(frozen=True)
class BackupSet:
    """One backup of the repository (``pgbackrest info``)."""

    label: str
    type: str
    started: datetime
    stopped: datetime
    size: int
    """Bytes of the database (before compression)."""
    repo_size: int
    """Bytes this backup stored in the repository (compressed, encrypted; an incremental one only its changes)."""
    wal_start: str
    wal_stop: str
    lsn_start: str
    lsn_stop: str
    prior: str | None

    @property
    def seconds(self) -> float:
        return (self.stopped - self.started).total_seconds()

    @classmethod
    def of(cls, raw: dict[str, Any]) -> BackupSet:
        ts, archive, info, lsn = raw["timestamp"], raw.get("archive") or {}, raw["info"], raw.get("lsn") or {}
        return cls(raw["label"], raw["type"], datetime.fromtimestamp(ts["start"], UTC),
                   datetime.fromtimestamp(ts["stop"], UTC), int(info.get("size", 0)),
                   int((info.get("repository") or {}).get("delta", 0)),
                   str(archive.get("start") or ""), str(archive.get("stop") or ""),
                   str(lsn.get("start") or ""), str(lsn.get("stop") or ""), raw.get("prior"))

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "type": self.type, "started": self.started.isoformat(),
                "stopped": self.stopped.isoformat(), "seconds": round(self.seconds, 1), "size": self.size,
                "repo_size": self.repo_size, "wal_start": self.wal_start, "wal_stop": self.wal_stop,
                "lsn_start": self.lsn_start, "lsn_stop": self.lsn_stop, "prior": self.prior}


@dataclass(frozen=True)
class RepoInfo:
    """What the repository holds for the stanza: its status, the backups, the WAL archive's range."""

    status: str
    """pgBackRest's status message ("ok", "missing stanza path", "no valid backups"...)."""
    backups: tuple[BackupSet, ...]
    wal_min: str | None
    wal_max: str | None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "no valid backups")

    @property
    def newest(self) -> BackupSet | None:
        return self.backups[-1] if self.backups else None

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "wal_min": self.wal_min, "wal_max": self.wal_max,
                "backups": [b.as_dict() for b in self.backups]}


def parse_info(text: str, stanza: str) -> RepoInfo:
    """``pgbackrest info --output=json`` for one stanza."""
    try:
        data = json.loads(text)
    except ValueError:
        raise PghaError("pgbackrest info: not JSON", details=text[-1000:]) from None
    entry = next((s for s in data if s.get("name") == stanza), None)
    if entry is None:
        return RepoInfo("missing stanza", (), None, None)
    archives = [a for a in entry.get("archive") or [] if a.get("min") or a.get("max")]
    return RepoInfo(str((entry.get("status") or {}).get("message", "unknown")),
                    tuple(BackupSet.of(b) for b in entry.get("backup") or []),
                    archives[0].get("min") if archives else None, archives[-1].get("max") if archives else None)


class Repository:
    """pgBackRest commands for the cluster's stanza, run on the backup node."""

    def __init__(self, spec: ClusterSpec, transport: Transport, layout: NodeLayout) -> None:
        self.spec, self.transport, self.layout = spec, transport, layout
        self.node = layout.node

    def run(self, *args: str, timeout: float = 120) -> CommandResult:
        argv = list(self.layout.pgbackrest(f"--stanza={self.spec.name}", *args))
        return self.transport.run(self.node, argv, timeout=timeout, user="postgres")

    def checked(self, what: str, *args: str, timeout: float = 120) -> CommandResult:
        res = self.run(*args, timeout=timeout)
        if not res.ok:
            raise self.error(what, res)
        return res

    def error(self, what: str, res: CommandResult) -> PghaError:
        """pgBackRest's failure as one line that names the node, with the likely fix."""
        text = f"{res.stdout}\n{res.stderr}"
        found = _ERROR.findall(text)
        code, line = found[-1] if found else ("", (res.stderr or res.stdout).strip().splitlines()[-1:] or ["?"])
        line = line if isinstance(line, str) else line[0]
        hint = _hint(self.spec, self.node, code, line)
        return PghaError(f"{what} on {self.node.name} failed: {line}" + (f" (pgBackRest error {code})" if code else ""),
                         hint=hint, details=text.strip()[-2000:] or None)

    def stanza_create(self) -> str:
        self.checked("pgbackrest stanza-create", "stanza-create", timeout=120)
        return f"stanza {self.spec.name} on {self.node.name}"

    def info(self) -> RepoInfo:
        res = self.checked("pgbackrest info", "info", "--output=json", timeout=60)
        return parse_info(res.stdout, self.spec.name)

    def check(self) -> str:
        """pgBackRest's check: the repository is reachable and a forced WAL switch reaches the archive."""
        self.checked("pgbackrest check", "check", timeout=120)
        return "archiving works: a WAL switch on the primary reached the repository"

    def backup(self, kind: str = "full", timeout: float = 3600) -> BackupSet:
        if kind not in BACKUP_TYPES:
            raise UsageError(f"unknown backup type {kind!r} (one of: {', '.join(BACKUP_TYPES)})")
        self.checked(f"pgbackrest backup --type={kind}", "backup", f"--type={kind}", timeout=timeout)
        newest = self.info().newest
        if newest is None:
            raise PghaError(f"pgbackrest backup on {self.node.name} reported success, but the repository lists "
                            "no backup")
        return newest

    def take(self, kind: str, progress: Callable[[str], None], every: float = 2.0) -> BackupSet:
        """:meth:`backup`, saying meanwhile how long it has run and how much the repository has received."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            running = pool.submit(self.backup, kind)
            t0 = time.monotonic()
            path = f"{self.layout.pgbackrest_repo}/backup/{self.spec.name}"
            before = self._bytes(path)
            while True:
                try:
                    return running.result(timeout=every)
                except FuturesTimeout:
                    grown = max(0, self._bytes(path) - before)
                    progress(f"{time.monotonic() - t0:.0f} s, {grown / 1e6:.1f} MB written to the repository")

    def _bytes(self, path: str) -> int:
        res = self.transport.run(self.node, ["du", "-sb", path], timeout=10)
        head = res.stdout.split()[:1]
        return int(head[0]) if res.ok and head and head[0].isdigit() else 0

    def expire(self) -> None:
        self.checked("pgbackrest expire", "expire")


def _hint(spec: ClusterSpec, node: Node, code: str, line: str) -> str | None:
    port = spec.ports.pgbackrest
    if "unable to connect" in line or code in ("049", "046"):
        return (f"a pgBackRest server is not answering on port {port}: check `{pgha_command('status')}` and "
                f"`{pgha_command('logs', node.name, 'pgbackrest')}`; the nodes must reach each other on TCP {port}")
    if code == "055" or "does not exist" in line or "missing stanza" in line:
        return f"the stanza is missing: `{pgha_command('backup', 'check')}` creates it on a running cluster"
    if "cipher" in line or "decrypt" in line or code == "095":
        return ("the repository's passphrase (backup_cipher_pass in the cluster's secrets) does not match the one "
                "the repository was created with: restore the secrets file")
    if code == "044" or "archive" in line:
        return f"WAL archiving is failing: `{pgha_command('doctor')}` shows the archiver's last error"
    return None


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connect to host:port succeeds (the repository's server, from this machine)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
