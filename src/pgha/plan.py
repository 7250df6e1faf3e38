"""NodePlan: everything one node needs — directories, files (owner, mode, ACL), links, services, users.

:func:`build` is the one plan builder: pure, from the spec, the certificates, the secrets and what the
target allows (:mod:`pgha.target` calls it; nothing else does). Applied by the orchestrator through a
Transport (a lab namespace or an SSH host). Owners and modes are the seed's (section 5 step 6).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pgha import etcd_leader, monitoring
from pgha.errors import UsageError
from pgha.files import DirEntry, FileEntry, LinkEntry
from pgha.layout import NodeLayout, StateLayout, etcd_cert_name
from pgha.pki import PATRONI_NAME, combined_pem
from pgha.render import apt as apt_render
from pgha.render import etcd as etcd_render
from pgha.render import haproxy as haproxy_render
from pgha.render import keepalived as keepalived_render
from pgha.render import patroni as patroni_render
from pgha.render import pgbackrest as pgbackrest_render
from pgha.render.systemd import render_backup_units, render_dropin, render_tmpfiles, render_unit
from pgha.secrets import STATS_USERNAME, Secrets
from pgha.service import Service
from pgha.spec import ClusterSpec, Node
from pgha.topology import services_of

SYSTEM_USERS = {"etcd": "/var/lib/etcd", "keepalived_script": "/nonexistent"}
"""System users the seed creates (postgres and haproxy come with their packages)."""


@dataclass(frozen=True)
class NodePlan:
    """The desired state of one node."""

    node: Node
    layout: NodeLayout
    users: tuple[str, ...]
    dirs: tuple[DirEntry, ...]
    files: tuple[FileEntry, ...]
    services: tuple[Service, ...] = field(default=())
    links: tuple[LinkEntry, ...] = ()

    @property
    def timers(self) -> tuple[str, ...]:
        """systemd timers the node's plan installs (enabled and started with its services)."""
        return tuple(Path(f.path).name for f in self.files if f.path.endswith(".timer"))

    @property
    def apt_sources(self) -> tuple[FileEntry, ...]:
        """Files of apt's configuration (a package source and its key): written before packages are installed."""
        return tuple(f for f in self.files if f.path.startswith(self.layout.at("/etc/apt/")))

    @property
    def entries(self) -> tuple[DirEntry | FileEntry | LinkEntry, ...]:
        """Directories, files and links, in the order they are written."""
        return (*self.dirs, *self.files, *self.links)

    @property
    def tls_files(self) -> tuple[FileEntry, ...]:
        """The node's certificates, keys and trusted CA files (what a rotation pushes)."""
        return tuple(f for f in self.files if f.path.startswith(f"{self.layout.certs_dir}/")
                     or f.path == self.layout.haproxy_ca)

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(f"{self.node.name} runs no {name}")

    def file(self, path: str) -> FileEntry:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)


@dataclass(frozen=True)
class CertFiles:
    """The PEM material pgha's PKI directory holds for one node."""

    ca_crt: bytes
    etcd_crt: bytes = b""
    etcd_key: bytes = b""
    server_crt: bytes = b""
    server_key: bytes = b""
    patroni_crt: bytes = b""
    patroni_key: bytes = b""

    @classmethod
    def load(cls, state: StateLayout, spec: ClusterSpec, node: Node) -> CertFiles:
        pki = state.pki

        def read(name: str) -> bytes:
            return (pki / name).read_bytes()

        if node.is_backup or node.is_monitor:
            return cls(ca_crt=read("ca.crt"), server_crt=read(f"server-{node.name}.crt"),
                       server_key=read(f"server-{node.name}.key"))
        if not node.is_postgres:
            return cls(ca_crt=read("ca.crt"))
        etcd = etcd_cert_name(spec, node)
        return cls(
            ca_crt=read("ca.crt"),
            etcd_crt=read(f"{etcd}.crt"), etcd_key=read(f"{etcd}.key"),
            server_crt=read(f"server-{node.name}.crt"), server_key=read(f"server-{node.name}.key"),
            patroni_crt=read(f"{PATRONI_NAME}.crt"), patroni_key=read(f"{PATRONI_NAME}.key"),
        )


