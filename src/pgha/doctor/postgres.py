"""Patroni and PostgreSQL: Patroni cut off from etcd, a member stuck in `start failed`, a replica not
streaming, pg_rewind failing, PostgreSQL outside Patroni, the superuser password out of sync."""

from __future__ import annotations

import ipaddress
import os
import time
from typing import Any

from pgha.doctor.model import Evidence, Finding, NodeFacts, Severity, etcd3_section, last_line
from pgha.errors import pgha_command
from pgha.transport.base import ProcessInfo

PG_ERRORS = ("FATAL:", "PANIC:", "could not", "invalid value", "private key file", "password authentication")


TIMEOUT_WORDS = ("timeout", "timed out", "no answer within")


def hangs(f: NodeFacts) -> bool:
    """Patroni runs, yet its REST API and PostgreSQL accept connections and then say nothing (a frozen
    node: stopped processes, a blocked disk). Its other symptoms are this one."""
    state = f.service("patroni")
    api, pg = (f.patroni_api_error or "").lower(), ((f.pg.error if f.pg else None) or "").lower()
    return (state is not None and state.running and any(w in api for w in TIMEOUT_WORDS)
            and any(w in pg for w in TIMEOUT_WORDS))


def hung(ev: Evidence) -> list[Finding]:
    """A PostgreSQL node whose daemons run but do not answer (see :func:`hangs`)."""
    return [Finding(
        f"{f.node.name} does not answer: Patroni runs there, but its REST API and PostgreSQL accept "
        "connections and then say nothing",
        f"REST API: {f.patroni_api_error}; PostgreSQL: {f.pg.error if f.pg else '?'}",
        f"on {f.node.name}: look at Patroni's and the postmaster's state (`ps -o pid,stat,args -p PID`): "
        f"T is a stopped process (`kill -CONT PID`), D one blocked on its disk; otherwise "
        f"{ev.restart(f.node, 'patroni')}",
        node=f.node.name, code="node.hangs") for f in ev.pg_facts if hangs(f)]


def patroni_dcs(ev: Evidence) -> list[Finding]:
    """Patroni runs but has not reached etcd for longer than the TTL (its REST API says when it last did)."""
    out = []
    ttl = ev.snapshot.config.ttl if ev.snapshot.config else None  # the live ttl: no REST API, no judgement
    now = time.time()
    for f in ev.pg_facts:
        state = f.service("patroni")
        if (state is not None and not state.running) or hangs(f):
            continue
        seen = (f.patroni_api or {}).get("dcs_last_seen")
        stale = ttl is not None and isinstance(seen, int | float) and seen > 0 and now - seen > ttl
        line = last_line(f.log("patroni"), "failed to get list of machines", "etcd", "sslerror",
                         "permission denied", "maxretryerror")
        if not stale and not (f.patroni_api is None and line and "etcd" in line.lower()):
            continue
        causes = []
        etcd3 = etcd3_section(f.patroni_config)
        for key in ("cacert", "cert", "key"):
            path = etcd3.get(key)
            if not path:
                causes.append(f"etcd3.{key} is not set in {f.patroni_config_path}")
                continue
            fact = next((x for x in f.files if x.path == path), None)
            if fact is not None and fact.stat is None:
                causes.append(f"etcd3.{key} {path} does not exist")
            elif fact is not None and fact.postgres_can_read is False:
                causes.append(f"postgres cannot read etcd3.{key} {path}")
        if f.etcd3_ca_is_cluster_ca is False:
            causes.append(f"etcd3.cacert {etcd3.get('cacert')} is not the cluster CA (CA mismatch)")
        evidence = (f"dcs_last_seen {now - float(seen or 0):.0f} s ago (ttl {ttl} s)" if stale else
                    f"REST API: {f.patroni_api_error}") + (f"; log: {line}" if line else "")
        fix = ("; ".join(causes) + ": see the TLS findings for the exact fix" if causes else
               f"check etcd3.hosts/cacert/cert/key in {f.patroni_config_path} and port {ev.spec.ports.etcd_client} "
               f"to the etcd members, then {ev.restart(f.node, 'patroni')}")
        out.append(Finding(f"Patroni on {f.node.name} cannot reach etcd", evidence, fix, node=f.node.name,
                           code="patroni.no_dcs"))
    return out


def _pg_error(f: NodeFacts) -> str:
    return last_line(f.log("patroni"), *PG_ERRORS) or "no PostgreSQL error in the last log lines"


def start_failed(ev: Evidence) -> list[Finding]:
    out = []
    for m in ev.snapshot.members:
        if m.state not in ("start failed", "restart failed", "crashed"):
            continue
        node = ev.spec.member_of(m.name)
        f = ev.facts(node.name) if node else None
        if node is None or f is None:
            continue
        fix = (f"fix what PostgreSQL says above, then `{pgha_command('restart', node.name)}`"
               + ("" if m.is_leader else f" (or rebuild the replica: `{pgha_command('reinit', node.name)}`)"))
        out.append(Finding(f"{m.name} is stuck in '{m.state}': PostgreSQL does not start", _pg_error(f), fix,
                           node=node.name, code="patroni.start_failed"))
    return out


