"""What monitoring adds to a node's plan: the monitor role (Prometheus, Alertmanager, the blackbox exporter,
the local webhook recorder) and postgres_exporter on each PostgreSQL node. Called by the one plan builder
(:func:`pgha.plan.build`); every service runs as the ``prometheus`` user (Debian's packages create it)
and reads copies of its certificates of its own, in a directory only it and root enter.
"""

from __future__ import annotations

from pathlib import Path

from pgha import webhook
from pgha.files import DirEntry, FileEntry
from pgha.layout import NodeLayout
from pgha.render import monitor as monitor_render
from pgha.render.prometheus import render_rules
from pgha.service import Service

USER = "prometheus"
EXPORTER_BIN = "/usr/bin/prometheus-postgres-exporter"
PROMETHEUS_BIN, ALERTMANAGER_BIN = "/usr/bin/prometheus", "/usr/bin/prometheus-alertmanager"
BLACKBOX_BIN = "/usr/bin/prometheus-blackbox-exporter"
GO_ENV = (("GOGC", "25"),)
"""The Go daemons collect garbage at 25 % heap growth instead of 100 %: monitoring a small cluster needs
little CPU, and the lab's whole memory must stay within its bound."""


def _tls_files(layout: NodeLayout, ca: bytes, crt: bytes, key: bytes) -> tuple[list[DirEntry], list[FileEntry]]:
    dirs = [DirEntry(layout.prometheus_dir, "root", USER, 0o750),
            DirEntry(layout.monitor_certs, "root", USER, 0o750)]
    files = [FileEntry(layout.monitor_ca, ca, "root", USER, 0o644),
             FileEntry(layout.monitor_crt, crt, "root", USER, 0o644),
             FileEntry(layout.monitor_key, key, USER, USER, 0o600),
             FileEntry(layout.web_config, monitor_render.web_config(layout.monitor_crt, layout.monitor_key).encode(),
                       "root", USER, 0o640)]
    return dirs, files


def exporter_files(layout: NodeLayout, ca: bytes, crt: bytes, key: bytes,
                   password: str) -> tuple[list[DirEntry], list[FileEntry]]:
    """postgres_exporter on a PostgreSQL node: HTTPS with the node's server certificate (a copy), its
    environment (root reads it for the service manager) and the monitoring role's password (0600)."""
    dirs, files = _tls_files(layout, ca, crt, key)
    files += [FileEntry(layout.exporter_env, monitor_render.exporter_env(layout).encode(), "root", "root", 0o600),
              FileEntry(layout.exporter_password, password.encode(), USER, USER, 0o600)]
    return dirs, files


def monitor_files(layout: NodeLayout, ca: bytes, crt: bytes, key: bytes) -> tuple[list[DirEntry], list[FileEntry]]:
    dirs, files = _tls_files(layout, ca, crt, key)
    data = layout.prometheus_data
    dirs += [DirEntry(data, USER, USER, 0o750), DirEntry(f"{data}/metrics2", USER, USER, 0o750),
             DirEntry(f"{data}/alertmanager", USER, USER, 0o750),
             DirEntry(str(Path(layout.webhook_log).parent), USER, USER, 0o750)]
    files += [
        FileEntry(layout.prometheus_yml, monitor_render.prometheus_config(layout).encode(), "root", USER, 0o640),
        FileEntry(layout.prometheus_rules, render_rules(layout.spec).encode(), "root", USER, 0o644),
        FileEntry(layout.alertmanager_yml, monitor_render.alertmanager_config(layout).encode(), "root", USER,
                  0o640),
        FileEntry(layout.blackbox_yml, monitor_render.blackbox_config(layout).encode(), "root", USER, 0o640),
        FileEntry(layout.webhook_script, Path(webhook.__file__).read_bytes(), "root", "root", 0o755),
    ]
    return dirs, files


def postgres_exporter(layout: NodeLayout, watchdog: bool = False) -> Service:
    node, port = layout.node, layout.spec.ports.postgres_exporter
    return Service("postgres_exporter", "postgres_exporter: PostgreSQL's statistics for Prometheus",
                   (EXPORTER_BIN, f"--web.listen-address={node.address}:{port}",
                    f"--web.config.file={layout.web_config}", "--disable-settings-metrics", "--log.level=warn"),
                   user=USER, group=USER, env_file=layout.exporter_env, restart="always", restart_sec=2,
                   after=("patroni",), environment=GO_ENV)


def prometheus(layout: NodeLayout, watchdog: bool = False) -> Service:
    node, port = layout.node, layout.spec.ports.prometheus
    return Service("prometheus", "Prometheus: scrapes the cluster's engines, evaluates pgha's alert rules",
                   (PROMETHEUS_BIN, f"--config.file={layout.prometheus_yml}",
                    f"--web.listen-address={node.address}:{port}", f"--web.config.file={layout.web_config}",
                    f"--storage.tsdb.path={layout.prometheus_data}/metrics2", "--storage.tsdb.retention.time=15d",
                    "--log.level=warn"),
                   user=USER, group=USER, restart="always", restart_sec=2, reload_signal="HUP",
                   after=("prometheus-alertmanager",), environment=GO_ENV)


def alertmanager(layout: NodeLayout, watchdog: bool = False) -> Service:
    node, port = layout.node, layout.spec.ports.alertmanager
    return Service("prometheus-alertmanager", "Alertmanager: sends pgha's alerts to the webhook",
                   (ALERTMANAGER_BIN, f"--config.file={layout.alertmanager_yml}",
                    f"--web.listen-address={node.address}:{port}", f"--web.config.file={layout.web_config}",
                    f"--storage.path={layout.prometheus_data}/alertmanager", "--cluster.listen-address=",
                    "--log.level=warn"),
                   user=USER, group=USER, restart="always", restart_sec=2, reload_signal="HUP",
                   after=("pgha-webhook",), environment=GO_ENV)


def blackbox(layout: NodeLayout, watchdog: bool = False) -> Service:
    return Service("prometheus-blackbox-exporter", "blackbox exporter: probes the VIP and the TLS certificates",
                   (BLACKBOX_BIN, f"--config.file={layout.blackbox_yml}",
                    f"--web.listen-address=127.0.0.1:{monitor_render.BLACKBOX_PORT}", "--log.level=warn"),
                   user=USER, group=USER, restart="always", restart_sec=2, environment=GO_ENV)


def recorder(layout: NodeLayout, watchdog: bool = False) -> Service:
    return Service("pgha-webhook", "pgha's webhook recorder: what Alertmanager sent, one JSON line each",
                   ("/usr/bin/python3", layout.webhook_script, str(monitor_render.WEBHOOK_PORT), layout.webhook_log),
                   user=USER, group=USER, restart="always", restart_sec=2)


SERVICE_BUILDERS = {"postgres_exporter": postgres_exporter, "pgha-webhook": recorder,
                    "prometheus-alertmanager": alertmanager, "prometheus-blackbox-exporter": blackbox,
                    "prometheus": prometheus}
"""How monitoring's services run (pgha.topology says which node runs which)."""
