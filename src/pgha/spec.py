"""The cluster spec: one declarative description of the whole stack (``cluster.yml``).

Defaults are the seed guide's topology: three PostgreSQL nodes running etcd + Patroni, three HAProxy
nodes, a keepalived VIP. The spec is read once (:func:`load`), validated, and handed downstream as a
frozen :class:`ClusterSpec`; nothing after this module re-reads YAML.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from pgha import DEFAULT_SPEC_FILE
from pgha.errors import SpecError, UsageError

STATE_ROOT = Path(os.environ.get("PGHA_STATE_ROOT") or (
    "/var/lib/pgha" if os.geteuid() == 0 else Path.home() / ".local/state/pgha"))
"""Where each cluster's state directory lives (the lab needs root, so /var/lib/pgha for it)."""

SUPERUSER, REPLICATION_USER, REWIND_USER, MONITOR_USER = "postgres", "replicator", "rewind", "pgha_monitor"
RESERVED_ROLES = (SUPERUSER, REPLICATION_USER, REWIND_USER, MONITOR_USER)
"""PostgreSQL roles pgha configures itself: the superuser, replication and pg_rewind."""
NAME_RE = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"


def _address_text(value: Any) -> Any:
    """An address is written as text: `5` must not silently become 0.0.0.5."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("an IPv4 address is written as text, like 10.203.0.210")
    return value


IPv4 = Annotated[ipaddress.IPv4Address, BeforeValidator(_address_text)]

# Strict values: everything below reaches a shell, a unit file, a config line or a path on a node run
# by root, so each type excludes newlines, shell metacharacters and `..` (issue 18, item 5).
_PATH_RE = re.compile(r"/|(/[A-Za-z0-9_+@=,.-]+)+")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _absolute_path(value: str) -> str:
    """An absolute, normalised path of plain characters: no `..`, `.`, `//`, trailing `/`, spaces or quotes."""
    parts = value.split("/")[1:]
    if not _PATH_RE.fullmatch(value) or any(p in (".", "..") for p in parts):
        raise ValueError("must be an absolute, normalised path of letters, digits and _+@=,.- "
                         "(no '..', '.', '//', trailing '/', spaces, quotes or shell characters)")
    return value


def _ifname(value: str) -> str:
    """Linux's interface name rules (1-15 bytes, no '/', ':' or whitespace), narrowed to plain characters."""
    if not _IFNAME_RE.fullmatch(value):
        raise ValueError("not an interface name: 1-15 letters, digits, '_', '.', '-' (not first), "
                         "no spaces, '/', ':' or newlines")
    return value


def _word(value: str) -> str:
    if not _WORD_RE.fullmatch(value):
        raise ValueError("must be 1-64 letters, digits, '_', '.', '-', starting with a letter or digit "
                         "(no spaces, quotes or shell characters)")
    return value


def _text_line(value: str) -> str:
    """Free text on this machine (a local file name): one line, no control characters."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must be one line without control characters")
    return value


AbsPath = Annotated[str, AfterValidator(_absolute_path)]
IfName = Annotated[str, AfterValidator(_ifname)]
Word = Annotated[str, AfterValidator(_word)]
LocalPath = Annotated[str, AfterValidator(_text_line)]


class Frozen(BaseModel):
    """Base of every spec model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(StrEnum):
    """A node's role: which services it runs is :func:`pgha.topology.services_of`."""

    POSTGRES = "postgres"
    HAPROXY = "haproxy"
    BACKUP = "backup"
    """The pgBackRest repository host (at most one); a cluster without one takes no backups."""
    MONITOR = "monitor"
    """Prometheus, Alertmanager and the blackbox exporter, scraping every other node (at most one)."""


class Profile(StrEnum):
    """Failover timing presets; explicit values in the spec override them."""

    SEED = "seed"
    FAST = "fast"


class Tags(Frozen):
    """Patroni member tags (the seed's section 7)."""

    nofailover: bool = False
    noloadbalance: bool = False
    clonefrom: bool = False
    nosync: bool = False


SSH_KEY_RE = r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|ssh-dss) [A-Za-z0-9+/]+={0,3}( .*)?$"


class NodeSsh(Frozen):
    """How pgha reaches one server over SSH; fields left out come from ``deploy.ssh``."""

    user: Word | None = None
    port: Annotated[int | None, Field(ge=1, le=65535)] = None
    key_file: LocalPath | None = None
    host_key: Annotated[str | None, Field(pattern=SSH_KEY_RE)] = None
    """The server's public host key, pinned (``ssh-ed25519 AAAA...``, as in /etc/ssh/ssh_host_*.pub);
    without it the key must be in ``known_hosts``. An unknown key is never accepted."""


