"""Gather the evidence once: the snapshot, then per node its services, processes, files, logs, configs,
PostgreSQL's own view, its clock and which ports it reaches. Everything through the probes and the
Transport, so the same code looks at the lab and at real servers. A fact that cannot be read is
recorded as missing (None) rather than raised: doctor runs precisely when things are broken.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import psycopg
import yaml
from cryptography import x509

from pgha.backup.repo import Repository
from pgha.doctor.model import (
    ArchiverFact,
    BackupFact,
    CertFact,
    Evidence,
    FileFact,
    NodeFacts,
    PgFact,
    PortFact,
    SlotFact,
    etcd3_section,
)
from pgha.errors import PghaError
from pgha.layout import NodeLayout
from pgha.pki import issued_by, san_strings
from pgha.probe import Credentials
from pgha.probe import pg as pg_probe
from pgha.probe.bounded import NoAnswer, launch
from pgha.probe.cluster import Prober
from pgha.probe.patroni import PatroniApi
from pgha.render.etcd import parse_env
from pgha.spec import ClusterSpec, Node
from pgha.target import Target
from pgha.topology import port_matrix, services_of
from pgha.transport.base import Transport

LOG_LINES = {"patroni": 300, "etcd": 100, "haproxy": 60, "keepalived": 60, "pgbackrest": 60}
"""Lines of each service's log doctor reads (others: :data:`OTHER_LOG_LINES`)."""
OTHER_LOG_LINES = 30
CONNECT_TIMEOUT = 1
"""Seconds for one connect or request to a node's daemon."""
NETWORK_TIMEOUT = CONNECT_TIMEOUT + 0.5
"""Seconds all of one node's network probes may take together (they run at once)."""


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[-1]}" if text else type(exc).__name__


_PORT_SCRIPT = r"""chk() { if out=$(timeout {t} bash -c "exec 3<>/dev/tcp/$1/$2" 2>&1); then echo "ok $1 $2";
else rc=$?; if [ $rc = 124 ]; then echo "fail $1 $2 no answer within {t} s";
else echo "fail $1 $2 ${out##*: }"; fi; fi; }
"""


def node_ports(transport: Transport, spec: ClusterSpec, node: Node,
               targets: list[tuple[Node, int, str]] | None = None) -> tuple[PortFact, ...]:
    """One command per node: every connect in parallel, each bounded by a timeout (by default to the
    node's whole :func:`port_matrix`)."""
    targets = port_matrix(spec, node) if targets is None else targets
    if not targets:
        return ()
    script = _PORT_SCRIPT.replace("{t}", str(CONNECT_TIMEOUT))
    script += "".join(f"chk {t.address} {port} &\n" for t, port, _ in targets) + "wait\n"
    res = transport.run(node, ["bash", "-c", script], timeout=CONNECT_TIMEOUT + 10)
    seen: dict[tuple[str, int], tuple[bool, str]] = {}
    for line in res.stdout.splitlines():
        parts = line.split(" ", 3)
        if len(parts) >= 3 and parts[2].isdigit():
            seen[(parts[1], int(parts[2]))] = (parts[0] == "ok", parts[3] if len(parts) > 3 else "")
    out = []
    for t, port, what in targets:
        ok, error = seen.get((str(t.address), port), (False, f"not tested: {res.stderr.strip()[:120]}"))
        out.append(PortFact(node.name, t.name, str(t.address), port, what, ok, error))
    return tuple(out)


def operator_ports(spec: ClusterSpec, targets: list[tuple[Node, int, str]] | None = None) -> tuple[PortFact, ...]:
    """This machine's connects (by default to its whole :func:`port_matrix`), in parallel."""

    def connect(target: tuple[Node, int, str]) -> PortFact:
        t, port, what = target
        try:
            with socket.create_connection((str(t.address), port), timeout=CONNECT_TIMEOUT):
                return PortFact("(this machine)", t.name, str(t.address), port, what, True)
        except OSError as exc:
            return PortFact("(this machine)", t.name, str(t.address), port, what, False, _short(exc))

    targets = port_matrix(spec, None) if targets is None else targets
    with ThreadPoolExecutor(max_workers=8) as pool:
        return tuple(pool.map(connect, targets))


def _clock(transport: Transport, node: Node) -> tuple[float | None, float]:
    t0 = time.time()
    res = transport.run(node, ["date", "+%s.%N"], timeout=10)
    t1 = time.time()
    try:
        return float(res.stdout.strip()) - (t0 + t1) / 2, (t1 - t0) / 2
    except ValueError:
        return None, 0.0


def _cert_kind(layout: NodeLayout, path: str) -> str | None:
    if layout.node.is_backup:
        return {layout.ca_crt: "ca", layout.server_crt: "server"}.get(path)
    if layout.node.is_monitor:
        return {layout.monitor_ca: "ca", layout.monitor_crt: "server"}.get(path)
    if not layout.node.is_postgres:
        return "haproxy-ca" if path == layout.haproxy_ca else None
    kinds = {layout.ca_crt: "ca", layout.etcd_crt: "etcd", layout.server_crt: "server",
             layout.patroni_crt: "patroni", layout.monitor_ca: "ca", layout.monitor_crt: "server"}
    return kinds.get(path)


