"""Where each file lives on a node, and where pgha keeps its own state on the operator's machine.

A node's paths are the seed's absolute paths (``/etc/etcd/certs/ca.crt``), under a root the
:class:`~pgha.target.Target` gives: empty on a real server; in the lab, where every node shares one
filesystem, the node's own directory, which prefixes every path (the rendered configs then point at
the prefixed paths).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pgha.spec import ClusterSpec, Node


@dataclass(frozen=True)
class NodeLayout:
    """The absolute paths of one node's files, under ``root`` ("" on a real server)."""

    spec: ClusterSpec
    node: Node
    root: str = ""

    def at(self, path: str) -> str:
        return f"{self.root.rstrip('/')}{path}" if self.root else path

    # -- certificates (the seed's /etc/etcd/certs, one directory for etcd, Patroni and PostgreSQL) --
    @property
    def certs_dir(self) -> str:
        return self.at(self.spec.paths.certs)

    @property
    def ca_crt(self) -> str:
        return f"{self.certs_dir}/ca.crt"

    @property
    def etcd_crt(self) -> str:
        return f"{self.certs_dir}/{etcd_cert_name(self.spec, self.node)}.crt"

    @property
    def etcd_key(self) -> str:
        return f"{self.certs_dir}/{etcd_cert_name(self.spec, self.node)}.key"

    @property
    def server_crt(self) -> str:
        return f"{self.certs_dir}/server.crt"

    @property
    def server_key(self) -> str:
        return f"{self.certs_dir}/server.key"

    @property
    def server_pem(self) -> str:
        return f"{self.certs_dir}/server.pem"

    @property
    def patroni_crt(self) -> str:
        """Patroni's client certificate (etcd, the other members' REST API); pgha's own stays home."""
        return f"{self.certs_dir}/patroni.crt"

    @property
    def patroni_key(self) -> str:
        return f"{self.certs_dir}/patroni.key"

    # -- etcd ---------------------------------------------------------------------------------
    @property
    def etcd_env(self) -> str:
        return self.at(f"{self.spec.paths.etcd_conf}/etcd.env")

    @property
    def etcd_data(self) -> str:
        return self.at(self.spec.paths.etcd_data)

    # -- Patroni / PostgreSQL -------------------------------------------------------------------
    @property
    def patroni_config(self) -> str:
        return self.at(f"{self.spec.paths.patroni_conf}/config.yml")

    @property
    def role_change_script(self) -> str:
        """Patroni's on_role_change callback (pgha.etcd_leader, copied as is)."""
        return self.at(f"{self.spec.paths.patroni_conf}/pgha-role-change.py")

    @property
    def role_change_config(self) -> str:
        return self.at(f"{self.spec.paths.patroni_conf}/pgha-role-change.json")

    @property
    def pg_home(self) -> str:
        return self.at(self.spec.paths.pg_home)

    @property
    def pg_data(self) -> str:
        return self.at(self.spec.paths.pg_data)

    @property
    def pg_socket_dir(self) -> str:
        return self.at(self.spec.paths.pg_socket_dir)

    @property
    def pgpass(self) -> str:
        return f"{self.pg_home}/.pgpass_patroni"

    # -- HAProxy / keepalived -------------------------------------------------------------------
    @property
    def haproxy_cfg(self) -> str:
        return self.at(f"{self.spec.paths.haproxy_conf}/haproxy.cfg")

    @property
    def haproxy_ca(self) -> str:
        return self.at(f"{self.spec.paths.haproxy_conf}/ca.crt")

    @property
    def haproxy_socket(self) -> str:
        return f"{self.run_dir}/haproxy.sock"

    @property
    def keepalived_conf(self) -> str:
        return self.at(f"{self.spec.paths.keepalived_conf}/keepalived.conf")

    @property
    def keepalived_check(self) -> str:
        return self.at(f"{self.spec.paths.keepalived_conf}/check_haproxy.sh")

    @property
    def run_dir(self) -> str:
        return self.at(self.spec.paths.run_dir)

    # -- monitoring: Prometheus, Alertmanager, the blackbox exporter (monitor node), postgres_exporter --
    @property
    def prometheus_dir(self) -> str:
        return self.at(self.spec.paths.prometheus_conf)

    @property
    def prometheus_yml(self) -> str:
        return f"{self.prometheus_dir}/prometheus.yml"

    @property
    def prometheus_rules(self) -> str:
        return f"{self.prometheus_dir}/pgha-rules.yml"

    @property
    def web_config(self) -> str:
        """HTTPS of Prometheus, Alertmanager (monitor node) or postgres_exporter (PostgreSQL nodes)."""
        return f"{self.prometheus_dir}/web.yml"

    @property
    def alertmanager_yml(self) -> str:
        return f"{self.prometheus_dir}/alertmanager.yml"

    @property
    def blackbox_yml(self) -> str:
        return f"{self.prometheus_dir}/blackbox.yml"

    @property
    def webhook_script(self) -> str:
        return f"{self.prometheus_dir}/pgha-webhook.py"

    @property
    def monitor_certs(self) -> str:
        """The certificates the monitoring services read as user prometheus (copies of their own)."""
        return f"{self.prometheus_dir}/certs"

    @property
    def monitor_ca(self) -> str:
        return f"{self.monitor_certs}/ca.crt"

    @property
    def monitor_crt(self) -> str:
        return f"{self.monitor_certs}/{self.node.name}.crt"

    @property
    def monitor_key(self) -> str:
        return f"{self.monitor_certs}/{self.node.name}.key"

    @property
    def exporter_env(self) -> str:
        return f"{self.prometheus_dir}/postgres_exporter.env"

    @property
    def exporter_password(self) -> str:
        return f"{self.prometheus_dir}/postgres_exporter.pass"

    @property
    def prometheus_data(self) -> str:
        return self.at(self.spec.paths.prometheus_data)

    @property
    def webhook_log(self) -> str:
        """What the local webhook receiver got: one JSON document a line."""
        return f"{self.prometheus_data}/webhook/alerts.jsonl"

    def pid_file(self, service: str) -> str:
        return f"{self.run_dir}/{service}.pid"

    # -- pgBackRest (backup and PostgreSQL nodes) ---------------------------------------------------
    @property
    def pgbackrest_dir(self) -> str:
        return self.at(self.spec.paths.pgbackrest_conf)

    @property
    def pgbackrest_conf(self) -> str:
        return f"{self.pgbackrest_dir}/pgbackrest.conf"

    @property
    def pgbackrest_repo(self) -> str:
        return self.at(self.spec.paths.pgbackrest_repo)

    @property
    def pgbackrest_log(self) -> str:
        return self.at(self.spec.paths.pgbackrest_log)

    @property
    def pgbackrest_spool(self) -> str:
        return self.at(self.spec.paths.pgbackrest_spool)

    def pgbackrest(self, *args: str) -> tuple[str, ...]:
        """pgBackRest's command line with this node's configuration (its own in the lab's shared filesystem)."""
        return ("/usr/bin/pgbackrest", f"--config-path={self.pgbackrest_dir}", *args)

    # -- systemd ----------------------------------------------------------------------------------
    def unit(self, service: str) -> str:
        """The systemd unit pgha writes for a service that ships none (etcd, Patroni)."""
        return self.at(f"/etc/systemd/system/{service}.service")

    def dropin(self, service: str) -> str:
        """pgha's drop-in for a service whose package ships the unit (HAProxy, keepalived)."""
        return self.at(f"/etc/systemd/system/{service}.service.d/pgha.conf")


