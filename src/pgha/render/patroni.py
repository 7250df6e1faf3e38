"""Patroni's config.yml (the seed's section 7), built as data and dumped with yaml.safe_dump.

Differences from the seed, each fixing one of its traps:
- REST API and PostgreSQL use a CA-signed certificate, so ``ctl:`` verifies the CA instead of
  ``insecure: true`` and HAProxy checks with ``verify required``;
- unsafe REST endpoints need a password, a client certificate and a source in ``restapi.allowlist``;
- one TLS policy (:mod:`pgha.tlspolicy`) for the REST API and PostgreSQL;
- pg_hba is ``hostssl`` + scram-sha-256 only, plus ``local all postgres peer`` so the seed's
  section 11 hack is never needed; the superuser password is set by bootstrap itself; the superuser
  over the network only from the PostgreSQL nodes and the admin addresses; pg_rewind has its own role;
- ``use_pg_rewind`` with data checksums and wal_log_hints, so an old primary can rejoin.
"""

from __future__ import annotations

from typing import Any

import yaml

from pgha.layout import NodeLayout
from pgha.pki import PATRONI_USER
from pgha.render import pgbackrest
from pgha.secrets import Secrets
from pgha.spec import MONITOR_USER, REPLICATION_USER, REWIND_USER, SUPERUSER, ClusterSpec
from pgha.tlspolicy import MIN_VERSION, OPENSSL_CIPHERS


def _hba(layout: NodeLayout) -> list[str]:
    """First match wins: each privileged role is allowed from its few addresses, then rejected from all
    others, before the rule that lets every other role (the application's) in from anywhere over TLS."""
    spec = layout.spec
    nodes = [f"{n.address}/32" for n in spec.postgres_nodes]
    admins = [str(net) for net in spec.admin_networks if str(net) not in nodes]
    rules = [
        f"local all {SUPERUSER} peer",
        f"hostssl replication {REPLICATION_USER} 127.0.0.1/32 scram-sha-256",
    ]
    rules += [f"hostssl replication {REPLICATION_USER} {n} scram-sha-256" for n in nodes]
    # The superuser: Patroni on each node (local and to the others: pg_rewind's checks, REST) and the admins.
    rules += [f"hostssl all {SUPERUSER} {n} scram-sha-256" for n in ["127.0.0.1/32", *nodes, *admins]]
    # pg_rewind runs on a rejoining node against the new leader's database `postgres`.
    rules += [f"hostssl postgres {REWIND_USER} {n} scram-sha-256" for n in nodes]
    # postgres_exporter reads its own node's statistics (pg_monitor), from that node only.
    rules += [f"hostssl postgres {MONITOR_USER} {n} scram-sha-256" for n in nodes]
    rules += [f"host all {SUPERUSER},{REWIND_USER},{MONITOR_USER} 0.0.0.0/0 reject"]
    rules += [
        "hostssl all all 127.0.0.1/32 scram-sha-256",
        "hostssl all all 0.0.0.0/0 scram-sha-256",
        # Explicit: a plaintext TCP connection is refused, whatever a later edit adds.
        "hostnossl all all 0.0.0.0/0 reject",
    ]
    return rules