class Node(Frozen):
    """One host of the cluster."""

    name: Annotated[str, Field(pattern=NAME_RE)]
    role: Role
    address: IPv4
    member: Annotated[str | None, Field(pattern=NAME_RE)] = None
    """Patroni member and etcd member name (the seed: postgres-01 runs member postgresql-01)."""
    priority: Annotated[int | None, Field(ge=1, le=254)] = None
    """keepalived VRRP priority (HAProxy nodes); default 100, 90, 80... in spec order."""
    tags: Tags = Tags()
    ssh: NodeSsh = NodeSsh()
    """SSH settings of this server for `pgha deploy` (overrides ``deploy.ssh``)."""

    @property
    def member_name(self) -> str:
        return self.member or self.name

    @property
    def is_postgres(self) -> bool:
        return self.role is Role.POSTGRES

    @property
    def is_haproxy(self) -> bool:
        return self.role is Role.HAPROXY

    @property
    def is_backup(self) -> bool:
        return self.role is Role.BACKUP

    @property
    def is_monitor(self) -> bool:
        return self.role is Role.MONITOR


class Vip(Frozen):
    """The floating address keepalived moves between the HAProxy nodes."""

    address: IPv4
    prefix: Annotated[int, Field(ge=8, le=32)] = 24
    interface: IfName = "eth0"
    router_id: Annotated[int, Field(ge=1, le=255)] = 51
    advert_int: Annotated[int, Field(ge=1, le=255)] = 1
    nopreempt: bool = False
    """When true, a recovered high-priority node does not take the VIP back (one blip fewer)."""


class Ports(Frozen):
    etcd_client: Annotated[int, Field(ge=1, le=65535)] = 2379
    etcd_peer: Annotated[int, Field(ge=1, le=65535)] = 2380
    postgresql: Annotated[int, Field(ge=1, le=65535)] = 5432
    postgresql_replicas: Annotated[int, Field(ge=1, le=65535)] = 5433
    """HAProxy frontend for read-only traffic, routed to replicas via Patroni's /replica."""
    restapi: Annotated[int, Field(ge=1, le=65535)] = 8008
    pgbackrest: Annotated[int, Field(ge=1, le=65535)] = 8432
    """pgBackRest's TLS server on the backup node and on every PostgreSQL node."""
    haproxy_monitor: Annotated[int, Field(ge=1, le=65535)] = 8404
    """HAProxy's stats page on the node's address, behind a password (pgha's probes read it), and its
    health URI on 127.0.0.1 (keepalived's check)."""
    postgres_exporter: Annotated[int, Field(ge=1, le=65535)] = 9187
    """postgres_exporter on each PostgreSQL node (HTTPS)."""
    prometheus: Annotated[int, Field(ge=1, le=65535)] = 9090
    alertmanager: Annotated[int, Field(ge=1, le=65535)] = 9093


class Dcs(Frozen):
    """Patroni's DCS settings (bootstrap.dcs); the seed's values by default."""

    ttl: Annotated[int, Field(ge=1)] = 30
    loop_wait: Annotated[int, Field(ge=1)] = 10
    retry_timeout: Annotated[int, Field(ge=1)] = 10
    maximum_lag_on_failover: Annotated[int, Field(ge=0)] = 1048576
    synchronous_mode: bool = False
    synchronous_mode_strict: bool = False
    failsafe_mode: bool = False

    @classmethod
    def live(cls, config: dict[str, Any]) -> Dcs:
        """These keys of Patroni's dynamic configuration (``GET /config``); Patroni's defaults, which are
        these fields' defaults, for the keys it does not show."""
        return cls.model_validate({k: v for k, v in config.items() if k in cls.model_fields})

    def problems(self) -> list[tuple[str, str]]:
        """Patroni's rules across these fields, each (key, problem); the key is "" for a rule of several."""
        out = []
        if self.ttl < 20:
            out.append(("ttl", f"{self.ttl} is below Patroni's floor of 20 (Patroni would silently use 20)"))
        if self.retry_timeout < 3:
            out.append(("retry_timeout", f"{self.retry_timeout} is below Patroni's floor of 3"))
        if self.loop_wait + 2 * self.retry_timeout > self.ttl:
            out.append(("", f"loop_wait + 2*retry_timeout = {self.loop_wait + 2 * self.retry_timeout} "
                            f"exceeds ttl {self.ttl}: a healthy leader could lose its lease"))
        if self.synchronous_mode_strict and not self.synchronous_mode:
            out.append(("synchronous_mode_strict", "needs synchronous_mode: true"))
        return out


class HaproxyTimings(Frozen):
    """HAProxy health checks of Patroni's REST API and connection timeouts (milliseconds)."""

    inter_ms: Annotated[int, Field(ge=100)] = 3000
    fastinter_ms: Annotated[int, Field(ge=100)] = 1000
    downinter_ms: Annotated[int, Field(ge=100)] = 3000
    rise: Annotated[int, Field(ge=1)] = 2
    fall: Annotated[int, Field(ge=1)] = 3
    timeout_connect_ms: Annotated[int, Field(ge=100)] = 5000
    timeout_client_ms: Annotated[int, Field(ge=1000)] = 1800000
    timeout_server_ms: Annotated[int, Field(ge=1000)] = 1800000
    timeout_check_ms: Annotated[int, Field(ge=100)] = 2000