def read_pgdg_key(spec: ClusterSpec) -> bytes | None:
    """The operator's PGDG signing key (``deploy.postgresql.keyring``), read on this machine when
    PostgreSQL comes from PGDG (else None): armored, or a binary public-key packet (old format 0x98/0x99,
    new format 0xc6). pgha never fetches a key."""
    if spec.deploy is None or spec.deploy.postgresql.source != "pgdg":
        return None
    assert spec.deploy.postgresql.keyring
    path = Path(spec.deploy.postgresql.keyring).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"deploy.postgresql.keyring: cannot read {path}: {exc.strerror}",
                         hint="download the PGDG key (https://www.postgresql.org/media/keys/ACCC4CF8.asc), "
                              "check its fingerprint, and name the file") from None
    armored = data.lstrip().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    if not armored and data[:1] not in (b"\x99", b"\x98", b"\xc6"):
        raise UsageError(f"deploy.postgresql.keyring: {path} is not an OpenPGP public key (armored or binary)")
    return data


def etcd_env_file(layout: NodeLayout, cluster_state: etcd_render.ClusterState) -> FileEntry:
    return FileEntry(layout.etcd_env, etcd_render.render_env(layout, cluster_state).encode(),
                     "root", "etcd", 0o640)


def _postgres_files(layout: NodeLayout, certs: CertFiles, secrets: Secrets, cluster_state: etcd_render.ClusterState,
                    watchdog: bool) -> tuple[list[DirEntry], list[FileEntry]]:
    pg_read = ("u:postgres:r",)
    dirs = [
        # Root owns the directories of keys and configs (the seed gave them to etcd and postgres): a service
        # user cannot swap a file there for a link while root writes it. postgres reads the certs via an ACL.
        DirEntry(layout.certs_dir, "root", "etcd", 0o750, ("u:postgres:rx",)),
        DirEntry(str(Path(layout.etcd_env).parent), "root", "root", 0o755),
        DirEntry(layout.etcd_data, "etcd", "etcd", 0o700),
        DirEntry(str(Path(layout.patroni_config).parent), "root", "postgres", 0o750),  # Patroni writes nothing here
        DirEntry(layout.pg_home, "postgres", "postgres", 0o700),
        DirEntry(layout.pg_socket_dir, "postgres", "postgres", 0o2775),
        DirEntry(layout.run_dir, "root", "root", 0o755),
    ]
    files = [
        FileEntry(layout.ca_crt, certs.ca_crt, "etcd", "etcd", 0o644, pg_read),
        # The member's key is etcd's alone: with it, a process could join etcd's peer port.
        FileEntry(layout.etcd_crt, certs.etcd_crt, "etcd", "etcd", 0o644),
        FileEntry(layout.etcd_key, certs.etcd_key, "etcd", "etcd", 0o600),
        # PostgreSQL insists its key belongs to the database user (or root) and is 0600.
        FileEntry(layout.server_crt, certs.server_crt, "postgres", "postgres", 0o644),
        FileEntry(layout.server_key, certs.server_key, "postgres", "postgres", 0o600),
        FileEntry(layout.server_pem, combined_pem(certs.server_crt, certs.server_key), "postgres", "postgres",
                  0o600),
        # Patroni's own client identity (etcd user patroni: its cluster's keys only); the operator's
        # certificate (etcd root) never leaves the operator's machine.
        FileEntry(layout.patroni_crt, certs.patroni_crt, "postgres", "postgres", 0o644),
        FileEntry(layout.patroni_key, certs.patroni_key, "postgres", "postgres", 0o600),
        etcd_env_file(layout, cluster_state),
        FileEntry(layout.patroni_config, patroni_render.render(layout, secrets, watchdog=watchdog).encode(),
                  "postgres", "postgres", 0o600),
        FileEntry(layout.role_change_script, Path(etcd_leader.__file__).read_bytes(), "root", "postgres", 0o755),
        FileEntry(layout.role_change_config,
                  (json.dumps(patroni_render.role_change_config(layout, secrets), indent=1) + "\n").encode(),
                  "root", "postgres", 0o640),
    ]
    return dirs, files


