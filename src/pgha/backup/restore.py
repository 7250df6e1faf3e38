"""Restores from the repository into a scratch instance on the backup node (``pgha restore --into NAME``).

The running cluster is untouched: pgBackRest restores the stanza into ``restore_dir/NAME/data`` on the
backup node (pgBackRest's own PostgreSQL host options reset, so the repository host restores locally),
PostgreSQL starts there as ``postgres`` on a port of its own with the backup node's certificate,
archiving off (a scratch instance must never push a timeline into the cluster's archive), recovers to
the target and promotes. Its DSN is a verify-full DSN like the cluster's. The same path on a server
and in the lab: the backup node is a namespace or a machine, reached through the Transport.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from pgha import poll
from pgha.backup.repo import RepoInfo, Repository
from pgha.errors import PghaError, UsageError, pgha_command
from pgha.files import DirEntry, FileEntry
from pgha.layout import NodeLayout
from pgha.probe import Credentials
from pgha.probe import pg as pg_probe
from pgha.spec import NAME_RE, ClusterSpec

RESTORE_DIR = "/var/lib/pgha-restore"
"""Where scratch instances live on the backup node (one directory per name)."""
FIRST_PORT = 15432
MAX_INSTANCES = 20


@dataclass(frozen=True)
class Target:
    """Where recovery stops: a time, an LSN, or the end of the archive (``latest``)."""

    kind: str  # "time" | "lsn" | "latest"
    value: str = ""

    @classmethod
    def of(cls, time_: str | None, lsn: str | None, latest: bool) -> Target:
        given = [x for x in (time_, lsn, latest or None) if x]
        if len(given) != 1:
            raise UsageError("name one recovery target: --time TS, --lsn LSN or --latest")
        if time_:
            try:
                when = datetime.fromisoformat(time_)
            except ValueError:
                raise UsageError(f"--time {time_!r} is not an ISO 8601 time (e.g. 2026-11-30T14:05:00+00:00)") from None
            if when.tzinfo is None:
                raise UsageError(f"--time {time_!r} has no time zone: add one (+00:00, Z)")
            # pgBackRest 2.45 reads a zone as +HH only (a +HH:MM one picks no backup set)
            return cls("time", when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00"))
        if lsn:
            if not re.fullmatch(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}", lsn):
                raise UsageError(f"--lsn {lsn!r} is not an LSN (e.g. 0/3000060)")
            return cls("lsn", lsn.upper())
        return cls("latest")

    def pgbackrest_args(self) -> list[str]:
        if self.kind == "latest":
            return ["--type=default", "--target-timeline=latest"]
        return [f"--type={self.kind}", f"--target={self.value}", "--target-action=promote",
                "--target-timeline=latest"]


def lsn_value(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def check_range(target: Target, info: RepoInfo, now: datetime) -> None:
    """A target the repository cannot reach is refused before anything is touched, naming the range."""
    if not info.backups:
        raise PghaError("the repository holds no backup to restore from",
                        hint=f"take one: `{pgha_command('backup')}`")
    oldest = info.backups[0]
    if target.kind == "time":
        when = datetime.strptime(target.value.removesuffix("+00"), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
        if when < oldest.stopped or when > now:
            raise UsageError(f"--time {when.isoformat()} is outside the restorable range "
                             f"{oldest.stopped.isoformat()} (end of the oldest backup, {oldest.label}) .. "
                             f"{now.isoformat(timespec='seconds')} (now)")
    if target.kind == "lsn" and oldest.lsn_stop and lsn_value(target.value) < lsn_value(oldest.lsn_stop):
        raise UsageError(f"--lsn {target.value} is before the end of the oldest backup ({oldest.lsn_stop}, "
                         f"{oldest.label}): the restorable range starts there")


@dataclass(frozen=True)
class Scratch:
    """A scratch instance on the backup node."""

    name: str
    host: str
    port: int
    directory: str
    seconds: float = 0.0
    """How long the restore took (pgBackRest restore, recovery, promotion)."""


class Restorer:
    """Scratch instances of the cluster's backups on the backup node."""

    def __init__(self, repo: Repository, creds: Credentials) -> None:
        self.repo, self.creds = repo, creds
        self.spec: ClusterSpec = repo.spec
        self.layout: NodeLayout = repo.layout
        self.node = repo.node
        self.t = repo.transport

    def _dir(self, name: str) -> str:
        if not re.fullmatch(NAME_RE, name):
            raise UsageError(f"--into {name!r}: a name of lowercase letters, digits and '-'")
        return self.layout.at(f"{RESTORE_DIR}/{name}")

    def _port_of(self, directory: str) -> int | None:
        raw = self.t.read_file(self.node, f"{directory}/port")
        return int(raw) if raw and raw.strip().isdigit() else None

    def existing(self) -> dict[str, int]:
        res = self.t.run(self.node, ["ls", "-1", self.layout.at(RESTORE_DIR)], timeout=10)
        out = {}
        for name in res.stdout.split() if res.ok else []:
            port = self._port_of(f"{self.layout.at(RESTORE_DIR)}/{name}")
            if port:
                out[name] = port
        return out

    def scratch(self, name: str) -> Scratch:
        directory = self._dir(name)
        port = self._port_of(directory)
        if port is None:
            raise UsageError(f"no scratch instance named {name} on {self.node.name}",
                             hint=f"`{pgha_command('restore', '--latest', '--into', name)}` makes one")
        return Scratch(name, str(self.node.address), port, directory)

    def dsn(self, name: str, superuser: bool = False) -> str:
        s = self.scratch(name)
        return pg_probe.client_dsn(self.spec, self.creds, at=(s.host, s.port), superuser=superuser)

    def restore(self, name: str, target: Target) -> Scratch:
        directory = self._dir(name)
        taken = self.existing()
        if name in taken:
            raise UsageError(f"a scratch instance named {name} exists on {self.node.name} (port {taken[name]})",
                             hint=f"drop it first: `{pgha_command('restore', '--drop', name)}`")
        free = [p for p in range(FIRST_PORT, FIRST_PORT + MAX_INSTANCES) if p not in taken.values()]
        if not free:
            raise UsageError(f"{MAX_INSTANCES} scratch instances exist on {self.node.name}: drop one")
        t0 = time.monotonic()
        self.repo.check()  # every WAL up to now in the repository: a target of a moment ago is reachable
        check_range(target, self.repo.info(), datetime.now(UTC))
        port = free[0]
        for d in (self.layout.at(RESTORE_DIR), directory):
            self.t.ensure_dir(self.node, DirEntry(d, "postgres", "postgres", 0o700))
        data = f"{directory}/data"
        resets = [f"--reset-pg{i}-host" for i in range(1, len(self.spec.postgres_nodes) + 1)]
        self.repo.checked(f"pgbackrest restore into {name}", *resets, f"--pg1-path={data}",
                          *target.pgbackrest_args(), "restore", timeout=3600)
        self._configure(directory, data, port)
        pg_ctl = f"{self.spec.pg_bin_dir}/pg_ctl"
        res = self.t.run(self.node, [pg_ctl, "-D", data, "-l", f"{directory}/postgresql.log", "-w", "-t", "300",
                                     "start"], timeout=330, user="postgres")
        if not res.ok:
            log = self.t.read_file(self.node, f"{directory}/postgresql.log") or b""
            raise PghaError(f"the scratch instance {name} on {self.node.name} did not start",
                            details=log.decode(errors="replace")[-2000:])
        try:
            poll.until(f"scratch instance {name} promoted", lambda: self._promoted(directory, port), 300,
                       interval=0.5)
        except poll.TimedOut as exc:
            raise PghaError(f"the scratch instance {name} did not finish recovery: {exc.reason}",
                            hint=f"its log: {directory}/postgresql.log on {self.node.name}") from None
        return Scratch(name, str(self.node.address), port, directory, time.monotonic() - t0)

    def _promoted(self, directory: str, port: int) -> tuple[bool, str]:
        res = self.t.run(self.node, [f"{self.spec.pg_bin_dir}/psql", "-h", f"{directory}/socket", "-p", str(port),
                                     "-U", "postgres", "-d", "postgres", "-Atc", "select pg_is_in_recovery()"],
                         timeout=10, user="postgres")
        return res.ok and res.stdout.strip() == "f", (res.stdout + res.stderr).strip() or "in recovery"

    def _configure(self, directory: str, data: str, port: int) -> None:
        """Its own configuration: the backup node's address and certificate, archiving off, a small cache."""
        lay, spec = self.layout, self.spec
        conf = {
            "listen_addresses": str(self.node.address), "port": port,
            "unix_socket_directories": f"{directory}/socket", "archive_mode": "off",
            "ssl": "on", "ssl_cert_file": lay.server_crt, "ssl_key_file": lay.server_key, "ssl_ca_file": lay.ca_crt,
            "hba_file": f"{directory}/pg_hba.conf", "ident_file": f"{directory}/pg_ident.conf",
            "shared_buffers": "32MB", "password_encryption": "scram-sha-256", "hot_standby": "on",
            "max_connections": spec.postgresql.parameters.get("max_connections", 100),
        }
        text = "".join(f"{k} = '{v}'\n" for k, v in conf.items())
        hba = "local all postgres peer\nhostssl all all 0.0.0.0/0 scram-sha-256\nhost all all 0.0.0.0/0 reject\n"
        for path, content, mode in ((f"{data}/postgresql.conf", text, 0o600), (f"{directory}/pg_hba.conf", hba, 0o600),
                                    (f"{directory}/pg_ident.conf", "", 0o600)):
            self.t.put_file(self.node, FileEntry(path, content.encode(), "postgres", "postgres", mode))
        self.t.ensure_dir(self.node, DirEntry(f"{directory}/socket", "postgres", "postgres", 0o700))
        self.t.put_file(self.node, FileEntry(f"{directory}/port", f"{port}\n".encode(), "postgres", "postgres", 0o600))

    def drop(self, name: str) -> str:
        s = self.scratch(name)
        self.t.run(self.node, [f"{self.spec.pg_bin_dir}/pg_ctl", "-D", f"{s.directory}/data", "-m", "immediate",
                               "-w", "stop"], timeout=60, user="postgres")
        self.t.remove_tree(self.node, s.directory)
        return f"dropped the scratch instance {name} on {self.node.name} (port {s.port})"
