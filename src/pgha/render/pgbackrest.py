"""pgBackRest's pgbackrest.conf for the backup node (the repository host) and each PostgreSQL node.

Every node runs ``pgbackrest server`` (TLS, the cluster CA, client certificates required): the
repository host reaches the PostgreSQL nodes' servers to back up, and the PostgreSQL nodes reach the
repository host's to push and fetch WAL and to restore. No SSH between nodes. A client is known by its
certificate's CN, the node name (pgha's server certificates carry clientAuth too), and each server
authorises only the other side for the cluster's stanza.

The repository's encryption passphrase is in every node's file (0640 root:postgres): pgBackRest
encrypts and decrypts in the client, the repository host's server only stores what it is sent. Paths
the client names are opened by the server (``repo1-path`` on the PostgreSQL nodes is the repository
host's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pgha.layout import NodeLayout
from pgha.secrets import Secrets
from pgha.spec import Node

PeerLayout = Callable[[Node], NodeLayout]
"""The layout of another node (its paths, under its own root in the lab)."""


def _ini(sections: dict[str, list[tuple[str, Any]]]) -> str:
    out = []
    for name, options in sections.items():
        out.append(f"[{name}]")
        out += [f"{k}={'y' if v is True else 'n' if v is False else v}" for k, v in options]
        out.append("")
    return "\n".join(out)


def _common(layout: NodeLayout, clients: list[Node]) -> list[tuple[str, Any]]:
    spec, node = layout.spec, layout.node
    return [
        ("log-path", layout.pgbackrest_log),
        ("lock-path", f"{layout.pgbackrest_spool}/lock"),
        ("spool-path", layout.pgbackrest_spool),
        ("log-level-console", "warn"),
        ("log-level-file", "info"),
        ("tls-server-address", str(node.address)),
        ("tls-server-port", spec.ports.pgbackrest),
        ("tls-server-ca-file", layout.ca_crt),
        ("tls-server-cert-file", layout.server_crt),
        ("tls-server-key-file", layout.server_key),
        *[("tls-server-auth", f"{c.name}={spec.name}") for c in clients],
    ]


def repository_host(layout: NodeLayout, secrets: Secrets, peer: PeerLayout) -> str:
    """The backup node's file: the repository, its retention and encryption, and every PostgreSQL node."""
    spec = layout.spec
    b = spec.backup
    glob = [
        ("repo1-path", layout.pgbackrest_repo),
        ("repo1-retention-full", b.retention_full),
        ("compress-type", b.compress),
        *([("compress-level", b.compress_level)] if b.compress_level is not None else []),
        ("process-max", b.process_max),
        ("start-fast", True),
        ("backup-standby", b.backup_standby and len(spec.postgres_nodes) > 1),
        ("archive-timeout", 30),
    ]
    glob += _cipher(layout, secrets)
    stanza: list[tuple[str, Any]] = []
    for i, node in enumerate(spec.postgres_nodes, start=1):
        their = peer(node)
        stanza += [
            (f"pg{i}-host", str(node.address)),
            (f"pg{i}-host-type", "tls"),
            (f"pg{i}-host-port", spec.ports.pgbackrest),
            (f"pg{i}-host-ca-file", layout.ca_crt),
            (f"pg{i}-host-cert-file", layout.server_crt),
            (f"pg{i}-host-key-file", layout.server_key),
            (f"pg{i}-path", their.pg_data),
            (f"pg{i}-port", spec.ports.postgresql),
            (f"pg{i}-socket-path", their.pg_socket_dir),
        ]
    return _header(layout) + _ini({"global": glob + _common(layout, list(spec.postgres_nodes)),
                                   spec.name: stanza})


def _cipher(layout: NodeLayout, secrets: Secrets) -> list[tuple[str, Any]]:
    cipher = layout.spec.backup.cipher
    if cipher == "none":
        return []
    return [("repo1-cipher-type", cipher), ("repo1-cipher-pass", secrets.backup_cipher_pass)]


def postgres_node(layout: NodeLayout, secrets: Secrets, backup: Node, peer: PeerLayout) -> str:
    """A PostgreSQL node's file: the repository through the backup node's server, its own cluster."""
    spec = layout.spec
    glob = [
        ("repo1-host", str(backup.address)),
        ("repo1-path", peer(backup).pgbackrest_repo),  # the client names the path the server opens
        ("repo1-host-type", "tls"),
        ("repo1-host-port", spec.ports.pgbackrest),
        ("repo1-host-ca-file", layout.ca_crt),
        ("repo1-host-cert-file", layout.server_crt),
        ("repo1-host-key-file", layout.server_key),
        ("archive-timeout", 30),
        # a repository that refuses or does not answer fails archive-push after 15 s, not the default 60 s of
        # connection retries: PostgreSQL records the failure (doctor, alerts) and retries; nothing is lost
        ("io-timeout", 15),
        *_cipher(layout, secrets),
    ]
    stanza = [("pg1-path", layout.pg_data), ("pg1-port", spec.ports.postgresql),
              ("pg1-socket-path", layout.pg_socket_dir)]
    return _header(layout) + _ini({"global": glob + _common(layout, [backup]), spec.name: stanza})


def _header(layout: NodeLayout) -> str:
    return f"# Generated by pgha for cluster {layout.spec.name} ({layout.node.name}).\n"


def archive_command(layout: NodeLayout) -> str:
    return " ".join(layout.pgbackrest(f"--stanza={layout.spec.name}", "archive-push", '"%p"'))


def restore_command(layout: NodeLayout) -> str:
    return " ".join(layout.pgbackrest(f"--stanza={layout.spec.name}", "archive-get", "%f", '"%p"'))


def replica_method(layout: NodeLayout) -> dict[str, Any]:
    """Patroni's ``pgbackrest`` replica method: a new or reinitialised replica restores from the
    repository (``--delta`` keeps what matches), then streams."""
    return {"command": " ".join(layout.pgbackrest(f"--stanza={layout.spec.name}", "--delta", "--type=standby",
                                                   "restore")),
            "keep_data": True, "no_params": True}