def _hba_allows_replication(hba: str, address: str) -> bool:
    addr = ipaddress.IPv4Address(address)
    for line in hba.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 5 or words[0] not in ("host", "hostssl") or words[4] in ("reject",):
            continue
        if "replication" not in words[1].split(",") or words[2] not in ("replicator", "all"):
            continue
        try:
            if addr in ipaddress.IPv4Network(words[3], strict=False):
                return True
        except ValueError:
            continue
    return False


def _config_hba(config: dict[str, Any] | None) -> list[str]:
    rules = ((config or {}).get("postgresql") or {}).get("pg_hba") or []
    return [str(r) for r in rules]


def _conninfo_host(conninfo: str) -> str | None:
    for word in conninfo.split():
        if word.startswith("host="):
            return word.removeprefix("host=")
    return None


def replica_not_streaming(ev: Evidence) -> list[Finding]:
    leader = ev.snapshot.leader
    if leader is None:
        return []
    lnode = ev.spec.member_of(leader.name)
    lf = ev.facts(lnode.name) if lnode else None
    out = []
    for m in ev.snapshot.replicas:
        node = ev.spec.member_of(m.name)
        f = ev.facts(node.name) if node else None
        if m.state == "streaming" or node is None or f is None or m.state in ("start failed", "restart failed"):
            continue
        seen = [f"{m.name} is {m.role}/{m.state}"]
        fix = []
        if f.pg and f.pg.receiver_status:
            seen.append(f"wal receiver {f.pg.receiver_status}")
        host = _conninfo_host(f.pg.primary_conninfo or "") if f.pg else None
        if host and lnode and host != str(lnode.address):
            seen.append(f"primary_conninfo host={host}, the leader is {lnode.address}")
            fix.append(f"Patroni rewrites primary_conninfo: {ev.restart(node, 'patroni')}")
        line = last_line(f.log("patroni"), "pg_hba.conf", "password authentication failed",
                         "could not connect to the primary")
        if line:
            seen.append(f"log: {line}")
        if lf is not None and lf.pg_hba is not None and lnode is not None and \
                not _hba_allows_replication(lf.pg_hba, str(node.address)):
            rule = f"hostssl replication replicator {node.address}/32 scram-sha-256"
            in_config = _hba_allows_replication("\n".join(_config_hba(lf.patroni_config)), str(node.address))
            seen.append(f"{lf.pg_data}/pg_hba.conf on {lnode.name} has no replication entry for {node.address}")
            fix.append(f"pg_hba.conf on {lnode.name} was edited by hand (config.yml has the rule): "
                       f"`{pgha_command('restart', lnode.name)}` rewrites it, or add `{rule}` back and "
                       "`SELECT pg_reload_conf()`" if in_config else
                       f"add `{rule}` to postgresql.pg_hba in {lf.patroni_config_path} on {lnode.name}, "
                       f"then `{pgha_command('reload')}`")
        elif line and "password authentication failed" in line:
            fix.append(f"the replicator password in the database differs from {f.patroni_config_path} "
                       "(postgresql.authentication.replication.password): on the leader, "
                       "ALTER ROLE replicator PASSWORD '<that password>'")
        out.append(Finding(f"replica {m.name} is not streaming from the leader {leader.name}", "; ".join(seen),
                           " ; ".join(fix) or f"see `{pgha_command('logs', node.name, 'patroni')}` ; if its "
                           f"timeline diverged: `{pgha_command('reinit', node.name)}`", node=node.name,
                           code="replication.not_streaming"))
    return out


def rewind(ev: Evidence) -> list[Finding]:
    """pg_rewind needs data checksums or wal_log_hints; when it failed, rebuilding the replica is the way out."""
    out = []
    streaming = {m.name for m in ev.snapshot.members if m.state == "streaming" or m.is_leader}
    for f in ev.pg_facts:
        line = last_line(f.log("patroni"), "pg_rewind failed", "failed to rewind", "rewind failed",
                         "target server needs to use either data checksums")
        if line and f.node.member_name not in streaming:
            out.append(Finding(f"pg_rewind failed on {f.node.name}: the old primary cannot rejoin", f"log: {line}",
                               f"`{pgha_command('reinit', f.node.name)}` (rebuilds it from the leader)",
                               node=f.node.name, code="rewind.failed"))
        pg = f.pg
        if pg and pg.reachable and pg.data_checksums is False and pg.wal_log_hints is False:
            out.append(Finding(
                f"pg_rewind will fail on {f.node.name} after a failover", "data_checksums = off, wal_log_hints = off",
                f"`{pgha_command('config', 'set', 'postgresql.parameters.wal_log_hints=on')}`, then "
                f"`{pgha_command('restart', '--rolling', '--pending')}`",
                Severity.WARNING, f.node.name, "rewind.not_possible"))
    return out