def _certs(files: tuple[FileFact, ...], layout: NodeLayout, cluster_ca: bytes | None) -> tuple[CertFact, ...]:
    ca_path = layout.haproxy_ca if layout.node.is_haproxy else layout.monitor_ca if layout.node.is_monitor \
        else layout.ca_crt
    ca_bytes = next((f.content for f in files if f.path == ca_path), None)
    node_ca = None
    with contextlib.suppress(ValueError, TypeError):
        node_ca = x509.load_pem_x509_certificate(ca_bytes) if ca_bytes else None
    out = []
    for f in files:
        kind = _cert_kind(layout, f.path)
        if kind is None:
            continue
        if f.content is None:
            out.append(CertFact(f.path, kind, None, (), None, error="missing or unreadable"))
            continue
        try:
            cert = x509.load_pem_x509_certificate(f.content)
        except ValueError as exc:
            out.append(CertFact(f.path, kind, None, (), None, error=_short(exc)))
            continue
        is_ca = kind in ("ca", "haproxy-ca")
        out.append(CertFact(
            f.path, kind, cert.not_valid_after_utc, san_strings(cert),
            issued_by(cert, node_ca) if node_ca is not None and not is_ca else None,
            same_as_cluster_ca=(f.content.strip() == cluster_ca.strip()) if is_ca and cluster_ca else None))
    return tuple(out)


def _files(target: Target, node: Node, layout: NodeLayout) -> tuple[FileFact, ...]:
    """The plan's TLS and password-bearing files, with owner, mode and whether postgres can read them."""
    transport = target.transport
    plan = target.plan(node)
    wanted = (layout.certs_dir, layout.haproxy_ca, layout.patroni_config, layout.keepalived_conf,
              layout.monitor_certs, layout.exporter_env, layout.exporter_password)
    out = []
    for entry in plan.files:
        if not entry.path.startswith(wanted):
            continue
        st = transport.file_stat(node, entry.path)
        needs = entry.owner == "postgres" or any(a.startswith("u:postgres:") for a in entry.acl)
        can = transport.readable_by(node, entry.path, "postgres") if needs and st is not None else None
        content = transport.read_file(node, entry.path) if entry.path.endswith(".crt") else None
        out.append(FileFact(entry.path, entry.owner, entry.group, entry.mode, st, bool(entry.acl), needs, can, content))
    return tuple(out)