class KeepalivedTimings(Frozen):
    """keepalived's vrrp_script check of the local HAProxy (the seed: every 2 s, fall 3, rise 2)."""

    interval: Annotated[int, Field(ge=1)] = 2
    fall: Annotated[int, Field(ge=1)] = 3
    rise: Annotated[int, Field(ge=1)] = 2
    timeout: Annotated[int, Field(ge=1)] = 2


SEED_PG_PARAMETERS: dict[str, str | int | float | bool] = {"max_connections": 100, "shared_buffers": "256MB"}


class Postgresql(Frozen):
    version: Annotated[int, Field(ge=12, le=30)] = 15
    parameters: dict[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_.]{0,62}$")],
                     Annotated[str, AfterValidator(_text_line)] | int | float | bool] = Field(
        default_factory=lambda: dict(SEED_PG_PARAMETERS))
    bin_dir: AbsPath | None = None
    """Directory of pg_ctl, initdb, pg_rewind; found from ``version`` when not given."""
    app_user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "app"
    """The application's role, created at bring-up with a generated password and a database of the same
    name that it owns; what `pgha dsn` / `pgha psql` / the drills connect as."""
    admin_addresses: tuple[ipaddress.IPv4Network, ...] | None = None
    """Where the ``postgres`` superuser may connect from over the network, besides the PostgreSQL nodes
    (pg_hba rejects it from anywhere else, the VIP included: through HAProxy it comes from an HAProxy
    node), and where Patroni accepts unsafe REST calls from (``restapi.allowlist``, with the PostgreSQL
    nodes). Default: ``lab.bridge_address`` — the lab's machine; on servers name the operator's machine."""


class Watchdog(Frozen):
    """Patroni's watchdog: the fence that stops a primary whose Patroni died from taking writes.

    With a Patroni killed but its postmaster alive, the old primary accepts direct writes after a new
    leader is promoted (measured by `pgha drill patroni-only-crash`). The watchdog resets such a node
    before its leader key expires. On servers load ``softdog`` (or use a hardware watchdog) and let
    ``postgres`` open the device. The lab never uses it: on one machine it would reset the whole machine.
    """

    mode: Literal["off", "automatic", "required"] = "automatic"
    """``required``: Patroni refuses to lead without a working watchdog; ``automatic``: uses it if present."""
    device: AbsPath = "/dev/watchdog"
    module: Word | None = "softdog"
    """Kernel module loaded before Patroni starts on servers (``None`` for a hardware watchdog whose
    driver the system loads itself)."""
    safety_margin: Annotated[int, Field(ge=-1)] = 5
    """Seconds between the watchdog firing and the leader key expiring."""


class Paths(Frozen):
    """Where files live on each node (absolute paths, as on a real server)."""

    certs: AbsPath = "/etc/etcd/certs"
    etcd_data: AbsPath = "/var/lib/etcd"
    etcd_conf: AbsPath = "/etc/etcd"
    patroni_conf: AbsPath = "/etc/patroni"
    pg_data: AbsPath = "/var/lib/postgresql/data"
    pg_home: AbsPath = "/var/lib/postgresql"
    pg_socket_dir: AbsPath = "/var/run/postgresql"
    haproxy_conf: AbsPath = "/etc/haproxy"
    keepalived_conf: AbsPath = "/etc/keepalived"
    run_dir: AbsPath = "/run/pgha"
    etcd_bin: AbsPath = "/usr/bin/etcd"
    """Debian's etcd-server; /usr/local/bin/etcd for the release tarball the seed installs."""
    prometheus_conf: AbsPath = "/etc/prometheus"
    """Prometheus, Alertmanager and the exporters' configs (the Debian packages' directory)."""
    prometheus_data: AbsPath = "/var/lib/prometheus"
    pgbackrest_conf: AbsPath = "/etc/pgbackrest"
    """pgBackRest's configuration directory (pgbackrest.conf), on the backup and PostgreSQL nodes."""
    pgbackrest_repo: AbsPath = "/var/lib/pgbackrest"
    """The backup repository, on the backup node."""
    pgbackrest_log: AbsPath = "/var/log/pgbackrest"
    pgbackrest_spool: AbsPath = "/var/spool/pgbackrest"
    """pgBackRest's spool and lock files."""
    patroni_venv: AbsPath = "/opt/pgha/patroni"
    """A virtualenv with Patroni, built from the system Python so ``postgres`` can execute it."""


class Pki(Frozen):
    """The cluster's certificates (issued by `pgha certs`, `lab up` and `deploy`)."""

    leaf_days: Annotated[int, Field(ge=31, le=3650)] = 365
    """Validity of new leaf certificates (servers, clients); renewed when 30 days are left."""


