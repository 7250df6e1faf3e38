"""NodePlan: everything one node needs — directories, files (owner, mode, ACL), services, users.

Built purely from the spec, the certificates and the secrets; applied by the orchestrator through a
Transport (a lab namespace or an SSH host). Owners and modes are the seed's (section 5 step 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pgha.layout import NodeLayout, StateLayout, etcd_cert_name
from pgha.pki import combined_pem
from pgha.render import etcd as etcd_render
from pgha.render import haproxy as haproxy_render
from pgha.render import keepalived as keepalived_render
from pgha.render import patroni as patroni_render
from pgha.render.systemd import render_dropin, render_unit
from pgha.secrets import Secrets
from pgha.service import Service
from pgha.spec import ClusterSpec, Node

SYSTEM_USERS = {"etcd": "/var/lib/etcd", "keepalived_script": "/nonexistent"}
"""System users the seed creates (postgres and haproxy come with their packages)."""


@dataclass(frozen=True)
class DirEntry:
    path: str
    owner: str = "root"
    group: str = "root"
    mode: int = 0o755
    acl: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileEntry:
    path: str
    content: bytes
    owner: str = "root"
    group: str = "root"
    mode: int = 0o644
    acl: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodePlan:
    """The desired state of one node."""

    node: Node
    layout: NodeLayout
    users: tuple[str, ...]
    dirs: tuple[DirEntry, ...]
    files: tuple[FileEntry, ...]
    services: tuple[Service, ...] = field(default=())

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
    client_crt: bytes = b""
    client_key: bytes = b""

    @classmethod
    def load(cls, state: StateLayout, spec: ClusterSpec, node: Node) -> CertFiles:
        pki = state.pki

        def read(name: str) -> bytes:
            return (pki / name).read_bytes()

        if not node.is_postgres:
            return cls(ca_crt=read("ca.crt"))
        etcd = etcd_cert_name(spec, node)
        return cls(
            ca_crt=read("ca.crt"),
            etcd_crt=read(f"{etcd}.crt"), etcd_key=read(f"{etcd}.key"),
            server_crt=read(f"server-{node.name}.crt"), server_key=read(f"server-{node.name}.key"),
            client_crt=read("client.crt"), client_key=read("client.key"),
        )


def etcd_env_file(layout: NodeLayout, cluster_state: etcd_render.ClusterState) -> FileEntry:
    return FileEntry(layout.etcd_env, etcd_render.render_env(layout, cluster_state).encode(),
                     "root", "etcd", 0o640)


def _postgres_plan(layout: NodeLayout, certs: CertFiles, secrets: Secrets,
                   cluster_state: etcd_render.ClusterState) -> tuple[list[DirEntry], list[FileEntry],
                                                                     list[Service]]:
    spec = layout.spec
    pg_read = ("u:postgres:r",)
    dirs = [
        # The seed: etcd owns the cert directory (0700); postgres reads it through an ACL.
        DirEntry(layout.certs_dir, "etcd", "etcd", 0o700, ("u:postgres:rx",)),
        DirEntry(str(Path(layout.etcd_env).parent), "root", "root", 0o755),
        DirEntry(layout.etcd_data, "etcd", "etcd", 0o700),
        DirEntry(str(Path(layout.patroni_config).parent), "postgres", "postgres", 0o750),
        DirEntry(layout.pg_home, "postgres", "postgres", 0o700),
        DirEntry(layout.pg_socket_dir, "postgres", "postgres", 0o2775),
        DirEntry(layout.run_dir, "root", "root", 0o755),
    ]
    files = [
        FileEntry(layout.ca_crt, certs.ca_crt, "etcd", "etcd", 0o644, pg_read),
        FileEntry(layout.etcd_crt, certs.etcd_crt, "etcd", "etcd", 0o644, pg_read),
        FileEntry(layout.etcd_key, certs.etcd_key, "etcd", "etcd", 0o600, pg_read),
        # PostgreSQL insists its key belongs to the database user (or root) and is 0600.
        FileEntry(layout.server_crt, certs.server_crt, "postgres", "postgres", 0o644),
        FileEntry(layout.server_key, certs.server_key, "postgres", "postgres", 0o600),
        FileEntry(layout.server_pem, combined_pem(certs.server_crt, certs.server_key), "postgres", "postgres",
                  0o600),
        FileEntry(layout.client_crt, certs.client_crt, "postgres", "postgres", 0o644),
        FileEntry(layout.client_key, certs.client_key, "postgres", "postgres", 0o600),
        etcd_env_file(layout, cluster_state),
        FileEntry(layout.patroni_config, patroni_render.render(layout, secrets).encode(), "postgres",
                  "postgres", 0o600),
    ]
    venv = spec.paths.patroni_venv
    services = [
        Service("etcd", "etcd key-value store", (spec.etcd_bin,), user="etcd", group="etcd",
                env_file=layout.etcd_env, working_dir=layout.etcd_data, restart="always", restart_sec=10,
                notify=True, limit_nofile=40000),
        Service("patroni", "Patroni: PostgreSQL high-availability manager",
                (f"{venv}/bin/patroni", layout.patroni_config), user="postgres", group="postgres",
                restart="on-failure", restart_sec=5, kill_mode="process", reload_signal="HUP",
                after=("etcd",), environment=(("HOME", layout.pg_home), ("PGSSLMODE", "verify-full")),
                start_pre=_watchdog_setup(layout)),
    ]
    return dirs, files, services


def _watchdog_setup(layout: NodeLayout) -> tuple[tuple[str, ...], ...]:
    """On servers with the watchdog on: load its module and hand the device to postgres before Patroni
    starts, as Patroni's own unit suggests. Never in the lab (one kernel: it would reset the machine)."""
    w = layout.spec.watchdog
    if layout.root or w.mode == "off":
        return ()
    load = (("/usr/sbin/modprobe", w.module),) if w.module else ()
    return (*load, ("/usr/bin/chown", "postgres:postgres", w.device))


