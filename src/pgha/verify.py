"""`pgha verify`: the seed's six checks of section 12, plus the TLS properties, each with what was
expected and what was seen. Works against any reachable cluster described by a spec.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

import psycopg

from pgha.probe import Credentials
from pgha.probe import etcd as etcd_probe
from pgha.probe import pg as pg_probe
from pgha.snapshot import ClusterSnapshot, take
from pgha.spec import ClusterSpec
from pgha.transport.base import Transport


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    expected: str
    seen: str


@dataclass(frozen=True)
class VerifyReport:
    checks: tuple[Check, ...]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def as_dict(self) -> dict[str, object]:
        return {"passed": self.passed, "seconds": round(self.seconds, 3),
                "checks": [asdict(c) for c in self.checks]}


def _guard(name: str, expected: str, fn: Callable[[], tuple[bool, str]]) -> Check:
    try:
        ok, seen = fn()
    except Exception as exc:  # a check that cannot run has failed; say why
        ok, seen = False, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    return Check(name, ok, expected, seen)


class Verifier:
    def __init__(self, spec: ClusterSpec, creds: Credentials, transport: Transport | None = None) -> None:
        self.spec, self.creds, self.transport = spec, creds, transport
        self.vip = str(spec.vip.address)
        self.port = spec.ports.postgresql

    def run(self) -> VerifyReport:
        t0 = time.monotonic()
        snap = take(self.spec, self.creds, self.transport)
        n_pg = len(self.spec.postgres_nodes)
        checks = [
            _guard("1. etcd endpoint health (mTLS)", f"{n_pg}/{n_pg} members healthy",
                   lambda: self.etcd_health(snap)),
            _guard("2. Patroni members", f"1 Leader, {n_pg - 1} Replicas, all running, lag 0",
                   lambda: self.patroni(snap)),
            _guard("3. VIP answers", f"{self.vip}:{self.port} accepts TCP, held by exactly one HAProxy node",
                   lambda: self.vip_answers(snap)),
            _guard("4. SQL through the VIP lands on the primary",
                   "pg_is_in_recovery() = f, inet_server_addr() = the leader's address",
                   lambda: self.lands_on_primary(snap)),
            _guard("5. replication is streaming", f"{n_pg - 1} rows in pg_stat_replication, state streaming",
                   self.streaming),
            _guard("6. row written via VIP is read on each replica", "the row on every replica within 5 s",
                   lambda: self.write_read(snap)),
            _guard("TLS: plaintext PostgreSQL refused", "sslmode=disable rejected by every node",
                   self.plaintext_refused),
            _guard("TLS: etcd refuses clients without a certificate", "TLS handshake refused",
                   self.etcd_needs_cert),
            _guard("TLS: verify-full through the VIP", "connection with sslmode=verify-full against the CA",
                   self.verify_full),
            _guard("etcd authorization: the read-only user cannot write", "auth on; pgha-probe reads the "
                   "cluster's keys, its write is refused", self.etcd_read_only),
        ]
        return VerifyReport(tuple(checks), time.monotonic() - t0)

    # -- the checks ---------------------------------------------------------------------------
    def etcd_health(self, snap: ClusterSnapshot) -> tuple[bool, str]:
        healthy = [m for m in snap.etcd if m.healthy]
        bad = [f"{m.name}: {m.error}" for m in snap.etcd if not m.healthy]
        return len(healthy) == len(snap.etcd), f"{len(healthy)}/{len(snap.etcd)} healthy" + (
            f"; {'; '.join(bad)}" if bad else f", leader {snap.etcd_leader}")

    def patroni(self, snap: ClusterSnapshot) -> tuple[bool, str]:
        if not snap.members:
            return False, f"no Patroni REST API answers ({snap.patroni_error})"
        leaders = [m for m in snap.members if m.is_leader]
        replicas = snap.replicas
        ok = (len(leaders) == 1 and len(replicas) == len(self.spec.postgres_nodes) - 1
              and all(m.is_running for m in snap.members) and all(m.lag_mb == 0 for m in replicas))
        seen = ", ".join(f"{m.name} {m.role}/{m.state}" + (f" lag {m.lag_mb}MB" if not m.is_leader else "")
                         for m in snap.members)
        return ok, seen

    def vip_answers(self, snap: ClusterSnapshot) -> tuple[bool, str]:
        with socket.create_connection((self.vip, self.port), timeout=3):
            pass
        if snap.vip_holders is None:
            return True, "TCP connect ok (holder not inspected from here)"
        return len(snap.vip_holders) == 1, f"TCP connect ok; held by {list(snap.vip_holders) or 'nobody'}"

    def lands_on_primary(self, snap: ClusterSnapshot) -> tuple[bool, str]:
        rows = pg_probe.query(self.vip, self.port, self.creds,
                              "select host(inet_server_addr()), pg_is_in_recovery()")
        addr, in_recovery = rows[0]
        leader = snap.leader
        leader_addr = str(self.spec.node(leader.name).address) if leader else None
        return (not in_recovery and addr == leader_addr,
                f"inet_server_addr={addr}, pg_is_in_recovery={'t' if in_recovery else 'f'}, "
                f"leader address {leader_addr}")

    def streaming(self) -> tuple[bool, str]:
        rows = pg_probe.query(self.vip, self.port, self.creds,
                              "select host(client_addr), state, sync_state from pg_stat_replication "
                              "order by 1")
        want = len(self.spec.postgres_nodes) - 1
        ok = len(rows) == want and all(r[1] == "streaming" for r in rows)
        return ok, ", ".join(f"{a} {s} ({sync})" for a, s, sync in rows) or "no rows"

    def write_read(self, snap: ClusterSnapshot) -> tuple[bool, str]:
        marker = f"pgha-verify-{uuid.uuid4().hex[:12]}"
        pg_probe.query(self.vip, self.port, self.creds,
                       "create table if not exists pgha_verify (id serial primary key, val text, "
                       "at timestamptz default now())")
        pg_probe.query(self.vip, self.port, self.creds, "insert into pgha_verify (val) values (%s)", (marker,))
        seen = []
        ok = True
        for m in snap.replicas:
            node = self.spec.node(m.name)
            found = False
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not found:
                try:
                    rows = pg_probe.query(str(node.address), self.port, self.creds,
                                          "select count(*) from pgha_verify where val = %s", (marker,))
                except psycopg.errors.UndefinedTable:
                    rows = []  # the table itself has not been replayed yet
                found = rows == [(1,)]
                if not found:
                    time.sleep(0.1)
            seen.append(f"{node.name}: {'found' if found else 'missing'}")
            ok &= found
        pg_probe.query(self.vip, self.port, self.creds, "delete from pgha_verify where val = %s", (marker,))
        return ok and bool(snap.replicas), "; ".join(seen) or "no replicas"

    def plaintext_refused(self) -> tuple[bool, str]:
        seen = []
        ok = True
        for node in self.spec.postgres_nodes:
            try:
                pg_probe.query(str(node.address), self.port, self.creds, "select 1", sslmode="disable")
                seen.append(f"{node.name}: ACCEPTED")
                ok = False
            except psycopg.OperationalError as exc:
                reason = "rejected (pg_hba)" if "pg_hba" in str(exc) or "no encryption" in str(exc) else \
                    str(exc).strip().splitlines()[-1]
                seen.append(f"{node.name}: {reason}")
        return ok, "; ".join(seen)

    def etcd_needs_cert(self) -> tuple[bool, str]:
        results = [(n.name, *etcd_probe.refuses_without_cert(self.spec, n, self.creds))
                   for n in self.spec.postgres_nodes]
        return all(r[1] for r in results), "; ".join(f"{name}: {why}" for name, _, why in results)

    def etcd_read_only(self) -> tuple[bool, str]:
        return etcd_probe.read_only_enforced(self.spec, self.creds)

    def verify_full(self) -> tuple[bool, str]:
        with pg_probe.connect(self.vip, self.port, self.creds, sslmode="verify-full") as conn:
            row = conn.execute("select ssl, version from pg_stat_ssl where pid = pg_backend_pid()").fetchone()
        ssl_on, version = row if row else (False, None)
        return bool(ssl_on), f"sslmode=verify-full ok, ssl={ssl_on}, protocol={version}"

def verify(spec: ClusterSpec, creds: Credentials, transport: Transport | None = None) -> VerifyReport:
    return Verifier(spec, creds, transport).run()