def _haproxy_files(layout: NodeLayout, certs: CertFiles, secrets: Secrets) -> tuple[list[DirEntry], list[FileEntry]]:
    dirs = [
        DirEntry(str(Path(layout.haproxy_cfg).parent)),
        DirEntry(str(Path(layout.keepalived_conf).parent)),
        DirEntry(layout.run_dir),
    ]
    files = [
        FileEntry(layout.haproxy_ca, certs.ca_crt, "root", "root", 0o644),
        # 0600: it holds the stats page's password (HAProxy reads it as root before dropping privileges).
        FileEntry(layout.haproxy_cfg, haproxy_render.render(layout, STATS_USERNAME,
                                                            secrets.haproxy_stats_password).encode(),
                  "root", "root", 0o600),
        FileEntry(layout.keepalived_conf, keepalived_render.render_conf(layout, secrets.vrrp_password).encode(),
                  "root", "root", 0o600),
        # Only root may write it (keepalived's enable_script_security); keepalived_script runs it.
        FileEntry(layout.keepalived_check, keepalived_render.render_check(layout).encode(), "root", "root",
                  0o755),
    ]
    return dirs, files


def _backup_files(layout: NodeLayout, certs: CertFiles, secrets: Secrets,
                  peer: pgbackrest_render.PeerLayout) -> tuple[list[DirEntry], list[FileEntry]]:
    """The repository host: the CA and its certificate for pgBackRest's TLS server (run as postgres),
    the repository and pgBackRest's configuration (0640: it holds the repository's passphrase)."""
    dirs = [
        DirEntry(layout.certs_dir, "root", "postgres", 0o750),
        DirEntry(layout.run_dir, "root", "root", 0o755),
        DirEntry(layout.pgbackrest_repo, "postgres", "postgres", 0o750),
        *_pgbackrest_dirs(layout),
    ]
    files = [
        FileEntry(layout.ca_crt, certs.ca_crt, "root", "root", 0o644),
        FileEntry(layout.server_crt, certs.server_crt, "root", "root", 0o644),
        FileEntry(layout.server_key, certs.server_key, "postgres", "postgres", 0o600),
        FileEntry(layout.pgbackrest_conf, pgbackrest_render.repository_host(layout, secrets, peer).encode(),
                  "root", "postgres", 0o640),
    ]
    return dirs, files


def _pgbackrest_dirs(layout: NodeLayout) -> list[DirEntry]:
    return [DirEntry(layout.pgbackrest_dir, "root", "postgres", 0o750),
            DirEntry(layout.pgbackrest_log, "postgres", "postgres", 0o750),
            DirEntry(layout.pgbackrest_spool, "postgres", "postgres", 0o750)]


def _role_files(layout: NodeLayout, certs: CertFiles, secrets: Secrets, cluster_state: etcd_render.ClusterState,
                watchdog: bool, peer: pgbackrest_render.PeerLayout
                ) -> tuple[list[DirEntry], list[FileEntry], tuple[str, ...]]:
    """The directories, files and system users of the node's role."""
    node, backup = layout.node, layout.spec.backup_node
    if node.is_postgres:
        dirs, files = _postgres_files(layout, certs, secrets, cluster_state, watchdog)
        more_dirs, more_files = monitoring.exporter_files(layout, certs.ca_crt, certs.server_crt, certs.server_key,
                                                          secrets.monitor_password)
        dirs, files = dirs + more_dirs, files + more_files
        if backup is not None:  # pgBackRest's server for the repository host, and archive-push/get
            dirs += _pgbackrest_dirs(layout)
            conf = pgbackrest_render.postgres_node(layout, secrets, backup, peer)
            files.append(FileEntry(layout.pgbackrest_conf, conf.encode(), "root", "postgres", 0o640))
        return dirs, files, ("etcd", "postgres", monitoring.USER)
    if node.is_backup:
        return *_backup_files(layout, certs, secrets, peer), ("postgres",)
    if node.is_monitor:
        return *monitoring.monitor_files(layout, certs.ca_crt, certs.server_crt, certs.server_key), (monitoring.USER,)
    return *_haproxy_files(layout, certs, secrets), ("haproxy", "keepalived_script")