def _haproxy_plan(layout: NodeLayout, certs: CertFiles, secrets: Secrets) -> tuple[list[DirEntry],
                                                                                    list[FileEntry],
                                                                                    list[Service]]:
    dirs = [
        DirEntry(str(Path(layout.haproxy_cfg).parent)),
        DirEntry(str(Path(layout.keepalived_conf).parent)),
        DirEntry(layout.run_dir),
    ]
    files = [
        FileEntry(layout.haproxy_ca, certs.ca_crt, "root", "root", 0o644),
        FileEntry(layout.haproxy_cfg, haproxy_render.render(layout).encode(), "root", "root", 0o644),
        FileEntry(layout.keepalived_conf, keepalived_render.render_conf(layout, secrets.vrrp_password).encode(),
                  "root", "root", 0o600),
        # Only root may write it (keepalived's enable_script_security); keepalived_script runs it.
        FileEntry(layout.keepalived_check, keepalived_render.render_check(layout).encode(), "root", "root",
                  0o755),
    ]
    services = [
        Service("haproxy", "HAProxy: routes PostgreSQL clients to the primary",
                ("/usr/sbin/haproxy", "-Ws", "-f", layout.haproxy_cfg, "-p", layout.pid_file("haproxy")),
                restart="always", restart_sec=1, reload_signal="USR2", kill_mode="mixed"),
        Service("keepalived", "keepalived: VRRP holder of the PostgreSQL VIP",
                ("/usr/sbin/keepalived", "--dont-fork", "--log-console", "--log-detail",
                 "-f", layout.keepalived_conf, "-p", layout.pid_file("keepalived"),
                 "-r", layout.pid_file("keepalived-vrrp"), "-c", layout.pid_file("keepalived-checkers")),
                restart="always", restart_sec=1, reload_signal="HUP", after=("haproxy",),
                # A keepalived killed with SIGKILL leaves the VIP on its interface while a backup takes
                # it over: the VIP on two hosts. Release it whenever keepalived ends (measured in drills).
                stop_post=(("/usr/sbin/ip", "address", "del", f"{layout.spec.vip.address}/{layout.spec.vip.prefix}",
                            "dev", layout.spec.vip.interface),)),
    ]
    return dirs, files, services


def build(spec: ClusterSpec, node: Node, certs: CertFiles, secrets: Secrets, *, root: str = "",
          etcd_state: etcd_render.ClusterState = "new") -> NodePlan:
    """The plan of one node. ``root`` prefixes every path (the lab's per-node root)."""
    layout = NodeLayout(spec, node, root)
    if node.is_postgres:
        dirs, files, services = _postgres_plan(layout, certs, secrets, etcd_state)
        users: tuple[str, ...] = ("etcd", "postgres")
    else:
        dirs, files, services = _haproxy_plan(layout, certs, secrets)
        users = ("haproxy", "keepalived_script")
    units = [
        FileEntry(layout.at(f"/etc/systemd/system/{s.name}.service"), render_unit(s, spec.name).encode())
        for s in services if s.name in ("etcd", "patroni")  # HAProxy and keepalived ship their own units
    ] + [
        FileEntry(layout.at(f"/etc/systemd/system/{s.name}.service.d/pgha.conf"), render_dropin(s, spec.name).encode())
        for s in services if s.name not in ("etcd", "patroni") and s.stop_post
    ]
    return NodePlan(node, layout, users, tuple(dirs), tuple(files + units), tuple(services))