BackupType = Literal["full", "diff", "incr"]
DEFAULT_SCHEDULE: dict[BackupType, str] = {"full": "Sun *-*-* 01:00:00", "diff": "Mon..Sat *-*-* 01:00:00"}
"""A full backup weekly, a differential the other days (systemd OnCalendar)."""


class Backup(Frozen):
    """Backups with pgBackRest, taken on the backup node (the spec's node of role ``backup``; without one
    there are no backups and this section is ignored). The stanza is the cluster's name."""

    retention_full: Annotated[int, Field(ge=1, le=100)] = 2
    """Full backups kept (older ones expire with the WAL only they need)."""
    cipher: Literal["aes-256-cbc", "none"] = "aes-256-cbc"
    """Repository encryption; the passphrase is generated into the cluster's secrets (0600)."""
    compress: Literal["zst", "lz4", "gz", "bz2", "none"] = "zst"
    compress_level: Annotated[int | None, Field(ge=0, le=19)] = None
    backup_standby: bool = True
    """Copy the data files from a replica (the primary only starts and stops the backup)."""
    process_max: Annotated[int, Field(ge=1, le=64)] = 2
    max_age_hours: Annotated[int, Field(ge=1)] = 26
    """Doctor warns when the newest backup is older (a daily differential, with slack)."""
    schedule: dict[BackupType, Annotated[str, Field(pattern=r"^[A-Za-z0-9*:.,/~ -]{1,64}$")]] = Field(
        default_factory=lambda: dict(DEFAULT_SCHEDULE))
    """systemd timers on the backup node (servers; the lab has no systemd: `pgha backup` on demand), as
    OnCalendar expressions per backup type."""


class LabSettings(Frozen):
    """Settings used only by ``pgha lab``: the bridge that joins the namespaces."""

    bridge_address: IPv4 | None = None
    """The machine's own address on the lab bridge; default: the subnet's first host."""


class Ssh(Frozen):
    """SSH defaults of every server (`pgha deploy`); each node's ``ssh`` overrides them."""

    user: Word = "root"
    """root, or a user with passwordless sudo."""
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    key_file: LocalPath | None = None
    """Private key; default: the SSH agent and ~/.ssh/id_* keys."""
    known_hosts: LocalPath | None = None
    """known_hosts file checked for host keys not pinned in the spec; default ~/.ssh/known_hosts."""
    connect_timeout: Annotated[float, Field(gt=0)] = 10.0


@dataclass(frozen=True)
class SshTarget:
    """The SSH settings of one node, its own merged over ``deploy.ssh``."""

    host: str
    user: str
    port: int
    key_file: str | None
    host_key: str | None
    known_hosts: str | None
    connect_timeout: float


PGDG_MIRROR = "https://apt.postgresql.org/pub/repos/apt"
"""The PostgreSQL project's apt repository (PGDG), as the seed's apt.postgresql.org.sh configures it."""


class PostgresqlSource(Frozen):
    """Where PostgreSQL's packages come from (seed section 3): the distribution, or PGDG as the seed does."""

    source: Literal["distribution", "pgdg"] = "distribution"
    """``pgdg``: servers get the apt source ``<mirror> <codename>-pgdg main`` signed by ``keyring``
    (``online``); `pgha bundle build` downloads the packages from it (``bundle``)."""
    keyring: LocalPath | None = None
    """The PGDG signing key on this machine (armored ``.asc`` or binary ``.gpg``), required for ``pgdg``.
    pgha ships it to the servers and never fetches a key itself: get it, check its fingerprint, name it."""
    mirror: str = PGDG_MIRROR
    """The repository's URL (an internal mirror of apt.postgresql.org)."""


class EtcdSource(Frozen):
    """Where etcd comes from (seed section 4): the distribution's package, or a release tarball."""

    source: Literal["distribution", "tarball"] = "distribution"
    """``tarball``: a release tarball (``etcd-vX.Y.Z-linux-amd64.tar.gz``) from this machine, checked
    against ``sha256``, shipped over SSH; etcd, etcdctl (and etcdutl) go to ``install_dir``."""
    tarball: LocalPath | None = None
    """Path of the tarball on this machine (required for ``tarball``; never downloaded by pgha)."""
    sha256: Annotated[str | None, Field(pattern=r"^[0-9a-fA-F]{64}$")] = None
    """The tarball's SHA-256 (required for ``tarball``): from the release's SHA256SUMS."""
    install_dir: AbsPath = "/usr/local/bin"
    """Where the binaries go (the seed's /usr/local/bin); the etcd unit runs ``<install_dir>/etcd``."""