def postmasters(processes: tuple[ProcessInfo, ...]) -> list[tuple[ProcessInfo, str, str]]:
    """(process, data directory, port) of every postmaster: `postgres -D DIR` (children retitle themselves)."""
    out = []
    for p in processes:
        if not p.argv or os.path.basename(p.argv[0]) not in ("postgres", "postmaster"):
            continue
        data, port = "", "5432"
        args = list(p.argv[1:])
        for i, a in enumerate(args):
            if a == "-D" and i + 1 < len(args):
                data = args[i + 1]
            elif a.startswith("-D") and len(a) > 2:
                data = a[2:]
            elif a == "-p" and i + 1 < len(args):
                port = args[i + 1]
            elif a.startswith("--port="):
                port = a.split("=", 1)[1]
        if data:
            out.append((p, data.rstrip("/"), port))
    return out


def outside_patroni(ev: Evidence) -> list[Finding]:
    """A postmaster Patroni did not start: another data directory (the distribution's cluster, a hand-
    started one), or Patroni's own PostgreSQL left running while Patroni is not."""
    out = []
    for f in ev.pg_facts:
        patroni = f.service("patroni")
        for p, data, port in postmasters(f.processes):
            if data != f.pg_data.rstrip("/"):
                distro = "/var/lib/postgresql/" in data and data.endswith("/main")
                out.append(Finding(
                    f"a PostgreSQL outside Patroni runs on {f.node.name}",
                    f"postmaster pid {p.pid} (user {p.user}) on port {port} with data directory {data}; "
                    f"Patroni's is {f.pg_data}",
                    (f"on {f.node.name}: systemctl disable --now postgresql (the distribution's service)"
                     if distro else
                     f"on {f.node.name}: runuser -u {p.user} -- pg_ctl stop -m fast -D {data}  (or kill -INT {p.pid})")
                    + f" ; if Patroni's PostgreSQL was disturbed: `{pgha_command('restart', f.node.name)}`",
                    node=f.node.name, code="postgres.outside_patroni"))
            elif patroni is not None and not patroni.running:
                out.append(Finding(
                    f"PostgreSQL runs without Patroni on {f.node.name}",
                    f"postmaster pid {p.pid} on {data}; Patroni is {patroni.detail}: nothing fails it over or "
                    "demotes it",
                    f"{ev.start(f.node, 'patroni')} (Patroni takes the running PostgreSQL over)",
                    node=f.node.name, code="postgres.no_patroni"))
    return out


def superuser_password(ev: Evidence) -> list[Finding]:
    out = []
    rejected = []
    for f in ev.pg_facts:
        config = f.patroni_config or {}
        try:
            pw = config["postgresql"]["authentication"]["superuser"]["password"]
        except (KeyError, TypeError):
            pw = None
        if pw is not None and str(pw) != ev.expected_superuser_password:
            out.append(Finding(
                f"the superuser password in {f.node.name}'s Patroni config differs from pgha's secrets",
                f"postgresql.authentication.superuser.password in {f.patroni_config_path} is not secrets.yml's",
                f"deploy config.yml again from pgha's secrets (`{pgha_command('render')}`), "
                f"then {ev.restart(f.node, 'patroni')}",
                Severity.WARNING, f.node.name, "postgres.password_config"))
        if f.pg and f.pg.error and "password authentication failed" in f.pg.error:
            rejected.append((f, f.pg.error))
    if rejected:
        leader = ev.snapshot.leader
        lf = ev.facts(leader.name) if leader else rejected[0][0]
        lf = lf or rejected[0][0]
        sock = ((lf.patroni_config or {}).get("postgresql", {}).get("parameters", {})
                .get("unix_socket_directories", "/var/run/postgresql"))
        out.append(Finding(
            "the superuser password in the database differs from the one in Patroni's config",
            "; ".join(f"{f.node.name}: {err}" for f, err in rejected),
            f"on {lf.node.name} (the leader), over the local socket as postgres: "
            f"runuser -u postgres -- psql -h {sock} -c '\\password postgres' and enter "
            f"postgresql.authentication.superuser.password of {lf.patroni_config_path} (Patroni and pgha "
            "connect with it; psql's \\password sends only a SCRAM verifier: the password reaches no command "
            "line and no server log, as `ALTER ROLE … PASSWORD '…'` would)",
            node=lf.node.name, code="postgres.password_db"))
    return out


DIAGNOSES = (hung, patroni_dcs, start_failed, replica_not_streaming, rewind, outside_patroni, superuser_password)