def config(layout: NodeLayout, secrets: Secrets, *, watchdog: bool = False) -> dict[str, Any]:
    """The whole config.yml of one PostgreSQL node, as a dict; ``watchdog``: the target allows the spec's."""
    spec, node = layout.spec, layout.node
    ports, dcs = spec.ports, spec.dcs
    ssl_client = {"sslmode": "verify-full", "sslrootcert": layout.ca_crt}
    parameters: dict[str, Any] = {
        "ssl": "on",
        "ssl_cert_file": layout.server_crt,
        "ssl_key_file": layout.server_key,
        "ssl_ca_file": layout.ca_crt,
        "ssl_ciphers": OPENSSL_CIPHERS,
        "ssl_min_protocol_version": MIN_VERSION,
        "password_encryption": "scram-sha-256",
        "unix_socket_directories": layout.pg_socket_dir,
        **spec.postgresql.parameters,
    }
    archive: dict[str, Any] = {}
    if spec.backup_node is not None:  # WAL to the repository from whichever node is primary
        parameters |= {"archive_mode": "on", "archive_command": pgbackrest.archive_command(layout)}
        archive = {"recovery_conf": {"restore_command": pgbackrest.restore_command(layout)},
                   "create_replica_methods": ["pgbackrest", "basebackup"],
                   "pgbackrest": pgbackrest.replica_method(layout), "basebackup": {"checkpoint": "fast"}}
    return {
        "scope": spec.name,
        "namespace": spec.cluster.namespace,
        "name": node.member_name,
        "log": {"level": "INFO"},
        "etcd3": etcd3(spec, layout.ca_crt, layout.patroni_crt, layout.patroni_key, secrets),
        "restapi": {
            "listen": f"0.0.0.0:{ports.restapi}",
            "connect_address": f"{node.address}:{ports.restapi}",
            "certfile": layout.server_pem,
            "cafile": layout.ca_crt,
            "verify_client": "optional",
            "ciphers": OPENSSL_CIPHERS,
            "authentication": {"username": secrets.restapi_username, "password": secrets.restapi_password},
            # Unsafe calls (switchover, restart, config, failsafe between members) only from the
            # operator's machine and the PostgreSQL nodes; reads (HAProxy's checks) from anywhere.
            "allowlist": [str(net) for net in spec.admin_networks] + [f"{n.address}/32" for n in spec.postgres_nodes],
        },
        "ctl": {
            "insecure": False,
            "cacert": layout.ca_crt,
            "certfile": layout.patroni_crt,
            "keyfile": layout.patroni_key,
        },
        "bootstrap": {
            "dcs": {
                "ttl": dcs.ttl,
                "loop_wait": dcs.loop_wait,
                "retry_timeout": dcs.retry_timeout,
                "maximum_lag_on_failover": dcs.maximum_lag_on_failover,
                "synchronous_mode": dcs.synchronous_mode,
                "synchronous_mode_strict": dcs.synchronous_mode_strict,
                "failsafe_mode": dcs.failsafe_mode,
                "postgresql": {
                    "use_pg_rewind": True,
                    "use_slots": True,
                    "parameters": {"wal_log_hints": "on", "hot_standby": "on", "wal_level": "replica"},
                },
            },
            "initdb": [{"encoding": "UTF8"}, "data-checksums"],
        },
        "postgresql": {
            "listen": f"0.0.0.0:{ports.postgresql}",
            "connect_address": f"{node.address}:{ports.postgresql}",
            "data_dir": layout.pg_data,
            "bin_dir": spec.pg_bin_dir,
            "pgpass": layout.pgpass,
            "use_unix_socket": True,
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": secrets.superuser_password, **ssl_client},
                "replication": {"username": REPLICATION_USER, "password": secrets.replication_password,
                                **ssl_client},
                # Not the superuser: Patroni creates it at bootstrap with only pg_rewind's grants.
                "rewind": {"username": REWIND_USER, "password": secrets.rewind_password, **ssl_client},
            },
            "parameters": parameters,
            "pg_hba": _hba(layout),
            **archive,
            # Keeps etcd's leadership off the new leader's node (pgha.etcd_leader): never blocks Patroni.
            "callbacks": {"on_role_change": f"{spec.paths.patroni_venv}/bin/python {layout.role_change_script} "
                                            f"--config {layout.role_change_config}"},
        },
        "watchdog": _watchdog(layout) if watchdog else {"mode": "off"},
        "tags": node.tags.model_dump(),
    }


def _watchdog(layout: NodeLayout) -> dict[str, Any]:
    w = layout.spec.watchdog
    if w.mode == "off":
        return {"mode": "off"}
    return {"mode": w.mode, "device": w.device, "safety_margin": w.safety_margin}


def role_change_config(layout: NodeLayout, secrets: Secrets) -> dict[str, Any]:
    """The callback's JSON config: this member, every member's gateway, and Patroni's own etcd credentials."""
    spec = layout.spec
    etcd3 = config(layout, secrets)["etcd3"]
    return {"member": layout.node.member_name,
            "endpoints": {n.member_name: f"https://{n.address}:{spec.ports.etcd_client}" for n in spec.postgres_nodes},
            **{k: etcd3[k] for k in ("cacert", "cert", "key", "username", "password") if k in etcd3}}


def render(layout: NodeLayout, secrets: Secrets, *, watchdog: bool = False) -> str:
    header = f"# Generated by pgha for cluster {layout.spec.name} ({layout.node.name}). Contains passwords: 0600.\n"
    return header + yaml.safe_dump(config(layout, secrets, watchdog=watchdog), sort_keys=False)


def etcd3(spec: ClusterSpec, ca: str, cert: str, key: str, secrets: Secrets) -> dict[str, Any]:
    """Patroni's etcd3 section: mTLS with Patroni's certificate, and etcd user patroni's password, which
    etcd's JSON gateway (all Patroni speaks) needs: the gateway ignores a certificate's CN."""
    return {"hosts": [f"{n.address}:{spec.ports.etcd_client}" for n in spec.postgres_nodes],
            "protocol": "https", "cacert": ca, "cert": cert, "key": key,
            "username": PATRONI_USER, "password": secrets.etcd_patroni_password}


def ctl_config(spec: ClusterSpec, ca: str, cert: str, key: str, secrets: Secrets) -> str:
    """patronictl's config for the operator's machine: etcd over mTLS as Patroni's etcd user (its
    cluster's keys, no more), REST verified against the CA."""
    data = {
        "scope": spec.name,
        "namespace": spec.cluster.namespace,
        "etcd3": etcd3(spec, ca, cert, key, secrets),
        "ctl": {"insecure": False, "cacert": ca, "certfile": cert, "keyfile": key,
                "authentication": {"username": secrets.restapi_username, "password": secrets.restapi_password}},
    }
    return f"# Generated by pgha for patronictl ({spec.name}). Contains a password: 0600.\n" + \
        yaml.safe_dump(data, sort_keys=False)