def _etcd(layout: NodeLayout, watchdog: bool) -> Service:
    return Service("etcd", "etcd key-value store", (layout.spec.etcd_bin,), user="etcd", group="etcd",
                   env_file=layout.etcd_env, working_dir=layout.etcd_data, restart="always", restart_sec=10,
                   notify=True, limit_nofile=40000)


def _patroni(layout: NodeLayout, watchdog: bool) -> Service:
    return Service("patroni", "Patroni: PostgreSQL high-availability manager",
                   (f"{layout.spec.paths.patroni_venv}/bin/patroni", layout.patroni_config), user="postgres",
                   group="postgres", restart="on-failure", restart_sec=5, kill_mode="process", reload_signal="HUP",
                   after=("etcd",), environment=(("HOME", layout.pg_home), ("PGSSLMODE", "verify-full")),
                   start_pre=_watchdog_setup(layout) if watchdog else ())


def _pgbackrest(layout: NodeLayout, watchdog: bool) -> Service:
    return Service("pgbackrest", "pgBackRest TLS server (backups, WAL archive, restores)",
                   layout.pgbackrest("server"), user="postgres", group="postgres", restart="always", restart_sec=5)


def _watchdog_setup(layout: NodeLayout) -> tuple[tuple[str, ...], ...]:
    """With the watchdog on: load its module and hand the device to postgres before Patroni starts, as
    Patroni's own unit suggests (only where the target allows a watchdog)."""
    w = layout.spec.watchdog
    if w.mode == "off":
        return ()
    load = (("/usr/sbin/modprobe", w.module),) if w.module else ()
    return (*load, ("/usr/bin/chown", "postgres:postgres", w.device))


def _haproxy(layout: NodeLayout, watchdog: bool) -> Service:
    return Service("haproxy", "HAProxy: routes PostgreSQL clients to the primary",
                   ("/usr/sbin/haproxy", "-Ws", "-f", layout.haproxy_cfg, "-p", layout.pid_file("haproxy")),
                   restart="always", restart_sec=1, reload_signal="USR2", kill_mode="mixed")


def _keepalived(layout: NodeLayout, watchdog: bool) -> Service:
    vip = layout.spec.vip
    return Service("keepalived", "keepalived: VRRP holder of the PostgreSQL VIP",
                   ("/usr/sbin/keepalived", "--dont-fork", "--log-console", "--log-detail",
                    "-f", layout.keepalived_conf, "-p", layout.pid_file("keepalived"),
                    "-r", layout.pid_file("keepalived-vrrp"), "-c", layout.pid_file("keepalived-checkers")),
                   restart="always", restart_sec=1, reload_signal="HUP", after=("haproxy",),
                   # A keepalived killed with SIGKILL leaves the VIP on its interface while a backup takes
                   # it over: the VIP on two hosts. Release it whenever keepalived ends (measured in drills).
                   stop_post=(("/usr/sbin/ip", "address", "del", f"{vip.address}/{vip.prefix}", "dev",
                               vip.interface),))


SERVICE_BUILDERS: dict[str, Callable[[NodeLayout, bool], Service]] = {
    "etcd": _etcd, "patroni": _patroni, "haproxy": _haproxy, "keepalived": _keepalived, "pgbackrest": _pgbackrest,
    **monitoring.SERVICE_BUILDERS}
"""How each service of :data:`pgha.topology.SERVICES` runs (which node runs it: :func:`~pgha.topology.services_of`)."""
OWN_UNITS = ("etcd", "patroni", "pgbackrest", *monitoring.SERVICE_BUILDERS)
"""Services whose unit pgha writes (monitoring's override the Debian packages' units, which read
/etc/default; Debian's pgbackrest ships none); HAProxy and keepalived ship theirs (pgha adds a drop-in if needed)."""