class Deploy(Frozen):
    """`pgha deploy` to real servers: how packages reach them and the seed's section 2 prerequisites."""

    packages: Literal["online", "bundle"] = "online"
    """``online``: each server uses its own apt and PyPI; ``bundle``: an offline bundle built by
    `pgha bundle build` on this machine, shipped over SSH (air-gapped servers)."""
    bundle_dir: LocalPath | None = None
    """Where `pgha bundle build` writes the bundle; default <state_dir>/bundle."""
    timezone: str | None = None
    """The seed's section 2 step 1 (e.g. Europe/Madrid); unset: left as it is."""
    release: Annotated[str, Field(pattern=r"^[a-z]+$")] = "bookworm"
    """The servers' Debian/Ubuntu release (codename, e.g. ``bookworm``, ``noble``): the PGDG apt source is
    written for it (so `pgha render` shows it), and deploy refuses a server of PGDG that runs another."""
    patroni: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+(\[[A-Za-z0-9_,.-]+\])?[A-Za-z0-9_.,<>=!~* ]*$")] = (
        "patroni[etcd3,psycopg3]>=4.1,<4.2")
    """The pip requirement of Patroni's virtualenv."""
    patroni_lock: LocalPath | None = None
    """``online``: a pip requirements file on this machine pinning Patroni and every dependency by version
    and SHA-256 (``name==1.2 --hash=sha256:…``; a bundle's ``wheels/requirements.txt``, or
    ``pip-compile --generate-hashes``): the servers then install with ``--require-hashes
    --only-binary=:all:``. Without it, ``online`` installs ``patroni`` from the servers' index unpinned."""
    postgresql: PostgresqlSource = PostgresqlSource()
    etcd: EtcdSource = EtcdSource()
    ssh: Ssh = Ssh()


class Monitoring(Frozen):
    """Prometheus and Alertmanager (the ``monitor`` role) and the alert rules pgha renders."""

    scrape_interval_s: Annotated[int, Field(ge=1, le=300)] = 15
    evaluation_interval_s: Annotated[int, Field(ge=1, le=300)] = 15
    paused_minutes: Annotated[int, Field(ge=1)] = 30
    """How long Patroni may stay paused (maintenance mode) before it is an alert."""
    webhook_url: Annotated[str | None, Field(pattern=r"^https?://[^\s]+$")] = None
    """Where Alertmanager posts alerts (its webhook receiver); unset: the monitor node's local recorder."""


class ClusterSettings(Frozen):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")] = "postgresql-cluster"
    """Patroni's scope; also names the lab's namespaces and the state directory."""
    namespace: Annotated[str, Field(pattern=r"^/([A-Za-z0-9_.-]+/)*$")] = "/service/"
    etcd_token: Word = "etcd-cluster"
    state_dir: AbsPath | None = None
    """Certificates, secrets, rendered files and the lab's node roots; default /var/lib/pgha/<name>.
    Must lie below the state root (/var/lib/pgha, or $PGHA_STATE_ROOT): `lab down` removes it."""


PROFILES: dict[Profile, dict[str, dict[str, Any]]] = {
    Profile.SEED: {},
    # Patroni's floor is ttl 20; loop_wait + 2*retry_timeout must stay <= ttl.
    Profile.FAST: {
        "dcs": {"ttl": 20, "loop_wait": 2, "retry_timeout": 4},
        "haproxy": {"inter_ms": 1000, "fastinter_ms": 250, "downinter_ms": 500, "rise": 1, "fall": 2,
                    "timeout_connect_ms": 1000, "timeout_check_ms": 1000},
        "keepalived": {"interval": 1, "fall": 2, "rise": 1, "timeout": 1},
    },
}