def etcd_cert_name(spec: ClusterSpec, node: Node) -> str:
    """The seed's names: etcd-node1 for the first postgres node, etcd-node2..."""
    return f"etcd-node{spec.postgres_nodes.index(node) + 1}"


@dataclass(frozen=True)
class StateLayout:
    """pgha's own state for one cluster: one directory, removable as a whole.

    state_dir/
      pki/          ca.crt ca.key (0600), etcd-nodeN.{crt,key}, server-<node>.{crt,key}, patroni.{crt,key},
                    client.{crt,key} (the operator: etcd root), probe.{crt,key} (read-only probes)
      secrets.yml   generated passwords (0600)
      pgpass        libpq's password file for `pgha dsn` / `pgha psql` (0600)
      rendered/     the last `pgha render` output, DIR/<node>/<absolute path>
      nodes/<node>/ the lab's per-node root filesystem (etc/, var/lib/...)
      supervisor/   the lab's supervisord config, socket, pid file
      logs/         one log per node and service in the lab
    """

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.yml"

    @property
    def passfile(self) -> Path:
        return self.root / "pgpass"

    @property
    def nodes(self) -> Path:
        return self.root / "nodes"

    def node_root(self, node: Node) -> Path:
        return self.nodes / node.name

    @property
    def supervisor(self) -> Path:
        return self.root / "supervisor"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log_file(self, node: Node, service: str) -> Path:
        return self.logs / f"{node.name}.{service}.log"