def _host_files(layout: NodeLayout, pgdg_key: bytes | None) -> tuple[list[FileEntry], list[LinkEntry]]:
    """What only a node that is a whole machine gets: its run directory back after a reboot (tmpfiles.d),
    PostgreSQL's apt source when it comes from PGDG, ``patronictl`` on PATH, the backup node's timers."""
    spec, node = layout.spec, layout.node
    files = [FileEntry(layout.at(TMPFILES), render_tmpfiles(layout.run_dir).encode())]
    if node.is_backup:  # scheduled backups: only a machine of its own has systemd to run them
        for kind, calendar in spec.backup.schedule.items():
            argv = layout.pgbackrest(f"--stanza={spec.name}", "backup", f"--type={kind}")
            service, timer = render_backup_units(spec.name, kind, argv, calendar)
            files += [FileEntry(layout.at(f"/etc/systemd/system/pgbackrest-{kind}.service"), service.encode()),
                      FileEntry(layout.at(f"/etc/systemd/system/pgbackrest-{kind}.timer"), timer.encode())]
    links = []
    if node.is_postgres:
        links.append(LinkEntry(layout.at(PATRONICTL_LINK), f"{spec.paths.patroni_venv}/bin/patronictl"))
    if pgdg_key is not None and uses_pgdg_source(spec, node):
        assert spec.deploy is not None
        key_path = apt_render.keyring_path(pgdg_key)
        source = apt_render.pgdg_source(spec.deploy.postgresql.mirror, spec.deploy.release, key_path)
        files += [FileEntry(layout.at(key_path), pgdg_key),
                  FileEntry(layout.at(apt_render.PGDG_LIST), source.encode())]
    return files, links


TMPFILES = "/etc/tmpfiles.d/pgha.conf"
PATRONICTL_LINK = "/usr/local/bin/patronictl"
"""So the seed's own commands (``patronictl -c /etc/patroni/config.yml list``) work as typed on a server."""


def uses_pgdg_source(spec: ClusterSpec, node: Node) -> bool:
    """Whether this server gets the PGDG apt source itself (``online`` only: a bundle brings the .debs)."""
    d = spec.deploy
    return d is not None and node.is_postgres and d.postgresql.source == "pgdg" and d.packages == "online"


def build(spec: ClusterSpec, node: Node, certs: CertFiles, secrets: Secrets, *, root: str = "",
          etcd_state: etcd_render.ClusterState = "new", watchdog: bool = False, whole_host: bool = False,
          pgdg_key: bytes | None = None, peer_root: Callable[[Node], str] | None = None) -> NodePlan:
    """The plan of one node. ``root`` prefixes every path (the lab's per-node root); ``watchdog``: the
    target allows the spec's watchdog; ``whole_host``: the node is a machine of its own, so it also gets
    :func:`_host_files` (with ``pgdg_key``, the PGDG signing key, when the spec uses that source);
    ``peer_root``: the root of another node's paths (the same as ``root`` when not given)."""
    layout = NodeLayout(spec, node, root)

    def peer(other: Node) -> NodeLayout:
        return NodeLayout(spec, other, peer_root(other) if peer_root else root)

    dirs, files, users = _role_files(layout, certs, secrets, etcd_state, watchdog, peer)
    services = [SERVICE_BUILDERS[name](layout, watchdog) for name in services_of(spec, node)]
    files += [FileEntry(layout.unit(s.name), render_unit(s, spec.name).encode()) for s in services
              if s.name in OWN_UNITS]
    files += [FileEntry(layout.dropin(s.name), render_dropin(s, spec.name).encode()) for s in services
              if s.name not in OWN_UNITS and s.stop_post]
    links: list[LinkEntry] = []
    if whole_host:
        more, links = _host_files(layout, pgdg_key)
        files += more
    return NodePlan(node, layout, users, tuple(dirs), tuple(files), tuple(services), tuple(links))