class ClusterSpec(Frozen):
    """The whole cluster. Build it with :func:`load` or :func:`parse`, never by hand-editing dicts."""

    cluster: ClusterSettings = ClusterSettings()
    profile: Profile = Profile.SEED
    nodes: tuple[Node, ...]
    vip: Vip
    ports: Ports = Ports()
    dcs: Dcs = Dcs()
    haproxy: HaproxyTimings = HaproxyTimings()
    keepalived: KeepalivedTimings = KeepalivedTimings()
    postgresql: Postgresql = Postgresql()
    watchdog: Watchdog = Watchdog()
    paths: Paths = Paths()
    pki: Pki = Pki()
    backup: Backup = Backup()
    lab: LabSettings = LabSettings()
    monitoring: Monitoring = Monitoring()
    deploy: Deploy | None = None
    """Present for a cluster of real servers (`pgha deploy`); absent for the lab."""

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        """Fill timing sections from the profile; values written in the spec win."""
        if not isinstance(data, dict):
            return data
        try:
            profile = Profile(data.get("profile", Profile.SEED))
        except ValueError:
            return data  # the field validator reports it
        merged = dict(data)
        for section, preset in PROFILES[profile].items():
            given = merged.get(section)
            if given is None:
                merged[section] = dict(preset)
            elif isinstance(given, dict):
                merged[section] = {**preset, **given}
        return merged

    # -- derived views -------------------------------------------------------------------------
    @property
    def postgres_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.is_postgres)

    @property
    def haproxy_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.is_haproxy)

    @property
    def monitor_node(self) -> Node | None:
        """The node running Prometheus and Alertmanager, if the spec has one."""
        return next((n for n in self.nodes if n.is_monitor), None)

    @property
    def backup_node(self) -> Node | None:
        """The pgBackRest repository host, if the spec has one (none: no backups)."""
        return next((n for n in self.nodes if n.is_backup), None)

    def nodes_of(self, role: Role) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role is role)

    @property
    def name(self) -> str:
        return self.cluster.name

    @property
    def state_dir(self) -> Path:
        return Path(self.cluster.state_dir) if self.cluster.state_dir else STATE_ROOT / self.cluster.name

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Interface(f"{self.vip.address}/{self.vip.prefix}").network

    @property
    def bridge_address(self) -> ipaddress.IPv4Address:
        return self.lab.bridge_address or next(self.network.hosts())

    @property
    def admin_networks(self) -> tuple[ipaddress.IPv4Network, ...]:
        """Where pgha's machine (and any other admin) may log in as the superuser over the network and make
        Patroni's unsafe REST calls from."""
        if self.postgresql.admin_addresses is not None:
            return self.postgresql.admin_addresses
        return (ipaddress.IPv4Network(self.bridge_address),)

    @property
    def pg_bin_dir(self) -> str:
        return self.postgresql.bin_dir or f"/usr/lib/postgresql/{self.postgresql.version}/bin"

    @property
    def etcd_bin(self) -> str:
        """The etcd binary the unit runs: the release tarball's in its install_dir, else ``paths.etcd_bin``."""
        if self.deploy is not None and self.deploy.etcd.source == "tarball":
            return f"{self.deploy.etcd.install_dir.rstrip('/')}/etcd"
        return self.paths.etcd_bin

    def node(self, name: str) -> Node:
        """A node by its spec name or its Patroni member name."""
        for n in self.nodes:
            if name in (n.name, n.member_name):
                return n
        known = ", ".join(n.name for n in self.nodes)

        raise UsageError(f"no node named '{name}' in the spec (known: {known})")

    def priority_of(self, node: Node) -> int:
        if node.priority is not None:
            return node.priority
        return 100 - 10 * self.haproxy_nodes.index(node)

    def ssh_of(self, node: Node) -> SshTarget:
        """The SSH settings of a server: the node's own over ``deploy.ssh``."""
        d = (self.deploy or Deploy()).ssh
        o = node.ssh
        return SshTarget(str(node.address), o.user or d.user, o.port or d.port, o.key_file or d.key_file,
                         o.host_key, d.known_hosts, d.connect_timeout)

    @property
    def bundle_dir(self) -> Path:
        given = self.deploy.bundle_dir if self.deploy else None
        return Path(given) if given else self.state_dir / "bundle"

    def member_of(self, member_name: str) -> Node | None:
        return next((n for n in self.postgres_nodes if n.member_name == member_name), None)


# -- loading -------------------------------------------------------------------------------------


