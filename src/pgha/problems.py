"""The one list of problems pgha knows: what `pgha doctor` reports (a Finding's ``code``) and what the
Prometheus alert rules watch for (:mod:`pgha.render.prometheus`). A problem with an :class:`Alert` is
watched by Prometheus too; one without is doctor's alone (it needs a look Prometheus cannot take: file
modes, SANs, logs). An alert-only problem (``doctor=False``) is one doctor sees under another code or
cannot see at all (a scrape target down).

The alert expressions read the engines' own metrics: Patroni's ``/metrics`` (job ``patroni``), etcd's
(``etcd``), HAProxy's Prometheus exporter (``haproxy``), postgres_exporter (``postgres``) and the
blackbox exporter's probes of the VIP (``vip``) and of every TLS endpoint (``tls``). ``{placeholders}``
are filled from the spec (:func:`alert_values`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    """Something is broken now (no leader, a replica not streaming, the VIP not answering)."""
    WARNING = "warning"
    """Something will break later (a certificate expiring, etcd would re-form on restart)."""


@dataclass(frozen=True)
class Alert:
    """A Prometheus alert rule watching for one problem."""

    name: str
    expr: str
    """PromQL; ``{lag}``, ``{paused_seconds}``, ``{renew_seconds}``, ``{ttl}`` come from the spec."""
    for_: str = "0s"
    only_if: str | None = None
    """A spec setting that must be on for the rule to exist (``synchronous_mode``)."""


@dataclass(frozen=True)
class Problem:
    code: str
    """Stable identifier: a doctor Finding's ``code``, the alert's ``problem`` label."""
    summary: str
    """What is wrong, in one line (doctor's findings say it with the evidence of the moment)."""
    severity: Severity = Severity.ERROR
    alert: Alert | None = None
    doctor: bool = True
    """Doctor reports it under this code."""


E, W = Severity.ERROR, Severity.WARNING

PROBLEMS: tuple[Problem, ...] = (
    # -- the cluster's brain: etcd and the leader key --------------------------------------------------
    Problem("etcd.quorum", "etcd has lost its quorum: no leader can be elected or kept", E,
            Alert("EtcdNoQuorum", 'sum(up{job="etcd"}) < floor(count(up{job="etcd"}) / 2) + 1 '
                                  'or sum(etcd_server_has_leader{job="etcd"}) == 0', "10s")),
    Problem("etcd.member_down", "an etcd member is down: one more loss stops failover", E,
            Alert("EtcdMemberDown", 'up{job="etcd"} == 0', "10s")),
    Problem("etcd.state_new", "an etcd member would re-form the cluster on restart", W),
    Problem("etcd.leader_with_patroni_leader", "etcd's leader shares the Patroni leader's node", W),
    Problem("patroni.no_leader", "no member holds the leader key: the cluster takes no writes", E,
            Alert("PatroniNoLeader", '(sum(patroni_primary{job="patroni"}) or vector(0)) == 0', "10s")),
    Problem("patroni.many_primaries", "more than one PostgreSQL runs as a primary (split brain)", E,
            Alert("PatroniManyPrimaries", 'sum(patroni_primary{job="patroni"}) > 1', "5s")),
    Problem("patroni.paused", "automatic failover is paused (maintenance mode left on)", W,
            Alert("PatroniPaused", 'max(patroni_is_paused{job="patroni"}) == 1', "{paused_seconds}s")),
    Problem("patroni.no_dcs", "Patroni cannot reach etcd", E,
            Alert("PatroniNoDcs", 'time() - patroni_dcs_last_seen{job="patroni"} > {ttl}', "10s")),
    Problem("patroni.start_failed", "PostgreSQL does not start under Patroni", E),
    Problem("patroni.pending_restart", "a member runs with settings that need a restart to apply", W,
            Alert("PatroniPendingRestart", 'patroni_pending_restart{job="patroni"} == 1', "1h")),
    Problem("patroni.no_failover_candidate", "no replica can take over if the leader fails", E),
    Problem("node.hangs", "a PostgreSQL node accepts connections but answers nothing", E),
    Problem("node.watchdog_off", "the watchdog is off on a server: nothing fences a primary whose Patroni "
                                 "died", W),
    # -- data: replication ---------------------------------------------------------------------------
    Problem("replication.not_streaming", "a replica is not streaming from the leader", E,
            Alert("ReplicaNotStreaming", 'patroni_replica{job="patroni"} == 1 '
                                         'and patroni_postgres_streaming{job="patroni"} == 0', "10s")),
    Problem("replication.lag", "a replica lags more than maximum_lag_on_failover: it cannot be promoted", W,
            Alert("ReplicaLagAboveFailoverLimit",
                  'scalar(max(patroni_xlog_location{job="patroni"})) - '
                  '(patroni_xlog_received_location{job="patroni"} and on(instance) patroni_replica == 1) > {lag}',
                  "30s")),
    Problem("replication.sync_no_standby", "synchronous mode is on but no synchronous standby is named", E,
            Alert("SyncModeWithoutStandby", '(sum(patroni_sync_standby{job="patroni"}) or vector(0)) == 0 '
                                            'and on() (sum(patroni_primary{job="patroni"}) or vector(0)) == 1',
                  "10s", only_if="synchronous_mode")),
    Problem("replication.no_loadbalance", "every replica is tagged noloadbalance: the read-only port has no server",
            W),
    Problem("replication.absent_slot", "a replication slot of an absent member retains WAL", W),
    Problem("rewind.failed", "pg_rewind failed: the old primary cannot rejoin", E),
    Problem("rewind.not_possible", "pg_rewind will fail after a failover (no checksums, no wal_log_hints)", W),
    Problem("postgres.down", "PostgreSQL does not answer its exporter", E,
            Alert("PostgresDown", 'pg_up{job="postgres"} == 0', "10s"), doctor=False),
    Problem("postgres.no_patroni", "PostgreSQL runs without Patroni", E),
    Problem("postgres.outside_patroni", "a PostgreSQL outside Patroni runs on a node", W),
    Problem("postgres.password_config", "the superuser password in a Patroni config is not pgha's", W),
    Problem("postgres.password_db", "the superuser password in the database differs from Patroni's", E),
    # -- backups ----------------------------------------------------------------------------------------
    Problem("backup.archiving_failing", "WAL archiving is failing on the primary: restores stop at the last "
                                        "archived WAL", E),
    Problem("backup.repo_unreachable", "the backup repository cannot be used (unreachable, stanza missing)", E),
    Problem("backup.none", "the repository holds no backup", W),
    Problem("backup.stale", "the newest backup is older than backup.max_age_hours", W),
    # -- the client path -------------------------------------------------------------------------------
    Problem("service.patroni_down", "Patroni is not running on a node", E,
            Alert("PatroniDown", 'up{job="patroni"} == 0', "10s")),
    Problem("service.haproxy_down", "HAProxy is not running on a node", E,
            Alert("HaproxyDown", 'up{job="haproxy"} == 0', "10s")),
    Problem("service.down", "a service of a node is not running", E),
    Problem("service.keepalived_down", "keepalived is not running on a node: it cannot hold the VIP", E),
    Problem("vip.down", "the VIP does not answer on PostgreSQL's port", E,
            Alert("VipNotAnswering", 'probe_success{job="vip"} == 0', "5s")),
    Problem("vip.split", "the VIP is held by more than one node", E),
    Problem("haproxy.no_server", "HAProxy routes the primary port to no server", E,
            Alert("HaproxyPrimaryNoServer", 'haproxy_backend_active_servers{job="haproxy",proxy="postgres_primary"} '
                                            '== 0', "10s")),
    Problem("haproxy.routing", "HAProxy routes the primary port to a node that is not the leader", E,
            Alert("HaproxyPrimaryRoutesToReplica",
                  'haproxy_server_status{job="haproxy",proxy="postgres_primary",state="UP"} == 1 '
                  'unless on(server) label_replace(patroni_primary{job="patroni"} == 1, "server", "$1", '
                  '"name", "(.*)")', "10s")),
    # -- files, certificates, the network -----------------------------------------------------------
    Problem("tls.expiry", "a certificate expires within the renewal window (or has expired)", W,
            Alert("CertificateExpiresSoon",
                  'probe_ssl_earliest_cert_expiry{job="tls"} - time() < {renew_seconds}', "0s")),
    Problem("tls.sans", "a certificate lacks the names its clients verify", E),
    Problem("tls.ca_mismatch", "a node's CA file is not the cluster CA", E),
    Problem("tls.chain", "a certificate is not signed by the cluster CA", E),
    Problem("tls.unreadable_cert", "a certificate cannot be read", E),
    Problem("tls.unreadable", "postgres cannot read a file Patroni or PostgreSQL opens", E),
    Problem("files.missing", "a file of the node's plan is missing", E),
    Problem("files.mode", "a key or secret has the wrong owner or mode", E),
    Problem("net.clock_skew", "a node's clock is off", W),
    Problem("net.port", "a port between the nodes is blocked", E),
    Problem("monitor.target_down", "Prometheus cannot scrape a target (no silent gap: it says so)", W,
            Alert("ScrapeTargetDown", 'up{job!~"etcd|patroni|haproxy"} == 0', "30s"), doctor=False),
)

BY_CODE: dict[str, Problem] = {p.code: p for p in PROBLEMS}


def problem(code: str) -> Problem:
    """The problem of a doctor Finding's code; KeyError for a code not in :data:`PROBLEMS`."""
    return BY_CODE[code]