def _pg(spec: ClusterSpec, node: Node, creds: Credentials, password: str | None) -> PgFact:
    if password and password != creds.secrets.superuser_password:
        creds = dataclasses.replace(creds, secrets=dataclasses.replace(creds.secrets, superuser_password=password))
    host, port = str(node.address), spec.ports.postgresql
    try:
        with pg_probe.connect(host, port, creds, superuser=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            row = conn.execute("select pg_is_in_recovery(), current_setting('data_checksums') = 'on', "
                               "current_setting('wal_log_hints') = 'on', current_setting('primary_conninfo')"
                               ).fetchone()
            assert row is not None
            recv = conn.execute("select status, sender_host from pg_stat_wal_receiver").fetchone()
            senders = conn.execute("select coalesce(host(client_addr), 'local') from pg_stat_replication "
                                   "where state = 'streaming'").fetchall()
            arch = conn.execute("select archived_count, failed_count, last_archived_wal, last_archived_time, "
                                "last_failed_wal, last_failed_time from pg_stat_archiver").fetchone()
            slots = [] if row[0] else conn.execute(
                "select slot_name, active, coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint "
                "from pg_replication_slots").fetchall()
    except (psycopg.Error, OSError) as exc:
        return PgFact(False, _short(exc))
    return PgFact(True, None, bool(row[0]), bool(row[1]), bool(row[2]), str(row[3] or ""),
                  str(recv[0]) if recv else None, str(recv[1]) if recv else None,
                  tuple(str(s[0]) for s in senders),
                  tuple(SlotFact(str(n), bool(a), int(b)) for n, a, b in slots),
                  archiver=ArchiverFact(*arch) if arch else None)


def _yaml(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def superuser_password(config: dict[str, Any] | None) -> str | None:
    try:
        return str(config["postgresql"]["authentication"]["superuser"]["password"])  # type: ignore[index]
    except (KeyError, TypeError):
        return None


def _patroni_api(spec: ClusterSpec, node: Node, creds: Credentials) -> tuple[dict[str, Any] | None, str | None]:
    """Patroni's own view of its node (GET /patroni), or why there is none."""
    try:
        code, body = PatroniApi(spec, node, creds, timeout=CONNECT_TIMEOUT).get("/patroni")
    except httpx.HTTPError as exc:
        return None, _short(exc)
    return (body, None) if isinstance(body, dict) else (None, f"HTTP {code}")


def node_facts(target: Target, node: Node, creds: Credentials, cluster_ca: bytes | None) -> NodeFacts:
    """One node's facts. What goes over the network to the node's daemons (ports, clock, Patroni's REST
    API, PostgreSQL) runs at once, beside the reads of its files and logs, bounded together: a node
    that hangs costs :data:`NETWORK_TIMEOUT`, not a timeout per probe."""
    spec, transport = target.spec, target.transport
    layout = target.layout(node)
    config = _yaml(transport.read_file(node, layout.patroni_config)) if node.is_postgres else None
    network: dict[str, Any] = {"ports": partial(node_ports, transport, spec, node),
                               "clock": partial(_clock, transport, node)}
    if node.is_postgres:
        network |= {"api": partial(_patroni_api, spec, node, creds),
                    "pg": partial(_pg, spec, node, creds, superuser_password(config))}
    launched = launch(network)
    services = services_of(spec, node)
    states = []
    for s in services:
        with contextlib.suppress(Exception):  # a service manager that does not know it: no fact
            states.append(transport.service_state(node, s))
    logs = {s: transport.logs(node, s, LOG_LINES.get(s, OTHER_LOG_LINES)) for s in services}
    try:
        files = _files(target, node, layout)
    except (OSError, KeyError, ValueError, PghaError):
        files = ()  # pgha's own PKI is unreadable here: the TLS diagnoses have nothing to compare
    processes = tuple(transport.processes(node))
    if node.is_postgres:
        env_raw = transport.read_file(node, layout.etcd_env)
        hba = transport.read_file(node, f"{layout.pg_data}/pg_hba.conf")
        etcd_ca_path = etcd3_section(config).get("cacert")
        etcd_ca = transport.read_file(node, str(etcd_ca_path)) if etcd_ca_path else None
        has_data = transport.file_stat(node, f"{layout.etcd_data}/member") is not None
    seen = launched.results(NETWORK_TIMEOUT)
    ports, clock = seen["ports"], seen["clock"]
    offset, uncertainty = clock if not isinstance(clock, NoAnswer) else (None, 0.0)
    facts = NodeFacts(node, tuple(states), processes, files, _certs(files, layout, cluster_ca), logs,
                      clock_offset=offset, clock_uncertainty=uncertainty,
                      ports=() if isinstance(ports, NoAnswer) else ports)
    if not node.is_postgres:
        return facts
    api, api_error = seen["api"] if not isinstance(seen["api"], NoAnswer) else (None, seen["api"].reason)
    pg = seen["pg"] if not isinstance(seen["pg"], NoAnswer) else PgFact(False, seen["pg"].reason)
    return dataclasses.replace(
        facts,
        etcd_env=parse_env(env_raw.decode(errors="replace")) if env_raw is not None else None,
        etcd_env_path=layout.etcd_env,
        etcd_has_data=has_data,
        patroni_config=config, patroni_config_path=layout.patroni_config, pg_data=layout.pg_data,
        pg_hba=hba.decode(errors="replace") if hba is not None else None,
        patroni_api=api, patroni_api_error=api_error,
        etcd3_ca_is_cluster_ca=(etcd_ca.strip() == cluster_ca.strip()) if etcd_ca and cluster_ca else None,
        pg=pg,
    )


def collect(target: Target, creds: Credentials) -> Evidence:
    """One look at everything; per-node collection runs in parallel (mostly waiting on subprocesses)."""
    spec, transport, state = target.spec, target.transport, target.state
    try:
        cluster_ca: bytes | None = (state.pki / "ca.crt").read_bytes()
    except OSError:
        cluster_ca = None
    with ThreadPoolExecutor(max_workers=len(spec.nodes) + 3) as pool:
        snap_f = pool.submit(Prober(spec, creds, transport).snapshot)
        ops_f = pool.submit(operator_ports, spec)
        futures = [pool.submit(node_facts, target, n, creds, cluster_ca) for n in spec.nodes]
        backup_f = pool.submit(_backup, target) if spec.backup_node is not None else None
        nodes, notes = [], []
        for node, fut in zip(spec.nodes, futures, strict=True):
            try:
                nodes.append(fut.result())
            except Exception as exc:  # doctor looks at broken clusters: a node it cannot inspect is a note
                nodes.append(NodeFacts(node))
                notes.append(f"could not inspect {node.name}: {_short(exc)}")
        return Evidence(spec, snap_f.result(), tuple(nodes), creds.secrets.superuser_password,
                        datetime.now(UTC), command=lambda n, s, a: target.service_command(spec.node(n), s, a),
                        operator_ports=ops_f.result(), notes=tuple(notes),
                        backup=backup_f.result() if backup_f else None, scheduled_backups=target.whole_hosts)


def _backup(target: Target) -> BackupFact:
    node = target.spec.backup_node
    assert node is not None
    try:
        return BackupFact(Repository(target.spec, target.transport, target.layout(node)).info())
    except PghaError as exc:
        return BackupFact(None, exc.message)