_UNION_TAGS = {"str", "int", "float", "bool", "function-before[_address_text(), ip_v4_address]"}


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if part in _UNION_TAGS or part == "[key]" or str(part).startswith("function-after["):
            continue  # pydantic names the union member it tried; the user wrote one field
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_message(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (not part of the spec; see `pgha spec schema`)"
    if kind == "missing":
        return "is required"
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return f"{err['msg'].removeprefix('Value error, ').rstrip('.')} (got {shown})"


def _semantic_errors(spec: ClusterSpec) -> list[tuple[str, str]]:
    """Rules across fields that pydantic cannot see; each is (field path, problem)."""
    errors: list[tuple[str, str]] = []

    def first_use(attr: str) -> None:
        seen: dict[str, int] = {}
        for i, node in enumerate(spec.nodes):
            value = str(getattr(node, attr))
            if value in seen:
                errors.append((f"nodes[{i}].{attr}", f"{value} is used twice (also nodes[{seen[value]}])"))
            else:
                seen[value] = i

    first_use("name")
    first_use("address")
    members: dict[str, int] = {}
    for i, node in enumerate(spec.nodes):
        if node.is_postgres:
            if node.member_name in members:
                errors.append((f"nodes[{i}].member",
                               f"{node.member_name} is used twice (also nodes[{members[node.member_name]}])"))
            members[node.member_name] = i

    n_pg = len(spec.postgres_nodes)
    if n_pg == 0 or n_pg % 2 == 0:
        errors.append(("nodes", f"{n_pg} postgres nodes: etcd runs on each and needs an odd number "
                                "(1, 3, 5) to keep a quorum"))
    if not spec.haproxy_nodes:
        errors.append(("nodes", "no haproxy node: at least one is needed to route clients to the primary"))
    backups = [i for i, node in enumerate(spec.nodes) if node.is_backup]
    if len(backups) > 1:
        errors.append((f"nodes[{backups[1]}].role", f"a second backup node (also nodes[{backups[0]}]): "
                                                    "the cluster has one pgBackRest repository host"))
    monitors = [i for i, node in enumerate(spec.nodes) if node.is_monitor]
    if len(monitors) > 1:
        errors.append((f"nodes[{monitors[1]}].role", f"a second monitor node (also nodes[{monitors[0]}]): "
                                                     "the cluster has one Prometheus and Alertmanager"))

    net = spec.network
    outside = [i for i, node in enumerate(spec.nodes) if node.address not in net]
    if spec.nodes and len(outside) == len(spec.nodes):
        errors.append(("vip.address", f"{spec.vip.address}/{spec.vip.prefix} is not in the nodes' subnet "
                                      f"(nodes[0] is {spec.nodes[0].address})"))
    else:
        errors += [(f"nodes[{i}].address", f"{spec.nodes[i].address} is not in the VIP's subnet {net}")
                   for i in outside]
    for i, node in enumerate(spec.nodes):
        if node.address == spec.vip.address:
            errors.append(("vip.address", f"{spec.vip.address} is also the address of nodes[{i}]"))
        if node.priority is not None and not node.is_haproxy:
            errors.append((f"nodes[{i}].priority", "only haproxy nodes take a VRRP priority"))
    if spec.vip.address in (net.network_address, net.broadcast_address):
        errors.append(("vip.address", f"{spec.vip.address} is the network or broadcast address of {net}"))
    prios: dict[int, int] = {}
    for i, node in enumerate(spec.nodes):
        if node.is_haproxy:
            p = spec.priority_of(node)
            if p in prios:
                errors.append((f"nodes[{i}].priority",
                               f"priority {p} is used twice (also nodes[{prios[p]}]); "
                               "VRRP needs one clear preferred holder"))
            prios[p] = i

    errors += [(f"dcs.{key}" if key else "dcs", problem) for key, problem in spec.dcs.problems()]

    ports = spec.ports.model_dump()
    seen_ports: dict[int, str] = {}
    for key, value in ports.items():
        if value in seen_ports:
            errors.append((f"ports.{key}", f"{value} is also ports.{seen_ports[value]}"))
        seen_ports[value] = key

    if spec.lab.bridge_address is not None and spec.lab.bridge_address not in net:
        errors.append(("lab.bridge_address", f"{spec.lab.bridge_address} is not in {net}"))
    if any(n.address == spec.bridge_address for n in spec.nodes) or spec.vip.address == spec.bridge_address:
        errors.append(("lab.bridge_address",
                       f"{spec.bridge_address} (the machine's address on the lab bridge) is taken by a node "
                       "or the VIP; set lab.bridge_address"))
    if spec.postgresql.app_user in RESERVED_ROLES:
        errors.append(("postgresql.app_user", f"{spec.postgresql.app_user} is one of pgha's own roles "
                                              f"({', '.join(RESERVED_ROLES)})"))
    if spec.deploy is not None:
        tz = spec.deploy.timezone
        if tz is not None and not re.fullmatch(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+){0,2}", tz):
            errors.append(("deploy.timezone", f"{tz!r} is not a time zone name (e.g. Europe/Madrid, UTC)"))
        pg, etcd = spec.deploy.postgresql, spec.deploy.etcd
        if pg.source == "pgdg" and not pg.keyring:
            errors.append(("deploy.postgresql.keyring", "required with source pgdg: the repository's signing key "
                                                        "file on this machine (pgha never fetches a key)"))
        if not re.fullmatch(r"(https?|file)://[A-Za-z0-9._~:/?#@!&+,;=%-]+", pg.mirror):
            errors.append(("deploy.postgresql.mirror", f"{pg.mirror!r} is not an http(s):// or file:// URL"))
        if etcd.source == "tarball":
            for key in ("tarball", "sha256"):
                if not getattr(etcd, key):
                    errors.append((f"deploy.etcd.{key}", "required with source tarball (the release tarball "
                                                          "on this machine and its SHA-256)"))
            if "etcd_bin" in spec.paths.model_fields_set and spec.paths.etcd_bin != spec.etcd_bin:
                errors.append(("paths.etcd_bin", f"{spec.paths.etcd_bin}: with deploy.etcd.source tarball etcd "
                                                 f"runs from deploy.etcd.install_dir ({spec.etcd_bin})"))
    for i, node in enumerate(spec.nodes):
        if node.ssh != NodeSsh() and spec.deploy is None:
            errors.append((f"nodes[{i}].ssh", "SSH settings need a `deploy:` section (a cluster of servers)"))
    given = spec.cluster.state_dir
    if given is not None and (Path(given) == STATE_ROOT or not Path(given).is_relative_to(STATE_ROOT)):
        errors.append(("cluster.state_dir", f"{given} is not below the state root {STATE_ROOT} (`pgha lab down` "
                                            "removes the state directory; set PGHA_STATE_ROOT to move the root)"))
    return errors


def parse(data: Any, source: str = DEFAULT_SPEC_FILE) -> ClusterSpec:
    """Validate already-loaded YAML data; raise :class:`SpecError` on the first problems."""
    if data is None:
        raise SpecError(source, None, "the file is empty", hint="`pgha init` writes a complete spec")
    if not isinstance(data, dict):
        raise SpecError(source, None, f"expected a mapping at the top level, got {type(data).__name__}")
    try:
        spec = ClusterSpec.model_validate(data)
    except ValidationError as exc:
        errs = exc.errors()
        first = errs[0]
        fields = {_field_path(e["loc"]) for e in errs}  # a union reports one field several times
        more = f" (and {len(fields) - 1} more problem(s))" if len(fields) > 1 else ""
        raise SpecError(source, _field_path(first["loc"]) or None, _pydantic_message(dict(first)) + more,
                        hint="fix the field and run again; `pgha spec schema` lists every field") from None
    problems = _semantic_errors(spec)
    if problems:
        field, problem = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise SpecError(source, field, problem + more)
    return spec


def load(path: str | os.PathLike[str] = DEFAULT_SPEC_FILE) -> ClusterSpec:
    """Read and validate a spec file."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise SpecError(str(p), None, "no such file",
                        hint="create one with `pgha init` (or `pgha init --lab`), or pass --spec FILE") from None
    except OSError as exc:
        raise SpecError(str(p), None, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(str(p), None, f"not UTF-8 text (byte {exc.start}): is this the spec file?") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise SpecError(str(p), None, f"invalid YAML at {line}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(str(p), None, f"invalid YAML: {exc}") from None
    return parse(data, str(p))


# -- defaults written by `pgha init` ----------------------------------------------------------------

SEED_SUBNET = "192.168.0.0/24"
LAB_SUBNET = "10.203.0.0/24"


def default_data(*, lab: bool = False, subnet: str | None = None, name: str = "postgresql-cluster",
                 profile: Profile = Profile.SEED) -> dict[str, Any]:
    """The seed's six hosts and VIP as spec data (the seed's last octets in the chosen subnet), and the
    backup node (pgBackRest's repository host) at .206, the monitor node (Prometheus, Alertmanager) at .207."""
    try:
        net = ipaddress.IPv4Network(subnet or (LAB_SUBNET if lab else SEED_SUBNET))
    except ValueError as exc:
        raise UsageError(f"--subnet {subnet}: {exc}", hint="e.g. --subnet 10.203.0.0/24") from None
    if net.prefixlen > 24:
        raise UsageError(f"--subnet {subnet}: too small for the seed's last octets (.200-.210)",
                         hint="use a /24 (or larger) subnet")
    base = int(net.network_address)

    def addr(last: int) -> str:
        return str(ipaddress.IPv4Address(base + last))

    nodes: list[dict[str, Any]] = []
    for i in range(3):
        nodes.append({"name": f"haproxy-0{i + 1}", "role": "haproxy", "address": addr(200 + i),
                      "priority": 100 - 10 * i})
    for i in range(3):
        nodes.append({"name": f"postgres-0{i + 1}", "role": "postgres", "address": addr(203 + i),
                      "member": f"postgresql-0{i + 1}"})
    nodes.append({"name": "backup-01", "role": "backup", "address": addr(206)})
    nodes.append({"name": "monitor-01", "role": "monitor", "address": addr(207)})
    data: dict[str, Any] = {
        "cluster": {"name": name, "namespace": "/service/"},
        "profile": profile.value,
        "nodes": nodes,
        "vip": {"address": addr(210), "prefix": net.prefixlen, "interface": "eth0" if lab else "enp0s3",
                "router_id": 51, "advert_int": 1},
        "postgresql": {"version": 15, "parameters": {"max_connections": 100, "shared_buffers": "256MB"}},
    }
    if lab:
        data["watchdog"] = {"mode": "off"}  # never on one machine (the lab renders it off regardless)
        data["lab"] = {"bridge_address": addr(1)}
        # Faults are seen within seconds in the lab (the alert tests wait ≤ 60 s for each).
        data["monitoring"] = {"scrape_interval_s": 2, "evaluation_interval_s": 2}
    return data


def dump(data: dict[str, Any]) -> str:
    header = ("# pgha cluster spec: the seed's six hosts (3 x etcd+Patroni+PostgreSQL, 3 x HAProxy+keepalived),\n"
              "# a VIP, a backup node (pgBackRest's repository) and a monitor node (Prometheus, Alertmanager).\n"
              "# Every key is documented by `pgha spec schema`.\n")
    return header + yaml.safe_dump(data, sort_keys=False)


def json_schema() -> dict[str, Any]:
    return ClusterSpec.model_json_schema()
